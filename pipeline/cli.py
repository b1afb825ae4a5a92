"""The `targeting` command: one thin verb per stage, and `run` for the whole chain.

Each verb loads the config (`--config`, repeated `--set section.key=value`), calls one function of
`pipeline.jobs`, and prints its result. Jobs are imported lazily so `targeting --help` is instant.
"""

from __future__ import annotations

import importlib
import shutil
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from pipeline.config import Config, ConfigError, config_path, load
from pipeline.jobs import JobResult, progress_shown


class _HelpWithoutType:
    """`--help` and `--version` are flags: show no `<bool>` type beside them in the help."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            option.metavar = ""
        return option


class VerbGroup(_HelpWithoutType, TyperGroup):
    """The `targeting` group."""


class Verb(_HelpWithoutType, TyperCommand):
    """One `targeting` verb."""


app = typer.Typer(
    name="targeting",
    cls=VerbGroup,
    help="Customs targeting pipeline: learn which declarations to control.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
# Console output fits 100 columns (fewer on a narrower terminal); details go to the report.
WIDTH = min(100, shutil.get_terminal_size((100, 24)).columns)
console = Console(width=WIDTH)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        metavar="YAML",
        help="experiment config (default: configs/default.yaml under the project root)",
        show_default=False,
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="override a config value: section.key=value (repeatable)",
    ),
]
RunIdOpt = Annotated[
    str | None,
    typer.Option(
        "--run-id", metavar="RUN_ID", help="MLflow run id (default: the last `train` run)"
    ),
]
Format = Literal["canonical", "kcs"]


def package_version() -> str:
    """The installed version of customs-targeting."""
    try:
        return version("customs-targeting")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree not installed
        return "unknown (not installed)"


def _show_version(value: bool) -> None:
    if value:
        console.print(f"targeting (customs-targeting) {package_version()}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            metavar="",
            help="print the version and exit",
        ),
    ] = False,
) -> None:
    """Customs targeting pipeline: learn which declarations to control."""


def _config(path: Path | None, overrides: list[str] | None) -> Config:
    try:
        return load(config_path(path), overrides or [])
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]", soft_wrap=False)
        raise typer.Exit(2) from None


def _run_job(verb: str, *args: Any, **kwargs: Any) -> JobResult:
    """Call `pipeline.jobs.<verb>.<verb>` under a spinner, print its summary and exit with its
    code (`run` shows one spinner per stage itself)."""
    module = importlib.import_module(f"pipeline.jobs.{verb}")
    from pipeline.compute import cap_threads  # here: it loads XGBoost, `--help` need not

    for arg in args:
        if isinstance(arg, Config):
            cap_threads(arg)
    started = time.perf_counter()
    try:
        if verb == "run":
            result: JobResult = getattr(module, verb)(*args, **kwargs)
        else:
            with progress_shown(console, verb):  # a line every 30 s in a log without a TTY
                result = getattr(module, verb)(*args, **kwargs)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        # Expected, explained failures (bad input, missing file): no traceback for the user.
        # soft_wrap: a path in the message stays whole (rich would break it at the width).
        console.print(f"[red]{verb}: {exc}[/red]", soft_wrap=True)
        raise typer.Exit(1) from None
    except OSError as exc:  # an output path that is a file, a read-only folder, a full disk
        where = exc.filename or "an output path"
        console.print(
            f"[red]{verb}: cannot write {where}: {exc.strerror or exc} (check output_dir, "
            "--out and that the folder is writable)[/red]",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    if verb != "run":
        seconds = time.perf_counter() - started
        console.print(f"[green]✓[/green] {verb} [dim]({seconds:.1f} s)[/dim]")
    for line in result.lines:
        console.print(line, highlight=False)
    if result.exit_code:
        raise typer.Exit(result.exit_code)
    return result


@app.command(cls=Verb)
def simulate(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    rows: Annotated[int | None, typer.Option(help="declarations to generate")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed")] = None,
    out: Annotated[Path | None, typer.Option(help="folder for the tables")] = None,
    format: Annotated[
        Literal["parquet", "csv"],
        typer.Option(help="csv: files like an administration's extract (own-data example)"),
    ] = "parquet",
) -> None:
    """Generate a synthetic declaration stream with outcomes and ground truth."""
    cfg = _config(config, set_)
    _run_job("simulate", cfg, rows=rows, seed=seed, out=out, fmt=format)


@app.command(cls=Verb)
def validate(
    input: Annotated[
        Path | None,
        typer.Option(
            "--input", "-i", help="declarations (CSV or Parquet); default: data.declarations"
        ),
    ] = None,
    outcomes: Annotated[
        Path | None, typer.Option(help="outcomes (CSV or Parquet); default: data.outcomes")
    ] = None,
    format: Annotated[Format, typer.Option(help="layout of the input file")] = "canonical",
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quarantine: Annotated[Path | None, typer.Option(help="where bad rows are written")] = None,
) -> None:
    """Check a declarations file (and outcomes) against the canonical contract."""
    cfg = _config(config, set_)
    _run_job("validate", cfg, input=input, outcomes=outcomes, format=format, quarantine=quarantine)


@app.command(cls=Verb)
def features(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Build the point-in-time training set, its manifest and the serving snapshot."""
    _run_job("features", _config(config, set_))


