"""Drift judged where it matters: features carrying the model, against their training drift."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.evaluate import metrics as mx
from pipeline.evaluate import monitor
from pipeline.evaluate.drift import drift_warnings, judge_drift


def windows(seed: int = 0, n: int = 4_000) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    lodged = pd.Series(pd.date_range("2024-01-01", periods=n, freq="h"))
    t = np.linspace(0, 1, n)
    train = pd.DataFrame(
        {
            "shifted": rng.normal(0, 1, n),
            "running": rng.normal(3 * t, 0.3),  # moves through the training window already
            "minor": rng.normal(0, 1, n),
            "stable": rng.normal(0, 1, n),
        },
        index=np.arange(n) * 3,  # an odd index
    )
    test = pd.DataFrame(
        {
            "shifted": rng.normal(1.5, 1, n // 4),
            "running": rng.normal(3.5, 0.3, n // 4),
            "minor": rng.normal(1.5, 1, n // 4),
            "stable": rng.normal(0, 1, n // 4),
        }
    )
    return train, lodged, test


def test_each_feature_gets_a_verdict_and_only_carrying_ones_fire() -> None:
    train, lodged, test = windows()
    importance = pd.DataFrame(
        {"feature": ["shifted", "running", "minor", "stable"], "share": [0.4, 0.3, 0.01, 0.29]}
    )
    judged = judge_drift(train, lodged, test, importance).set_index("feature")
    assert judged.loc["shifted", "level"] == "alarm"
    assert judged.loc["running", "psi"] > 0.25 and judged.loc["running", "level"] == ""
    assert "inside the training window" in judged.loc["running", "verdict"]
    assert judged.loc["minor", "psi"] > 0.25 and judged.loc["minor", "level"] == ""
    assert "SHAP mass" in judged.loc["minor", "verdict"]
    assert judged.loc["stable", "verdict"].startswith("stable")
    warnings = drift_warnings(judged.reset_index())
    assert len(warnings) == 1 and "shifted" in warnings[0] and "SHAP mass" in warnings[0]


def test_one_psi_implementation() -> None:
    train, _, test = windows(1)
    for column in train.columns:
        assert mx.psi(train[column], test[column]) == monitor.psi(train[column], test[column])
    levels = pd.Series(pd.Categorical(list("aabbbcc" * 50)))
    later = pd.Series(pd.Categorical(list("abbbbbc" * 50)))
    assert mx.psi(levels, later) == monitor.psi(levels, later)
