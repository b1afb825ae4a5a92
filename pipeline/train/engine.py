"""Where and how the boosting runs: the booster's parameters, its matrices, early stopping on
the validation window, the round cap's warning, and the engines the final fit boosts on: in this
process (`MemoryEngine`) or on a dask cluster (`train.dask_engine`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import xgboost as xgb

from pipeline.compute import fit_threads
from pipeline.config import Config, TrainConfig
from pipeline.plan import Windows
from pipeline.timeaxis import Window
from pipeline.train.dask_engine import DaskEngine, FileReads, WindowFile
from pipeline.train.fitlog import validation_curve
from pipeline.train.rebalance import IMBALANCE_METHODS
from pipeline.train.rows import WindowRows

EVAL_METRIC = "aucpr"


@dataclass(frozen=True)
class Rounds:
    """How long a booster may grow: at most `most` rounds, stopped after `patience` rounds
    without a better validation metric."""

    most: int
    patience: int

    @classmethod
    def of(cls, train: TrainConfig) -> Rounds:
        """train.num_boost_round and train.early_stopping_rounds."""
        return cls(train.num_boost_round, train.early_stopping_rounds)


@dataclass(frozen=True)
class Trees:
    """A booster, the category levels its rows were cast to (`rows.frequent_levels`) and the
    columns among them it took as their level's position (train.category_order hit_rate)."""

    booster: xgb.Booster
    levels: dict[str, list[str]]
    ordered: tuple[str, ...] = ()


CATEGORY_ORDER = "category_order"  # a tuned choice travels with the parameters, as imbalance
CATEGORY_ORDERS = ("native", "hit_rate")  # train.category_order's values


def category_order(params: dict[str, Any], config: Config) -> str:
    """How the category levels reach the trees: `params`' tuned ``category_order`` where the
    study chose one, else train.category_order."""
    return str(params.get(CATEGORY_ORDER, config.train.category_order))


def split_params(params: dict[str, Any], config: Config) -> tuple[dict[str, Any], str]:
    """XGBoost parameters (objective, seed, threads, device added) and the imbalance method.

    `params` may carry ``imbalance`` (a tuned choice); otherwise `config.train.imbalance` holds.
    """
    imbalance = str(params.get("imbalance", config.train.imbalance))
    if imbalance not in IMBALANCE_METHODS:
        raise ValueError(
            f"unknown imbalance method {imbalance!r}; choose one of {IMBALANCE_METHODS}"
        )
    booster = {k: v for k, v in params.items() if k not in ("imbalance", CATEGORY_ORDER)}
    booster.update(
        objective="binary:logistic",
        eval_metric=EVAL_METRIC,
        tree_method="hist",
        seed=config.seed,
        nthread=fit_threads(config.compute),  # fewer on a busy machine: the same trees
        device=config.train.device,
    )
    return booster, imbalance


def dmatrix(rows: WindowRows, weighted: bool = True) -> xgb.DMatrix:
    """An XGBoost matrix with native categorical support."""
    return xgb.DMatrix(
        rows.X,
        label=rows.y,
        weight=rows.weight if weighted else None,
        enable_categorical=True,
    )


def train_booster(
    dtrain: xgb.DMatrix,
    dvalid: xgb.DMatrix,
    params: dict[str, Any],
    rounds: Rounds,
    callbacks: list[xgb.callback.TrainingCallback] | None = None,
    curve: dict[str, list[float]] | None = None,
) -> tuple[xgb.Booster, int]:
    """Boost with early stopping on the validation matrix; the booster sliced at the best round.
    ``curve``, when given, receives the validation metric of every round (``valid.<metric>``)."""
    history: dict[str, dict[str, list[float]]] = {}
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=rounds.most,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=rounds.patience,
        callbacks=callbacks,
        verbose_eval=False,
        evals_result=history,
    )
    if curve is not None:
        curve.update(validation_curve(history))
    best = int(booster.best_iteration)
    return booster[: best + 1], best


def margin(booster: xgb.Booster, X: pd.DataFrame) -> np.ndarray:
    """Raw log-odds of a booster on a frame."""
    return np.asarray(booster.inplace_predict(X, predict_type="margin"), dtype=float)


