"""Reference learners: what a customs data scientist would write in an afternoon, fitted properly.

A plain XGBoost, LightGBM and CatBoost on the raw declaration columns (categories with each
library's native handling, the declared amounts as numbers), trained on exactly the evaluated
model's training window and labels, early-stopped on its validation window (the same labelled
rows the model stops on), and scored on its test window. The report ranks them next to the model;
the model is better only where it beats the best healthy one. LightGBM and CatBoost come with the
optional `reference` extra: without it they are left out with a note.

How each is fitted (the same for all three, documented rather than tuned): conventional
parameters (learning rate 0.05; XGBoost depth 6, LightGBM 63 leaves, CatBoost depth 6), early
stopping on the validation window's log-loss (a metric every boosting round moves, unlike PR-AUC
on a few hundred rows, which can stop at the first tree) with a patience of `PATIENCE` rounds,
never fewer than `evaluate.reference_min_trees` trees: a reference is what the libraries' usual
settings give.

With `evaluate.tune_references`, each is also fitted tuned with the model's budget ("LightGBM
(tuned)"): `tune.n_trials` trials on the model's rolling folds (`train.split.rolling_folds`) and
objective, its conventional parameters as trial 0 (run exactly as the untuned reference runs
them), and the best trial kept only when it beats trial 0 by more than trial 0's bootstrap noise
(`train.tune.chosen_trial`), the rule the model's study follows; then fitted like the untuned
one. Each learner's search space is written beside it (`SPACES`; XGBoost's is the model's
`search_space`). The model's edge then cannot come from a tuning advantage alone.

The health check (`reference_health`): a reference with fewer trees than
`evaluate.reference_min_trees` (the cap `evaluate.reference_rounds` reached first) or with fewer
than `evaluate.reference_min_distinct_scores` distinct scores on the test rows is flagged in the
report and never chosen as the best (`best_reference`): a failed fit is not a baseline.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import xgboost as xgb

from pipeline.compute import fit_threads
from pipeline.config import Config, EvaluateConfig, FeaturesConfig, SplitConfig, TuneConfig
from pipeline.features.build import feature_families
from pipeline.features.featureset import FeatureSet
from pipeline.plan import Role, RunPlan, Windows
from pipeline.train.objectives import objective_value
from pipeline.train.rows import WindowRows
from pipeline.train.split import rolling_folds, rows_in
from pipeline.train.tune import (
    CONVENTIONAL,
    NOISE,
    SEARCH_SPACE_VERSION,
    XGBOOST_DEFAULTS,
    choice_line,
    chosen_trial,
    finished_trials,
    memory_study,
    objective_noise,
    search_space,
)

NAMES = {"xgboost": "plain XGBoost", "lightgbm": "LightGBM", "catboost": "CatBoost"}
TUNED = {learner: f"{name} (tuned)" for learner, name in NAMES.items()}
LEARNING_RATE = 0.05
PATIENCE = 100
_MISSING = "__missing__"


@dataclass(frozen=True)
class ReferenceHealth:
    """Whether a reference learner is a real fit: its trees, its distinct test scores, and why
    not when it is not (`healthy` False: flagged in the report, never the best)."""

    name: str
    trees: int
    distinct_scores: int
    healthy: bool
    why: str  # "" when healthy

    def as_dict(self) -> dict[str, object]:
        """The columns the report's reference table shows."""
        return {
            "distinct scores": self.distinct_scores,
            "healthy": "yes" if self.healthy else "no",
            "why": self.why,
        }


@dataclass
class ReferenceScores:
    """Each reference learner's score on the test rows, how it was fitted, its health, and what
    was skipped."""

    scores: dict[str, np.ndarray] = field(default_factory=dict)
    fitted: list[dict[str, object]] = field(default_factory=list)  # name, trees, seconds, rows
    notes: list[str] = field(default_factory=list)
    health: dict[str, ReferenceHealth] = field(default_factory=dict)

    @property
    def healthy(self) -> list[str]:
        """The reference learners that are real fits (those `best_reference` may choose)."""
        return [name for name in self.scores if name in self.health and self.health[name].healthy]


