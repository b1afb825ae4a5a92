"""Reference learners: what a customs data scientist would write in an afternoon.

A plain XGBoost, LightGBM and CatBoost on the raw declaration columns (categories with each
library's native handling, the declared amounts as numbers), trained on exactly the evaluated
model's training window and labels, early-stopped on its validation window, and scored on its
test window. The report ranks them by probability next to the model; the model is better only
where it beats the best of them. LightGBM and CatBoost come with the optional `reference` extra:
without it they are left out with a note.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

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


@dataclass
class ReferenceScores:
    """Each reference learner's score on the test rows, how it was fitted, and what was skipped."""

    scores: dict[str, np.ndarray] = field(default_factory=dict)
    fitted: list[dict[str, object]] = field(default_factory=list)  # name, trees, seconds, rows
    notes: list[str] = field(default_factory=list)


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


def _xgboost(data: _Data, config: Config) -> tuple[np.ndarray, int]:
    import xgboost as xgb

    params = {
        "objective": "binary:logistic",
        "eval_metric": "aucpr",
        "learning_rate": LEARNING_RATE,
        "max_depth": 6,
        "max_cat_to_onehot": 1,
        "tree_method": "hist",
        "seed": config.seed,
        "nthread": config.train.n_jobs,
    }
    booster = xgb.train(
        params,
        xgb.DMatrix(data.X_train, data.y_train, enable_categorical=True),
        num_boost_round=config.evaluate.reference_rounds,
        evals=[(xgb.DMatrix(data.X_valid, data.y_valid, enable_categorical=True), "valid")],
        early_stopping_rounds=PATIENCE,
        verbose_eval=False,
    )
    best = int(booster.best_iteration)
    score = booster.inplace_predict(data.X_test, iteration_range=(0, best + 1))
    return np.asarray(score, dtype=float), best + 1


def _lightgbm(data: _Data, config: Config) -> tuple[np.ndarray, int]:
    import lightgbm as lgb

    params = {
        "objective": "binary",
        "learning_rate": LEARNING_RATE,
        "num_leaves": 63,
        "seed": config.seed,
        "deterministic": True,
        "num_threads": config.train.n_jobs,
        "verbose": -1,
    }
    train = lgb.Dataset(data.X_train, data.y_train)
    valid = lgb.Dataset(data.X_valid, data.y_valid, reference=train)
    booster = lgb.train(
        params,
        train,
        num_boost_round=config.evaluate.reference_rounds,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(PATIENCE, verbose=False)],
    )
    best = int(booster.best_iteration) or booster.current_iteration()
    return np.asarray(booster.predict(data.X_test, num_iteration=best), dtype=float), best


def _text(X: pd.DataFrame, categories: list[str]) -> pd.DataFrame:
    """CatBoost wants category columns as text without missing values."""
    cast = {c: X[c].astype(object).where(X[c].notna(), _MISSING).astype(str) for c in categories}
    return X.assign(**cast)


def _catboost(data: _Data, config: Config) -> tuple[np.ndarray, int]:
    from catboost import CatBoostClassifier, Pool

    model = CatBoostClassifier(
        iterations=config.evaluate.reference_rounds,
        learning_rate=LEARNING_RATE,
        depth=6,
        eval_metric="PRAUC",
        od_type="Iter",
        od_wait=PATIENCE,
        use_best_model=True,
        random_seed=config.seed,
        thread_count=config.train.n_jobs,
        allow_writing_files=False,
        verbose=False,
    )
    model.fit(
        Pool(_text(data.X_train, data.categories), data.y_train, cat_features=data.categories),
        eval_set=Pool(
            _text(data.X_valid, data.categories), data.y_valid, cat_features=data.categories
        ),
    )
    test = Pool(_text(data.X_test, data.categories), cat_features=data.categories)
    return np.asarray(model.predict_proba(test)[:, 1], dtype=float), int(model.tree_count_)


LEARNERS: dict[str, Callable[[_Data, Config], tuple[np.ndarray, int]]] = {
    "xgboost": _xgboost,
    "lightgbm": _lightgbm,
    "catboost": _catboost,
}


def reference_scores(
    fs: FeatureSet, windows: Windows, test_rows: np.ndarray, config: Config
) -> ReferenceScores:
    """Fit each configured reference learner on the evaluated model's training window (labels
    known before its validation window), early-stop it on the validation window, and score the
    ``test_rows`` of ``fs``."""
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
        out.scores[name] = score
        out.fitted.append(
            {
                "name": name,
                "trees": trees,
                "seconds": round(time.perf_counter() - started, 2),
                "train_rows": len(data.y_train),
                "columns": len(columns),
            }
        )
    return out


def best_reference(scores: dict[str, np.ndarray], y: np.ndarray) -> str | None:
    """The reference learner with the highest average precision on the labelled rows of ``y``
    (the strongest bar; choosing it on the test window only makes the model's claim harder)."""
    from sklearn.metrics import average_precision_score

    labelled = ~np.isnan(y)
    if not scores or not labelled.any() or np.nansum(y) == 0:
        return None
    return max(
        scores, key=lambda name: average_precision_score(y[labelled], scores[name][labelled])
    )


def for_model(
    info: ModelInfo, fs: FeatureSet, test_rows: np.ndarray, config: Config
) -> ReferenceScores:
    """`reference_scores` on the windows a model records (its `info`), or a note why not."""
    if info.role != "evaluated" or info.windows is None:
        return ReferenceScores(
            notes=["Reference learners skipped: the model records no train/valid/test windows."]
        )
    return reference_scores(fs, info.windows, test_rows, config)
