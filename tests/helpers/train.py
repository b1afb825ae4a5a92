"""Shared builders for the training tests: a small synthetic FeatureSet with a learnable signal,
and a small config that trains in seconds against a tracking store in a temporary folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.features.featureset import FeatureSet

OFFICES = ("ICN01", "PUS02", "SEL03", "GMP04")
CHAPTERS = tuple(f"{c:02d}" for c in (39, 61, 62, 84, 85, 87, 90, 94, 95, 30))


def feature_set(
    rows: int = 4_000,
    seed: int = 0,
    days: int = 365,
    revenue: bool = True,
    labelled_share: float = 0.6,
    start: str = "2023-01-01",
    delay_days: float = 14.0,
) -> FeatureSet:
    """Declarations over `days` days: hits depend on `undervaluation`, `importer_rate` and the HS
    chapter; some labels are unknown (NaN); labels become known `delay_days` (+ noise) later."""
    rng = np.random.default_rng(seed)
    lodged = pd.Timestamp(start) + pd.to_timedelta(np.sort(rng.uniform(0, days, rows)), unit="D")
    undervaluation = rng.normal(0, 1, rows)
    importer_rate = rng.beta(1, 20, rows)
    importer_rate[rng.random(rows) < 0.1] = np.nan
    chapter = rng.choice(CHAPTERS, rows)
    office = rng.choice(OFFICES, rows)
    noise = rng.normal(0, 1, rows)
    logit = (
        -3.2
        + 1.4 * undervaluation
        + 12 * np.nan_to_num(importer_rate, nan=0.05)
        + 1.2 * (chapter == "85")
        + 0.4 * (office == "PUS02")
    )
    hit = rng.random(rows) < 1 / (1 + np.exp(-logit))
    labelled = rng.random(rows) < labelled_share
    y = np.where(labelled, hit.astype(float), np.nan)
    money = np.where(labelled & hit, rng.lognormal(7, 1, rows) * (1 + undervaluation.clip(0)), 0.0)
    money = np.where(labelled, money, np.nan)
    known = lodged + pd.to_timedelta(delay_days + rng.exponential(3, rows), unit="D")
    random_stratum = labelled & (rng.random(rows) < 0.1)
    X = pd.DataFrame(
        {
            "undervaluation": undervaluation,
            "importer_rate": importer_rate,
            "noise": noise,
            "hs2": pd.Categorical(chapter, categories=sorted(CHAPTERS)),
            "office_code": pd.Categorical(office, categories=sorted(OFFICES)),
        }
    )
    manifest = pd.DataFrame(
        {
            "name": list(X.columns),
            "dtype": [str(t) for t in X.dtypes],
            "stage": ["valuation", "profiles", "raw", "raw", "raw"],
            "description": ["", "", "", "", ""],
        }
    )
    return FeatureSet(
        X=X,
        declaration_id=pd.Series([f"D{seed}-{i:06d}" for i in range(rows)]),
        lodged_at=pd.Series(lodged),
        office=pd.Series(office),
        y=pd.Series(y),
        revenue_recovered=pd.Series(money if revenue else np.full(rows, np.nan)),
        sample_weight=pd.Series(np.where(random_stratum, 20.0, 1.0)),
        selection_reason=pd.Series(
            np.where(random_stratum, "random", np.where(labelled, "rule", None)), dtype=object
        ),
        label_known_at=pd.Series(known.where(labelled, pd.NaT)),
        manifest=manifest,
    )


def train_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    """A config that trains in seconds and tracks to a SQLite store under `tmp_path`."""
    raw: dict[str, Any] = {
        "name": "train-test",
        "seed": 7,
        "output_dir": str(tmp_path / "out"),
        "split": {"valid_days": 45, "calibration_days": 45, "test_days": 45, "gap_days": 14},
        "tune": {"n_trials": 0},
        "compute": {"threads": 1},
        "train": {
            "num_boost_round": 60,
            "early_stopping_rounds": 10,
            "params": {"learning_rate": 0.2, "max_depth": 3},
        },
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "train-tests"},
    }
    for section, values in sections.items():
        raw.setdefault(section, {})
        raw[section].update(values)
    return Config.model_validate(raw)
