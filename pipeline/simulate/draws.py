"""Random draws the simulator's stages share: weighted picks, subsamples, a solved intercept.

Vectorised over declarations; each function consumes the generator in a fixed order, so a seed
gives the same stream whatever calls it.
"""

from __future__ import annotations

import numpy as np


def pick(rng: np.random.Generator, weights: np.ndarray, size: int | tuple[int, ...]) -> np.ndarray:
    """Draw indexes proportionally to `weights` (inverse CDF, vectorised)."""
    cumulative = np.cumsum(weights, dtype=np.float64)
    u = rng.random(size) * cumulative[-1]
    return np.minimum(np.searchsorted(cumulative, u, side="right"), len(weights) - 1)


def pick_rows(rng: np.random.Generator, weights: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """For each row of `weights`, a column drawn proportionally to that row's weights."""
    cumulative = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * totals
    picked = (cumulative <= u[:, None]).sum(axis=1)
    return np.minimum(picked, weights.shape[1] - 1)


def top_k_weighted(rng: np.random.Generator, weights: np.ndarray, k: int) -> np.ndarray:
    """k positions drawn without replacement proportionally to weights (Efraimidis-Spirakis)."""
    k = min(k, int((weights > 0).sum()))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    keys = np.full(len(weights), -np.inf)
    positive = weights > 0
    keys[positive] = np.log(rng.random(int(positive.sum()))) / weights[positive]
    return np.argpartition(-keys, k - 1)[:k]


def sample_rows(rng: np.random.Generator, n: int, size: int = 200_000) -> np.ndarray:
    """Row positions of a subsample, for quantiles that need not see every row."""
    return rng.integers(0, n, min(n, size))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def solve_intercept(score: np.ndarray, target: float) -> float:
    """Intercept b with mean(sigmoid(b + score)) = target (bisection on the given sample)."""
    if target <= 0:
        return -50.0
    low, high = -30.0, 30.0
    for _ in range(60):
        middle = (low + high) / 2
        if sigmoid(middle + score).mean() < target:
            low = middle
        else:
            high = middle
    return (low + high) / 2
