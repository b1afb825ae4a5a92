"""The imbalance treatment of the training window: none, scale_pos_weight, undersampling,
SMOTE-NC or inverse-propensity weights, fitted on the training window only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from imblearn.over_sampling import SMOTE, SMOTENC
from imblearn.under_sampling import RandomUnderSampler

from pipeline.train.rows import WindowRows

IMBALANCE_METHODS = ("none", "scale_pos_weight", "undersample", "smotenc", "inverse_propensity")
_MISSING_LEVEL = "__missing__"


def _smotenc(rows: WindowRows, seed: int) -> WindowRows:
    """SMOTE-NC on the training window: NaN imputed inside the window first (median; a
    placeholder level for categories), synthetic rows appended; original rows kept as they were."""
    X = rows.X
    categorical = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]
    numeric = [c for c in X.columns if c not in categorical]
    filled = X.assign(
        **{c: X[c].astype(object).where(X[c].notna(), _MISSING_LEVEL) for c in categorical},
        **{
            c: X[c].astype(float).fillna(X[c].median() if X[c].notna().any() else 0.0)
            for c in numeric
        },
    )
    positives = int((rows.y == 1).sum())
    if positives < 2:
        raise ValueError(f"smotenc needs at least 2 hits in the training window, found {positives}")
    k = min(5, positives - 1)
    sampler: SMOTENC | SMOTE
    if categorical and numeric:
        sampler = SMOTENC(
            categorical_features=[X.columns.get_loc(c) for c in categorical],
            k_neighbors=k,
            random_state=seed,
        )
    elif numeric:
        sampler = SMOTE(k_neighbors=k, random_state=seed)
    else:
        raise ValueError("smotenc needs at least one numeric feature")
    resampled, y_new = sampler.fit_resample(filled, rows.y.astype(int))
    synthetic = pd.DataFrame(resampled).iloc[len(X) :].reset_index(drop=True)
    synthetic = synthetic.assign(
        **{c: pd.Categorical(synthetic[c], categories=X[c].cat.categories) for c in categorical},
        **{c: synthetic[c].astype(float) for c in numeric},
    )[list(X.columns)]
    extra = len(synthetic)
    return WindowRows(
        X=pd.concat([X, synthetic], ignore_index=True),
        y=np.concatenate([rows.y, np.asarray(y_new, dtype=float)[len(X) :]]),
        weight=np.concatenate([np.ones(len(X)), np.ones(extra)]),
        revenue=np.concatenate([rows.revenue, np.full(extra, np.nan)]),
    )


def positive_weight(y: np.ndarray) -> dict[str, float]:
    """XGBoost's scale_pos_weight for labels ``y``: non-hits per hit (1 without hits)."""
    positives = float((y == 1).sum())
    negatives = float((y == 0).sum())
    return {"scale_pos_weight": negatives / positives if positives else 1.0}


def rebalance(rows: WindowRows, method: str, seed: int) -> tuple[WindowRows, dict[str, Any]]:
    """Apply the imbalance treatment to the training window; returns rows and extra params.

    Weights are the rows' self-normalised inverse selection probabilities (`ipw_weights`) only
    for ``inverse_propensity``; every other method trains unweighted.
    """
    plain = WindowRows(rows.X, rows.y, np.ones(len(rows)), rows.revenue)
    if method == "none":
        return plain, {}
    if method == "inverse_propensity":
        return rows, {}
    if method == "scale_pos_weight":
        return plain, positive_weight(rows.y)
    if method == "undersample":
        # Sample row positions rather than the frame so that category dtypes survive untouched.
        sampler = RandomUnderSampler(random_state=seed)
        sampler.fit_resample(np.arange(len(rows)).reshape(-1, 1), rows.y.astype(int))
        keep = np.sort(sampler.sample_indices_)
        return WindowRows(
            rows.X.iloc[keep].reset_index(drop=True),
            rows.y[keep],
            np.ones(len(keep)),
            rows.revenue[keep],
        ), {}
    if method == "smotenc":
        return _smotenc(rows, seed), {}
    raise ValueError(f"unknown imbalance method {method!r}")


@dataclass(frozen=True)
class Rebalanced:
    """The training rows as boosted, the parameters with the treatment's own, the rows fitted."""

    rows: WindowRows
    params: dict[str, Any]
    fitted: int


def rebalance_step(
    train: WindowRows,
    labels: np.ndarray,
    imbalance: str,
    params: dict[str, Any],
    seed: int,
    resample: bool,
) -> Rebalanced:
    """The imbalance treatment of the training window (`rebalance`); without ``resample`` (dask
    workers read the window's weights and labels from the file) only scale_pos_weight applies,
    computed on the file's ``labels``."""
    if resample:
        rows, extra = rebalance(train, imbalance, seed)
        return Rebalanced(rows, {**params, **extra}, len(rows))
    extra = positive_weight(labels) if imbalance == "scale_pos_weight" else {}
    return Rebalanced(train, {**params, **extra}, len(labels))
