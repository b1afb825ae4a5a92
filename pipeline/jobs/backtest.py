"""`targeting backtest`: replay the selection policies over time and compare them.

Reads the canonical inputs (simulating them first when a simulated config has none yet), runs
`backtest.replay.run_backtest`, and writes under `config.paths.backtest`:

- ``kpis.parquet`` / ``kpis.csv``: one row per step and policy;
- ``summary.csv``: one row per policy (totals, the emerging scheme, the random stratum);
- ``schemes.csv``: when each policy first learnt of each fraud type;
- ``backtest.png``: hit rate, recall, the emerging scheme's recall and revenue over time;
- ``summary.md``: the summary as a Markdown table, and ``timings.json`` / ``fits.json``.

One parent MLflow run holds the config and the artefacts; each policy is a child run with its
per-step KPIs as metric histories and its totals as metrics.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from pipeline.backtest.replay import BacktestResult, run_backtest
from pipeline.config import Config, flatten
from pipeline.jobs import JobResult
from pipeline.serve import strict_json

STEP_METRICS = (
    "controls",
    "capacity",
    "hits",
    "hit_rate",
    "revenue_recovered",
    "recall",
    "recall_emerging",
    "controls_random",
    "controls_explore",
)
SUMMARY_METRICS = (
    "controls",
    "hits",
    "hit_rate",
    "revenue_recovered",
    "revenue_share",
    "recall",
    "recall_after_drift",
    "hits_emerging",
    "recall_emerging",
    "emerging_days_to_detect",
    "random_controls",
    "random_hit_rate",
    "random_low",
    "random_high",
    "truth_hit_rate",
    "retrains",
)


def _inputs(config: Config) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    from pipeline.jobs.catalog import validated_inputs

    if config.data.source == "simulate" and not config.paths.declarations.is_file():
        from pipeline.jobs.simulate import simulate

        simulate(config)
    inputs = validated_inputs(config)
    return inputs.declarations, inputs.outcomes, inputs.ground_truth


def plot(result: BacktestResult, path: Path) -> Path:
    """Four panels over time, one line per policy; the drift start marked."""
    kpis = result.kpis
    fig = Figure(figsize=(13, 8))  # no pyplot: no global state, no display needed
    axes = fig.subplots(2, 2, sharex=True)
    panels = [
        ("hit_rate", "hit rate of the controls", False),
        ("recall", "true recall (hits / frauds of the step)", False),
        ("hits_emerging", "emerging scheme: cumulative hits", True),
        ("revenue_recovered", "cumulative revenue recovered", True),
    ]
    for ax, (column, title, cumulative) in zip(axes.ravel(), panels, strict=True):
        for policy, part in kpis.groupby("policy", sort=False):
            values = part[column].cumsum() if cumulative else part[column]
            ax.plot(part["start"], values, label=str(policy), linewidth=1.4)
        if result.drift_start is not None:
            ax.axvline(result.drift_start, color="grey", linestyle="--", linewidth=1)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Policy backtest (dashed: the emerging scheme's first declaration)")
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _markdown(summary: pd.DataFrame) -> str:
    columns = [
        "policy",
        "controls",
        "hit_rate",
        "recall",
        "recall_emerging",
        "emerging_days_to_detect",
        "revenue_recovered",
        "random_controls",
        "random_hit_rate",
        "random_low",
        "random_high",
        "truth_hit_rate",
    ]
    shown = summary[[c for c in columns if c in summary.columns]]
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    for row in shown.itertuples(index=False):
        cells = [
            f"{v:,.4g}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)
            for v in row
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write(result: BacktestResult, folder: Path) -> dict[str, Path]:
    """Every artefact of a backtest under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    outputs = {
        "kpis": folder / "kpis.parquet",
        "kpis_csv": folder / "kpis.csv",
        "summary": folder / "summary.csv",
        "summary_md": folder / "summary.md",
        "schemes": folder / "schemes.csv",
        "plot": folder / "backtest.png",
        "timings": folder / "timings.json",
        "fits": folder / "fits.json",
    }
    result.kpis.to_parquet(outputs["kpis"], index=False)
    result.kpis.to_csv(outputs["kpis_csv"], index=False)
    result.summary.to_csv(outputs["summary"], index=False)
    outputs["summary_md"].write_text(_markdown(result.summary), encoding="utf-8")
    result.schemes.to_csv(outputs["schemes"], index=False)
    plot(result, outputs["plot"])
    timings = strict_json.dumps(result.timings, indent=2)  # null, never a bare NaN
    outputs["timings"].write_text(timings, encoding="utf-8")
    fits = strict_json.dumps(result.fits, indent=2, default=str)
    outputs["fits"].write_text(fits, encoding="utf-8")
    return outputs


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number


