"""The one ranking path: what declarations are ranked by, and the one tie rule.

Every selection in the project (the export's cut-offs, the scorer, the report, the backtest,
explanations, the held-out check, the training log) ranks with these functions:

- ``ranking_score``: the score the channels cut, from the calibrated probability and the revenue
  model's E[revenue | hit]: ``probability``, ``expected_revenue`` (P x E[revenue | hit]) or
  ``blend`` (P x E[revenue | hit] ** w, `serve.revenue_weight` = w in [0, 1]: 0 is the
  probability ranking, 1 the expected-revenue ranking, a geometric mean in between).
- ``control_priority``: a tie-free priority with the same order: score, then the booster's
  margin, then position (all descending). Calibration is monotone in the margin, so a ranking by
  probability is exactly the ranking by margin: isotonic plateaus never create ties.
- ``top_count`` / ``top_mask``: the controlled set at a control rate n, the first ceil(n x N)
  declarations by score (descending, ties by position); the capacity metrics of training and
  evaluation all count over it.

Pure numpy; imports nothing from `train` or `evaluate`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

RANK_BY = ("auto", "probability", "expected_revenue", "blend")


def resolve_rank_by(has_revenue: bool, setting: str) -> str:
    """`probability`, `expected_revenue` or `blend` from the config's `serve.rank_by`.

    ``auto`` ranks by expected revenue when the model has a revenue part, else by probability.
    """
    if setting not in RANK_BY:
        raise ValueError(f"serve.rank_by={setting!r}: choose one of {RANK_BY}")
    if setting == "auto":
        return "expected_revenue" if has_revenue else "probability"
    if setting in ("expected_revenue", "blend") and not has_revenue:
        raise ValueError(f"serve.rank_by={setting}, but the model has no revenue part")
    return setting


def ranking_score(
    probability: ArrayLike,
    revenue_if_hit: ArrayLike | None,
    rank_by: str,
    revenue_weight: float = 1.0,
) -> np.ndarray:
    """The score the channels rank by (see the module's docstring); `rank_by` already resolved."""
    p = np.asarray(probability, dtype=float)
    if rank_by == "probability":
        return p
    if revenue_if_hit is None:
        raise ValueError(f"ranking by {rank_by} needs the revenue model's E[revenue | hit]")
    money = np.clip(np.asarray(revenue_if_hit, dtype=float), 0.0, None)
    if rank_by == "expected_revenue":
        return p * money
    if rank_by == "blend":
        if not 0.0 <= revenue_weight <= 1.0:
            raise ValueError(f"serve.revenue_weight must be in [0, 1], got {revenue_weight}")
        return p * np.power(money, revenue_weight)
    raise ValueError(f"unknown ranking {rank_by!r}: choose one of {RANK_BY[1:]}")


def control_priority(score: ArrayLike, margin: ArrayLike | None = None) -> np.ndarray:
    """A tie-free priority in control order: score, then margin, then position (descending).

    Missing values rank last. Returns ``-rank`` (0 is the first declaration controlled), so a
    higher value is controlled first and no two rows are equal.
    """
    s = np.asarray(score, dtype=float)
    s = np.where(np.isnan(s), -np.inf, s)
    m = np.zeros(len(s)) if margin is None else np.asarray(margin, dtype=float)
    m = np.where(np.isnan(m), -np.inf, m)
    order = np.lexsort((np.arange(len(s)), -m, -s))
    rank = np.empty(len(s), dtype=float)
    rank[order] = np.arange(len(s))
    return -rank


def top_count(n_rows: int, rate: float) -> int:
    """How many declarations a control rate allows (at least one when there are any)."""
    if not 0 < rate <= 1:
        raise ValueError(f"control rate must be in (0, 1], got {rate}")
    return min(n_rows, max(1, math.ceil(rate * n_rows))) if n_rows else 0


def top_mask(score: ArrayLike, rate: float) -> np.ndarray:
    """Boolean mask of the declarations controlled at `rate` (highest scores first)."""
    s = np.asarray(score, dtype=float)
    order = np.argsort(-s, kind="stable")
    mask = np.zeros(len(s), dtype=bool)
    mask[order[: top_count(len(s), rate)]] = True
    return mask