# The best iteration this close to train.num_boost_round means the cap, not early stopping,
# ended the boosting: the model may be short of trees.
CAP_SHARE = 0.95


def cap_warning(best_iteration: int, num_boost_round: int, where: str) -> str | None:
    """A warning when boosting stopped within 5 % of the round cap, else None."""
    if best_iteration + 1 >= CAP_SHARE * num_boost_round:
        return (
            f"{where}: the best iteration ({best_iteration + 1} trees) is within "
            f"{100 * (1 - CAP_SHARE):.0f} % of train.num_boost_round={num_boost_round}; the model "
            "may be short of trees: raise train.num_boost_round or the learning rate"
        )
    return None


# Imbalance treatments that weigh rows by what the feature-set file holds (no resampling), so
# that dask workers can read their training window from it.
FILE_IMBALANCE = ("none", "scale_pos_weight", "inverse_propensity")


class Engine(Protocol):
    """Where the final fit boosts and finds its training window: in this process
    (`MemoryEngine`) or on a dask cluster (`dask_engine.DaskEngine`), whose workers may read the
    window from the feature-set file, `fs` then holding only part of it."""

    @property
    def boosted_from(self) -> str:
        """Where the boosted rows came from: memory, or the feature-set file."""
        ...

    def category_min_count(self, configured: int) -> int:
        """Training rows a category level needs to enter the model's vocabulary."""
        ...

    def training_labels(self, train: WindowRows, window: Window) -> np.ndarray:
        """The training window's labels as the boosting sees them."""
        ...

    def lodged(self, lodged_at: pd.Series, window: Window) -> int:
        """Declarations lodged in the training window."""
        ...

    def resamples(self) -> bool:
        """Whether the imbalance treatment may resample the training rows."""
        ...

    def memory_from(self) -> pd.Timestamp | None:
        """From when `fs` holds every declaration (None: all along)."""
        ...

    def boost(
        self,
        train: WindowRows,
        valid: WindowRows,
        params: dict[str, Any],
        settings: TrainConfig,
        weighted_valid: bool,
    ) -> tuple[xgb.Booster, int, dict[str, list[float]]]:
        """Boost with early stopping on the validation window; the booster sliced at its best,
        its best iteration and its validation curve (`validation_curve`). ``weighted_valid``:
        early stopping weighs the validation rows."""
        ...


@dataclass(frozen=True)
class MemoryEngine:
    """xgboost.train in this process, on the windows `fs` holds."""

    @property
    def boosted_from(self) -> str:
        return "memory"

    def category_min_count(self, configured: int) -> int:
        return configured

    def training_labels(self, train: WindowRows, window: Window) -> np.ndarray:
        return train.y

    def lodged(self, lodged_at: pd.Series, window: Window) -> int:
        return int(window.contains(lodged_at).sum())

    def resamples(self) -> bool:
        return True

    def memory_from(self) -> pd.Timestamp | None:
        return None

    def boost(
        self,
        train: WindowRows,
        valid: WindowRows,
        params: dict[str, Any],
        settings: TrainConfig,
        weighted_valid: bool,
    ) -> tuple[xgb.Booster, int, dict[str, list[float]]]:
        curve: dict[str, list[float]] = {}
        booster, best = train_booster(
            dmatrix(train),
            dmatrix(valid, weighted=weighted_valid),
            params,
            Rounds.of(settings),
            curve=curve,
        )
        return booster, best, curve


def engine_for(
    train: TrainConfig,
    imbalance: str,
    windows: Windows,
    dtypes: pd.Series,
    feature_file: WindowFile | None,
) -> Engine:
    """The configured engine (train.engine); on dask with a ``feature_file`` the workers read the
    training and validation windows from it, unless the imbalance treatment resamples rows."""
    if train.engine != "dask":
        return MemoryEngine()
    reads = (
        FileReads(feature_file, windows, dtypes, weighted=imbalance == "inverse_propensity")
        if feature_file is not None and imbalance in FILE_IMBALANCE
        else None
    )
    return DaskEngine(reads)


# --- the fit's steps: each returns its part and what the log records of it ---------------------
