"""`targeting evaluate`: metrics against baselines and the reviewer's HTML report for one run.

Reads the run's model, the feature set, the declarations and (on the simulator) the ground truth;
computes everything with `evaluate.assess.assess`; writes `report.html`, `metrics.csv` and
`metrics.json` under `config.paths.report`'s folder; logs them and the headline metrics to the run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from pipeline.config import Config
from pipeline.jobs import JobResult, step

if TYPE_CHECKING:
    from pipeline.evaluate.assess import Assessment
    from pipeline.serve.model import TargetingModel

REPORT_ARTIFACT = "report"
HEADLINE_METRICS = ("precision", "recall", "revenue")


def champion_model(config: Config, run_id: str) -> tuple[str, TargetingModel] | None:
    """The model the registered `champion` alias serves (its run's deployed refit, not the
    model that run evaluated), unless absent or the run under review itself. The report
    compares it only where none of its windows overlaps the challenger's test window
    (`evaluate.assess.champion_overlap`)."""
    from pipeline import tracking

    version = tracking.alias_version(config, tracking.CHAMPION)
    if version is None or not version.run_id or version.run_id == run_id:
        return None
    return f"champion v{version.version}", tracking.load_model(version.run_id, "deployed")


def metric_key(population: str, model: str, metric: str, rate: float) -> str:
    """An MLflow metric name: eval.<population>.<model>.<metric>_at_<n>pct."""

    def clean(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_").lower()

    short = {
        "all declarations (ground truth)": "true",
        "random stratum (IPW)": "ipw",
        "random stratum (doubly robust)": "dr",
    }
    suffix = "" if pd.isna(rate) else f"_at_{rate * 100:g}pct".replace(".", "_")
    return f"eval.{short.get(population, clean(population))}.{clean(model)}.{metric}{suffix}"


CONSOLE_WIDTH = 100  # the console shows what fits here; the report holds every figure


def headline_lines(metrics: pd.DataFrame, rates: list[float]) -> list[str]:
    """The headline table as text for the console: the most honest population, one row per model
    (differences left to the report), precision / recall / revenue at as many of the rates as fit
    in `CONSOLE_WIDTH` columns."""
    from pipeline.evaluate.assess import primary_population
    from pipeline.evaluate.report import headline

    population = primary_population(metrics)
    shown = sorted(rates)
    table = pd.DataFrame()
    lines: list[str] = []
    while shown:
        table = headline(metrics, HEADLINE_METRICS, rates=shown, population=population)
        table = table.loc[[" - " not in str(m) for m in table.index]].rename_axis(None)
        with pd.option_context("display.width", 1000, "display.max_columns", 100):
            lines = table.to_string(float_format=lambda v: f"{v:.3f}").splitlines()
        if max(map(len, lines), default=0) <= CONSOLE_WIDTH or len(shown) == 1:
            break
        shown = shown[:-1]
    if table.empty:
        return ["no labelled declaration in the test window: no metrics"]
    more = "; other rates in the report" if len(shown) < len(rates) else ""
    lines.insert(0, f"{population}, at control rates {', '.join(f'{r:.0%}' for r in shown)}{more}:")
    policies = metrics.loc[
        (metrics["population"] == population)
        & metrics["model"].isin(["historical policy", "model at office capacity"])
        & metrics["metric"].isin(["precision", "recall", "revenue"])
    ]
    for name, part in policies.groupby("model", sort=False):
        values = ", ".join(f"{r.metric} {r.value:.3f}" for r in part.itertuples())
        lines.append(f"{name} (control share {part['rate'].iloc[0]:.1%}): {values}")
    return lines


def evaluate(config: Config, run_id: str | None = None) -> JobResult:
    """Evaluate a run (default: the last `train` run) and write the reviewer's report."""
    import matplotlib

    matplotlib.use("Agg")
    from pipeline import tracking
    from pipeline.evaluate.assess import assess
    from pipeline.jobs import catalog

    step("reading the run's model and the feature set")
    loaded = catalog.load_run(config, run_id, "evaluated")
    run_id, model = loaded.run_id, loaded.model
    features = catalog.feature_set(config)
    inputs = catalog.validated_inputs(config)
    step(f"metrics, baselines and {config.evaluate.bootstrap} bootstrap replicates, SHAP views")
    assessment = assess(
        model,
        features,
        config,
        declarations=inputs.declarations,
        ground_truth=inputs.ground_truth,
        champion=champion_model(config, run_id),
        run_id=run_id,
    )
    step("writing the report")
    csv_path, json_path = write_report(config, run_id, assessment)
    metrics = assessment.metrics
    flat = {
        metric_key(r.population, r.model, r.metric, r.rate): float(r.value)
        for r in metrics.itertuples()
        if pd.notna(r.value) and not str(r.model).startswith(("random",))
    }
    tracking.log_metrics(run_id, flat)
    tracking.log_artifacts(run_id, config.paths.report.parent, REPORT_ARTIFACT)
    if assessment.report.decision is not None:  # to filter runs on, beside the report's page
        tracking.set_tags(run_id, {"verdict": assessment.report.decision.verdict})

    rates = [float(r) for r in config.evaluate.rates]
    lines = console_lines(assessment, rates)
    lines.append(f"report: {config.paths.report}")
    return JobResult(
        stage="evaluate",
        outputs={"report": config.paths.report, "metrics": csv_path, "metrics_json": json_path},
        figures={
            "run_id": run_id,
            "headline": "\n".join(headline_lines(metrics, rates)),
            "warnings": len(assessment.report.warnings),
            **{k: v for k, v in flat.items() if ".model." in k},
        },
        lines=lines,
    )


def write_report(config: Config, run_id: str, assessment: Assessment) -> tuple[Path, Path]:
    """The HTML report, `metrics.csv` and `metrics.json` (warnings, decision, notes, metrics),
    `references.csv` (each reference learner's fit and health) and `family_ablation.csv` (each
    feature family's out-of-sample effect) under the report's folder; returns the paths of the
    two metrics files."""
    from pipeline.evaluate.decision import decision_figures
    from pipeline.evaluate.report import render_report
    from pipeline.serve import strict_json

    html = render_report(assessment.report, config.evaluate.rates)
    folder: Path = config.paths.report.parent
    folder.mkdir(parents=True, exist_ok=True)
    config.paths.report.write_text(html, encoding="utf-8")
    metrics = assessment.metrics
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
                "metrics": json.loads(metrics.to_json(orient="records")),
            },
            indent=2,
        ),
        encoding="utf-8",
    )
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