def reference_health(
    name: str, trees: int, score: np.ndarray, min_trees: int, min_distinct: int
) -> ReferenceHealth:
    """Flag a reference with fewer than `min_trees` trees or fewer than `min_distinct` distinct
    scores on the test rows (a near-constant ranking: ties decide who is controlled)."""
    distinct = int(np.unique(np.asarray(score, dtype=float)).size)
    reasons = []
    if trees < min_trees:
        reasons.append(f"{trees} trees, fewer than the minimum of {min_trees}")
    if distinct < min_distinct:
        reasons.append(f"{distinct} distinct scores, fewer than the minimum of {min_distinct}")
    return ReferenceHealth(name, trees, distinct, not reasons, "; ".join(reasons))


def kept_trees(losses: Sequence[float], min_trees: int) -> int:
    """Trees kept: the count, at least `min_trees` (or every round when fewer were boosted),
    with the lowest validation log-loss (the first such count on ties)."""
    start = max(min(min_trees, len(losses)), 1) - 1
    return start + 1 + int(np.argmin(np.asarray(losses[start:], dtype=float)))


def stop_now(losses: Sequence[float], min_trees: int, patience: int = PATIENCE) -> bool:
    """Early stopping with a floor: stop once at least `min_trees` rounds are boosted and the
    validation log-loss has not improved on `kept_trees` for `patience` rounds."""
    return len(losses) >= min_trees and len(losses) - kept_trees(losses, min_trees) >= patience


@dataclass(frozen=True)
class _Data:
    X_train: pd.DataFrame
    y_train: np.ndarray
    X_valid: pd.DataFrame
    y_valid: np.ndarray
    X_test: pd.DataFrame
    categories: list[str]


def raw_columns(fs: FeatureSet, features: FeaturesConfig) -> list[str]:
    """The raw declaration columns (no trader ids, no engineered feature), by the families the
    `features` settings give the feature set's manifest."""
    family = feature_families(fs.manifest, features)
    return [c for c in fs.X.columns if family.get(str(c)) == "raw"]


@dataclass(frozen=True)
class Boosting:
    """How every reference learner boosts: at most `rounds` trees (`evaluate.reference_rounds`),
    never fewer than `min_trees` (`evaluate.reference_min_trees`), seeded with `seed`, on
    `threads` threads (`compute.threads`)."""

    rounds: int
    min_trees: int
    seed: int
    threads: int

    @classmethod
    def of(cls, config: Config) -> Boosting:
        """The boosting settings of `config`."""
        ev = config.evaluate
        return cls(ev.reference_rounds, ev.reference_min_trees, config.seed, config.compute.threads)


@dataclass(frozen=True)
class ReferenceSettings:
    """What fitting and tuning the reference learners reads of a config: the `evaluate` section
    (which learners, their limits), the tuning budget and objective (`tune`), the folds' `split`
    settings, and how every learner boosts."""

    evaluate: EvaluateConfig
    tune: TuneConfig
    split: SplitConfig
    boosting: Boosting

    @classmethod
    def of(cls, config: Config) -> ReferenceSettings:
        """The reference settings of `config`."""
        return cls(config.evaluate, config.tune, config.split, Boosting.of(config))


class _XGBoostStopper(xgb.callback.TrainingCallback):
    """XGBoost callback: `stop_now` on the validation log-loss."""

    def __init__(self, min_trees: int) -> None:
        super().__init__()
        self.min_trees = min_trees
        self.losses: list[float] = []

    def after_iteration(
        self, model: Any, epoch: int, evals_log: xgb.callback.TrainingCallback.EvalsLog
    ) -> bool:
        """Record the validation log-loss; True stops the boosting."""
        self.losses = [float(v) for v in evals_log["valid"]["logloss"]]  # type: ignore[arg-type]
        return stop_now(self.losses, self.min_trees)


def _xgboost_space(trial: optuna.Trial, tune: TuneConfig) -> dict[str, Any]:
    """The model's own search space (`train.tune.search_space`), without the imbalance method
    (a reference learner does not rebalance) or the category order (a plain XGBoost takes
    XGBoost's own categories)."""
    plain = tune.model_copy(update={"tune_imbalance": False, "tune_category_order": False})
    return search_space(trial, plain)


