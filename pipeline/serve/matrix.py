"""The model's inputs as the numbers XGBoost reads, without its per-call pandas conversion.

Given a pandas frame with category columns, XGBoost (3.1 and later) checks and re-codes every
category column against the categories it stored at training, on every call: for a one-row
request that cost more than the prediction itself (some 5 ms per booster on one thread, five
times that with its default threads). `ranking.prepare` has already cast each category column
to the training levels (`TargetingModel.categories`), so its codes are the ones the booster was
trained on: a float matrix of the codes (missing and unseen levels NaN, as XGBoost reads code -1)
and the numeric columns gives the same predictions, and is used when the booster's stored
categories are those levels (else the frame goes to XGBoost as it is).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

# Booster -> the category levels it stored at training, per column (read once per booster);
# None when this XGBoost cannot say.
_STORED: weakref.WeakKeyDictionary[xgb.Booster, dict[str, list[Any]] | None] = (
    weakref.WeakKeyDictionary()
)


def stored_levels(booster: xgb.Booster) -> dict[str, list[Any]] | None:
    """The levels of each category column `booster` stored at training (read once)."""
    if booster not in _STORED:
        try:
            stored = booster.get_categories(export_to_arrow=True).to_arrow() or []
            _STORED[booster] = {
                str(name): levels.to_pylist() for name, levels in stored if levels is not None
            }
        except (AttributeError, TypeError, ValueError, xgb.core.XGBoostError):
            _STORED[booster] = None  # an XGBoost that cannot say: the frame goes as it is
    return _STORED[booster]


def same_levels(booster: xgb.Booster, categories: dict[str, list[str]]) -> bool:
    """Whether category codes on `categories` are the codes `booster` learned from: every
    category list it stored equals the model's (a booster storing none reads codes as given)."""
    stored = stored_levels(booster)
    return stored is not None and all(
        levels == list(categories.get(name, [])) for name, levels in stored.items()
    )


# Booster -> the categories it was given and their dtypes (each keeps its hash table).
_DTYPES: weakref.WeakKeyDictionary[
    xgb.Booster, tuple[dict[str, list[str]], dict[str, pd.CategoricalDtype]]
] = weakref.WeakKeyDictionary()


def training_dtypes(
    booster: xgb.Booster, categories: dict[str, list[str]]
) -> dict[str, pd.CategoricalDtype]:
    """The category dtype of each column's training levels, built once per booster: a dtype
    built per request re-hashed every level (thousands of ids) of every column."""
    found = _DTYPES.get(booster)
    if found is None or found[0] is not categories:
        dtypes = {
            column: pd.CategoricalDtype(pd.Index(levels, dtype=object), ordered=False)
            for column, levels in categories.items()
        }
        found = (categories, dtypes)
        _DTYPES[booster] = found
    return found[1]


def codes_matrix(prepared: pd.DataFrame) -> np.ndarray:
    """`prepared`'s columns as float32: numbers as they are, categories as their codes (NaN for
    a missing or unseen level)."""
    out = np.empty((len(prepared), prepared.shape[1]), dtype=np.float32)
    for j, (_, values) in enumerate(prepared.items()):
        if isinstance(values.dtype, pd.CategoricalDtype):
            codes = values.cat.codes.to_numpy()
            out[:, j] = np.where(codes >= 0, codes, np.nan)
        else:
            out[:, j] = values.to_numpy(dtype=np.float32, na_value=np.nan)
    return out


def booster_input(
    booster: xgb.Booster, prepared: pd.DataFrame, categories: dict[str, list[str]]
) -> Any:
    """What to hand `booster.inplace_predict` for `prepared`: the codes matrix when the codes
    are the booster's own, else the frame."""
    return codes_matrix(prepared) if same_levels(booster, categories) else prepared


def booster_dmatrix(
    booster: xgb.Booster, prepared: pd.DataFrame, categories: dict[str, list[str]]
) -> xgb.DMatrix:
    """A DMatrix of `prepared` (for contributions), from the codes matrix when it can be."""
    if not same_levels(booster, categories):
        return xgb.DMatrix(prepared, enable_categorical=True)
    types = [
        "c" if isinstance(dtype, pd.CategoricalDtype) else "float" for dtype in prepared.dtypes
    ]
    return xgb.DMatrix(
        codes_matrix(prepared),
        feature_names=[str(c) for c in prepared.columns],
        feature_types=types,
        enable_categorical=True,
    )
