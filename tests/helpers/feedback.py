"""Builders for the feedback-loop tests: a small simulated project in a temporary folder."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pipeline.config import Config, load

# A small stream: 400 days, the emerging scheme from day 200.
START = dt.date(2023, 1, 1)
DAYS = 400
DRIFT_DAY = 200


def day(n: int) -> dt.date:
    """The n-th day of the simulated stream."""
    return START + dt.timedelta(days=n)


def small_config(folder: Path, *overrides: str, rows: int = 30_000) -> Config:
    """A config that simulates `rows` declarations and trains in seconds, all under `folder`."""
    return load(
        None,
        [
            f"output_dir={folder / 'out'}",
            f"tracking.uri=sqlite:///{folder / 'mlflow.db'}",
            "tracking.experiment=feedback-tests",
            f"simulate.rows={rows}",
            f"simulate.start={START.isoformat()}",
            f"simulate.days={DAYS}",
            f"simulate.drift_start={DRIFT_DAY / DAYS}",
            "simulate.importers=1500",
            "simulate.sellers=1500",
            "simulate.declarants=120",
            "tune.n_trials=0",
            "train.num_boost_round=40",
            "train.early_stopping_rounds=10",
            "compute.threads=1",
            "train.params.max_depth=4",
            *overrides,
        ],
    )