# `_xgboost`'s parameters in `_xgboost_space`'s terms (XGBoost's defaults, L1 and split loss at
# the space's floor).
XGBOOST_CONVENTIONAL = XGBOOST_DEFAULTS | {
    "learning_rate": LEARNING_RATE,
    "max_depth": 6,
    "max_cat_to_onehot": 1,
}


def plain_xgboost_params(seed: int, threads: int, tuned: Mapping[str, Any]) -> dict[str, Any]:
    """The plain XGBoost's parameters: conventional ones (log-loss, learning rate 0.05, depth 6,
    partition splits for every category), with ``tuned`` laid over them."""
    return {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "learning_rate": LEARNING_RATE,
        "max_depth": 6,
        "max_cat_to_onehot": 1,
        "tree_method": "hist",
        "seed": seed,
        "nthread": threads,
        **tuned,
    }


def _xgboost(data: _Data, boosting: Boosting, tuned: Mapping[str, Any]) -> tuple[np.ndarray, int]:
    """Conventional parameters, with ``tuned`` laid over them."""
    params = plain_xgboost_params(boosting.seed, fit_threads(boosting.threads), tuned)
    stopper = _XGBoostStopper(boosting.min_trees)
    booster = xgb.train(
        params,
        xgb.DMatrix(data.X_train, data.y_train, enable_categorical=True),
        num_boost_round=boosting.rounds,
        evals=[(xgb.DMatrix(data.X_valid, data.y_valid, enable_categorical=True), "valid")],
        callbacks=[stopper],
        verbose_eval=False,
    )
    trees = kept_trees(stopper.losses, boosting.min_trees)
    score = booster.inplace_predict(data.X_test, iteration_range=(0, trees))
    return np.asarray(score, dtype=float), trees


def _lightgbm_space(trial: optuna.Trial, tune: TuneConfig) -> dict[str, Any]:
    """LightGBM's usual search space: leaves, leaf size, learning rate, feature and row
    subsampling, L2, and its category settings (smoothing and L2 of the gradient-sorted levels,
    rows per level group, levels considered per split)."""
    return {
        "num_leaves": trial.suggest_int("num_leaves", 8, 256, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 5, 200, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.4, 1.0),
        "bagging_freq": 1,  # bagging_fraction 1.0 draws every row: no bagging
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 30.0, log=True),
        "cat_smooth": trial.suggest_float("cat_smooth", 1.0, 100.0, log=True),
        "cat_l2": trial.suggest_float("cat_l2", 1.0, 100.0, log=True),
        "min_data_per_group": trial.suggest_int("min_data_per_group", 10, 500, log=True),
        "max_cat_threshold": trial.suggest_int("max_cat_threshold", 8, 128, log=True),
    }


# `_lightgbm`'s parameters in `_lightgbm_space`'s terms (LightGBM's defaults; L2 at the floor).
LIGHTGBM_CONVENTIONAL: dict[str, Any] = {
    "num_leaves": 63,
    "min_child_samples": 20,
    "learning_rate": LEARNING_RATE,
    "feature_fraction": 1.0,
    "bagging_fraction": 1.0,
    "lambda_l2": 1e-3,
    "cat_smooth": 10.0,
    "cat_l2": 10.0,
    "min_data_per_group": 100,
    "max_cat_threshold": 32,
}


def _lightgbm(data: _Data, boosting: Boosting, tuned: Mapping[str, Any]) -> tuple[np.ndarray, int]:
    """Conventional parameters, with ``tuned`` laid over them."""
    import lightgbm as lgb

    params = {
        "objective": "binary",
        "metric": "binary_logloss",
        "learning_rate": LEARNING_RATE,
        "num_leaves": 63,
        "seed": boosting.seed,
        "deterministic": True,
        "num_threads": boosting.threads,
        "verbose": -1,
        **tuned,
    }
    min_trees = boosting.min_trees
    losses: list[float] = []

    def stopping(env: lgb.callback.CallbackEnv) -> None:
        results = env.evaluation_result_list or []
        losses.append(float(results[0][2]))
        if stop_now(losses, min_trees):
            raise lgb.callback.EarlyStopException(kept_trees(losses, min_trees) - 1, results)

    train = lgb.Dataset(data.X_train, data.y_train)
    valid = lgb.Dataset(data.X_valid, data.y_valid, reference=train)
    booster = lgb.train(
        params,
        train,
        num_boost_round=boosting.rounds,
        valid_sets=[valid],
        callbacks=[stopping],
    )
    trees = kept_trees(losses, min_trees)
    return np.asarray(booster.predict(data.X_test, num_iteration=trees), dtype=float), trees