@app.command(cls=Verb)
def tune(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    workers: Annotated[int | None, typer.Option(help="parallel worker processes")] = None,
) -> None:
    """Run (or continue) the Optuna study over XGBoost parameters."""
    _run_job("tune", _config(config, set_), workers=workers)


@app.command(cls=Verb)
def train(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Fit, calibrate, track and register the model (tuning first when tune.n_trials > 0)."""
    _run_job("train", _config(config, set_))


@app.command(cls=Verb)
def evaluate(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    run_id: RunIdOpt = None,
    walk_forward: Annotated[
        bool | None,
        typer.Option(
            "--walk-forward/--no-walk-forward",
            help="replay the deployment procedure at past cut-offs (default: on when "
            "evaluate.walk_forward_cutoffs > 0)",
        ),
    ] = None,
) -> None:
    """Metrics against baselines and the reviewer's HTML report for a run."""
    _run_job("evaluate", _config(config, set_), run_id=run_id, walk_forward=walk_forward)


@app.command(cls=Verb)
def explain(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    run_id: RunIdOpt = None,
    declaration: Annotated[
        list[str] | None, typer.Option(help="declaration id for a local explanation (repeatable)")
    ] = None,
) -> None:
    """SHAP explanations: global views, and local waterfalls for chosen declarations."""
    _run_job("explain", _config(config, set_), run_id=run_id, declarations=declaration or [])


@app.command(cls=Verb)
def export(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    run_id: RunIdOpt = None,
    out: Annotated[Path | None, typer.Option(help="selectivity.json to write")] = None,
) -> None:
    """Compute channel cut-offs and write the selectivity export."""
    _run_job("export", _config(config, set_), run_id=run_id, out=out)


@app.command(cls=Verb)
def score(
    input: Annotated[Path, typer.Option("--input", "-i", help="declarations (CSV or Parquet)")],
    thresholds: Annotated[Path | None, typer.Option(help="selectivity.json")] = None,
    out: Annotated[Path | None, typer.Option(help="scored file (.csv or .parquet)")] = None,
    format: Annotated[Format, typer.Option(help="layout of the input file")] = "canonical",
    model: Annotated[str | None, typer.Option(help="model URI overriding the file's")] = None,
    snapshot: Annotated[
        str | None,
        typer.Option(help="feature snapshot (folder or MLflow URI) overriding the file's"),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Score declarations: probability, channel and reason codes for every row.

    Exit status: 0 every row scored; 4 some rows in the manual channel; 5 every row manual;
    1 the input, thresholds or output cannot be used (nothing written).
    """
    cfg = _config(config, set_)
    result = _run_job(
        "score",
        cfg,
        input=input,
        thresholds=thresholds,
        out=out,
        format=format,
        model=model,
        snapshot=snapshot,
    )
    code = int(result.figures.get("exit_code", 0))
    if code:  # 4: some rows manual, 5: every row manual (the file is written either way)
        raise typer.Exit(code)


@app.command(cls=Verb)
def approve(
    reason: Annotated[
        str, typer.Option(metavar="TEXT", help="why the reviewer approves (recorded)")
    ],
    version: Annotated[
        str | None,
        typer.Option(metavar="N", help="registered scorer version (default: the challenger)"),
    ] = None,
    reviewer: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="who approves (default: $TARGETING_REVIEWER, login)"),
    ] = None,
    run_id: Annotated[
        str | None,
        typer.Option(metavar="RUN_ID", help="approve the scorer registered from this run"),
    ] = None,
    override: Annotated[
        str | None,
        typer.Option(
            metavar="TEXT",
            help="approve although the report's verdict is not 'ready to approve': why (recorded)",
        ),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Make a reviewed scorer version the champion: what is served from then on."""
    _run_job(
        "approve",
        _config(config, set_),
        version=version,
        reason=reason,
        reviewer=reviewer,
        run_id=run_id,
        override=override,
    )


@app.command(cls=Verb)
def backtest(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Replay selection policies over time, retraining on revealed labels only."""
    _run_job("backtest", _config(config, set_))


@app.command(cls=Verb)
def monitor(config: ConfigOpt = None, set_: SetOpt = None, run_id: RunIdOpt = None) -> None:
    """Drift of features and scores; exits non-zero at the configured alarm level."""
    _run_job("monitor", _config(config, set_), run_id=run_id)


@app.command(cls=Verb)
def run(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """The whole chain: data, features, train, evaluate, explain, export, score."""
    _run_job("run", _config(config, set_))


if __name__ == "__main__":  # pragma: no cover
    app()
