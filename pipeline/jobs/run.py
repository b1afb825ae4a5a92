"""`targeting run`: the whole chain, then a summary of where everything is.

Every job of the job graph (`jobs.graph`), in its order: simulate (when the config asks for it)
-> features -> train (tuning first) -> evaluate -> explain -> export -> the incoming declarations
-> score them. The last `serve.score_last_days` of data play the part of declarations that arrive
after the model was trained: training never sees them, and the scorer scores them as a
selectivity system would.
"""

from __future__ import annotations

import importlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
from rich.console import Console
from rich.table import Table

from pipeline.config import Config
from pipeline.jobs import JobResult, progress_shown
from pipeline.jobs.graph import jobs_of
from pipeline.serve import strict_json

# Console output fits 100 columns (fewer on a narrower terminal); details go to the report.
console = Console(width=min(100, shutil.get_terminal_size((100, 24)).columns))


def _stage(verb: str) -> Callable[..., JobResult]:
    module = importlib.import_module(f"pipeline.jobs.{verb}")
    job: Callable[..., JobResult] = getattr(module, verb)
    return job


def incoming_declarations(config: Config) -> tuple[Path, Path]:
    """Write the last `serve.score_last_days` of declarations and the snapshot they are scored with.

    The stretch is the run plan's incoming one (`plan.lay_incoming`: from the day boundary where
    the training holdout begins), and the snapshot is built as of that start: the scorer sees
    only what was known when the first incoming declaration arrived, as a selectivity system
    refreshed before it would.
    Returns the declarations file and the snapshot folder.
    """
    from pipeline.features.build import build_snapshot
    from pipeline.ingest.readers import write_table
    from pipeline.jobs.catalog import validated_inputs
    from pipeline.plan import lay_incoming

    inputs = validated_inputs(config)
    declarations = inputs.declarations
    start = lay_incoming(declarations["lodged_at"], config.serve.score_last_days).start
    incoming = declarations.loc[declarations["lodged_at"] >= start]
    paths = config.paths
    write_table(incoming.reset_index(drop=True), paths.incoming)
    snapshot = build_snapshot(declarations, inputs.outcomes, config.features, start)
    snapshot.save(paths.incoming_snapshot)
    return paths.incoming, paths.incoming_snapshot


def _run_stage(
    name: str, job: Callable[..., JobResult], results: dict[str, JobResult], **kwargs: Any
) -> JobResult:
    started = time.perf_counter()
    with progress_shown(console, name):
        result = job(**kwargs)
    seconds = time.perf_counter() - started
    console.print(f"[green]✓[/green] {name} [dim]({seconds:.1f} s)[/dim]")
    for line in result.lines:
        console.print(f"    {line}", highlight=False, soft_wrap=True)
    result.figures.setdefault("seconds", round(seconds, 1))
    results[name] = result
    if result.exit_code:
        raise RuntimeError(f"stage {name} failed with exit code {result.exit_code}")
    return result


def _run_jobs(config: Config, results: dict[str, JobResult]) -> tuple[Path, Path]:
    """Every job of the graph in order; the incoming declarations and their snapshot."""
    incoming: tuple[Path, Path] | None = None
    for job in jobs_of(config):
        kwargs: dict[str, Any] = {"config": config}
        if "model" in job.needs:  # the run this chain trained, not whatever last_run.json says
            kwargs["run_id"] = str(results["train"].figures["run_id"])
        if job.verb == "incoming":  # run's own step: no job of its own, no line of its own
            incoming = incoming_declarations(config)
            continue
        if job.verb == "score":
            assert incoming is not None
            kwargs.update(input=incoming[0], snapshot=str(incoming[1]))
        _run_stage(job.verb, _stage(job.verb), results, **kwargs)
    assert incoming is not None
    return incoming


def run(config: Config) -> JobResult:
    """Run every job for one config and summarise the artefacts and headline figures."""
    results: dict[str, JobResult] = {}
    started = time.perf_counter()
    incoming, snapshot = _run_jobs(config, results)
    total = time.perf_counter() - started

    summary = JobResult(stage="run")
    for result in results.values():
        summary.outputs.update(result.outputs)
    run_outputs = {
        "incoming declarations": incoming,
        "incoming snapshot": snapshot,
        "summary": config.paths.root / "run_summary.json",
    }
    summary.outputs.update(run_outputs)
    summary.figures = {name: r.figures for name, r in results.items()}
    summary.figures["seconds"] = round(total, 1)
    evaluated = results["evaluate"].figures
    headline = Headline(
        str(evaluated["headline_population"]),
        pd.DataFrame.from_dict(evaluated["headline_table"], orient="index"),
    )
    summary.figures["headline"] = {
        "population": headline.population,
        **evaluated["headline_table"],
    }
    incoming_table = incoming_truth(config)
    if incoming_table is not None:
        summary.figures["incoming_truth"] = incoming_table.to_dict(orient="index")
    _print_summary(config, results, run_outputs, total, headline, incoming_table)
    config.paths.root.mkdir(parents=True, exist_ok=True)
    run_outputs["summary"].write_text(
        strict_json.dumps(  # null, never a bare NaN, for jq and any other parser
            {"outputs": {k: str(v) for k, v in summary.outputs.items()}, **summary.figures},
            indent=2,
            default=str,
        ),
        encoding="utf-8",
    )
    return summary


