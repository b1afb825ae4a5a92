"""The `targeting` command: one thin verb per stage, and `run` for the whole chain.

Each verb loads the config (`--config`, repeated `--set section.key=value`), calls one function of
`pipeline.jobs`, and prints its result. Jobs are imported lazily so `targeting --help` is instant.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console

from pipeline.config import Config, ConfigError, load
from pipeline.jobs import JobResult

app = typer.Typer(
    name="targeting",
    help="Customs targeting pipeline: learn which declarations to control.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
console = Console()

DEFAULT_CONFIG = Path("configs/default.yaml")
ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="experiment YAML (configs/default.yaml)")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="override a config value: section.key=value (repeatable)"),
]
RunIdOpt = Annotated[
    str | None, typer.Option("--run-id", help="MLflow run id (default: the last `train` run)")
]
Format = Literal["canonical", "kcs"]


def _config(path: Path, overrides: list[str] | None) -> Config:
    try:
        return load(path, overrides or [])
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _run_job(verb: str, *args: Any, **kwargs: Any) -> JobResult:
    """Call `pipeline.jobs.<verb>.<verb>`, print its summary and exit with its code."""
    module = importlib.import_module(f"pipeline.jobs.{verb}")
    try:
        result: JobResult = getattr(module, verb)(*args, **kwargs)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        # Expected, explained failures (bad input, missing file): no traceback for the user.
        console.print(f"[red]{verb}: {exc}[/red]")
        raise typer.Exit(1) from None
    except OSError as exc:  # an output path that is a file, a read-only folder, a full disk
        where = exc.filename or "an output path"
        console.print(
            f"[red]{verb}: cannot write {where}: {exc.strerror or exc} (check output_dir, "
            "--out and that the folder is writable)[/red]",
            highlight=False,
        )
        raise typer.Exit(1) from None
    for line in result.lines:
        console.print(line, highlight=False, soft_wrap=True)
    if result.exit_code:
        raise typer.Exit(result.exit_code)
    return result


@app.command()
def simulate(
    config: ConfigOpt = DEFAULT_CONFIG,
    set_: SetOpt = None,
    rows: Annotated[int | None, typer.Option(help="declarations to generate")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed")] = None,
    out: Annotated[Path | None, typer.Option(help="folder for the Parquet tables")] = None,
) -> None:
    """Generate a synthetic declaration stream with outcomes and ground truth."""
    cfg = _config(config, set_)
    _run_job("simulate", cfg, rows=rows, seed=seed, out=out)


@app.command()
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
    format: Annotated[str, typer.Option(help="canonical | kcs")] = "canonical",
    config: ConfigOpt = DEFAULT_CONFIG,
    set_: SetOpt = None,
    quarantine: Annotated[Path | None, typer.Option(help="where bad rows are written")] = None,
) -> None:
    """Check a declarations file (and outcomes) against the canonical contract."""
    cfg = _config(config, set_)
    _run_job("validate", cfg, input=input, outcomes=outcomes, format=format, quarantine=quarantine)


@app.command()
def features(config: ConfigOpt = DEFAULT_CONFIG, set_: SetOpt = None) -> None:
    """Build the point-in-time training set, its manifest and the serving snapshot."""
    _run_job("features", _config(config, set_))


@app.command()
def tune(
    config: ConfigOpt = DEFAULT_CONFIG,
    set_: SetOpt = None,
    workers: Annotated[int | None, typer.Option(help="parallel worker processes")] = None,
) -> None:
    """Run (or continue) the Optuna study over XGBoost parameters."""
    _run_job("tune", _config(config, set_), workers=workers)


@app.command()
def train(config: ConfigOpt = DEFAULT_CONFIG, set_: SetOpt = None) -> None:
    """Fit, calibrate, track and register the model (tuning first when tune.n_trials > 0)."""
    _run_job("train", _config(config, set_))


@app.command()
def evaluate(
    config: ConfigOpt = DEFAULT_CONFIG, set_: SetOpt = None, run_id: RunIdOpt = None
) -> None:
    """Metrics against baselines and the reviewer's HTML report for a run."""
    _run_job("evaluate", _config(config, set_), run_id=run_id)


@app.command()
def explain(
    config: ConfigOpt = DEFAULT_CONFIG,
    set_: SetOpt = None,
    run_id: RunIdOpt = None,
    declaration: Annotated[
        list[str] | None, typer.Option(help="declaration id for a local explanation (repeatable)")
    ] = None,
) -> None:
    """SHAP explanations: global views, and local waterfalls for chosen declarations."""
    _run_job("explain", _config(config, set_), run_id=run_id, declarations=declaration or [])


@app.command()
def export(
    config: ConfigOpt = DEFAULT_CONFIG,
    set_: SetOpt = None,
    run_id: RunIdOpt = None,
    out: Annotated[Path | None, typer.Option(help="selectivity.json to write")] = None,
) -> None:
    """Compute channel cut-offs and write the selectivity export."""
    _run_job("export", _config(config, set_), run_id=run_id, out=out)


@app.command()
def score(
    input: Annotated[Path, typer.Option("--input", "-i", help="declarations (CSV or Parquet)")],
    thresholds: Annotated[Path | None, typer.Option(help="selectivity.json")] = None,
    out: Annotated[Path | None, typer.Option(help="scored file (.csv or .parquet)")] = None,
    format: Annotated[str, typer.Option(help="canonical | kcs")] = "canonical",
    model: Annotated[str | None, typer.Option(help="model URI overriding the file's")] = None,
    snapshot: Annotated[
        str | None,
        typer.Option(help="feature snapshot (folder or MLflow URI) overriding the file's"),
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
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


@app.command()
def backtest(config: ConfigOpt = DEFAULT_CONFIG, set_: SetOpt = None) -> None:
    """Replay selection policies over time, retraining on revealed labels only."""
    _run_job("backtest", _config(config, set_))


@app.command()
def monitor(
    config: ConfigOpt = DEFAULT_CONFIG, set_: SetOpt = None, run_id: RunIdOpt = None
) -> None:
    """Drift of features and scores; exits non-zero at the configured alarm level."""
    _run_job("monitor", _config(config, set_), run_id=run_id)


@app.command()
def run(config: ConfigOpt = DEFAULT_CONFIG, set_: SetOpt = None) -> None:
    """The whole chain: data, features, train, evaluate, explain, export, score."""
    _run_job("run", _config(config, set_))


if __name__ == "__main__":  # pragma: no cover
    app()
