"""`targeting evaluate`: metrics against baselines and the reviewer's HTML report for one run.

Reads the run's model, the feature set, the declarations and (on the simulator) the ground truth;
computes everything with `evaluate.assess.assess`; writes `report.html`, `metrics.csv` and
`metrics.json` in the run's own folder (`runs/<run id>/report/`, then named by `runs/latest`); logs
them and the headline metrics to the run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipeline.config import Config
from pipeline.evaluate.keys import AT_OFFICE_CAPACITY, HISTORICAL, RANDOM_BASELINE, rendered
from pipeline.jobs import JobResult, headless_plots, step
from pipeline.jobs.paths import point_latest

if TYPE_CHECKING:
    from pipeline.evaluate.assess import Assessment
    from pipeline.evaluate.decision import Decision
    from pipeline.evaluate.walkforward import WalkForward
    from pipeline.features.featureset import FeatureSet
    from pipeline.ingest.readers import Inputs
    from pipeline.serve.model import TargetingModel

REPORT_ARTIFACT = "report"


def champion_model(config: Config, run_id: str) -> tuple[str, TargetingModel] | None:
    """The model the registered `champion` alias serves (its run's deployed refit, not the
    model that run evaluated), unless absent or the run under review itself. The report
    compares it only where none of its windows overlaps the challenger's test window
    (`evaluate.assess.champion_overlap`)."""
    from pipeline import tracking

    version = tracking.alias_version(config.tracking, tracking.CHAMPION)
    if version is None or not version.run_id or version.run_id == run_id:
        return None
    return f"champion v{version.version}", tracking.load_model(version.run_id, "deployed")


def _clean(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_").lower()


def metric_name(prefix: str, model: str, metric: str, rate: float) -> str:
    """An MLflow metric name: <prefix>.<model>.<metric>[_at_<n>pct]."""
    suffix = "" if pd.isna(rate) else f"_at_{rate * 100:g}pct".replace(".", "_")
    return f"{prefix}.{_clean(model)}.{metric}{suffix}"


def metric_key(population: str, model: str, metric: str, rate: float) -> str:
    """An MLflow metric name: eval.<population key>.<model>.<metric>_at_<n>pct."""
    return metric_name(f"eval.{population}", model, metric, rate)


CONSOLE_WIDTH = 100  # the console shows what fits here; the report holds every figure


def headline_lines(metrics: pd.DataFrame, rates: list[float]) -> list[str]:
    """The headline table as text for the console: the most honest population, one row per model
    (differences left to the report), precision / recall / revenue at as many of the rates as fit
    in `CONSOLE_WIDTH` columns."""
    from pipeline.evaluate.headline import pivot, primary_population
    from pipeline.evaluate.keys import HEADLINE_METRICS, Kind

    population = primary_population(metrics)
    shown = sorted(rates)
    table = pd.DataFrame()
    lines: list[str] = []
    values = metrics.loc[metrics["kind"].ne(Kind.DIFFERENCE)] if len(metrics) else metrics
    while shown:
        table = pivot(values, HEADLINE_METRICS, rates=shown, population=population)
        table = table.rename_axis(None)
        with pd.option_context("display.width", 1000, "display.max_columns", 100):
            lines = table.to_string(float_format=lambda v: f"{v:.3f}").splitlines()
        if max(map(len, lines), default=0) <= CONSOLE_WIDTH or len(shown) == 1:
            break
        shown = shown[:-1]
    if table.empty:
        return ["no labelled declaration in the test window: no metrics"]
    more = "; other rates in the report" if len(shown) < len(rates) else ""
    label = population.label if population is not None else ""
    lines.insert(0, f"{label}, at control rates {', '.join(f'{r:.0%}' for r in shown)}{more}:")
    policies = metrics.loc[
        (metrics["population"] == population)
        & metrics["model"].isin([HISTORICAL, AT_OFFICE_CAPACITY])
        & metrics["metric"].isin(HEADLINE_METRICS)
    ]
    for name, part in policies.groupby("model", sort=False):
        values = ", ".join(f"{r.metric} {r.value:.3f}" for r in part.itertuples())
        lines.append(f"{name} (control share {part['rate'].iloc[0]:.1%}): {values}")
    return lines


def replay_deployment(
    config: Config, model: TargetingModel, features: FeatureSet, inputs: Inputs
) -> WalkForward:
    """The walk-forward evaluation of the deployment procedure (`evaluate.walkforward`) on the
    run's plan (the export's reference window length, the end of the usable data)."""
    from pipeline.evaluate.walkforward import WalkInputs, detection_rate, walk_forward
    from pipeline.serve.model import plan_of

    walk_inputs = WalkInputs(
        inputs.declarations,
        inputs.outcomes,
        inputs.ground_truth,
        detection_rate(config.data, config.simulate),
    )
    return walk_forward(
        model, features, walk_inputs, config, plan_of(model, config, features.lodged_at)
    )


def walk_lines(walk: WalkForward | None, rate: float) -> list[str]:
    """What the console shows of the walk-forward: the precision of both models at the rate
    nearest `rate` with their paired difference, and the channels' coverage."""
    from pipeline.evaluate.walkforward import DEPLOYED, EVALUATED

    if walk is None or walk.stretches.empty:
        return []
    inside, cells = walk.coverage()
    lines = [
        f"walk-forward: {len(walk.stretches)} cut-offs, on {walk.population}; channels' "
        f"realised hit rate inside the export's 95 % range in {inside} of {cells} cells"
    ]
    rows = walk.metrics.loc[walk.metrics["metric"] == "precision"] if len(walk.metrics) else None
    if rows is not None and len(rows):
        near = rows["rate"].iloc[int((rows["rate"] - rate).abs().to_numpy().argmin())]
        at = rows.loc[rows["rate"] == near].set_index("model")
        diff = at.loc[f"{DEPLOYED} - {EVALUATED}"]
        lines.append(
            f"  precision@{near:.0%}: deployed {at.loc[DEPLOYED, 'value']:.3f}, evaluated "
            f"{at.loc[EVALUATED, 'value']:.3f}, difference {diff['value']:+.3f} "
            f"[{diff['low']:+.3f}, {diff['high']:+.3f}]"
        )
    return lines