def incoming_truth(config: Config) -> pd.DataFrame | None:
    """What the scored incoming declarations really were, per channel (simulator only).

    Declarations, frauds among them, and each channel's share of the stretch's frauds and of its
    recoverable revenue: the check a selectivity system can never make, which the simulator can.
    """
    paths = config.paths
    if config.data.source != "simulate" or not paths.ground_truth.exists():
        return None
    scored = pd.read_parquet(paths.scored, columns=["declaration_id", "channel"])
    truth = pd.read_parquet(
        paths.ground_truth, columns=["declaration_id", "fraud", "revenue_recoverable"]
    )
    merged = scored.merge(truth, on="declaration_id", how="left", validate="one_to_one")
    merged["fraud"] = merged["fraud"].fillna(False).astype(bool)
    merged["revenue_recoverable"] = merged["revenue_recoverable"].fillna(0.0)
    per_channel = merged.groupby("channel", sort=False).agg(
        declarations=("declaration_id", "size"),
        frauds=("fraud", "sum"),
        revenue=("revenue_recoverable", "sum"),
    )
    per_channel["fraud rate"] = per_channel["frauds"] / per_channel["declarations"]
    per_channel["share of frauds"] = per_channel["frauds"] / max(int(merged["fraud"].sum()), 1)
    total_revenue = float(merged["revenue_recoverable"].sum())
    per_channel["share of revenue"] = (
        per_channel["revenue"] / total_revenue if total_revenue else 0.0
    )
    order = [c for c in (*config.serve.channels, "green", config.serve.invalid_channel)]
    return per_channel.reindex([c for c in order if c in per_channel.index]).drop(columns="revenue")


def _where(path: object) -> str:
    """A path relative to the working directory when it lies below it (short, copyable)."""
    text = Path(str(path))
    try:
        return str(text.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(text)


class Headline(NamedTuple):
    """The run summary's headline: the population it is measured on, in words, and the table
    (`evaluate.headline.headline`, computed by the evaluate job)."""

    population: str
    table: pd.DataFrame


def _print_summary(
    config: Config,
    results: dict[str, JobResult],
    run_outputs: dict[str, Path],
    seconds: float,
    headline: Headline,
    incoming: pd.DataFrame | None,
) -> None:
    where = Table(title=f"targeting run: {config.name} ({seconds:.0f} s)")
    where.add_column("what")
    where.add_column("where", overflow="fold")
    for name, result in results.items():
        for label, path in result.outputs.items():
            where.add_row(f"{name}: {label}", _where(path))
    for label, path in run_outputs.items():
        where.add_row(f"run: {label}", _where(path))
    console.print(where)
    train = results["train"].figures
    if "ui_command" in train:
        console.print(f"MLflow run {train['run_id']}: open it with", highlight=False)
        console.print(f"  {train['ui_command']}", highlight=False, soft_wrap=True)

    population, table = headline
    figures = Table(title=f"test window, {population}: model against baselines")
    figures.add_column("selection")
    for column in table.columns:
        figures.add_column(str(column), justify="right")
    for model, row in table.iterrows():
        figures.add_row(str(model), *("" if pd.isna(v) else str(v) for v in row))
    console.print(figures)
    if incoming is not None:
        check = Table(
            title=f"incoming stretch (last {config.serve.score_last_days} days, unseen by "
            "training): what each channel really held"
        )
        check.add_column("channel")
        for column in incoming.columns:
            check.add_column(str(column), justify="right")
        for channel, row in incoming.iterrows():
            check.add_row(
                str(channel),
                f"{int(row['declarations']):,}",
                f"{int(row['frauds']):,}",
                f"{row['fraud rate']:.1%}",
                f"{row['share of frauds']:.1%}",
                f"{row['share of revenue']:.1%}",
            )
        console.print(check)
