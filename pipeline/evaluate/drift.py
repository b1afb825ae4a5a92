"""Drift judged where it matters: the features that carry the model, against their own drift
inside the training window.

A running statistic (an importer's hit rate, a trader's tenure) moves by construction, and a
feature the model barely uses cannot hurt it whatever it does. So a drift warning fires only for
a feature that carries at least `min_share` of the SHAP mass and whose PSI between the training
and test windows is above `psi_warn` and at least `ratio` times the PSI it already showed
between the two halves of the training window (which the model was trained through). Every
feature gets a verdict saying why it fired or why it is not judged.

`psi` is the project's one population stability index, used by the report (here) and by the
monitor (`evaluate.monitor.drift_table`): ``sum((q - p) ln(q / p))`` over bins, where ``p`` and
``q`` are the reference and recent shares of a bin.

- Numbers: bins at the deciles of the reference window's finite values, closed on the right (a
  value equal to an edge falls in the bin below it, in both windows, so a heavy point mass such
  as zeros sits in one bin); missing and infinite values get their own bin.
- Categories (and booleans, strings): the `max_levels` most frequent reference levels, ties
  broken by the level's name, the rest pooled as ``<other>`` (an unseen level lands there too),
  so a code list of thousands of importers does not turn sampling noise into drift; a missing
  value is the level ``<missing>``.
- Shares are floored at `SHARE_FLOOR` so an empty bin stays finite: PSI lies between 0 (the same
  shares) and ``2 ln(1 / SHARE_FLOOR)``, and does not depend on the order of the rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

SHARE_FLOOR = 1e-4
MISSING = "<missing>"
OTHER = "<other>"


def is_numeric(values: pd.Series) -> bool:
    """Numbers are binned by quantiles; categories, booleans and strings by level."""
    return (
        pd.api.types.is_numeric_dtype(values.dtype)
        and not pd.api.types.is_bool_dtype(values.dtype)
        and not isinstance(values.dtype, pd.CategoricalDtype)
    )


def _psi_from_shares(p: np.ndarray, q: np.ndarray) -> float:
    p = np.maximum(p, SHARE_FLOOR)
    q = np.maximum(q, SHARE_FLOOR)
    return float(((q - p) * np.log(q / p)).sum())


def psi_numeric(reference: ArrayLike, recent: ArrayLike, bins: int = 10) -> float:
    """PSI of a number over quantile bins of the reference (missing values: their own bin)."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(recent, dtype=float)
    if len(ref) == 0 or len(cur) == 0:
        return float("nan")
    finite = ref[np.isfinite(ref)]
    inner = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    edges = np.unique(np.quantile(finite, inner)) if len(finite) else np.array([])

    def shares(values: np.ndarray) -> np.ndarray:
        # right-closed bins, so a heavy point mass (zeros) sits in one bin in both windows
        codes = np.where(
            np.isfinite(values), np.searchsorted(edges, values, side="left"), len(edges) + 1
        )
        return np.bincount(codes, minlength=len(edges) + 2) / len(values)

    return _psi_from_shares(shares(ref), shares(cur))


def _levels(values: pd.Series) -> pd.Series:
    return values.astype("string").fillna(MISSING)


def kept_levels(reference: pd.Series, max_levels: int) -> list[str]:
    """The `max_levels` most frequent levels of `reference`, ties broken by the level's name so
    that the choice does not depend on the order of the rows."""
    counts = _levels(reference).value_counts()
    ranked = sorted(zip(counts.index, counts.to_numpy(), strict=True), key=lambda c: (-c[1], c[0]))
    return [str(level) for level, _ in ranked[:max_levels]]


def psi_categorical(reference: pd.Series, recent: pd.Series, max_levels: int = 20) -> float:
    """PSI of a category over its `max_levels` most frequent reference levels, rest pooled."""
    if len(reference) == 0 or len(recent) == 0:
        return float("nan")
    ref = _levels(reference)
    cur = _levels(recent)
    kept = kept_levels(reference, max_levels)
    ref_share = ref.where(ref.isin(kept), OTHER).value_counts(normalize=True)
    cur_share = cur.where(cur.isin(kept), OTHER).value_counts(normalize=True)
    bins = ref_share.index.union(cur_share.index)
    p = ref_share.reindex(bins, fill_value=0.0).to_numpy(dtype=float)
    q = cur_share.reindex(bins, fill_value=0.0).to_numpy(dtype=float)
    return _psi_from_shares(p, q)