def track(config: Config, result: BacktestResult, folder: Path) -> str:
    """One parent MLflow run (config, artefacts), one child run per policy; the parent's id."""
    from pipeline import tracking

    tracking.configure(config)
    with tracking.start_parent_run(
        config, run_name=tracking.run_name(config, "backtest")
    ) as parent:
        params = {k: v for k, v in flatten(config).items() if k.startswith(("backtest.", "sim"))}
        tracking.log_params(parent, params)
        tracking.set_tags(parent, {"stage": "backtest", "git_commit": tracking.git_commit()})
        tracking.log_artifacts(parent, folder, "backtest")
        for policy in config.backtest.policies:
            child = tracking.start_child_run(parent, policy.name, {"stage": "backtest"})
            tracking.log_params(child, {f"policy.{k}": v for k, v in policy.model_dump().items()})
            steps = result.kpis.loc[result.kpis["policy"] == policy.name]
            for row in steps.itertuples(index=False):
                values = {m: _number(getattr(row, m)) for m in STEP_METRICS}
                tracking.log_metrics(
                    child,
                    {f"step.{k}": v for k, v in values.items() if v is not None},
                    step=int(row.step),
                )
            totals = result.summary.loc[result.summary["policy"] == policy.name]
            if len(totals):
                values = {m: _number(totals.iloc[0][m]) for m in SUMMARY_METRICS}
                tracking.log_metrics(child, {k: v for k, v in values.items() if v is not None})
            seconds = result.timings.get(policy.name, {})
            tracking.log_metrics(
                child, {f"seconds.{k.removesuffix('_s')}": v for k, v in seconds.items()}
            )
            tracking.end_child_run(child)
    return parent


def summary_lines(result: BacktestResult, seconds: float) -> list[str]:
    """The per-policy comparison, one line each, for the console."""
    lines = [
        f"backtest: {result.kpis['step'].nunique()} steps after {result.warm_end:%Y-%m-%d}"
        + (f"; emerging scheme from {result.drift_start:%Y-%m-%d}" if result.drift_start else "")
        + f" ({seconds:.0f} s)"
    ]
    emerging = int(result.kpis["frauds_emerging"].sum()) > 0
    revenue = bool(result.kpis["revenue_recoverable"].fillna(0).sum() > 0)
    for row in result.summary.itertuples(index=False):
        line = f"  {row.policy:<22} hit rate {row.hit_rate:6.2%}  recall {row.recall:6.2%}"
        if emerging:  # data without an emerging scheme (KCS) has nothing to report here
            found = (
                f"found after {row.emerging_days_to_detect:.0f} d"
                if pd.notna(row.emerging_days_to_detect)
                else "never found"
            )
            line += f"  emerging recall {row.recall_emerging:6.2%} ({found})"
        if revenue:
            line += f"  revenue {row.revenue_recovered:,.0f}"
        lines.append(line)
    return lines


def backtest(config: Config) -> JobResult:
    """Replay `config.backtest.policies`, write the tables and plots, track them in MLflow."""
    started = time.perf_counter()
    declarations, outcomes, ground_truth = _inputs(config)
    result = run_backtest(declarations, outcomes, ground_truth, config)
    folder = config.paths.backtest
    outputs = write(result, folder)
    run_id = track(config, result, folder)
    seconds = time.perf_counter() - started
    figures: dict[str, Any] = {
        "run_id": run_id,
        "seconds": round(seconds, 1),
        "summary": result.summary.to_dict(orient="records"),
    }
    lines = [*summary_lines(result, seconds), f"tables and plots: {folder}", f"MLflow run {run_id}"]
    return JobResult(stage="backtest", outputs=outputs, figures=figures, lines=lines)