def _text(X: pd.DataFrame, categories: list[str]) -> pd.DataFrame:
    """CatBoost wants category columns as text without missing values."""
    cast = {c: X[c].astype(object).where(X[c].notna(), _MISSING).astype(str) for c in categories}
    return X.assign(**cast)


class _CatBoostStopper:
    """CatBoost callback: `stop_now` on the validation log-loss (CatBoost stops on False)."""

    def __init__(self, min_trees: int) -> None:
        self.min_trees = min_trees
        self.losses: list[float] = []

    def after_iteration(self, info: object) -> bool:
        metrics: Mapping[str, Mapping[str, list[float]]] = getattr(info, "metrics", {})
        self.losses = [float(v) for v in metrics["validation"]["Logloss"]]
        return not stop_now(self.losses, self.min_trees)


def _catboost_space(trial: optuna.Trial, tune: TuneConfig) -> dict[str, Any]:
    """CatBoost's usual search space: depth, learning rate, L2 of the leaves, split-score noise,
    the bootstrap (its temperature only with the Bayesian one: CatBoost ignores it with its
    default MVS) and the levels below which a category is one-hot coded instead of its ordered
    target statistics."""
    params: dict[str, Any] = {
        "depth": trial.suggest_int("depth", 4, 10),
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
        "l2_leaf_reg": trial.suggest_float("l2_leaf_reg", 1.0, 30.0, log=True),
        "random_strength": trial.suggest_float("random_strength", 1e-3, 10.0, log=True),
        "bootstrap_type": trial.suggest_categorical("bootstrap_type", ["MVS", "Bayesian"]),
        "one_hot_max_size": trial.suggest_int("one_hot_max_size", 2, 16),
    }
    if params["bootstrap_type"] == "Bayesian":
        params["bagging_temperature"] = trial.suggest_float("bagging_temperature", 0.0, 10.0)
    return params


# `_catboost`'s parameters in `_catboost_space`'s terms (CatBoost's defaults on the CPU).
CATBOOST_CONVENTIONAL: dict[str, Any] = {
    "depth": 6,
    "learning_rate": LEARNING_RATE,
    "l2_leaf_reg": 3.0,
    "random_strength": 1.0,
    "bootstrap_type": "MVS",
    "one_hot_max_size": 2,
}


def _catboost(data: _Data, boosting: Boosting, tuned: Mapping[str, Any]) -> tuple[np.ndarray, int]:
    """Conventional parameters, with ``tuned`` laid over them."""
    from catboost import CatBoostClassifier, Pool

    model = CatBoostClassifier(
        iterations=boosting.rounds,
        **({"learning_rate": LEARNING_RATE, "depth": 6} | dict(tuned)),
        loss_function="Logloss",
        eval_metric="Logloss",
        use_best_model=False,
        random_seed=boosting.seed,
        thread_count=boosting.threads,
        allow_writing_files=False,
        verbose=False,
    )
    stopper = _CatBoostStopper(boosting.min_trees)
    model.fit(
        Pool(_text(data.X_train, data.categories), data.y_train, cat_features=data.categories),
        eval_set=Pool(
            _text(data.X_valid, data.categories), data.y_valid, cat_features=data.categories
        ),
        callbacks=[stopper],
    )
    trees = kept_trees(stopper.losses, boosting.min_trees)
    model.shrink(ntree_end=trees)
    test = Pool(_text(data.X_test, data.categories), cat_features=data.categories)
    return np.asarray(model.predict_proba(test)[:, 1], dtype=float), int(model.tree_count_)


# A learner's fit: its data, how it boosts and the parameters laid over its conventional ones
# ({}: none); its scores on the data's test rows and the trees it kept.
Fit = Callable[[_Data, Boosting, Mapping[str, Any]], tuple[np.ndarray, int]]
Space = Callable[[optuna.Trial, TuneConfig], dict[str, Any]]
LEARNERS: dict[str, Fit] = {"xgboost": _xgboost, "lightgbm": _lightgbm, "catboost": _catboost}
# Each learner's search space and its conventional parameters there (trial 0).
SPACES: dict[str, tuple[Space, dict[str, Any]]] = {
    "xgboost": (_xgboost_space, XGBOOST_CONVENTIONAL),
    "lightgbm": (_lightgbm_space, LIGHTGBM_CONVENTIONAL),
    "catboost": (_catboost_space, CATBOOST_CONVENTIONAL),
}