def evaluate(
    config: Config, run_id: str | None = None, walk_forward: bool | None = None
) -> JobResult:
    """Evaluate a run (default: the last `train` run) and write the reviewer's report;
    `walk_forward` (default: `evaluate.walk_forward_cutoffs` > 0) replays the deployment
    procedure at past cut-offs first (`replay_deployment`)."""
    headless_plots()
    from pipeline import tracking
    from pipeline.evaluate.assess import Review, assess
    from pipeline.evaluate.headline import headline
    from pipeline.jobs import catalog

    step("reading the run's model and the feature set")
    loaded = catalog.load_run(config, run_id, "evaluated")
    run_id, model = loaded.run_id, loaded.model
    features = catalog.feature_set(config)
    inputs = catalog.validated_inputs(config)
    replay = config.evaluate.walk_forward_cutoffs > 0 if walk_forward is None else walk_forward
    walk = None
    if replay and config.evaluate.walk_forward_cutoffs > 0:
        cuts = config.evaluate.walk_forward_cutoffs
        step(f"walk-forward: the deployment replayed at {cuts} cut-offs")
        walk = replay_deployment(config, model, features, inputs)
    step(f"metrics, baselines and {config.evaluate.bootstrap} bootstrap replicates, SHAP views")
    assessment = assess(
        model,
        features,
        config,
        Review(
            declarations=inputs.declarations,
            ground_truth=inputs.ground_truth,
            champion=champion_model(config, run_id),
            run_id=run_id,
            walk_forward=walk,
            reference_cache=catalog.reference_cache(config),
        ),
    )
    step("writing the report")
    csv_path, json_path = write_report(config, run_id, assessment)
    metrics = assessment.metrics
    flat = {
        metric_key(r.population, r.model, r.metric, r.rate): float(r.value)
        for r in metrics.itertuples()
        if pd.notna(r.value) and r.model != RANDOM_BASELINE
    }
    flat |= walk_metrics(walk)
    tracking.log_metrics(run_id, flat)
    report = config.paths.run_report(run_id)
    tracking.log_artifacts(run_id, report.parent, REPORT_ARTIFACT)
    record_decision(run_id, assessment.report.decision)

    rates = [float(r) for r in config.evaluate.rates]
    lines = walk_lines(walk, assessment.report.headline_rate) + console_lines(assessment, rates)
    lines.append(f"report: {report}")
    population, table = headline(metrics, assessment.report.headline_rate)
    return JobResult(
        stage="evaluate",
        outputs={"report": report, "metrics": csv_path, "metrics_json": json_path},
        figures={
            "run_id": run_id,
            "headline": "\n".join(headline_lines(metrics, rates)),
            # the run summary's table (`evaluate.headline`), at the report's headline rate
            "headline_population": population.label if population is not None else "",
            "headline_table": table.to_dict(orient="index"),
            "warnings": len(assessment.report.warnings),
            **{k: v for k, v in flat.items() if ".model." in k},
        },
        lines=lines,
    )


