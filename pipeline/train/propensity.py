"""The selection correction: what each inspected declaration stands for. Recorded selection
probabilities, a selection model where none was recorded, and self-normalised inverse-propensity
weights with their effective sizes."""

from __future__ import annotations

import numpy as np
import xgboost as xgb

from pipeline.config import Config
from pipeline.features.featureset import FeatureSet
from pipeline.timeaxis import Window
from pipeline.train.rows import WindowRows


def recorded_propensity(fs: FeatureSet) -> np.ndarray:
    """The recorded selection probability of each row in (0, 1] (`FeatureSet.probability`: a
    draw at p = 1 is 1, not unknown), NaN where none was recorded."""
    p = fs.probability.to_numpy(dtype=float)
    return np.where((p > 0) & (p <= 1), p, np.nan)


def fit_selection_model(fs: FeatureSet, window: Window, config: Config) -> xgb.Booster:
    """P(controlled | features): a small XGBoost fitted on every declaration lodged in `window`
    (the validation window in `fit`), controlled or not, for rows whose selection probability
    is unknown."""
    inside = window.contains(fs.lodged_at)
    controlled = fs.y.notna().to_numpy()[inside].astype(float)
    if controlled.sum() == 0 or controlled.sum() == len(controlled):
        raise ValueError(
            f"{window}: {int(controlled.sum())} of {len(controlled)} declarations controlled; "
            "a selection model needs controlled and uncontrolled ones (train.selection_correction)"
        )
    params = {
        "objective": "binary:logistic",
        "max_depth": 3,
        "learning_rate": 0.2,
        "min_child_weight": 5.0,
        "tree_method": "hist",
        "max_bin": 64,
        "seed": config.seed,
        "nthread": config.compute.threads,
        "device": config.train.device,
    }
    matrix = xgb.DMatrix(fs.X.loc[inside], label=controlled, enable_categorical=True)
    return xgb.train(params, matrix, num_boost_round=40)


def selection_propensity(
    fs: FeatureSet, mask: np.ndarray, selection: xgb.Booster | None, floor: float
) -> np.ndarray:
    """Selection probability of the rows in `mask`: the recorded one where known, else the
    selection model's (1 without a model), clipped at `floor`."""
    keep = np.asarray(mask, dtype=bool)
    recorded = recorded_propensity(fs)[keep]
    estimated = np.ones(int(keep.sum()))
    unknown = np.isnan(recorded)
    if selection is not None and unknown.any():
        X = fs.X.iloc[np.flatnonzero(keep)[unknown]]  # one copy of the rows, not two
        estimated[unknown] = np.asarray(selection.inplace_predict(X), dtype=float)
    return np.clip(np.where(unknown, estimated, recorded), floor, 1.0)


def ipw_weights(propensity: np.ndarray) -> np.ndarray:
    """Self-normalised inverse-propensity weights (mean 1 over the rows)."""
    weight = 1.0 / np.asarray(propensity, dtype=float)
    return weight / weight.mean() if len(weight) else weight


def effective_rows(weight: np.ndarray) -> float:
    """Kish's effective sample size of weighted rows: (sum w)^2 / sum w^2."""
    return float(weight.sum() ** 2 / (weight**2).sum()) if len(weight) else 0.0


def effective_hits(y: np.ndarray, weight: np.ndarray | None) -> float:
    """Hits an unweighted sample would need to carry the same evidence: Kish's effective rows
    times the weighted hit rate (the plain hit count without weights)."""
    y = np.asarray(y, dtype=float)
    if weight is None or len(y) == 0:
        return float(y.sum())
    w = np.asarray(weight, dtype=float)
    return effective_rows(w) * float((w * y).sum() / w.sum())


def weigh_by_selection(
    fs: FeatureSet,
    masks: dict[str, np.ndarray],
    rows: dict[str, WindowRows],
    selection_window: Window,
    config: Config,
) -> tuple[dict[str, WindowRows], str]:
    """Each window's rows weighted by self-normalised inverse selection probability: the recorded
    probability where known, else a selection model fitted on every declaration of
    `selection_window` (a refit calls this with its own windows). Returns the rows and a note."""
    recorded = recorded_propensity(fs)
    needs_model = any(
        bool(np.isnan(recorded[np.asarray(m, dtype=bool)]).any()) for m in masks.values()
    )
    # Every declaration of the training window controlled (KCS): nothing was selected, p = 1.
    everyone = bool(fs.y.notna().to_numpy()[selection_window.contains(fs.lodged_at)].all())
    selection = (
        fit_selection_model(fs, selection_window, config) if needs_model and not everyone else None
    )
    out: dict[str, WindowRows] = {}
    effective: dict[str, float] = {}
    for name, part in rows.items():
        propensity = selection_propensity(fs, masks[name], selection, config.train.propensity_floor)
        weight = ipw_weights(propensity)
        out[name] = WindowRows(part.X, part.y, weight, part.revenue)
        effective[name] = effective_rows(weight)
    source = (
        "recorded where known, else a selection model"
        if selection
        else "every declaration controlled: weights 1"
        if everyone
        else "recorded"
    )
    note = (
        f"self-normalised IPW ({source}; floor {config.train.propensity_floor:g}); effective "
        + ", ".join(f"{k} {v:,.0f} of {len(rows[k]):,}" for k, v in effective.items())
    )
    return out, note
