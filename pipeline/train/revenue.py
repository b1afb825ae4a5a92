"""The revenue model: E[revenue | hit], a Tweedie XGBoost regressor on the training window's
hits, early-stopped on the held-out window's."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb

from pipeline.compute import fit_threads
from pipeline.config import Config
from pipeline.features.featureset import FeatureSet
from pipeline.train.engine import Rounds, train_booster
from pipeline.train.rows import WindowRows

MIN_REVENUE_HITS = 30


def has_revenue(fs: FeatureSet) -> bool:
    """Whether any hit in the data has a recorded revenue."""
    hits = fs.y.to_numpy(dtype=float) == 1
    return bool(np.isfinite(fs.revenue_recovered.to_numpy(dtype=float)[hits]).any())


def revenue_params(config: Config) -> dict[str, Any]:
    """The revenue model's XGBoost parameters: a Tweedie regressor of E[revenue | hit]."""
    return {
        "objective": "reg:tweedie",
        "tweedie_variance_power": 1.5,
        "learning_rate": 0.1,
        "max_depth": 4,
        "min_child_weight": 5.0,
        "tree_method": "hist",
        "seed": config.seed,
        "nthread": fit_threads(config.compute),
        "device": config.train.device,
    }


def fit_revenue_model(
    train: WindowRows, valid: WindowRows, config: Config, fallback_rounds: int = 100
) -> tuple[xgb.Booster | None, str]:
    """E[revenue | hit]: a Tweedie XGBoost regressor on the training window's hits, early-stopped
    on `valid`'s; with fewer than 10 hits there, `fallback_rounds` trees (a refit passes the
    evaluated model's count).

    Returns (None, reason) when the data cannot support one.
    """
    if not config.train.revenue_model:
        return None, "disabled (train.revenue_model is false)"
    on_train = (train.y == 1) & np.isfinite(train.revenue)
    if on_train.sum() < MIN_REVENUE_HITS:
        return None, (
            f"skipped: {int(on_train.sum())} hits with revenue in the training window "
            f"(need {MIN_REVENUE_HITS}); the data has no usable revenue"
        )
    params = revenue_params(config)
    dtrain = xgb.DMatrix(
        train.X.loc[on_train],
        label=np.clip(train.revenue[on_train], 0, None),
        enable_categorical=True,
    )
    on_valid = (valid.y == 1) & np.isfinite(valid.revenue)
    if on_valid.sum() >= 10:
        dvalid = xgb.DMatrix(
            valid.X.loc[on_valid],
            label=np.clip(valid.revenue[on_valid], 0, None),
            enable_categorical=True,
        )
        booster, best = train_booster(dtrain, dvalid, params, Rounds.of(config.train))
        return booster, f"tweedie regressor on {int(on_train.sum())} hits, {best + 1} trees"
    booster = xgb.train(params, dtrain, num_boost_round=fallback_rounds)
    return booster, (
        f"tweedie regressor on {int(on_train.sum())} hits, {fallback_rounds} trees "
        f"({int(on_valid.sum())} held-out hits with revenue: too few to stop on)"
    )


@dataclass(frozen=True)
class RevenuePart:
    """The revenue model (None when the data cannot support one) and why."""

    booster: xgb.Booster | None
    note: str
    in_data: bool  # whether any hit of the data has a recorded revenue
    seconds: float


def revenue_step(
    fs: FeatureSet,
    train: WindowRows,
    held: WindowRows,
    config: Config,
    fallback_rounds: int = 100,
) -> RevenuePart:
    """E[revenue | hit] on the training window's hits, stopped on the held-out window's."""
    tick = time.perf_counter()
    in_data = has_revenue(fs)
    booster, note = (
        fit_revenue_model(train, held, config, fallback_rounds)
        if in_data
        else (None, "skipped: the data has no revenue")
    )
    return RevenuePart(booster, note, in_data, time.perf_counter() - tick)
