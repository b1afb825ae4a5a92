"""`targeting export`: channel cut-offs of a run's model -> selectivity.json, logged with the run.

The cut-offs are set on the run plan's reference window (`plan.lay_reference`: the most recent
`serve.reference_days` after the evaluated model's test window, before the held-out stretch that
`run` scores), for the evaluated model and the deployed refit alike. The export is validated,
logged to the MLflow run with the feature snapshot (artefact ``snapshot``) and the scorer pyfunc
(artefact ``scorer``: `mlflow models serve -m runs:/<run id>/scorer`). The files, the registered
version and the `challenger` alias change as one transaction (`pipeline.jobs.publish`): an export
stopped at any step leaves the previous one intact or the new one complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.features.featureset import FeatureSet
from pipeline.ingest.readers import write_table
from pipeline.jobs import JobResult, step
from pipeline.jobs.paths import refuse_aliases
from pipeline.jobs.publish import publish
from pipeline.serve import strict_json
from pipeline.serve.cutoffs import (
    Provenance,
    ReferenceCutoffs,
    manifest_sha256,
    new_document,
    office_table,
    reference_cutoffs,
)
from pipeline.serve.model import TargetingModel, plan_of
from pipeline.serve.selectivity import ThresholdsError
from pipeline.serve.thresholds import Thresholds
from pipeline.serve.vectors import channel_vectors
from pipeline.timeaxis import Window

MODEL_ARTIFACT = "targeting_model"
SNAPSHOT_ARTIFACT = "snapshot"
THRESHOLDS_ARTIFACT = "selectivity"


def _lines(document: dict[str, Any], kpis: dict[str, Any], path: Path) -> list[str]:
    targets = {c["name"]: c["rate"] for c in document["channels"]}
    lines = [f"selectivity file: {path}", f"ranked by {document['rank_by']}; cut-offs (score):"]
    for name in targets:
        cut = document["cutoffs"]["cutoffs"][name]["score"]
        aeo = document["cutoffs"]["aeo_cutoffs"][name]["score"]
        lines.append(
            f"  {name:<8} {'-' if cut is None else f'{cut:.4g}':>10}   AEO "
            f"{'-' if aeo is None else f'{aeo:.4g}':>10}"
        )
    if document["offices"]:
        lines.append(f"  per-office cut-offs for {len(document['offices'])} offices")
    lines.append(
        f"reference window: {kpis['declarations']:,} declarations over {kpis['days']:.0f} days; "
        "realised share vs target, expected hit rate [95 % interval]:"
    )
    for name, entry in kpis["channels"].items():
        target = "" if entry["target"] is None else f" (target {entry['target']:.1%})"
        hit = entry["expected_hit_rate"]
        interval, spread = entry.get("expected_hit_rate_interval"), entry.get("hit_rate_range")
        days = f"{kpis['days']:.0f}"
        revenue = entry.get("expected_revenue_per_control")
        lines.append(
            f"  {name:<8} {entry['share']:6.2%}{target:<16} hit rate "
            f"{'-' if hit is None else f'{hit:.1%}'}"
            + ("" if interval is None else f" [{interval[0]:.1%}, {interval[1]:.1%}]")
            + (
                ""
                if spread is None
                else f"; over {days} days, 95 % range {spread[0]:.1%}-{spread[1]:.1%}"
            )
            + ("" if revenue is None else f", expected revenue per control {revenue:,.0f}")
        )
    drawn = kpis.get("random") or {}
    if drawn.get("declarations"):
        hit = drawn["expected_hit_rate"]
        lines.append(
            f"  {'random':<8} {drawn['share']:6.2%} of declarations drawn at random into "
            f"{drawn['channel']} (counted in its target, not in its hit rate), hit rate "
            f"{'-' if hit is None else f'{hit:.1%}'}"
        )
    if not any(e.get("expected_hit_rate_interval") for e in kpis["channels"].values()):
        lines.append(f"  {kpis['hit_rate_uncertainty']}")
    lines += [f"warning: {w}" for w in kpis.get("warnings", [])]
    return lines


def reference_scores(
    config: Config, model: TargetingModel, feature_set: FeatureSet
) -> tuple[pd.DataFrame, Window]:
    """The reference window's declarations scored as `export` scores them (canonical columns,
    score, margin, probability, expected revenue) and the window: what capacity scenarios
    (`serve.cutoffs.capacity_scenarios`) are computed on, as in notebook 04."""
    from pipeline.jobs.catalog import validated_inputs

    plan = plan_of(model, config, feature_set.lodged_at)
    declarations = validated_inputs(config).declarations
    placed = reference_cutoffs(
        model, feature_set, declarations, plan.reference, config.serve, plan.ranking
    )
    return placed.scored, plan.reference


def export(config: Config, run_id: str | None = None, out: Path | None = None) -> JobResult:
    """Compute the cut-offs of a run's model (default: the last trained) and write the export."""
    import pipeline.tracking as tracking
    from pipeline.jobs.catalog import validated_inputs

    exported = _run_model(config, run_id)
    run_id, model = exported.run_id, exported.model
    feature_set = _feature_set(config)
    plan = plan_of(model, config, feature_set.lodged_at)
    rank_by, window = plan.ranking.rank_by, plan.reference
    declarations = validated_inputs(config).declarations

    step("cut-offs on the reference window")
    placed = reference_cutoffs(model, feature_set, declarations, window, config.serve, plan.ranking)
    tracking.log_artifacts(run_id, config.paths.snapshot, SNAPSHOT_ARTIFACT)
    document = _document(config, exported, feature_set.manifest, placed, rank_by)
    document["kpis"] = placed.kpis
    target = Path(out) if out is not None else config.paths.thresholds
    offices = target.with_name(f"{target.stem}_offices.csv")
    vectors = target.with_name(f"{target.stem}_vectors.json")
    refuse_aliases(
        "export",
        {"--out": target, "the office table": offices, "the test vectors": vectors},
        _inputs(config),
    )
    final = Thresholds(document, placed.thresholds.random_key)
    kpis = document["kpis"]
    scorer_uri = ""

    def register(staged: Mapping[Path, Path]) -> str:
        nonlocal scorer_uri
        scorer_uri, version = _log_and_register(config, run_id, model, staged[target])
        tracking.log_metrics(run_id, _serve_metrics(kpis))
        return version

    version = publish(
        {
            target: partial(_save_export, final),
            offices: partial(
                _write_offices, office_table(document, placed.channels, placed.scored)
            ),
            vectors: partial(_write_vectors, channel_vectors(document)),
        },
        register,
        partial(tracking.move_challenger, config.tracking),
    )

    lines = _lines(document, kpis, target)
    lines.append(f"cut-offs and expected KPIs per office (CSV): {offices}")
    lines.append(f"channel assignment test vectors (docs/selectivity.md): {vectors}")
    name = config.tracking.registered_model
    lines.append(f"scorer: {scorer_uri}, registered as {name} v{version} (@challenger)")
    lines.append(f"approve it after review: targeting approve --version {version} --reason ...")
    return JobResult(
        stage="export",
        outputs={"thresholds": target, "offices": offices, "vectors": vectors},
        figures={
            "run_id": run_id,
            "scorer_uri": scorer_uri,
            "version": version,
            "rank_by": rank_by,
            "shares": _channel_shares(kpis),
            "targets": placed.thresholds.channels,
        },
        lines=lines,
    )


