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
never fewer than `evaluate.reference_min_trees` trees. The tuning budget is therefore not the
model's Optuna trials: a reference is what the libraries' usual settings give.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from pipeline.config import Config
from pipeline.features.build import feature_families
from pipeline.features.featureset import FeatureSet
from pipeline.serve.model import ModelInfo
from pipeline.timeaxis import Windows
from pipeline.train.split import rows_in

NAMES = {"xgboost": "plain XGBoost", "lightgbm": "LightGBM", "catboost": "CatBoost"}
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


def raw_columns(fs: FeatureSet, config: Config) -> list[str]:
    """The raw declaration columns (no trader ids, no engineered feature)."""
    family = feature_families(fs.manifest, config.features)
    return [c for c in fs.X.columns if family.get(str(c)) == "raw"]


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


def _xgboost(data: _Data, config: Config) -> tuple[np.ndarray, int]:
    params = {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "learning_rate": LEARNING_RATE,
        "max_depth": 6,
        "max_cat_to_onehot": 1,
        "tree_method": "hist",
        "seed": config.seed,
        "nthread": config.compute.threads,
    }
    stopper = _XGBoostStopper(config.evaluate.reference_min_trees)
    booster = xgb.train(
        params,
        xgb.DMatrix(data.X_train, data.y_train, enable_categorical=True),
        num_boost_round=config.evaluate.reference_rounds,
        evals=[(xgb.DMatrix(data.X_valid, data.y_valid, enable_categorical=True), "valid")],
        callbacks=[stopper],
        verbose_eval=False,
    )
    trees = kept_trees(stopper.losses, config.evaluate.reference_min_trees)
    score = booster.inplace_predict(data.X_test, iteration_range=(0, trees))
    return np.asarray(score, dtype=float), trees


def _lightgbm(data: _Data, config: Config) -> tuple[np.ndarray, int]:
    import lightgbm as lgb

    params = {
        "objective": "binary",
        "metric": "binary_logloss",
        "learning_rate": LEARNING_RATE,
        "num_leaves": 63,
        "seed": config.seed,
        "deterministic": True,
        "num_threads": config.compute.threads,
        "verbose": -1,
    }
    min_trees = config.evaluate.reference_min_trees
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
        num_boost_round=config.evaluate.reference_rounds,
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


def _catboost(data: _Data, config: Config) -> tuple[np.ndarray, int]:
    from catboost import CatBoostClassifier, Pool

    model = CatBoostClassifier(
        iterations=config.evaluate.reference_rounds,
        learning_rate=LEARNING_RATE,
        depth=6,
        loss_function="Logloss",
        eval_metric="Logloss",
        use_best_model=False,
        random_seed=config.seed,
        thread_count=config.compute.threads,
        allow_writing_files=False,
        verbose=False,
    )
    stopper = _CatBoostStopper(config.evaluate.reference_min_trees)
    model.fit(
        Pool(_text(data.X_train, data.categories), data.y_train, cat_features=data.categories),
        eval_set=Pool(
            _text(data.X_valid, data.categories), data.y_valid, cat_features=data.categories
        ),
        callbacks=[stopper],
    )
    trees = kept_trees(stopper.losses, config.evaluate.reference_min_trees)
    model.shrink(ntree_end=trees)
    test = Pool(_text(data.X_test, data.categories), cat_features=data.categories)
    return np.asarray(model.predict_proba(test)[:, 1], dtype=float), int(model.tree_count_)


LEARNERS: dict[str, Callable[[_Data, Config], tuple[np.ndarray, int]]] = {
    "xgboost": _xgboost,
    "lightgbm": _lightgbm,
    "catboost": _catboost,
}


# Where a job keeps fitted references between runs (`jobs.catalog.reference_cache`): given a
# key (`cache_key`) and the fit, it returns the stored scores or fits, stores and returns them.
ReferenceCache = Callable[[str, Callable[[], ReferenceScores]], ReferenceScores]
LIBRARIES = ("xgboost", "lightgbm", "catboost")


