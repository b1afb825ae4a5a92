"""The small simulated stream the whole-chain tests (targeting run, the notebooks) run on, and
`targeting run` on it from the CLI."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import Config, load

# Small, yet with enough controls in the training window for the trees to split (at 8,000 rows
# the booster can stay one leaf, and channels would then come from the tie-breaking hash alone).
SMALL_CHAIN = [
    "simulate.rows=12000",
    "simulate.days=300",
    "simulate.importers=500",
    "simulate.sellers=400",
    "simulate.declarants=40",
    "simulate.offices=4",
    "split.calibration_days=20",
    "split.valid_days=30",
    "split.test_days=40",
    "split.gap_days=7",
    "split.folds=1",
    "tune.n_trials=2",
    "train.num_boost_round=30",
    "compute.threads=1",
    "serve.reference_days=40",
    "serve.score_last_days=20",
]

# The chain's own review: a short bootstrap and a small SHAP sample.
RUN_SETTINGS = [*SMALL_CHAIN, "evaluate.bootstrap=50", "evaluate.shap_sample=300"]


def run_chain(folder: Path) -> tuple[Config, str]:
    """`targeting run` from the CLI with everything under `folder`: its config and output."""
    overrides = [
        f"output_dir={folder / 'out'}",
        f"tracking.uri=sqlite:///{folder / 'mlflow.db'}",
        *RUN_SETTINGS,
    ]
    arguments = ["run", "--config", "configs/default.yaml"]
    for override in overrides:
        arguments += ["--set", override]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return load("configs/default.yaml", overrides), result.output