@dataclass(frozen=True)
class ExportedRun:
    """The run an export is made for: its id, its deployed model, and the registered model's
    name the scorer goes under."""

    run_id: str
    model: TargetingModel
    registered_name: str


def _run_model(config: Config, run_id: str | None) -> ExportedRun:
    """The run to export (default: the last trained), its deployed model, and the registered
    model's name it goes under (the run's tag, else the model's, else the config's)."""
    import pipeline.tracking as tracking
    from pipeline.jobs import catalog

    loaded = catalog.load_run(config, run_id, "deployed")
    tags = tracking.run_tags(loaded.run_id)
    registered_name = tags.get(
        "registered_model", loaded.model.info.registered_model or config.tracking.registered_model
    )
    return ExportedRun(loaded.run_id, loaded.model, str(registered_name))


def _feature_set(config: Config) -> FeatureSet:
    """The feature set the features job wrote; its snapshot must be there too (it is logged)."""
    from pipeline.jobs import catalog

    catalog.snapshot_folder(config)  # logged with the export: refuse early when missing
    return catalog.feature_set(config)


def _document(
    config: Config,
    exported: ExportedRun,
    manifest: pd.DataFrame,
    placed: ReferenceCutoffs,
    rank_by: str,
) -> dict[str, Any]:
    """The export document of the cut-offs, its KPIs still empty: the model it belongs to, the
    ranking, the windows (the reference one added), the features' config and descriptions."""
    import pipeline.tracking as tracking

    run_id, model, window = exported.run_id, exported.model, placed.window

    descriptions = (
        dict(zip(manifest["name"].astype(str), manifest["description"].astype(str), strict=True))
        if "description" in manifest.columns
        else {}
    )
    windows = {
        **model.info.windows_dict(),
        "reference": {"start": window.start.isoformat(), "end": window.end.isoformat()},
    }
    return new_document(
        placed.policy,
        Provenance(
            model={
                "name": exported.registered_name,
                # the version the registry gives the scorer that carries this export (checked when
                # it registers); the version's tags name the document back (thresholds_sha256 of
                # its bytes, content_sha256 of its content)
                "version": tracking.next_version(config.tracking),
                "uri": f"runs:/{run_id}/{MODEL_ARTIFACT}",
                "run_id": run_id,
                "booster_sha256": model.booster_sha256(),
            },
            rank_by=rank_by,
            revenue_weight=config.serve.revenue_weight,
            manifest_sha256=manifest_sha256(manifest),
            windows=_jsonable(windows),
            features={
                "config": config.features.model_dump(mode="json"),
                "descriptions": descriptions,
            },
            # No machine-local path or tracking address: the scorer finds both through MLflow
            # (MLFLOW_TRACKING_URI or the config's tracking.uri).
            snapshot={"uri": f"runs:/{run_id}/{SNAPSHOT_ARTIFACT}"},
        ),
    )


