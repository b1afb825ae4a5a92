"""The selection correction: what each inspected declaration stands for. Recorded selection
probabilities, a selection model where none was recorded, and self-normalised inverse-propensity
weights with their effective sizes."""

from __future__ import annotations

import numpy as np
import xgboost as xgb

from pipeline.compute import fit_threads
from pipeline.config import Config
from pipeline.features.featureset import FeatureSet
from pipeline.timeaxis import Window
from pipeline.train.rows import WindowRows


def recorded_propensity(fs: FeatureSet) -> np.ndarray:
    """The recorded selection probability of each row in (0, 1] (`FeatureSet.probability`: a
    draw at p = 1 is 1, not unknown), NaN where none was recorded."""
    p = fs.probability.to_numpy(dtype=float)
    return np.where((p > 0) & (p <= 1), p, np.nan)


SELECTION_ROUNDS = 40


def selection_params(config: Config) -> dict[str, object]:
    """The selection model's XGBoost parameters: a small classifier of P(controlled)."""
    return {
        "objective": "binary:logistic",
        "max_depth": 3,
        "learning_rate": 0.2,
        "min_child_weight": 5.0,
        "tree_method": "hist",
        "max_bin": 64,
        "seed": config.seed,
        "nthread": fit_threads(config.compute),
        "device": config.train.device,
    }


def selection_matrix(fs: FeatureSet, window: Window) -> xgb.DMatrix:
    """Every declaration lodged in `window`, controlled or not, labelled by whether it was."""
    inside = window.contains(fs.lodged_at)
    controlled = fs.y.notna().to_numpy()[inside].astype(float)
    if controlled.sum() == 0 or controlled.sum() == len(controlled):
        raise ValueError(
            f"{window}: {int(controlled.sum())} of {len(controlled)} declarations controlled; "
            "a selection model needs controlled and uncontrolled ones (train.selection_correction)"
        )
    return xgb.DMatrix(fs.X.loc[inside], label=controlled, enable_categorical=True)


def fit_selection_model(fs: FeatureSet, window: Window, config: Config) -> xgb.Booster:
    """P(controlled | features): a small XGBoost fitted on every declaration lodged in `window`
    (the validation window in `fit`), controlled or not, for rows whose selection probability
    is unknown."""
    return xgb.train(
        selection_params(config), selection_matrix(fs, window), num_boost_round=SELECTION_ROUNDS
    )


def needs_selection_model(
    fs: FeatureSet, masks: dict[str, np.ndarray], selection_window: Window
) -> bool:
    """Whether `weigh_by_selection` fits a selection model: some row of `masks` has no recorded
    probability and `selection_window` has uncontrolled declarations (where every declaration
    was controlled, as in KCS, nothing was selected: p = 1)."""
    recorded = recorded_propensity(fs)
    unknown = any(bool(np.isnan(recorded[np.asarray(m, dtype=bool)]).any()) for m in masks.values())
    return unknown and not everyone_controlled(fs, selection_window)


def everyone_controlled(fs: FeatureSet, window: Window) -> bool:
    """Whether every declaration lodged in `window` was controlled."""
    return bool(fs.y.notna().to_numpy()[window.contains(fs.lodged_at)].all())


def selection_propensity(
    fs: FeatureSet, mask: np.ndarray, selection: xgb.Booster | None, floor: float
) -> np.ndarray:
    """Selection probability of the rows in `mask`: the recorded one where known, else the
    selection model's (1 without a model), clipped at `floor`."""
    return selection_propensities(fs, {"rows": mask}, selection, floor)["rows"]


def selection_propensities(
    fs: FeatureSet, masks: dict[str, np.ndarray], selection: xgb.Booster | None, floor: float
) -> dict[str, np.ndarray]:
    """`selection_propensity` of the rows of each mask. The selection model predicts once, over
    every row of any mask whose probability was not recorded: XGBoost converts every column of
    a frame and matches its category levels per call, so one call instead of one per window
    (each row's prediction is its own, whatever rows it is predicted with)."""
    recorded = recorded_propensity(fs)
    estimated = np.ones(len(recorded))
    if selection is not None:
        wanted = np.zeros(len(recorded), dtype=bool)
        for mask in masks.values():
            wanted |= np.asarray(mask, dtype=bool)
        unknown = np.flatnonzero(wanted & np.isnan(recorded))
        if len(unknown):
            X = fs.X.iloc[unknown]  # one copy of the rows, not two
            estimated[unknown] = np.asarray(selection.inplace_predict(X), dtype=float)
    propensity = np.clip(np.where(np.isnan(recorded), estimated, recorded), floor, 1.0)
    return {name: propensity[np.asarray(mask, dtype=bool)] for name, mask in masks.items()}


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
    # Every declaration of the training window controlled (KCS): nothing was selected, p = 1.
    everyone = everyone_controlled(fs, selection_window)
    selection = (
        fit_selection_model(fs, selection_window, config)
        if needs_selection_model(fs, masks, selection_window)
        else None
    )
    propensities = selection_propensities(fs, masks, selection, config.train.propensity_floor)
    out: dict[str, WindowRows] = {}
    effective: dict[str, float] = {}
    for name, part in rows.items():
        weight = ipw_weights(propensities[name])
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
