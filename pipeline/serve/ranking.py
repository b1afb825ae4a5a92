"""The one ranking path: how a model ranks declarations for control, and the one tie rule.

Every selection in the project (the export's cut-offs, the scorer, the report, the backtest,
explanations, the held-out check) ranks with `rank` (the training log's metrics with the same
tie rule, `control_priority`): the model's matrix prepared once
(`prepare`), the booster's margin, the calibrated probability, the revenue model's
E[revenue | hit], and from them

- ``ranking_score``: the score the channels cut: ``probability``, ``expected_revenue``
  (P x E[revenue | hit]) or ``blend`` (P x E[revenue | hit] ** w, `serve.revenue_weight` = w in
  [0, 1]: 0 is the probability ranking, 1 the expected-revenue ranking, a geometric mean between);
- ``control_priority``: a tie-free priority with the same order: score, then the booster's
  margin, then position (all descending). Calibration is monotone in the margin, so a ranking by
  probability is exactly the ranking by margin: isotonic plateaus never create ties.
- ``top_count`` / ``top_mask``: the controlled set at a control rate n, the first ceil(n x N)
  declarations by score (descending, ties by position); the capacity metrics of training and
  evaluation all count over it.

A ranking by expected revenue (or the blend) needs the model's revenue part: without one `rank`
raises, unless the caller asks for the explicit fallback to probability (the backtest, whose
retrainings on few revenue hits may lack one), and the `Ranking` says it fell back.

Imports nothing from `train` or `evaluate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from numpy.typing import ArrayLike

from pipeline.plan import AUTO, RANK_BY, RankingPolicy, resolve_rank_by
from pipeline.serve.matrix import codes_matrix, same_levels, training_dtypes
from pipeline.serve.model import TargetingModel


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


def prepare(model: TargetingModel, X: pd.DataFrame) -> pd.DataFrame:
    """`TargetingModel.prepare` (model columns, categories cast to the training levels), faster.

    A category column is re-coded through its categories (a few thousand levels) instead of
    converting every row to text; a level unseen in training becomes missing, as in `prepare`.
    Columns of another dtype go through `TargetingModel.prepare`'s conversion.
    """
    frame = X[model.feature_names]
    cast: dict[str, pd.Categorical] = {}
    dtypes = training_dtypes(model.booster, model.categories)  # built once per model
    for column, levels in model.categories.items():
        values = frame[column]
        if not isinstance(values.dtype, pd.CategoricalDtype):
            cast[column] = pd.Categorical(values.astype("string").astype(object), categories=levels)
            continue
        dtype = dtypes[column]
        names = values.cat.categories.astype(str)
        if names.equals(dtype.categories) and values.cat.categories.dtype == object:
            continue  # already on the training levels
        recode = dtype.categories.get_indexer(names)
        codes = values.cat.codes.to_numpy()
        mapped = np.where(codes >= 0, recode[codes], -1)
        cast[column] = pd.Categorical.from_codes(mapped, dtype=dtype)
    return frame.assign(**cast) if cast else frame


@dataclass(frozen=True)
class Ranking:
    """How a model ranks a batch of declarations, row-aligned with them.

    `rank_by` is the resolved ranking (``probability``, ``expected_revenue`` or ``blend``);
    `fell_back` says a ranking by revenue was asked for but the model has no revenue part, so
    it ranks by probability (only with `rank`'s explicit fallback).
    """

    margin: np.ndarray
    probability: np.ndarray
    revenue_if_hit: np.ndarray | None
    score: np.ndarray
    rank_by: str
    fell_back: bool = False

    @cached_property
    def expected_revenue(self) -> np.ndarray:
        """P(hit) x E[revenue | hit]; NaN when the model has no revenue part."""
        if self.revenue_if_hit is None:
            return np.full(len(self.probability), np.nan)
        return self.probability * self.revenue_if_hit

    @cached_property
    def priority(self) -> np.ndarray:
        """Tie-free control priority (`control_priority`: score, then margin, then position)."""
        return control_priority(self.score, self.margin)

    def frame(self, index: pd.Index | None = None) -> pd.DataFrame:
        """Margin, probability, expected revenue and score as columns (the export's reference
        window is scored this way)."""
        return pd.DataFrame(
            {
                "margin": self.margin,
                "probability": self.probability,
                "expected_revenue": self.expected_revenue,
                "score": self.score,
            },
            index=index,
        )


def rank(
    model: TargetingModel,
    X: pd.DataFrame,
    ranking: RankingPolicy = AUTO,
    *,
    fallback_to_probability: bool = False,
) -> Ranking:
    """Rank the declarations of `X` as the selectivity system would.

    `ranking`: the run plan's ranking policy (`serve.rank_by`, ``auto`` resolved here, see
    `resolve_rank_by`, with the blend's weight). The matrix is prepared once and both boosters
    predict on it in place. Without a revenue part, a ranking by revenue raises, unless
    `fallback_to_probability` (the backtest's retrainings), which ranks by probability instead
    and sets `Ranking.fell_back`.
    """
    has_revenue = model.revenue_booster is not None
    rank_by = ranking.rank_by
    fell_back = (
        fallback_to_probability and not has_revenue and rank_by in ("expected_revenue", "blend")
    )
    resolved = resolve_rank_by(has_revenue, "probability" if fell_back else rank_by)
    prepared = prepare(model, X)
    # The category codes as a matrix when they are the boosters' own (`serve.matrix`): XGBoost
    # re-codes a frame's categories on every call, which cost more than a one-row prediction.
    codes = codes_matrix(prepared) if same_levels(model.booster, model.categories) else None

    def given(booster: xgb.Booster) -> Any:
        same = codes is not None and same_levels(booster, model.categories)
        return codes if same else prepared

    margin = np.asarray(
        model.booster.inplace_predict(given(model.booster), predict_type="margin"), dtype=float
    ).reshape(-1)
    probability = model.calibration.apply(margin)
    revenue: np.ndarray | None = None
    if model.revenue_booster is not None:
        revenue = np.asarray(
            model.revenue_booster.inplace_predict(given(model.revenue_booster)), dtype=float
        )
        revenue = np.clip(revenue.reshape(-1), 0.0, None)
    score = ranking_score(probability, revenue, resolved, ranking.revenue_weight)
    return Ranking(margin, probability, revenue, score, resolved, fell_back)