def _save_export(final: Thresholds, path: Path) -> None:
    try:
        final.save(path)
    except ThresholdsError as exc:
        raise ValueError(f"the computed export is not valid: {exc}") from exc


def _write_offices(table: pd.DataFrame, path: Path) -> None:
    write_table(table, path)
    os.chmod(path, 0o644)


def _write_vectors(vectors: dict[str, Any], path: Path) -> None:
    path.write_text(strict_json.dumps(vectors, indent=1, ensure_ascii=False), encoding="utf-8")
    os.chmod(path, 0o644)


def _inputs(config: Config) -> dict[str, Path | None]:
    """What `export` reads, which its outputs must never be."""
    paths = config.paths
    return {
        "the feature set": paths.features,
        "the feature manifest": paths.manifest,
        "data.declarations": config.data.declarations,
        "data.outcomes": config.data.outcomes,
        "the simulated declarations": paths.declarations,
        "the simulated outcomes": paths.outcomes,
    }


def _log_and_register(
    config: Config, run_id: str, model: TargetingModel, staged: Path
) -> tuple[str, str]:
    """Log the staged export and the scorer pyfunc with the run and register the scorer (no
    alias yet: `publish` moves `challenger` once the files are in place); returns the scorer's
    URI and its registry version."""
    import pipeline.tracking as tracking

    tracking.log_artifacts(run_id, staged, THRESHOLDS_ARTIFACT)
    with tempfile.TemporaryDirectory() as scratch:
        model_folder = Path(scratch) / MODEL_ARTIFACT
        model.save(model_folder)
        step("logging the scorer and registering it")
        scorer_uri = tracking.log_scorer(
            run_id, model_folder, config.paths.snapshot, staged, threads=config.compute.threads
        )
    written = json.loads(staged.read_text(encoding="utf-8"))
    digests = tracking.ScorerDigests(
        thresholds_sha256=file_sha256(staged),
        booster_sha256=model.booster_sha256(),
        content_sha256=written["content_sha256"],
    )
    version = tracking.register_scorer(
        config,
        run_id,
        scorer_uri,
        digests,
        point_challenger=False,
        expected_version=written["model"]["version"],
    )
    return scorer_uri, version


def _channel_shares(kpis: dict[str, Any]) -> dict[str, float]:
    """Each channel's share of the reference window, the random draw counted in its channel
    (what the channel's capacity takes; the KPIs show the draw apart)."""
    shares = {name: float(entry["share"]) for name, entry in kpis["channels"].items()}
    drawn = kpis.get("random") or {}
    if drawn.get("channel") in shares:
        shares[drawn["channel"]] += float(drawn["share"])
    return shares


def _serve_metrics(kpis: dict[str, Any]) -> dict[str, float]:
    """The export's expected KPIs as run metrics: each channel's share of the reference window
    and its expected hit rate."""
    metrics = {
        f"serve.{name}.reference_share": float(entry["share"])
        for name, entry in kpis["channels"].items()
    }
    metrics.update(
        {
            f"serve.{name}.expected_hit_rate": float(entry["expected_hit_rate"])
            for name, entry in kpis["channels"].items()
            if entry["expected_hit_rate"] is not None
        }
    )
    return metrics


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (names the export a registered scorer carries)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _jsonable(value: Any) -> Any:
    """Windows as JSON: timestamps and dates as ISO text, containers walked."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, pd.Timestamp | np.datetime64) or hasattr(value, "isoformat"):
        return pd.Timestamp(value).isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value
