"""What the model would catch among *all* declarations, estimated from the labels we have.

Labels exist only for controlled declarations; the random stratum (declarations drawn with a
recorded selection probability) is the one unbiased sample of the whole flow. Two estimators of
precision and recall at n % of a ranking over every declaration of a window:

- **Self-normalised IPW** (Hajek): the random stratum's rows, each weighted by the inverse of its
  recorded selection probability. Precision@n = weighted hit rate of the stratum rows inside the
  controlled top n %; recall@n = weighted hits inside / weighted hits overall. Intervals are
  exact for small counts: Clopper-Pearson on the effective counts (Kish's effective sample size;
  with one selection probability, as in a random draw at a fixed rate, the counts themselves).
- **Doubly robust** (augmented IPW): the model's own calibrated probability as the outcome
  model, corrected by the stratum's weighted residuals: mean(p over the set) + weighted mean of
  (hit - p) over its stratum rows. Unbiased when either the probability is right or the
  weights are; its interval is the residual's normal interval (Wilson-like clip to [0, 1]).

Below `min_rows` stratum rows in a cell the estimate is not given: the verdict says "too few to
judge" with the count, rather than a number that means nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import beta, norm

from pipeline.serve.ranking import top_mask

ESTIMATORS = ("ipw", "dr")
COLUMNS = (
    "estimator",
    "rate",
    "metric",
    "value",
    "low",
    "high",
    "stratum_rows",
    "stratum_hits",
    "verdict",
)


def clopper_pearson(hits: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval for `hits` of `n` (effective counts may be fractional)."""
    if n <= 0:
        return float("nan"), float("nan")
    alpha = 1.0 - level
    low = 0.0 if hits <= 0 else float(beta.ppf(alpha / 2, hits, n - hits + 1))
    high = 1.0 if hits >= n else float(beta.ppf(1 - alpha / 2, hits + 1, n - hits))
    return low, high