def walk_metrics(walk: WalkForward | None) -> dict[str, float]:
    """The walk-forward's MLflow metrics: walkforward.<selection>.<metric>_at_<n>pct and the
    channels' coverage."""
    if walk is None or walk.stretches.empty:
        return {}
    inside, cells = walk.coverage()
    out = {
        "walkforward.channels_inside_range": float(inside),
        "walkforward.channel_cells": float(cells),
    }
    for r in walk.metrics.itertuples():
        if pd.notna(r.value) and pd.notna(r.rate):
            out[metric_name("walkforward", str(r.model), r.metric, r.rate)] = float(r.value)
    return out


def write_walk_forward(folder: Path, walk: WalkForward | None) -> dict[str, Any] | None:
    """The walk-forward's three tables as CSV beside the report; its summary for metrics.json."""
    if walk is None:
        return None
    for name in ("stretches", "channels", "metrics"):
        getattr(walk, name).to_csv(folder / f"walk_forward_{name}.csv", index=False)
    inside, cells = walk.coverage()
    return {
        "population": walk.population,
        "channels_inside_range": inside,
        "channel_cells": cells,
        "notes": walk.notes,
        "stretches": json.loads(walk.stretches.to_json(orient="records")),
    }


def record_decision(run_id: str, decision: Decision | None) -> None:
    """The decision page on the run, to filter runs on: the verdict and the criteria that did
    not pass as tags, and `decision.ready` (1 when ready to approve, else 0) as a metric."""
    from pipeline import tracking

    if decision is None:
        return
    standing = [f"{c.name}: {c.status}" for c in decision.criteria if c.status != "pass"]
    tracking.set_tags(
        run_id, {"verdict": decision.verdict, "verdict_not_passed": "; ".join(standing)}
    )
    tracking.log_metrics(run_id, {"decision.ready": float(decision.ready)})


def write_report(config: Config, run_id: str, assessment: Assessment) -> tuple[Path, Path]:
    """The HTML report, `metrics.csv` and `metrics.json` (warnings, decision, notes, metrics),
    `references.csv` (each reference learner's fit and health) and `family_ablation.csv` (each
    feature family's out-of-sample effect) under the run's own report folder, which `runs/latest`
    then names (`point_latest`); returns the paths of the two metrics files."""
    from pipeline.evaluate.decision import decision_figures
    from pipeline.evaluate.report import render_report
    from pipeline.serve import strict_json

    html = render_report(assessment.report, config.evaluate.rates)
    report = config.paths.run_report(run_id)
    folder: Path = report.parent
    folder.mkdir(parents=True, exist_ok=True)
    report.write_text(html, encoding="utf-8")
    metrics = rendered(assessment.metrics)  # the reviewer's files: populations in words
    csv_path = folder / "metrics.csv"
    json_path = folder / "metrics.json"
    metrics.to_csv(csv_path, index=False)
    assessment.report.references.to_csv(folder / "references.csv", index=False)
    assessment.report.families.to_csv(folder / "family_ablation.csv", index=False)
    json_path.write_text(
        strict_json.dumps(  # null, never a bare NaN
            {
                "run_id": run_id,
                "warnings": assessment.report.warnings,
                "decision": decision_figures(assessment.report.decision)
                if assessment.report.decision
                else None,
                "notes": assessment.report.notes,
                "walk_forward": write_walk_forward(folder, assessment.report.walk_forward),
                "metrics": json.loads(metrics.to_json(orient="records")),
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    point_latest(config.paths, run_id)
    return csv_path, json_path


def console_lines(assessment: Assessment, rates: list[float]) -> list[str]:
    """The headline table, the decision with the criteria it failed, and the warnings."""
    lines = headline_lines(assessment.metrics, rates)
    decision = assessment.report.decision
    if decision is not None:
        failed = [f"{c.name}: {c.status}" for c in decision.criteria if c.status != "pass"]
        lines.append(
            f"decision: {decision.verdict}" + (f" ({'; '.join(failed)})" if failed else "")
        )
    lines += [f"warning: {w}" for w in assessment.report.warnings]
    return lines
