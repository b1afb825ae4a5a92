"""`targeting run`: the whole chain, then a summary of where everything is.

simulate (when the config asks for it) -> features -> train (tuning first) -> evaluate ->
explain -> export -> score the incoming declarations. The last `serve.score_last_days` of data
play the part of declarations that arrive after the model was trained: training never sees
them, and the scorer scores them as a selectivity system would.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pipeline.config import Config
from pipeline.jobs import JobResult

console = Console()


def _stage(verb: str) -> Callable[..., JobResult]:
    module = importlib.import_module(f"pipeline.jobs.{verb}")
    job: Callable[..., JobResult] = getattr(module, verb)
    return job


def incoming_declarations(config: Config) -> tuple[Path, Path]:
    """Write the last `serve.score_last_days` of declarations and the snapshot they are scored with.

    The stretch starts on the same day boundary as the training holdout (`train.split.data_span`),
    and the snapshot is built as of that start: the scorer sees only what was known when the
    first incoming declaration arrived, as a selectivity system refreshed before it would.
    Returns the declarations file and the snapshot folder.
    """
    from pipeline.features.build import build_snapshot
    from pipeline.ingest.readers import load_inputs, write_table
    from pipeline.train.split import data_span

    inputs = load_inputs(config)
    declarations = inputs.declarations
    _, start = data_span(declarations["lodged_at"], config.serve.score_last_days)
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
    with console.status(f"[bold]{name}[/bold] ...", spinner="dots"):
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


def run(config: Config) -> JobResult:
    """Run every stage for one config and summarise the artefacts and headline figures."""
    results: dict[str, JobResult] = {}
    started = time.perf_counter()
    if config.data.source == "simulate":
        _run_stage("simulate", _stage("simulate"), results, config=config)
    _run_stage("features", _stage("features"), results, config=config)
    _run_stage("train", _stage("train"), results, config=config)
    run_id = str(results["train"].figures["run_id"])
    _run_stage("evaluate", _stage("evaluate"), results, config=config, run_id=run_id)
    _run_stage("explain", _stage("explain"), results, config=config, run_id=run_id)
    _run_stage("export", _stage("export"), results, config=config, run_id=run_id)
    incoming, snapshot = incoming_declarations(config)
    _run_stage(
        "score", _stage("score"), results, config=config, input=incoming, snapshot=str(snapshot)
    )
    total = time.perf_counter() - started

    summary = JobResult(stage="run")
    for result in results.values():
        summary.outputs.update(result.outputs)
    summary.figures = {name: r.figures for name, r in results.items()}
    summary.figures["seconds"] = round(total, 1)
    _print_summary(config, results, total)
    config.paths.root.mkdir(parents=True, exist_ok=True)
    config.paths.last_run.with_name("run_summary.json").write_text(
        json.dumps(
            {"outputs": {k: str(v) for k, v in summary.outputs.items()}, **summary.figures},
            indent=2,
            default=str,
        ),
        encoding="utf-8",
    )
    return summary


def _print_summary(config: Config, results: dict[str, JobResult], seconds: float) -> None:
    table = Table(title=f"targeting run: {config.name} ({seconds:.0f} s)", show_lines=False)
    table.add_column("what")
    table.add_column("where")
    for name, result in results.items():
        for label, path in result.outputs.items():
            table.add_row(f"{name}: {label}", str(path))
    console.print(table)
    train = results["train"].figures
    if "ui_command" in train:
        console.print(f"MLflow run {train['run_id']}: open it with [bold]{train['ui_command']}[/]")
    headline = results["evaluate"].figures.get("headline")
    if isinstance(headline, str):
        console.print(headline, highlight=False)