# Where a job keeps fitted references between runs (`jobs.catalog.reference_cache`): given a
# key (`cache_key`) and the fit, it returns the stored scores or fits, stores and returns them.
ReferenceCache = Callable[[str, Callable[[], ReferenceScores]], ReferenceScores]
LIBRARIES = ("xgboost", "lightgbm", "catboost")


def cache_key(
    data: _Data, settings: ReferenceSettings, folds: Sequence[_Fold] | None = None
) -> str:
    """SHA-256 of everything that decides the references' scores: the rows they are fitted,
    stopped and scored on (values, labels, column order and dtypes), the settings they read,
    the libraries' versions and this module's source; with `evaluate.tune_references`, also the
    tuning folds' rows and the tuning settings."""
    digest = hashlib.sha256()
    _digest_rows(digest, data)
    evaluate = settings.evaluate
    read: dict[str, object] = {
        "learners": evaluate.reference_learners,
        "rounds": evaluate.reference_rounds,
        "min_trees": evaluate.reference_min_trees,
        "min_distinct": evaluate.reference_min_distinct_scores,
        "seed": settings.boosting.seed,
        "threads": settings.boosting.threads,  # LightGBM's sums depend on its thread count
        "categories": data.categories,
        "versions": {name: _version(name) for name in LIBRARIES},
    }
    if evaluate.tune_references:
        read["tuned"] = {
            "tune": settings.tune.model_dump(
                mode="json", include={"n_trials", "timeout_s", "objective", "at_rate"}
            ),
            "split": settings.split.model_dump(mode="json"),
            "xgboost_space": SEARCH_SPACE_VERSION,
            "folds": len(folds) if folds is not None else None,
        }
        for fold in folds or ():
            _digest_rows(digest, fold.data)
            digest.update(np.ascontiguousarray(fold.valid.revenue, dtype=float).tobytes())
    digest.update(json.dumps(read, sort_keys=True).encode())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()


def _digest_rows(digest: Any, data: _Data) -> None:
    """Feed ``data``'s frames (values, column order and dtypes) and labels to ``digest``."""
    for frame in (data.X_train, data.X_valid, data.X_test):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        digest.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    for labels in (data.y_train, data.y_valid):
        digest.update(np.ascontiguousarray(labels, dtype=float).tobytes())


def _version(library: str) -> str | None:
    try:
        return importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        return None


def _rows(frame: pd.DataFrame, y: np.ndarray, train: np.ndarray, valid: np.ndarray) -> _Data:
    """The training and validation rows of ``frame`` (the raw columns), tested on ``valid``."""
    return _Data(
        X_train=frame.loc[train].reset_index(drop=True),
        y_train=y[train],
        X_valid=frame.loc[valid].reset_index(drop=True),
        y_valid=y[valid],
        X_test=frame.loc[valid].reset_index(drop=True),
        categories=[c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)],
    )


def reference_scores(
    fs: FeatureSet,
    windows: Windows,
    test_rows: np.ndarray,
    config: Config,
    cache: ReferenceCache | None = None,
) -> ReferenceScores:
    """Fit each configured reference learner on the evaluated model's training window (labels
    known before its validation window), early-stop it on the validation window, and score the
    ``test_rows`` of ``fs`` (with `evaluate.tune_references`, tuned too: `tuning_folds`); with a
    ``cache``, fitted once per `cache_key`."""
    out = ReferenceScores()
    columns = raw_columns(fs, config.features)
    if not columns:
        out.notes.append("Reference learners skipped: the feature set has no raw column.")
        return out
    train = rows_in(fs, windows.train, windows.labels_known_by(windows.train))
    valid = rows_in(fs, windows.valid, windows.labels_known_by(windows.valid))
    X = fs.X[columns]
    data = replace(
        _rows(X, fs.y.to_numpy(dtype=float), train, valid),
        X_test=X.loc[np.asarray(test_rows, dtype=bool)].reset_index(drop=True),
    )
    if data.y_train.sum() == 0 or data.y_valid.sum() == 0:
        out.notes.append("Reference learners skipped: no hit in the training or validation window.")
        return out
    tuned = config.evaluate.tune_references and config.tune.n_trials > 0
    folds = tuning_folds(fs, windows, columns, config.split) if tuned else None
    settings = ReferenceSettings.of(config)
    if cache is not None:
        key = cache_key(data, settings, folds)
        return cache(key, lambda: _fit_all(data, len(columns), settings, folds))
    return _fit_all(data, len(columns), settings, folds)