def cache_key(data: _Data, config: Config) -> str:
    """SHA-256 of everything that decides the references' scores: the rows they are fitted,
    stopped and scored on (values, labels, column order and dtypes), the settings they read,
    the libraries' versions and this module's source."""
    digest = hashlib.sha256()
    for frame in (data.X_train, data.X_valid, data.X_test):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        digest.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    for labels in (data.y_train, data.y_valid):
        digest.update(np.ascontiguousarray(labels, dtype=float).tobytes())
    evaluate = config.evaluate
    settings = {
        "learners": evaluate.reference_learners,
        "rounds": evaluate.reference_rounds,
        "min_trees": evaluate.reference_min_trees,
        "min_distinct": evaluate.reference_min_distinct_scores,
        "seed": config.seed,
        "threads": config.compute.threads,  # LightGBM's sums depend on its thread count
        "categories": data.categories,
        "versions": {name: _version(name) for name in LIBRARIES},
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()


def _version(library: str) -> str | None:
    try:
        return importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        return None


def reference_scores(
    fs: FeatureSet,
    windows: Windows,
    test_rows: np.ndarray,
    config: Config,
    cache: ReferenceCache | None = None,
) -> ReferenceScores:
    """Fit each configured reference learner on the evaluated model's training window (labels
    known before its validation window), early-stop it on the validation window, and score the
    ``test_rows`` of ``fs``; with a ``cache``, fitted once per `cache_key`."""
    out = ReferenceScores()
    columns = raw_columns(fs, config)
    if not columns:
        out.notes.append("Reference learners skipped: the feature set has no raw column.")
        return out
    train = rows_in(fs, windows.train, windows.labels_known_by(windows.train))
    valid = rows_in(fs, windows.valid, windows.labels_known_by(windows.valid))
    y = fs.y.to_numpy(dtype=float)
    X = fs.X[columns]
    data = _Data(
        X_train=X.loc[train].reset_index(drop=True),
        y_train=y[train],
        X_valid=X.loc[valid].reset_index(drop=True),
        y_valid=y[valid],
        X_test=X.loc[np.asarray(test_rows, dtype=bool)].reset_index(drop=True),
        categories=[c for c in columns if isinstance(X[c].dtype, pd.CategoricalDtype)],
    )
    if data.y_train.sum() == 0 or data.y_valid.sum() == 0:
        out.notes.append("Reference learners skipped: no hit in the training or validation window.")
        return out
    if cache is not None:
        return cache(cache_key(data, config), lambda: _fit_all(data, len(columns), config))
    return _fit_all(data, len(columns), config)


def _fit_all(data: _Data, columns: int, config: Config) -> ReferenceScores:
    """Each configured reference learner fitted on `data`, or a note why it is left out."""
    out = ReferenceScores()
    for learner in config.evaluate.reference_learners:
        name = NAMES[learner]
        if importlib.util.find_spec(learner) is None:
            out.notes.append(
                f"{name} reference skipped: {learner} is not installed (install the `reference` "
                "extra: `uv pip install -e '.[reference]'`)."
            )
            continue
        started = time.perf_counter()
        score, trees = LEARNERS[learner](data, config)
        seconds = round(time.perf_counter() - started, 2)
        _record(out, name, score, trees, config)
        out.fitted[-1] |= {
            "seconds": seconds,
            "train_rows": len(data.y_train),
            "valid_rows": len(data.y_valid),
            "columns": columns,
        }
    return out


def _record(out: ReferenceScores, name: str, score: np.ndarray, trees: int, config: Config) -> None:
    """A fitted reference's score, health and table row; a note when it is not a real fit."""
    evaluate = config.evaluate
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
    info: ModelInfo,
    fs: FeatureSet,
    test_rows: np.ndarray,
    config: Config,
    cache: ReferenceCache | None = None,
) -> ReferenceScores:
    """`reference_scores` on the windows a model records (its `info`), or a note why not."""
    if info.role != "evaluated" or info.windows is None:
        return ReferenceScores(
            notes=["Reference learners skipped: the model records no train/valid/test windows."]
        )
    return reference_scores(fs, info.windows, test_rows, config, cache)
