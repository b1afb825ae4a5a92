"""Fair selections for the report: every learner ranked by the same target, on the same labels,
and the trade-off between ranking by probability and by expected revenue.

- `raw_learner`: the plain XGBoost on the raw declaration columns, trained on exactly the
  model's training labels (`train.split.rows_in` of the training window), with its own revenue
  model on the same hits, so it can be ranked by probability and by expected revenue like the
  model.
- `ranked`: a learner's tie-free control priority for a ranking (`serve.ranking`).
- `tradeoff_table` / `tradeoff_figure`: precision, recall and revenue share at each control rate
  as the blend weight of `serve.rank_by=blend` runs from 0 (probability) to 1 (expected revenue).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.evaluate.metrics import align_categories
from pipeline.features.featureset import FeatureSet
from pipeline.plan import BY_PROBABILITY
from pipeline.serve.model import TargetingModel
from pipeline.serve.ranking import Ranking, control_priority, rank, ranking_score, top_count
from pipeline.timeaxis import Window
from pipeline.train.revenue import fit_revenue_model
from pipeline.train.rows import WindowRows, window_rows
from pipeline.train.split import rows_in

BLEND_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
RANKINGS = {"probability": "by probability", "expected_revenue": "by expected revenue"}


@dataclass
class LearnerScores:
    """What a learner says of each test declaration: margin, probability, E[revenue | hit]."""

    margin: np.ndarray
    probability: np.ndarray
    revenue_if_hit: np.ndarray | None

    def ranked(self, rank_by: str, revenue_weight: float = 1.0) -> np.ndarray:
        """Tie-free control priority (score of `rank_by`, ties by margin)."""
        if rank_by != "probability" and self.revenue_if_hit is None:
            rank_by = "probability"
        score = ranking_score(self.probability, self.revenue_if_hit, rank_by, revenue_weight)
        return control_priority(score, self.margin)


def raw_revenue_if_hit(
    train: WindowRows, test_X: pd.DataFrame, config: Config
) -> np.ndarray | None:
    """E[revenue | hit] on `test_X` from a Tweedie model of the training hits' revenue on the
    raw columns (`train.revenue.fit_revenue_model`): the revenue part the reference learners rank
    by expected revenue with; None when the data has no revenue."""
    if not np.isfinite(train.revenue[train.y == 1]).any():
        return None
    empty = WindowRows(train.X.iloc[:0], train.y[:0], train.weight[:0], train.revenue[:0])
    revenue_booster, _ = fit_revenue_model(train, empty, config)
    if revenue_booster is None:
        return None
    test = align_categories(train.X, test_X[list(train.X.columns)])
    return np.clip(np.asarray(revenue_booster.inplace_predict(test), dtype=float), 0.0, None)


def reference_learners(
    probabilities: Mapping[str, np.ndarray], revenue_if_hit: np.ndarray | None
) -> dict[str, LearnerScores]:
    """Reference learners' probabilities as LearnerScores (margin: their log-odds), with the
    shared raw-column revenue part."""
    out = {}
    for name, probability in probabilities.items():
        p = np.clip(np.asarray(probability, dtype=float), 1e-12, 1 - 1e-12)
        out[name] = LearnerScores(np.log(p / (1 - p)), probability, revenue_if_hit)
    return out


def training_labels(features: FeatureSet, windows: Mapping[str, Window]) -> WindowRows | None:
    """The model's own training labels: the training window's rows whose label was known when
    the validation window opened (`train.split.rows_in`, as `train.fit.fit` takes them)."""
    if "train" not in windows:
        return None
    known_by = windows["valid"].start if "valid" in windows else None
    return window_rows(features, rows_in(features, windows["train"], known_by))


def ranked_scores(ranking: Ranking) -> LearnerScores:
    """A model's margin, calibrated probability and E[revenue | hit], from its ranking."""
    return LearnerScores(ranking.margin, ranking.probability, ranking.revenue_if_hit)


def learner_scores(model: TargetingModel, X: pd.DataFrame) -> LearnerScores:
    """The model's margin, calibrated probability and E[revenue | hit] on `X` (the one ranking
    path, `serve.ranking.rank`)."""
    return ranked_scores(rank(model, X, BY_PROBABILITY))


def tradeoff_table(
    y: np.ndarray,
    money: np.ndarray | None,
    learner: LearnerScores,
    rates: Sequence[float],
    weights: Sequence[float] = BLEND_WEIGHTS,
) -> pd.DataFrame:
    """Precision, recall and revenue share at each rate for each blend weight (0: probability,
    1: expected revenue). Columns: revenue_weight, rate, precision, recall, revenue."""
    if learner.revenue_if_hit is None:
        weights = (0.0,)
    y = np.asarray(y, dtype=float)
    cash = np.zeros(len(y)) if money is None else np.nan_to_num(np.asarray(money, dtype=float))
    rows: list[dict[str, float]] = []
    for w in weights:
        order = np.argsort(-learner.ranked("blend" if w > 0 else "probability", w))
        hits, caught = np.cumsum(y[order]), np.cumsum(cash[order])
        for rate in rates:
            k = top_count(len(y), rate)
            rows.append(
                {
                    "revenue_weight": float(w),
                    "rate": float(rate),
                    "precision": hits[k - 1] / k,
                    "recall": hits[k - 1] / y.sum() if y.sum() else np.nan,
                    "revenue": caught[k - 1] / cash.sum() if cash.sum() else np.nan,
                }
            )
    return pd.DataFrame(rows)


def tradeoff_figure(table: pd.DataFrame) -> bytes:
    """Precision against revenue share as the blend weight moves, one line per control rate."""
    import io

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for rate, part in table.groupby("rate", sort=True):
        ax.plot(part["revenue"], part["precision"], marker="o", label=f"{float(rate):.0%}")
        for r in part.itertuples():
            ax.annotate(f"{r.revenue_weight:g}", (r.revenue, r.precision), fontsize=7)
    ax.set_xlabel("share of recoverable revenue caught")
    ax.set_ylabel("precision (hit rate of the controls)")
    ax.set_title("Probability (w=0) to expected revenue (w=1)")
    ax.legend(title="controls", loc="best")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def both_rankings(
    learners: Mapping[str, LearnerScores], configured: str, revenue_weight: float
) -> dict[str, np.ndarray]:
    """Each learner under the configured ranking (its plain name) and under each ranking by name
    (``"<learner> by probability"``, ``"<learner> by expected revenue"``)."""
    out: dict[str, np.ndarray] = {}
    for name, learner in learners.items():
        out[name] = learner.ranked(configured, revenue_weight)
        if learner.revenue_if_hit is None:
            continue
        for rank_by, words in RANKINGS.items():
            out[f"{name} {words}"] = learner.ranked(rank_by)
    return out