def _fit_all(
    data: _Data, columns: int, settings: ReferenceSettings, folds: list[_Fold] | None = None
) -> ReferenceScores:
    """Each configured reference learner fitted on `data` (and, with ``folds``, tuned on them
    and fitted again: `_fit_tuned`), or a note why it is left out."""
    out = ReferenceScores()
    if settings.evaluate.tune_references:
        out.notes += _tuning_notes(settings.tune, folds)
    shape = {"train_rows": len(data.y_train), "valid_rows": len(data.y_valid), "columns": columns}
    for learner in settings.evaluate.reference_learners:
        name = NAMES[learner]
        if importlib.util.find_spec(learner) is None:
            out.notes.append(
                f"{name} reference skipped: {learner} is not installed (install the `reference` "
                "extra: `uv pip install -e '.[reference]'`)."
            )
            continue
        started = time.perf_counter()
        score, trees = LEARNERS[learner](data, settings.boosting, {})
        _record(out, name, score, trees, settings.evaluate)
        out.fitted[-1] |= {"seconds": round(time.perf_counter() - started, 2), **shape}
        if folds:
            started = time.perf_counter()
            _fit_tuned(out, learner, data, folds, settings)
            out.fitted[-1] |= {"seconds": round(time.perf_counter() - started, 2), **shape}
    return out


def _tuning_notes(tune: TuneConfig, folds: list[_Fold] | None) -> list[str]:
    """Why the tuned reference learners are left out, when they are."""
    if tune.n_trials == 0:
        return ["Tuned reference learners skipped: tune.n_trials is 0 (the model is not tuned)."]
    if not folds:
        return ["Tuned reference learners skipped: a tuning fold holds no hit."]
    return []


# --- the reference learners tuned with the model's budget (evaluate.tune_references) -------------


FITTED = "fitted_params"  # a trial's user attribute: the parameters laid over the conventional


@dataclass(frozen=True)
class _Fold:
    """One rolling tuning fold on the raw columns: fitted and stopped as a reference is (`data`,
    whose test rows are the validation rows), and its validation rows for the objective."""

    data: _Data
    valid: WindowRows


def tuning_folds(
    fs: FeatureSet, windows: Windows, columns: list[str], split: SplitConfig
) -> list[_Fold]:
    """The model's rolling tuning folds (`rolling_folds` on the same windows, hits and
    `split` settings; the rows `train.tune.fold_rows` takes) on the raw ``columns`` with their
    native categories, oldest first; [] when a fold's training or validation rows hold no hit."""
    X = fs.X[columns]
    y = fs.y.to_numpy(dtype=float)
    revenue = fs.revenue_recovered.to_numpy(dtype=float)
    valid_known_by = windows.labels_known_by(windows.valid)
    folds = []
    for train_window, valid_window in rolling_folds(fs.lodged_at, split, windows, y == 1.0):
        train = rows_in(fs, train_window, valid_window.start)
        valid = rows_in(fs, valid_window, valid_known_by)
        data = _rows(X, y, train, valid)
        if data.y_train.sum() == 0 or data.y_valid.sum() == 0:
            return []
        rows = WindowRows(data.X_valid, data.y_valid, np.ones(len(data.y_valid)), revenue[valid])
        folds.append(_Fold(data, rows))
    return folds


