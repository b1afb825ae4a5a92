"""Drift judged where it matters (features carrying the model, against their training drift), and
the one PSI the report and the monitor share: hand-computed examples and properties."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.evaluate.drift import (
    SHARE_FLOOR,
    drift_warnings,
    judge_drift,
    kept_levels,
    psi,
    psi_categorical,
    psi_numeric,
)


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


def test_psi_is_zero_for_one_distribution_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(5)
    ref = pd.Series(rng.normal(size=5000))
    assert psi(ref, ref) == pytest.approx(0.0)
    assert psi(ref, ref + 1.0) > psi(ref, ref + 0.2) > 0.01
    cats = pd.Series(pd.Categorical(rng.choice(["a", "b"], 2000)))
    shifted = pd.Series(pd.Categorical(rng.choice(["a", "b", "c"], 2000, p=[0.2, 0.2, 0.6])))
    assert psi(cats, shifted) > 0.25


def test_psi_is_near_zero_for_two_samples_of_one_distribution() -> None:
    rng = np.random.default_rng()
    a, b = rng.normal(size=20_000), rng.normal(size=20_000)
    assert psi_numeric(a, b) < 0.01
    assert psi_numeric(a, a) == pytest.approx(0.0, abs=1e-12)


def test_psi_bands_follow_the_size_of_a_mean_shift() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=20_000)
    small = psi_numeric(ref, rng.normal(0.1, 1, 20_000))
    moderate = psi_numeric(ref, rng.normal(0.5, 1, 20_000))
    major = psi_numeric(ref, rng.normal(1.0, 1, 20_000))
    assert small < 0.1 < moderate < major


def test_psi_counts_a_rise_of_missing_values_and_a_point_mass() -> None:
    rng = np.random.default_rng(2)
    ref = np.where(rng.random(10_000) < 0.5, 0.0, rng.exponential(size=10_000))
    same = np.where(rng.random(10_000) < 0.5, 0.0, rng.exponential(size=10_000))
    assert psi_numeric(ref, same) < 0.01  # half zeros: one bin in both windows
    missing = same.copy()
    missing[: len(missing) // 2] = np.nan
    assert psi_numeric(ref, missing) > 0.25


def test_psi_of_categories_pools_rare_and_unseen_levels() -> None:
    rng = np.random.default_rng(3)
    ref = pd.Series(rng.choice(list("abcd"), 5_000)).astype("category")
    same = pd.Series(rng.choice(list("abcd"), 5_000)).astype("category")
    assert psi_categorical(ref, same) < 0.01
    unseen = pd.Series(rng.choice(list("abcz"), 5_000)).astype("category")
    assert psi_categorical(ref, unseen) > 0.25
    # thousands of identifiers sampled twice from one population: no drift once pooled
    ids_ref = pd.Series(rng.integers(0, 5_000, 5_000).astype(str))
    ids_cur = pd.Series(rng.integers(0, 5_000, 5_000).astype(str))
    assert psi_categorical(ids_ref, ids_cur, max_levels=20) < 0.05


@given(
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=60),
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=60),
)
def test_psi_is_finite_and_not_negative(ref: list[float], cur: list[float]) -> None:
    value = psi_numeric(ref, cur)
    assert np.isfinite(value) and value >= 0


def test_psi_of_numbers_by_hand() -> None:
    # deciles of [1, 2, 3, 4] with two bins: one edge at 2.5; shares (1/2, 1/2, missing 0)
    # against (3/4, 1/4, 0): (3/4 - 1/2) ln(3/2) + (1/4 - 1/2) ln(1/2) = ln(3) / 4
    assert psi_numeric([1, 2, 3, 4], [1, 1, 1, 5], bins=2) == pytest.approx(math.log(3) / 4)
    # bins are closed on the right: a value on the edge falls in the bin below it
    assert psi_numeric([1, 2, 3, 4], [2.5, 2.5, 3, 3], bins=2) == pytest.approx(0.0)
    # a missing value has its own bin, empty in the reference (floored): shares (1/2, 1/2, 0)
    # against (1/4, 1/4, 1/2): 2 (1/4) ln(2) + (1/2 - floor) ln(1/2 / floor)
    half_missing = psi_numeric([1, 2, 3, 4], [1, 4, np.nan, np.nan], bins=2)
    expected = math.log(2) / 2 + (0.5 - SHARE_FLOOR) * math.log(0.5 / SHARE_FLOOR)
    assert half_missing == pytest.approx(expected)


def test_psi_of_categories_by_hand() -> None:
    # b and c tie for the second of two kept levels: b wins by name, c is pooled with unseen d
    reference = pd.Series(list("aabc"))
    assert kept_levels(reference, 2) == ["a", "b"]
    # shares (a 1/2, b 1/4, other 1/4) against (a 1/4, b 1/2, other 1/4): ln(2) / 2
    value = psi_categorical(reference, pd.Series(list("abbd")), max_levels=2)
    assert value == pytest.approx(math.log(2) / 2)


def test_psi_bins_numbers_only_when_both_windows_hold_numbers() -> None:
    numbers = pd.Series([1.0, 2.0, 3.0, 4.0])
    assert psi(numbers, pd.Series(["1.0", "2.0", "3.0", "4.0"])) == pytest.approx(0.0)
    assert psi(numbers, numbers + 10) > 1.0


NUMBERS = st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(float("nan"))), min_size=1, max_size=80)
LEVELS = st.lists(st.sampled_from(["a", "b", "c", "d", "e", None]), min_size=1, max_size=80)
BOUND = 2 * math.log(1 / SHARE_FLOOR)  # every share lies in [SHARE_FLOOR, 1]


@settings(max_examples=60, deadline=None)
@given(NUMBERS, NUMBERS, st.integers(2, 12), st.randoms(use_true_random=False))
def test_psi_of_numbers_properties(ref: list, cur: list, bins: int, rnd: random.Random) -> None:
    value = psi_numeric(ref, cur, bins)
    assert 0.0 <= value <= BOUND * (1 + 1e-12)
    assert psi_numeric(ref, ref, bins) == 0.0
    assert psi_numeric(cur, cur, bins) == 0.0
    shuffled_ref, shuffled_cur = list(ref), list(cur)
    rnd.shuffle(shuffled_ref)
    rnd.shuffle(shuffled_cur)
    assert psi_numeric(shuffled_ref, shuffled_cur, bins) == value


@settings(max_examples=60, deadline=None)
@given(LEVELS, LEVELS, st.integers(1, 6), st.randoms(use_true_random=False))
def test_psi_of_categories_properties(ref: list, cur: list, most: int, rnd: random.Random) -> None:
    reference, recent = pd.Series(ref, dtype="string"), pd.Series(cur, dtype="string")
    value = psi_categorical(reference, recent, most)
    assert 0.0 <= value <= BOUND * (1 + 1e-12)
    assert psi_categorical(reference, reference, most) == 0.0
    rnd.shuffle(ref)
    rnd.shuffle(cur)
    shuffled = psi_categorical(pd.Series(ref, dtype="string"), pd.Series(cur, dtype="string"), most)
    assert shuffled == pytest.approx(value, abs=1e-12)
    # every level kept on both sides: the bins are the same either way, and PSI is symmetric
    if set(ref) == set(cur) and len(set(ref)) <= most:
        assert psi_categorical(recent, reference, most) == pytest.approx(value, abs=1e-12)