def psi(reference: pd.Series, recent: pd.Series, bins: int = 10, max_levels: int = 20) -> float:
    """PSI of one variable between two windows: by quantile bins when both windows hold numbers,
    else by level."""
    if is_numeric(reference) and is_numeric(recent):
        return psi_numeric(reference.to_numpy(dtype=float), recent.to_numpy(dtype=float), bins)
    return psi_categorical(reference, recent, max_levels)


COLUMNS = ("feature", "shap_share", "psi", "psi_inside_training", "level", "judged", "verdict")


@dataclass(frozen=True)
class DriftLimits:
    """When a feature's drift between training and test is judged, and how loud it is: PSI of
    `psi_warn` warns and `psi_alarm` alarms, for a feature carrying at least `min_share` of the
    SHAP mass whose PSI is more than `ratio` times its drift inside the training window."""

    psi_warn: float = 0.1
    psi_alarm: float = 0.25
    min_share: float = 0.05
    ratio: float = 2.0


def judge_drift(
    train_X: pd.DataFrame,
    train_lodged_at: pd.Series,
    test_X: pd.DataFrame,
    importance: pd.DataFrame | None,
    limits: DriftLimits | None = None,
) -> pd.DataFrame:
    """One row per feature (`COLUMNS`), highest PSI first; ``level`` is alarm, warning or ''.

    `importance`: feature and share of the SHAP mass (`Explanations.importance`); without it
    every feature counts as carrying the model.
    """
    limits = limits or DriftLimits()
    columns = [c for c in train_X.columns if c in test_X.columns]
    stamps = pd.to_datetime(train_lodged_at).reset_index(drop=True)
    middle = stamps.min() + (stamps.max() - stamps.min()) / 2
    early = (stamps < middle).to_numpy()
    shares = (
        importance.set_index("feature")["share"].astype(float)
        if importance is not None and len(importance)
        else pd.Series(1.0, index=columns)
    )
    rows = []
    for column in columns:  # one pass per feature, vectorised within
        across = psi(train_X[column], test_X[column])
        inside = (
            psi(train_X[column][early], train_X[column][~early])
            if early.any() and (~early).any()
            else np.nan
        )
        share = float(shares.get(column, 0.0))
        level, verdict, judged = _verdict(across, inside, share, limits)
        rows.append(
            {
                "feature": column,
                "shap_share": share,
                "psi": across,
                "psi_inside_training": inside,
                "level": level,
                "judged": judged,
                "verdict": verdict,
            }
        )
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.sort_values("psi", ascending=False, kind="stable").reset_index(drop=True)


def _verdict(
    across: float, inside: float, share: float, limits: DriftLimits
) -> tuple[str, str, bool]:
    """Level (alarm, warning or ''), the verdict in words, and whether the feature is judged
    (False: its drift is set aside, too little SHAP mass or no more than inside training)."""
    psi_warn, psi_alarm, min_share, ratio = (
        limits.psi_warn,
        limits.psi_alarm,
        limits.min_share,
        limits.ratio,
    )
    if not np.isfinite(across) or across < psi_warn:
        return "", f"stable: PSI {across:.2f} < {psi_warn:g}", True
    if share < min_share:
        return (
            "",
            (
                f"not judged: PSI {across:.2f}, but it carries {share:.1%} of the SHAP mass "
                f"(< {min_share:.0%})"
            ),
            False,
        )
    baseline = inside if np.isfinite(inside) else 0.0
    if across < ratio * baseline:
        return (
            "",
            (
                f"not judged: PSI {across:.2f}, no more than {ratio:g}x the {baseline:.2f} it "
                "already showed inside the training window (a running statistic the model was "
                "trained through)"
            ),
            False,
        )
    level = "alarm" if across >= psi_alarm else "warning"
    return (
        level,
        (
            f"{level}: PSI {across:.2f} >= {psi_alarm if level == 'alarm' else psi_warn:g}, "
            f"{across / max(baseline, 1e-9):.1f}x its drift inside the training window "
            f"({baseline:.2f}), and it carries {share:.1%} of the SHAP mass"
        ),
        True,
    )


def drift_warnings(judged: pd.DataFrame) -> list[str]:
    """The report's warnings: one line per judged feature that fired, with its reason."""
    fired = judged.loc[judged["level"] != ""]
    return [f"Drift {r.level} on {r.feature}: {r.verdict}." for r in fired.itertuples()]