def effective(weight: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Kish's effective rows and the effective hits (weighted hit rate x effective rows)."""
    if len(weight) == 0 or weight.sum() <= 0:
        return 0.0, 0.0
    n = float(weight.sum() ** 2 / (weight**2).sum())
    return n, n * float((weight * y).sum() / weight.sum())


def _ipw_cell(
    w: np.ndarray, y: np.ndarray, inside: np.ndarray, level: float
) -> dict[str, tuple[float, float, float]]:
    """IPW precision and recall of one controlled set, with Clopper-Pearson intervals."""
    out: dict[str, tuple[float, float, float]] = {}
    n_in, hits_in = effective(w[inside], y[inside])
    precision = float((w * y)[inside].sum() / w[inside].sum()) if inside.any() else np.nan
    out["precision"] = (precision, *clopper_pearson(hits_in, n_in, level))
    hit_rows = y == 1
    total = float((w * y).sum())
    recall = float((w * y)[inside].sum() / total) if total > 0 else np.nan
    # Among the stratum's hits: the share that falls inside (binomial in the effective hits).
    n_hits, caught = effective(w[hit_rows], inside[hit_rows].astype(float))
    out["recall"] = (recall, *clopper_pearson(caught, n_hits, level))
    return out


class _Weighted(NamedTuple):
    """The stratum's rows: inverse-propensity weights, outcomes and the model's probability."""

    w: np.ndarray
    y: np.ndarray
    p: np.ndarray


def _dr_cell(
    stratum: _Weighted,
    p_all: np.ndarray,
    chosen: np.ndarray,
    inside: np.ndarray,
    level: float,
) -> dict[str, tuple[float, float, float]]:
    """Doubly robust precision and recall of one controlled set (`chosen` of every declaration,
    `inside` of the stratum's: model probability + weighted residuals of the stratum), with
    normal intervals of the residual term."""
    w, y, p_stratum = stratum
    z = float(norm.ppf(0.5 + level / 2))

    def corrected(mask_all: np.ndarray, mask_stratum: np.ndarray) -> tuple[float, float]:
        base = float(p_all[mask_all].mean()) if mask_all.any() else np.nan
        if not mask_stratum.any():
            return base, np.nan
        ws, r = w[mask_stratum], (y - p_stratum)[mask_stratum]
        shift = float((ws * r).sum() / ws.sum())
        n_eff, _ = effective(ws, r)
        spread = float(np.sqrt((ws * (r - shift) ** 2).sum() / ws.sum()))
        return base + shift, spread / np.sqrt(max(n_eff, 1.0))

    out: dict[str, tuple[float, float, float]] = {}
    value, se = corrected(chosen, inside)
    out["precision"] = (value, max(0.0, value - z * se), min(1.0, value + z * se))
    everyone, se_all = corrected(np.ones(len(p_all), dtype=bool), np.ones(len(y), dtype=bool))
    share = chosen.mean()
    recall = value * share / everyone if everyone > 0 else np.nan
    rel = np.sqrt((se / value) ** 2 + (se_all / everyone) ** 2) if value > 0 else np.nan
    out["recall"] = (
        recall,
        max(0.0, recall * (1 - z * rel)),
        min(1.0, recall * (1 + z * rel)),
    )
    return out


@dataclass(frozen=True)
class Stratum:
    """The random stratum of a window: `rows`, True for declarations drawn at random with a
    known outcome; the outcome `y` (1 hit, 0 none) and the recorded selection `propensity` of
    every declaration, of which only the stratum's are read."""

    rows: ArrayLike
    y: ArrayLike
    propensity: ArrayLike


def estimate_at_rates(
    priority: ArrayLike,
    stratum: Stratum,
    rates: Sequence[float],
    *,
    probability: ArrayLike | None = None,
    min_rows: int = 30,
    level: float = 0.95,
) -> pd.DataFrame:
    """IPW (and, with `probability`, doubly robust) precision and recall at each rate.

    Args:
        priority: tie-free control priority of every declaration of the window (higher first).
        stratum: the random stratum (`Stratum`).
        rates: control rates n.
        probability: the model's calibrated P(hit) of every declaration (doubly robust).
        min_rows: fewest stratum rows inside the controlled set to give an estimate.

    Returns:
        Tidy frame (`COLUMNS`): a NaN value with verdict "too few to judge (k stratum rows, need
        min_rows)" where the stratum is too thin.
    """
    score = np.asarray(priority, dtype=float)
    in_stratum = np.asarray(stratum.rows, dtype=bool)
    labels = np.asarray(stratum.y, dtype=float)[in_stratum]
    if np.isnan(labels).any():
        raise ValueError("estimate_at_rates: a stratum row has no outcome; pass labelled rows")
    pi = np.asarray(stratum.propensity, dtype=float)[in_stratum]
    if not ((pi > 0) & (pi <= 1)).all():
        raise ValueError(
            "estimate_at_rates: a stratum row's selection probability is not in (0, 1]"
        )
    w = 1.0 / pi
    p_all = None if probability is None else np.asarray(probability, dtype=float)
    rows: list[dict[str, object]] = []
    for rate in rates:
        chosen = top_mask(score, rate)
        inside = chosen[in_stratum]
        cells = {"ipw": _ipw_cell(w, labels, inside, level)}
        if p_all is not None:
            weighted = _Weighted(w, labels, p_all[in_stratum])
            cells["dr"] = _dr_cell(weighted, p_all, chosen, inside, level)
        count, hits = int(inside.sum()), int(labels[inside].sum())
        enough = count >= min_rows
        verdict = "" if enough else f"too few to judge ({count} stratum rows, need {min_rows})"
        for estimator, metrics in cells.items():
            for metric, (value, low, high) in metrics.items():
                rows.append(
                    {
                        "estimator": estimator,
                        "rate": float(rate),
                        "metric": metric,
                        "value": value if enough else np.nan,
                        "low": low if enough else np.nan,
                        "high": high if enough else np.nan,
                        "stratum_rows": count,
                        "stratum_hits": hits,
                        "verdict": verdict,
                    }
                )
    return pd.DataFrame(rows, columns=list(COLUMNS))
