"""Monitoring statistics on small frames: PSI bands, KS/Wasserstein, the random stratum."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.config import MonitorConfig
from pipeline.evaluate import monitor
from pipeline.ingest.columns import random_stratum
from pipeline.timeaxis import Window


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_levels_band_by_the_warn_and_alarm_thresholds() -> None:
    assert monitor.band(0.05, 0.1, 0.25) == "ok"
    assert monitor.band(0.3, 0.1, 0.25) == "alarm"
    assert monitor.band(0.2, 0.1, 0.25) == "warn"
    assert monitor.band(float("nan"), 0.1, 0.25) == "ok"
    assert monitor.band(float("inf"), 0.1, 0.25) == "alarm"


def test_distances_are_zero_on_equal_samples_and_grow_with_the_shift() -> None:
    rng = _rng(4)
    ref = rng.normal(size=5_000)
    same = monitor.distances(ref, ref)
    assert same.ks == 0.0 and same.wasserstein == 0.0
    near = monitor.distances(ref, rng.normal(0.1, 1, 5_000))
    far = monitor.distances(ref, rng.normal(1.0, 1, 5_000))
    assert near.ks < far.ks and near.wasserstein_std < far.wasserstein_std
    assert far.wasserstein_std == pytest.approx(1.0, abs=0.1)  # a one-sd shift
    scaled = monitor.distances(ref * 1000, rng.normal(1.0, 1, 5_000) * 1000)
    assert scaled.wasserstein_std == pytest.approx(far.wasserstein_std, rel=0.1)
    assert np.isnan(monitor.distances([], [1.0]).ks)


def test_drift_table_judges_by_the_configured_metric_and_skips_excluded_stages() -> None:
    rng = _rng(5)
    n = 4_000
    reference = pd.DataFrame(
        {
            "stable": rng.normal(size=n),
            "shifted": rng.normal(size=n),
            "month": rng.integers(1, 7, n).astype(float),
            "office": pd.Categorical(rng.choice(["o1", "o2"], n)),
        },
        index=np.arange(n) * 3 + 7,  # odd index: nothing may rely on positions
    )
    recent = pd.DataFrame(
        {
            "stable": rng.normal(size=n),
            "shifted": rng.normal(1.5, 1, n),
            "month": rng.integers(7, 13, n).astype(float),
            "office": pd.Categorical(rng.choice(["o1", "o2"], n)),
        }
    )
    stages = {"month": "calendar", "stable": "raw", "shifted": "raw", "office": "raw"}
    config = MonitorConfig()
    table = monitor.drift_table(
        reference,
        recent,
        config,
        stages=stages,
        reference_score=rng.random(n),
        recent_score=rng.random(n),
    )
    assert list(table.columns) == monitor.DRIFT_COLUMNS
    assert table.iloc[0]["variable"] == monitor.SCORE
    by = table.set_index("variable")
    assert by.loc["shifted", "level"] == "alarm"
    assert by.loc["stable", "level"] == "ok"
    assert by.loc["office", "kind"] == "category" and np.isnan(by.loc["office", "ks"])
    assert not by.loc["month", "judged"] and by.loc["month", "level"] == "ok"
    assert by.loc["month", "psi"] > 0.25  # reported all the same
    ks = monitor.drift_table(reference, recent, config.model_copy(update={"metric": "ks"}))
    ks_by = ks.set_index("variable")
    assert ks_by.loc["shifted", "metric"] == "ks"
    assert ks_by.loc["shifted", "value"] == ks_by.loc["shifted", "ks"]
    assert ks_by.loc["office", "metric"] == "psi"
    few = monitor.drift_table(
        reference.head(10), recent.head(10), config.model_copy(update={"min_rows": 50})
    )
    assert not few["judged"].any()


@pytest.mark.parametrize("method", ["wilson", "clopper_pearson"])
def test_random_stratum_interval_covers_the_true_rate(method: str) -> None:
    """Over many draws, a 95 % interval covers the true hit rate about 95 % of the time."""
    rng = _rng(6)
    true_rate, n = 0.06, 300
    hits = rng.binomial(n, true_rate, size=400)
    covered = [
        low <= true_rate <= high
        for low, high in (monitor.proportion_interval(int(h), n, 0.95, method) for h in hits)
    ]
    assert 0.90 <= np.mean(covered) <= 0.995


def test_random_stratum_check_uses_only_known_random_labels() -> None:
    rng = _rng(7)
    n = 6_000
    reason = np.where(rng.random(n) < 0.2, "random", np.where(rng.random(n) < 0.1, "rule", None))
    truth = rng.random(n) < 0.05
    y = np.where(pd.isna(reason), np.nan, truth.astype(float))
    y[reason == "rule"] = 1.0  # rule controls hit far more often: they must not count
    config = MonitorConfig()
    reason = random_stratum(reason, np.where(reason == "random", 0.2, np.nan))
    honest = monitor.random_stratum_check(y, reason, np.full(n, 0.05), config)
    assert honest.rows == int(reason.sum())
    assert honest.low <= 0.05 <= honest.high and honest.level == "ok"
    wrong = monitor.random_stratum_check(y, reason, np.full(n, 0.15), config)
    assert wrong.level == "alarm"
    known = np.zeros(n, dtype=bool)
    none = monitor.random_stratum_check(y, reason, np.full(n, 0.15), config, known)
    assert none.rows == 0 and none.level == "ok" and np.isnan(none.hit_rate)


def test_report_level_is_the_worst_judged_level() -> None:
    rng = _rng(8)
    n = 2_000
    ref = pd.DataFrame({"x": rng.normal(size=n)})
    cur = pd.DataFrame({"x": rng.normal(size=n)})
    window = Window("reference", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01"))
    outcomes = monitor.RecentOutcomes(hit=np.zeros(n), stratum=np.zeros(n, dtype=bool))
    config = MonitorConfig()
    reference = monitor.Watched(window, ref, rng.random(n))
    quiet = monitor.monitor_report(
        reference, monitor.Watched(window, cur, rng.random(n)), outcomes, config
    )
    assert quiet.level == "ok"
    loud = monitor.monitor_report(
        reference, monitor.Watched(window, cur, rng.random(n) ** 3), outcomes, config
    )
    assert loud.level == "alarm"
    assert "ALARM" in loud.headline() and "| score |" in loud.to_markdown()
    assert monitor.reaches("alarm", "warn") and not monitor.reaches("warn", "alarm")
    assert not monitor.reaches("alarm", "never")
    assert monitor.worst(["ok", "warn"]) == "warn" and monitor.worst([]) == "ok"