def _objective(
    learner: str, folds: list[_Fold], settings: ReferenceSettings
) -> Callable[[optuna.Trial], float]:
    """The tuning objective (`tune.objective`) of ``learner``'s trial, averaged over the folds,
    each fold fitted and early-stopped as the reference is. Trial 0 (the conventional point,
    `CONVENTIONAL`) runs the untuned reference's parameters exactly and records its bootstrap
    noise (`train.tune.objective_noise`), which `chosen_trial` reads."""
    space = SPACES[learner][0]
    tune, boosting = settings.tune, settings.boosting

    def objective(trial: optuna.Trial) -> float:
        first = bool(trial.user_attrs.get(CONVENTIONAL))
        suggested = space(trial, tune)  # trial 0: the enqueued point, recorded as its params
        params = {} if first else suggested
        fits = [LEARNERS[learner](fold.data, boosting, params) for fold in folds]
        scored = [(fold.valid, score) for fold, (score, _) in zip(folds, fits, strict=True)]
        values = [
            objective_value(tune.objective, rows.y, score, rows.revenue, tune.at_rate)
            for rows, score in scored
        ]
        if first:
            trial.set_user_attr(NOISE, objective_noise(scored, tune, boosting.seed))
        trial.set_user_attr(FITTED, params)
        trial.set_user_attr("trees", [trees for _, trees in fits])
        trial.set_user_attr("fold_values", values)
        return float(np.mean(values))

    return objective


def _fit_tuned(
    out: ReferenceScores, learner: str, data: _Data, folds: list[_Fold], settings: ReferenceSettings
) -> None:
    """``learner`` tuned on the folds with the model's budget (`train.tune.memory_study`), then
    fitted on ``data`` as the untuned one is, with the chosen trial's parameters; when the
    chosen trial is trial 0 (the untuned parameters), the untuned fit is that fit."""
    objective = _objective(learner, folds, settings)
    seed = settings.boosting.seed
    study = memory_study(objective, SPACES[learner][1], settings.tune, seed, TUNED[learner])
    chosen = chosen_trial(study)
    untuned = NAMES[learner]
    if chosen.user_attrs.get(CONVENTIONAL) and untuned in out.scores:
        score, trees = out.scores[untuned], out.health[untuned].trees
    else:
        score, trees = LEARNERS[learner](data, settings.boosting, chosen.user_attrs[FITTED])
    _record(out, TUNED[learner], score, trees, settings.evaluate)
    out.fitted[-1] |= {
        "trials": finished_trials(study),
        "chosen trial": chosen.number,
        "tuning": choice_line(study, settings.tune.objective),
        "parameters": json.dumps(chosen.params, sort_keys=True),
    }


def _record(
    out: ReferenceScores, name: str, score: np.ndarray, trees: int, evaluate: EvaluateConfig
) -> None:
    """A fitted reference's score, health and table row (healthy by `evaluate`'s limits); a
    note when it is not a real fit."""
    health = reference_health(
        name, trees, score, evaluate.reference_min_trees, evaluate.reference_min_distinct_scores
    )
    out.scores[name] = score
    out.health[name] = health
    out.fitted.append({"name": name, "trees": trees, **health.as_dict()})
    if not health.healthy:
        out.notes.append(
            f"{name} reference is not a real fit ({health.why}): shown, flagged, and not used as "
            "the best reference learner."
        )


def best_reference(references: ReferenceScores, y: np.ndarray) -> str | None:
    """The healthy reference learner (`ReferenceScores.healthy`) with the highest average
    precision on the labelled rows of ``y`` (the strongest bar; choosing it on the test window
    only makes the model's claim harder); None when no reference is healthy."""
    from sklearn.metrics import average_precision_score

    labelled = ~np.isnan(y)
    healthy = references.healthy
    if not healthy or not labelled.any() or np.nansum(y) == 0:
        return None
    scores = references.scores
    return max(
        healthy, key=lambda name: average_precision_score(y[labelled], scores[name][labelled])
    )


def for_model(
    plan: RunPlan,
    role: Role,
    fs: FeatureSet,
    test_rows: np.ndarray,
    config: Config,
    cache: ReferenceCache | None = None,
) -> ReferenceScores:
    """`reference_scores` on the windows of the model in `role`: the plan's evaluated windows,
    or a note why not (a deployed refit has no validation window)."""
    if role == "deployed" and plan.refit is not None:
        return ReferenceScores(
            notes=["Reference learners skipped: the model records no train/valid/test windows."]
        )
    return reference_scores(fs, plan.evaluated, test_rows, config, cache)
