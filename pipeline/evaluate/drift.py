"""Drift judged where it matters: the features that carry the model, against their own drift
inside the training window.

A running statistic (an importer's hit rate, a trader's tenure) moves by construction, and a
feature the model barely uses cannot hurt it whatever it does. So a drift warning fires only for
a feature that carries at least `min_share` of the SHAP mass and whose PSI between the training
and test windows is above `psi_warn` and at least `ratio` times the PSI it already showed
between the two halves of the training window (which the model was trained through). Every
feature gets a verdict saying why it fired or why it is not judged. PSI is the monitor's
(`evaluate.monitor.psi`), the project's one implementation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.evaluate.monitor import psi

COLUMNS = ("feature", "shap_share", "psi", "psi_inside_training", "level", "verdict")


def judge_drift(
    train_X: pd.DataFrame,
    train_lodged_at: pd.Series,
    test_X: pd.DataFrame,
    importance: pd.DataFrame | None,
    *,
    psi_warn: float = 0.1,
    psi_alarm: float = 0.25,
    min_share: float = 0.05,
    ratio: float = 2.0,
) -> pd.DataFrame:
    """One row per feature (`COLUMNS`), highest PSI first; ``level`` is alarm, warning or ''.

    `importance`: feature and share of the SHAP mass (`Explanations.importance`); without it
    every feature counts as carrying the model.
    """
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
        level, verdict = _verdict(across, inside, share, psi_warn, psi_alarm, min_share, ratio)
        rows.append(
            {
                "feature": column,
                "shap_share": share,
                "psi": across,
                "psi_inside_training": inside,
                "level": level,
                "verdict": verdict,
            }
        )
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.sort_values("psi", ascending=False, kind="stable").reset_index(drop=True)


def _verdict(
    across: float,
    inside: float,
    share: float,
    psi_warn: float,
    psi_alarm: float,
    min_share: float,
    ratio: float,
) -> tuple[str, str]:
    if not np.isfinite(across) or across < psi_warn:
        return "", f"stable: PSI {across:.2f} < {psi_warn:g}"
    if share < min_share:
        return "", (
            f"not judged: PSI {across:.2f}, but it carries {share:.1%} of the SHAP mass "
            f"(< {min_share:.0%})"
        )
    baseline = inside if np.isfinite(inside) else 0.0
    if across < ratio * baseline:
        return "", (
            f"not judged: PSI {across:.2f}, no more than {ratio:g}x the {baseline:.2f} it "
            "already showed inside the training window (a running statistic the model was "
            "trained through)"
        )
    level = "alarm" if across >= psi_alarm else "warning"
    return level, (
        f"{level}: PSI {across:.2f} >= {psi_alarm if level == 'alarm' else psi_warn:g}, "
        f"{across / max(baseline, 1e-9):.1f}x its drift inside the training window "
        f"({baseline:.2f}), and it carries {share:.1%} of the SHAP mass"
    )


def drift_warnings(judged: pd.DataFrame) -> list[str]:
    """The report's warnings: one line per judged feature that fired, with its reason."""
    fired = judged.loc[judged["level"] != ""]
    return [f"Drift {r.level} on {r.feature}: {r.verdict}." for r in fired.itertuples()]
