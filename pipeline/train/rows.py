"""The labelled rows of one window as the boosters take them, and the model's vocabulary (the
category levels frequent enough to keep), shared by the fit, its engines, the tuning, the family
screening and the evaluation's references (`train.fit`, `train.dask_engine`, `train.tune`,
`train.select`, `evaluate`), so that none imports another for them."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from pipeline.features.featureset import FeatureSet
from pipeline.serve.model import level_positions


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


def hit_rate_order(
    rows: WindowRows, levels: dict[str, list[str]], prior: float
) -> dict[str, list[str]]:
    """``levels`` of each category column sorted by their hit rate in ``rows`` (the training
    window, weighted as the trees weigh it), shrunk towards the window's rate by ``prior``
    declarations; ties by level name, so the order is reproducible.

    LightGBM sorts a category's levels by their smoothed gradient at every node, which XGBoost
    cannot be told to do; sorted once here, a category reaches the trees as its level's position
    (`serve.model.level_positions`) and a split on it groups levels of like risk. On KCS it beats
    XGBoost's partitions over every level, but not over the levels `frequent_levels` keeps, and
    trails LightGBM either way (bench/kcs_categories.py): the study measures it
    (tune.tune_category_order) rather than taking it on trust.
    """
    weight = rows.weight * rows.y.size / max(float(rows.weight.sum()), 1e-12)
    base = float(np.average(rows.y, weights=weight))
    out = {}
    for column, kept in levels.items():
        codes = rows.X[column].cat.set_categories(kept).cat.codes.to_numpy()
        seen = codes >= 0
        size = len(kept)
        hits = np.bincount(codes[seen], weights=(weight * rows.y)[seen], minlength=size)
        count = np.bincount(codes[seen], weights=weight[seen], minlength=size)
        # rounded: rates equal but for the last bits of a sum tie, and go by name
        rate = np.round((hits + prior * base) / np.maximum(count + prior, 1e-12), 12)
        names = np.asarray(kept, dtype=str)
        out[column] = [str(v) for v in names[np.lexsort((names, rate))]]
    return out


@dataclass(frozen=True)
class LevelRule:
    """How a fit chooses its vocabulary: the levels met ``min_count`` times in its training
    window, as XGBoost categories or (``by_hit_rate``) sorted by their hit rate shrunk by
    ``prior`` declarations and taken as positions (train.category_order hit_rate)."""

    min_count: int
    by_hit_rate: bool = False
    prior: float = 0.0

    def vocabulary(self, train: WindowRows) -> tuple[dict[str, list[str]], tuple[str, ...]]:
        """The levels of each category column and the columns taken as positions."""
        levels = frequent_levels(train.X, self.min_count)
        if not self.by_hit_rate:
            return levels, ()
        return hit_rate_order(train, levels, self.prior), tuple(levels)


def cast_levels(
    X: pd.DataFrame, levels: dict[str, list[str]], ordered: Collection[str] = ()
) -> pd.DataFrame:
    """``X`` with each category column cast to ``levels`` (other levels become missing), and
    each ``ordered`` one as its level's position (`serve.model.level_positions`)."""
    cast = {c: X[c].cat.set_categories(kept) for c, kept in levels.items() if c in X.columns}
    return level_positions(X.assign(**cast) if cast else X, ordered)


def with_levels(
    rows: WindowRows, levels: dict[str, list[str]], ordered: Collection[str] = ()
) -> WindowRows:
    """``rows`` with each category column cast to ``levels`` (other levels become missing), and
    each ``ordered`` one as its level's position."""
    return replace(rows, X=cast_levels(rows.X, levels, ordered))


def window_rows(fs: FeatureSet, mask: np.ndarray) -> WindowRows:
    """The rows of `fs` selected by `mask` (labelled rows only are expected)."""
    keep = np.asarray(mask, dtype=bool)
    return WindowRows(
        X=fs.X.loc[keep].reset_index(drop=True),
        y=fs.y.to_numpy(dtype=float)[keep],
        weight=fs.sample_weight.fillna(1.0).to_numpy(dtype=float)[keep],
        revenue=fs.revenue_recovered.to_numpy(dtype=float)[keep],
    )
