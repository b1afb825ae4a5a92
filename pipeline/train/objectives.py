"""Capacity metrics: what the top n % of a ranking catches.

The tuning objective and the reviewer's metrics share these functions (evaluate imports train,
never the reverse). The controlled set is `serve.ranking.top_mask`: by score, descending, ties
broken by position, the first ceil(n x N) declarations at rate n. Callers pass a tie-free score
(`serve.ranking.control_priority`: score, then the booster's margin), so the position rule never
decides.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score

from pipeline.serve.ranking import top_mask


def precision_at(y: ArrayLike, score: ArrayLike, rate: float) -> float:
    """Hit rate among the controlled top `rate` share."""
    hits = np.asarray(y, dtype=float)
    if len(hits) == 0:
        return float("nan")
    return float(hits[top_mask(score, rate)].mean())


def recall_at(y: ArrayLike, score: ArrayLike, rate: float) -> float:
    """Share of all hits that fall in the controlled top `rate` share."""
    hits = np.asarray(y, dtype=float)
    total = hits.sum()
    return float(hits[top_mask(score, rate)].sum() / total) if total > 0 else float("nan")


def revenue_at(revenue: ArrayLike, score: ArrayLike, rate: float) -> float:
    """Share of all recoverable revenue that falls in the controlled top `rate` share."""
    money = np.nan_to_num(np.asarray(revenue, dtype=float), nan=0.0)
    total = money.sum()
    return float(money[top_mask(score, rate)].sum() / total) if total > 0 else float("nan")


def average_precision_replicates(
    y: ArrayLike, score: ArrayLike, replicates: int, seed: int
) -> tuple[float, np.ndarray]:
    """Average precision of a ranking and of ``replicates`` bootstrap resamples of its rows.

    The resamples depend only on the number of rows and ``seed``, so two rankings of the same
    rows get the same draws (a paired bootstrap). Ties are broken by position, as everywhere.
    """
    hits = np.asarray(y, dtype=float)
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))

    def ap(rows: np.ndarray) -> np.ndarray:  # rows: (b, n) indices, in any order
        ranked = hits[order[np.sort(rank[rows], axis=1)]]
        found = ranked.sum(axis=1)
        precision = np.cumsum(ranked, axis=1) / np.arange(1, ranked.shape[1] + 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(found > 0, (ranked * precision).sum(axis=1) / found, np.nan)

    point = float(ap(np.arange(len(hits))[None, :])[0])
    if not replicates:
        return point, np.empty(0)
    rng = np.random.default_rng(seed)
    return point, ap(rng.integers(0, len(hits), size=(replicates, len(hits))))


def objective_value(
    objective: str, y: np.ndarray, score: np.ndarray, revenue: np.ndarray, at_rate: float
) -> float:
    """The tuning objective on one window: average precision, precision@n% or revenue@n%."""
    if objective == "average_precision":
        return float(average_precision_score(y, score)) if y.sum() > 0 else 0.0
    if objective == "precision_at":
        return precision_at(y, score, at_rate)
    if objective == "revenue_at":
        return revenue_at(np.where(y == 1, revenue, 0.0), score, at_rate)
    raise ValueError(f"unknown objective {objective!r}")
