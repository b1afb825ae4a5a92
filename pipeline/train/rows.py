"""The labelled rows of one window as the boosters take them, and the model's vocabulary (the
category levels frequent enough to keep), shared by the fit, its engines, the tuning, the family
screening and the evaluation's references (`train.fit`, `train.dask_engine`, `train.tune`,
`train.select`, `evaluate`), so that none imports another for them."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from pipeline.features.featureset import FeatureSet


@dataclass
class WindowRows:
    """Model inputs of one window's labelled declarations."""

    X: pd.DataFrame
    y: np.ndarray
    weight: np.ndarray
    revenue: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


def frequent_levels(X: pd.DataFrame, min_count: int) -> dict[str, list[str]]:
    """The levels of each category column seen at least ``min_count`` times in ``X`` (the
    training rows): the model's vocabulary. Rarer levels reach the trees as missing, as unseen
    ones do at serving time, the way LightGBM pools its rarest categories: a level met a handful
    of times cannot support a split of its own, and XGBoost sorts every level at every node."""
    out = {}
    for column in X.columns:
        values = X[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            counts = np.bincount(
                values.cat.codes.to_numpy() + 1, minlength=len(values.cat.categories) + 1
            )
            kept = counts[1:] >= max(min_count, 1)
            if not kept.any() and len(kept):
                # XGBoost refuses a category column without a level: a column no level of which
                # is frequent keeps its most frequent one (the rest reach the trees as missing).
                kept[int(np.argmax(counts[1:]))] = True
            out[str(column)] = [str(v) for v in values.cat.categories[kept]]
    return out


def cast_levels(X: pd.DataFrame, levels: dict[str, list[str]]) -> pd.DataFrame:
    """``X`` with each category column cast to ``levels`` (other levels become missing)."""
    cast = {c: X[c].cat.set_categories(kept) for c, kept in levels.items() if c in X.columns}
    return X.assign(**cast) if cast else X


def with_levels(rows: WindowRows, levels: dict[str, list[str]]) -> WindowRows:
    """``rows`` with each category column cast to ``levels`` (other levels become missing)."""
    return replace(rows, X=cast_levels(rows.X, levels))


def window_rows(fs: FeatureSet, mask: np.ndarray) -> WindowRows:
    """The rows of `fs` selected by `mask` (labelled rows only are expected)."""
    keep = np.asarray(mask, dtype=bool)
    return WindowRows(
        X=fs.X.loc[keep].reset_index(drop=True),
        y=fs.y.to_numpy(dtype=float)[keep],
        weight=fs.sample_weight.fillna(1.0).to_numpy(dtype=float)[keep],
        revenue=fs.revenue_recovered.to_numpy(dtype=float)[keep],
    )
