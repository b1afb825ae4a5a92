"""The reviewer's metrics: what the top of a ranking catches, how honest the score is, and how sure
we are of it.

Pure functions of arrays and frames. Conventions shared with `train.objectives`: declarations are
controlled in score order (highest first, ties by position), and the controlled set at rate n is
the first ``ceil(n x N)`` declarations. `strict_score` turns a score with ties (isotonic
calibration makes plateaus) into a tie-free one, so every metric and every bootstrap replicate
ranks the same way.

Bootstrap intervals resample declarations with replacement, all replicates at once: a replicate is
a (B, n) matrix of row indices; mapping each index to its row's rank position and sorting the row
gives the replicate's ranking without re-sorting scores. Paired differences (champion versus
challenger) use the same index matrix for both models. Percentile intervals, 95 %.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score

from pipeline.config import RuleConfig
from pipeline.evaluate.keys import difference_name
from pipeline.serve.ranking import control_priority, top_count, top_mask

CAPACITY_METRICS = ("precision", "recall", "revenue", "precision_norm", "revenue_norm")
RANKING_METRICS = ("roc_auc", "average_precision", "brier")
TABLE_COLUMNS = ("model", "rate", "metric", "value", "low", "high")
_CELLS_PER_BLOCK = 4_000_000  # bootstrap replicates are processed in blocks of this many cells


def strict_score(score: ArrayLike, tie_break: ArrayLike | None = None) -> np.ndarray:
    """A tie-free score with the same order: score, then `tie_break`, then position (all desc.).

    The project's one tie rule (`serve.ranking.control_priority`; pass the booster's margin as
    `tie_break`). Missing scores rank last. Returns ``-rank`` (0 is the first declaration
    controlled).
    """
    return control_priority(score, tie_break)


def _rank_positions(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, rank): rows in control order, and each row's position in it."""
    order = np.argsort(-np.where(np.isnan(score), -np.inf, score), kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return order, rank


def _resample_blocks(n: int, replicates: int, seed: int) -> Iterator[np.ndarray]:
    """Index matrices (b, n) of bootstrap replicates; the identity row first is not included."""
    rng = np.random.default_rng(seed)
    per_block = max(1, _CELLS_PER_BLOCK // max(n, 1))
    done = 0
    while done < replicates:
        b = min(per_block, replicates - done)
        yield rng.integers(0, n, size=(b, n))
        done += b


def _ranked(order: np.ndarray, rank: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Rows of each replicate in control order (duplicates adjacent)."""
    return order[np.sort(rank[idx], axis=1)]


def _capacity_block(
    y_ranked: np.ndarray,
    money_ranked: np.ndarray | None,
    money_best: np.ndarray | None,
    ks: np.ndarray,
) -> dict[str, np.ndarray]:
    """Capacity metrics of ranked replicates (b, n) at counts `ks`: arrays (b, len(ks))."""
    with np.errstate(invalid="ignore", divide="ignore"):
        hits = np.cumsum(y_ranked, axis=1)[:, ks - 1]
        positives = y_ranked.sum(axis=1, keepdims=True)
        out = {
            "precision": hits / ks,
            "recall": np.where(positives > 0, hits / positives, np.nan),
            "precision_norm": np.where(positives > 0, hits / np.minimum(positives, ks), np.nan),
        }
        if money_ranked is not None and money_best is not None:
            total = money_ranked.sum(axis=1, keepdims=True)
            caught = np.cumsum(money_ranked, axis=1)[:, ks - 1]
            best = np.cumsum(money_best, axis=1)[:, ks - 1]
            out["revenue"] = np.where(total > 0, caught / total, np.nan)
            out["revenue_norm"] = np.where(best > 0, caught / best, np.nan)
    return out


def _ranking_block(y_ranked: np.ndarray) -> dict[str, np.ndarray]:
    """ROC-AUC and average precision of tie-free ranked replicates: arrays (b,)."""
    n = y_ranked.shape[1]
    positives = y_ranked.sum(axis=1)
    negatives = n - positives
    below = negatives[:, None] - np.cumsum(1.0 - y_ranked, axis=1)  # negatives ranked lower
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (y_ranked * below).sum(axis=1) / (positives * negatives)
        precision_here = np.cumsum(y_ranked, axis=1) / np.arange(1, n + 1)
        ap = (y_ranked * precision_here).sum(axis=1) / positives
    ok = (positives > 0) & (negatives > 0)
    return {"roc_auc": np.where(ok, auc, np.nan), "average_precision": np.where(ok, ap, np.nan)}


def _check(y: np.ndarray, name: str = "y") -> np.ndarray:
    if np.isnan(y).any():
        raise ValueError(f"{name} has {int(np.isnan(y).sum())} missing labels: pass labelled rows")
    return y


class _Outcomes(NamedTuple):
    """What every model is measured against: the labels, the revenue with its own ranking
    (the best any selection could recover), and the top counts of the control rates."""

    y: np.ndarray
    money: np.ndarray | None
    money_order: np.ndarray | None
    money_rank: np.ndarray | None
    ks: np.ndarray


def _model_block(
    outcomes: _Outcomes,
    order: np.ndarray,
    rank: np.ndarray,
    probability: np.ndarray | None,
    idx: np.ndarray,
) -> dict[str, np.ndarray]:
    y, money, money_order, money_rank, ks = outcomes
    rows = _ranked(order, rank, idx)
    y_ranked = y[rows]
    money_ranked = money_best = None
    if money is not None and money_order is not None and money_rank is not None:
        money_ranked = money[rows]
        money_best = money[_ranked(money_order, money_rank, idx)]
    out = _capacity_block(y_ranked, money_ranked, money_best, ks)
    out.update(_ranking_block(y_ranked))
    if probability is not None:
        out["brier"] = ((probability[idx] - y[idx]) ** 2).mean(axis=1)
    return out


@dataclass(frozen=True)
class Resampling:
    """The bootstrap of a metrics table: `replicates` resamples of the declarations (0: no
    intervals) drawn with `seed`, and the (challenger, reference) pairs whose paired
    differences it gives."""

    replicates: int = 200
    seed: int = 0
    compare: Sequence[tuple[str, str]] = ()


def metrics_table(
    y: ArrayLike,
    scores: Mapping[str, ArrayLike],
    rates: Sequence[float],
    *,
    revenue: ArrayLike | None = None,
    probabilities: Mapping[str, ArrayLike] | None = None,
    resampling: Resampling | None = None,
) -> pd.DataFrame:
    """Capacity and ranking metrics of each scored model, with bootstrap 95 % intervals.

    Args:
        y: 1 for a hit (or a fraud), 0 otherwise; no missing values.
        scores: model name -> ranking score (higher is controlled first; make it tie-free with
            `strict_score` when it has plateaus).
        rates: control rates n (share of declarations).
        revenue: recoverable revenue per declaration (revenue metrics when given).
        probabilities: model name -> calibrated probability (Brier score when given).
        resampling: bootstrap replicates (0: no intervals), their seed, and the (challenger,
            reference) pairs whose rows ``"challenger - reference"`` get the paired-bootstrap
            interval of the difference (default: 200 replicates, seed 0, no pair).

    Returns:
        Tidy frame: model, rate (NaN for rank metrics), metric, value, low, high.
    """
    y_arr = _check(np.asarray(y, dtype=float))
    n = len(y_arr)
    if n == 0:
        return pd.DataFrame(columns=list(TABLE_COLUMNS))
    resampling = resampling or Resampling()
    replicates, seed, compare = resampling.replicates, resampling.seed, resampling.compare
    money = None if revenue is None else np.nan_to_num(np.asarray(revenue, dtype=float), nan=0.0)
    ks = np.array([top_count(n, r) for r in rates], dtype=np.int64)
    ranks = {m: _rank_positions(np.asarray(s, dtype=float)) for m, s in scores.items()}
    money_order, money_rank = _rank_positions(money) if money is not None else (None, None)
    probs = {m: np.asarray(p, dtype=float) for m, p in (probabilities or {}).items()}
    outcomes = _Outcomes(y_arr, money, money_order, money_rank, ks)

    def block(idx: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        return {
            m: _model_block(outcomes, order, rank, probs.get(m), idx)
            for m, (order, rank) in ranks.items()
        }

    point = block(np.arange(n)[None, :])
    stacked = _bootstrap(block, list(ranks), n, replicates, seed)
    rows: list[dict[str, object]] = []
    for m in ranks:
        rows += _table_rows(m, point[m], stacked[m], rates)
    for challenger, reference in compare:
        diff = {
            k: point[challenger][k] - point[reference][k]
            for k in point[challenger]
            if k in point[reference]
        }
        boot = {
            k: stacked[challenger][k] - stacked[reference][k]
            for k in stacked[challenger]
            if k in stacked[reference]
        }
        rows += _table_rows(difference_name(challenger, reference), diff, boot, rates)
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def _bootstrap(
    block: Callable[[np.ndarray], dict[str, dict[str, np.ndarray]]],
    models: list[str],
    n: int,
    replicates: int,
    seed: int,
) -> dict[str, dict[str, np.ndarray]]:
    """Each model's metrics over every bootstrap replicate: model -> metric -> (B, ...) array."""
    draws: dict[str, dict[str, list[np.ndarray]]] = {m: {} for m in models}
    for idx in _resample_blocks(n, replicates, seed):
        for m, values in block(idx).items():
            for metric, arr in values.items():
                draws[m].setdefault(metric, []).append(arr)
    return {m: {k: np.concatenate(v, axis=0) for k, v in d.items()} for m, d in draws.items()}


def _table_rows(
    model: str,
    values: dict[str, np.ndarray],
    boot: dict[str, np.ndarray],
    rates: Sequence[float],
) -> list[dict[str, object]]:
    """Tidy rows of one model's point values with their percentile 95 % intervals."""
    rows: list[dict[str, object]] = []
    for metric, arr in values.items():
        per_rate = arr.ndim == 2
        for j in range(arr.shape[1] if per_rate else 1):
            value = float(arr[0, j] if per_rate else arr[0])
            low = high = float("nan")
            if metric in boot:
                sample = boot[metric][:, j] if per_rate else boot[metric]
                if np.isfinite(sample).any():
                    low, high = (float(q) for q in np.nanpercentile(sample, [2.5, 97.5]))
            rate = float(rates[j]) if per_rate else float("nan")
            rows.append(
                dict(model=model, rate=rate, metric=metric, value=value, low=low, high=high)
            )
    return rows


def random_baseline(
    y: ArrayLike, rates: Sequence[float], revenue: ArrayLike | None = None
) -> pd.DataFrame:
    """Expected metrics of a uniformly random selection of ceil(n x N) declarations (analytic).

    Precision is the base rate, recall and revenue the controlled share k/N; normalised values
    divide by what the oracle reaches at the same k. ROC-AUC 0.5, average precision = base rate.
    """
    y_arr = _check(np.asarray(y, dtype=float))
    n = len(y_arr)
    positives = y_arr.sum()
    base = positives / n if n else float("nan")
    money = None if revenue is None else np.nan_to_num(np.asarray(revenue, dtype=float), nan=0.0)
    best = None if money is None else np.cumsum(np.sort(money)[::-1])
    rows: list[dict[str, object]] = []
    for rate in rates:
        k = top_count(n, rate)
        values = {
            "precision": base,
            "recall": k / n if positives else float("nan"),
            "precision_norm": base / (min(positives, k) / k) if positives else float("nan"),
        }
        if money is not None and best is not None and money.sum() > 0:
            values["revenue"] = k / n
            values["revenue_norm"] = (k / n) * money.sum() / best[k - 1]
        for metric, value in values.items():
            rows.append(dict(model="random", rate=rate, metric=metric, value=float(value)))
    for metric, value in (("roc_auc", 0.5), ("average_precision", base)):
        rows.append(dict(model="random", rate=float("nan"), metric=metric, value=float(value)))
    frame = pd.DataFrame(rows)
    frame["low"] = np.nan
    frame["high"] = np.nan
    return frame[list(TABLE_COLUMNS)]


def selection_metrics(
    y: ArrayLike,
    selected: ArrayLike,
    *,
    revenue: ArrayLike | None = None,
    replicates: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """Metrics of a fixed selection (what was actually controlled, or an office-capacity cut).

    Returns rows metric (control_share, precision, recall, precision_norm, revenue,
    revenue_norm), value, low, high; the intervals resample declarations, the selection moving
    with its rows.
    """
    y_arr = _check(np.asarray(y, dtype=float))
    chosen = np.asarray(selected, dtype=bool)
    money = None if revenue is None else np.nan_to_num(np.asarray(revenue, dtype=float), nan=0.0)

    def compute(idx: np.ndarray) -> dict[str, np.ndarray]:
        yy, ss = y_arr[idx], chosen[idx]
        k = ss.sum(axis=1)
        hits = (yy * ss).sum(axis=1)
        positives = yy.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = {
                "control_share": k / idx.shape[1],
                "precision": hits / k,
                "recall": hits / positives,
                "precision_norm": hits / np.minimum(positives, k),
            }
            if money is not None:
                mm = money[idx]
                best_sorted = np.cumsum(-np.sort(-mm, axis=1), axis=1)
                best = np.take_along_axis(best_sorted, np.maximum(k - 1, 0)[:, None], axis=1)[:, 0]
                caught = (mm * ss).sum(axis=1)
                out["revenue"] = caught / mm.sum(axis=1)
                out["revenue_norm"] = caught / best
        return out

    n = len(y_arr)
    point = compute(np.arange(n)[None, :])
    parts: dict[str, list[np.ndarray]] = {}
    for idx in _resample_blocks(n, replicates, seed):
        for metric, arr in compute(idx).items():
            parts.setdefault(metric, []).append(arr)
    rows = []
    for metric, arr in point.items():
        low = high = float("nan")
        if parts:
            sample = np.concatenate(parts[metric])
            if np.isfinite(sample).any():
                low, high = (float(q) for q in np.nanpercentile(sample, [2.5, 97.5]))
        rows.append(dict(metric=metric, value=float(arr[0]), low=low, high=high))
    return pd.DataFrame(rows)


def quota_mask(score: ArrayLike, office: ArrayLike, capacity: Mapping[str, float]) -> np.ndarray:
    """Controls per office: the office's top declarations up to its capacity.

    A capacity below 1 is a share of the office's declarations (rounded up), from 1 on a count.
    Offices without a capacity control nothing.
    """
    s = np.asarray(score, dtype=float)
    offices = pd.Series(np.asarray(office)).astype("string").fillna("<missing>")
    frame = pd.DataFrame({"office": offices, "neg": -np.where(np.isnan(s), -np.inf, s)})
    frame["pos"] = np.arange(len(s))
    frame = frame.sort_values(["office", "neg", "pos"], kind="stable")
    position = frame.groupby("office", sort=False).cumcount().to_numpy()
    size = frame.groupby("office", sort=False)["pos"].transform("size").to_numpy()
    cap = frame["office"].map({str(k): float(v) for k, v in capacity.items()}).astype(float)
    cap_arr = cap.to_numpy()
    quota = np.where(cap_arr < 1, np.ceil(cap_arr * size), np.floor(cap_arr))
    quota = np.nan_to_num(quota, nan=0.0)
    mask = np.zeros(len(s), dtype=bool)
    mask[frame["pos"].to_numpy()] = position < quota
    return mask


def calibration_table(
    y: ArrayLike, probability: ArrayLike, bins: int = 10, hard: bool = True
) -> pd.DataFrame:
    """Reliability curve on quantile bins: mean predicted probability and observed hit rate.

    `hard=False`: `y` holds each row's true chance of a hit (the simulator's fraud x detection
    rate), not a 0/1 outcome; the bins and means are the same.
    """
    y_arr = _check(np.asarray(y, dtype=float))
    p = np.clip(np.asarray(probability, dtype=float), 0.0, 1.0)
    if len(y_arr) == 0 or len(np.unique(y_arr)) < 2:
        return pd.DataFrame(columns=["predicted", "observed"])
    if hard:
        observed, predicted = calibration_curve(y_arr, p, n_bins=bins, strategy="quantile")
        return pd.DataFrame({"predicted": predicted, "observed": observed})
    return weighted_calibration_table(y_arr, p, np.ones(len(p)), 1, bins)[
        ["predicted", "observed", "rows"]
    ]


def weighted_calibration_table(
    y: ArrayLike, probability: ArrayLike, weight: ArrayLike, min_rows: int, bins: int = 5
) -> pd.DataFrame:
    """Reliability on weighted rows (the random stratum, by inverse selection probability):
    per quantile bin of the probability, the weighted mean probability and hit rate, with a
    Jeffreys 95 % interval on the bin's effective counts; a bin of fewer than `min_rows` rows
    keeps its figures but no interval ("too few to judge"). Written by hand: scikit-learn's
    `calibration_curve` takes no sample weights."""
    from scipy.stats import beta

    y_arr = np.asarray(y, dtype=float)
    frame = pd.DataFrame(
        {"y": y_arr, "p": np.asarray(probability, dtype=float), "w": np.asarray(weight, float)}
    )
    columns = ["predicted", "observed", "low", "high", "rows", "verdict"]
    if len(frame) == 0:
        return pd.DataFrame(columns=columns)
    ranks = frame["p"].rank(method="first")
    frame["bin"] = np.minimum((ranks - 1) * bins // len(frame), bins - 1).astype(int)
    frame["wy"], frame["wp"], frame["w2"] = frame.w * frame.y, frame.w * frame.p, frame.w**2
    grouped = frame.groupby("bin").agg(
        w=("w", "sum"), wy=("wy", "sum"), wp=("wp", "sum"), w2=("w2", "sum"), rows=("y", "size")
    )
    observed = grouped.wy / grouped.w
    effective = grouped.w**2 / grouped.w2
    hits = observed * effective
    enough = grouped.rows >= min_rows
    low = np.where(enough, beta.ppf(0.025, hits + 0.5, effective - hits + 0.5), np.nan)
    high = np.where(enough, beta.ppf(0.975, hits + 0.5, effective - hits + 0.5), np.nan)
    return pd.DataFrame(
        {
            "predicted": (grouped.wp / grouped.w).to_numpy(),
            "observed": observed.to_numpy(),
            "low": low,
            "high": high,
            "rows": grouped.rows.to_numpy(),
            "verdict": np.where(enough, "", f"too few to judge (need {min_rows} rows)"),
        }
    )


def gain_curve(
    y: ArrayLike, score: ArrayLike, revenue: ArrayLike | None = None, points: int = 200
) -> pd.DataFrame:
    """Cumulative gain and lift: share of hits (and revenue) caught by controlling the top share.

    Columns: share (controlled share), gain, oracle_gain, lift (gain / share), and revenue_gain
    when revenue is given.
    """
    y_arr = _check(np.asarray(y, dtype=float))
    n = len(y_arr)
    order, _ = _rank_positions(np.asarray(score, dtype=float))
    ks = np.unique(np.ceil(np.linspace(1, n, min(points, n))).astype(np.int64))
    positives = y_arr.sum()
    frame = pd.DataFrame({"share": ks / n})
    with np.errstate(invalid="ignore", divide="ignore"):
        frame["gain"] = np.cumsum(y_arr[order])[ks - 1] / positives
        frame["oracle_gain"] = np.minimum(ks, positives) / positives
        frame["lift"] = frame["gain"] / frame["share"]
        if revenue is not None:
            money = np.nan_to_num(np.asarray(revenue, dtype=float), nan=0.0)
            frame["revenue_gain"] = np.cumsum(money[order])[ks - 1] / money.sum()
    return frame


def breakdown(
    y: ArrayLike,
    score: ArrayLike,
    groups: pd.Series,
    rates: Sequence[float],
    revenue: ArrayLike | None = None,
) -> pd.DataFrame:
    """Metrics by group (office, HS chapter, month...) under the global cut-off at each rate.

    Returns one row per group and rate: declarations, positives, selected, selected_share,
    precision, recall, revenue (when given) and the group's ROC-AUC (rate-independent).
    """
    y_arr = _check(np.asarray(y, dtype=float))
    s = np.asarray(score, dtype=float)
    group = pd.Series(np.asarray(groups.astype("string").fillna("<missing>")), name="group")
    money = np.zeros(len(s)) if revenue is None else np.nan_to_num(np.asarray(revenue, float))
    frames = []
    for rate in rates:
        chosen = top_mask(s, rate)
        frame = pd.DataFrame(
            {
                "group": group,
                "y": y_arr,
                "selected": chosen,
                "hit_selected": y_arr * chosen,
                "money": money,
                "money_selected": money * chosen,
            }
        )
        agg = frame.groupby("group", sort=True).agg(
            declarations=("y", "size"),
            positives=("y", "sum"),
            selected=("selected", "sum"),
            hits=("hit_selected", "sum"),
            money=("money", "sum"),
            money_selected=("money_selected", "sum"),
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            agg["selected_share"] = agg["selected"] / agg["declarations"]
            agg["precision"] = agg["hits"] / agg["selected"].where(agg["selected"] > 0)
            agg["recall"] = agg["hits"] / agg["positives"].where(agg["positives"] > 0)
            agg["revenue"] = agg["money_selected"] / agg["money"].where(agg["money"] > 0)
        agg["rate"] = rate
        frames.append(agg.reset_index())
    out = pd.concat(frames, ignore_index=True)
    out["positives"] = out["positives"].round().astype("int64")
    if revenue is None:
        out = out.drop(columns=["revenue"])
    auc = (
        pd.DataFrame({"group": group, "y": y_arr, "s": s})
        .groupby("group")
        .apply(_group_auc, include_groups=False)
        .rename("roc_auc")
    )
    out = out.merge(auc, left_on="group", right_index=True, how="left")
    return out.drop(columns=["hits", "money", "money_selected"])


def _group_auc(frame: pd.DataFrame) -> float:
    if frame["y"].nunique() < 2:
        return float("nan")
    return float(roc_auc_score(frame["y"], frame["s"]))


def single_feature_auc(
    X_train: pd.DataFrame, y_train: ArrayLike, X_test: pd.DataFrame, y_test: ArrayLike
) -> pd.DataFrame:
    """How well each feature alone ranks the test labels (max(AUC, 1 - AUC)).

    Numbers are used as they are (missing values at the median); a category is replaced by its
    level's hit rate in the training window (unseen levels: the overall rate), so a level that
    is only informative in the test window does not look strong.
    """
    yt = _check(np.asarray(y_test, dtype=float), "y_test")
    ytr = _check(np.asarray(y_train, dtype=float), "y_train")
    rows = []
    if len(np.unique(yt)) < 2:
        return pd.DataFrame(columns=["feature", "auc"])
    for column in X_test.columns:  # one pass per feature, vectorised within
        test = X_test[column]
        if isinstance(test.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(test):
            levels = (
                pd.Series(ytr)
                .groupby(X_train[column].astype("string").fillna("<missing>").to_numpy())
                .mean()
            )
            values = (
                test.astype("string")
                .fillna("<missing>")
                .map(levels)
                .astype(float)
                .fillna(float(ytr.mean()) if len(ytr) else 0.0)
                .to_numpy()
            )
        else:
            values = test.to_numpy(dtype=float)
            median = np.nanmedian(values) if np.isfinite(values).any() else 0.0
            values = np.where(np.isfinite(values), values, median)
        auc = float(roc_auc_score(yt, values))
        rows.append({"feature": column, "auc": max(auc, 1.0 - auc)})
    return pd.DataFrame(rows).sort_values("auc", ascending=False).reset_index(drop=True)


# --- baselines --------------------------------------------------------------------------------


def rules_score(declarations: pd.DataFrame, rules: Sequence[RuleConfig], seed: int) -> np.ndarray:
    """Rules-only ranking: how many risk criteria a declaration matches, plus a seeded tie break.

    The tie break is uniform in [0, 0.5), so it orders declarations within one count only.
    """
    matched = np.zeros(len(declarations))
    for rule in rules:  # a handful of rules, each vectorised
        if rule.column not in declarations.columns:
            raise ValueError(
                f"rule {rule.name!r}: column {rule.column!r} is not in the declarations "
                f"(columns: {sorted(declarations.columns)})"
            )
        text = declarations[rule.column].astype("string")
        hit = text.isin(list(rule.values)).fillna(False).to_numpy(dtype=bool)
        if rule.prefix:
            hit |= text.str.startswith(tuple(rule.prefix)).fillna(False).to_numpy(dtype=bool)
        matched += hit
    rng = np.random.default_rng(seed)
    return matched + 0.5 * rng.random(len(declarations))


def align_categories(train: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """`other` with each category column cast to `train`'s levels (unseen levels: missing)."""
    cast = {
        c: pd.Categorical(
            other[c].astype("string").astype(object), categories=train[c].cat.categories
        )
        for c in train.columns
        if isinstance(train[c].dtype, pd.CategoricalDtype)
    }
    return other.assign(**cast) if cast else other
