"""Time windows: order, gaps, refusals, label-known cut-offs and prequential folds."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pandas as pd
import pytest
from helpers.train import feature_set
from hypothesis import example, given
from hypothesis import strategies as st

from pipeline.config import SplitConfig
from pipeline.plan import SplitError, lay_reference, make_windows
from pipeline.timeaxis import Window
from pipeline.train.split import rolling_folds, rows_in


def _lodged(days: int, rows: int, seed: int) -> pd.Series:
    rng = np.random.default_rng(seed)
    offsets = pd.to_timedelta(rng.uniform(0, days, rows), unit="D")
    return pd.Series(pd.Timestamp("2024-01-01") + offsets, index=np.arange(rows) * 5 + 3)


@given(
    days=st.integers(400, 800),
    valid=st.integers(10, 60),
    calibration=st.integers(0, 60),
    test=st.integers(10, 60),
    gap=st.floats(0, 30),
    holdout=st.integers(0, 40),
    seed=st.integers(0, 1000),
)
def test_windows_are_ordered_gapped_and_inside_the_data(
    days: int, valid: int, calibration: int, test: int, gap: float, holdout: int, seed: int
) -> None:
    lodged = _lodged(days, 3_000, seed)
    config = SplitConfig(
        valid_days=valid, calibration_days=calibration, test_days=test, gap_days=gap
    )
    windows = make_windows(lodged, config, holdout_days=holdout)
    ordered = windows.ordered()
    assert [w.name for w in ordered][:2] == ["train", "valid"]
    for before, after in itertools.pairwise(ordered):
        assert after.start - before.end >= pd.Timedelta(days=gap)
    end = lodged.max().normalize() + pd.Timedelta(days=1 - holdout)
    assert ordered[-1].end <= end
    # the held-out stretch belongs to no window
    held_out = lodged >= end
    for window in ordered:
        assert not (window.contains(lodged) & held_out.to_numpy()).any()
    # a declaration falls in at most one window
    membership = np.vstack([w.contains(lodged) for w in ordered]).sum(axis=0)
    assert membership.max() <= 1


@given(
    delay=st.floats(0, 40),
    gap=st.floats(0, 40),
    seed=st.integers(0, 1000),
)
def test_no_label_known_after_the_next_window_starts(delay: float, gap: float, seed: int) -> None:
    fs = feature_set(rows=2_000, seed=seed, delay_days=delay)
    config = SplitConfig(valid_days=40, calibration_days=30, test_days=40, gap_days=gap)
    windows = make_windows(fs.lodged_at, config)
    for window in windows.ordered():
        bound = windows.labels_known_by(window)
        mask = rows_in(fs, window, bound)
        assert fs.y[mask].notna().all()
        assert window.contains(fs.lodged_at)[mask].all()
        if bound is not None:
            assert (fs.label_known_at[mask] < bound).all()
    assert windows.labels_known_by(windows.test) is None


@given(folds=st.integers(1, 4), gap=st.floats(0, 20), seed=st.integers(0, 100))
def test_rolling_folds_expand_and_never_pass_the_validation_window(
    folds: int, gap: float, seed: int
) -> None:
    lodged = _lodged(600, 3_000, seed)
    config = SplitConfig(
        valid_days=30, calibration_days=20, test_days=30, gap_days=gap, folds=folds
    )
    windows = make_windows(lodged, config)
    pairs = rolling_folds(lodged, config, windows)
    assert len(pairs) == folds
    assert pairs[-1][1].start == windows.valid.start and pairs[-1][1].end == windows.valid.end
    for train, valid in pairs:
        assert train.start == windows.train.start
        assert valid.start - train.end >= pd.Timedelta(days=gap)
        assert valid.end <= windows.valid.end
    ends = [train.end for train, _ in pairs]
    assert ends == sorted(ends)


@example(folds=2, min_hits=1, rate=0.25, seed=10)  # a block holding enough, mid-day start
@given(
    folds=st.integers(1, 3),
    min_hits=st.integers(1, 400),
    rate=st.floats(0.01, 0.3),
    seed=st.integers(0, 100),
)
def test_folds_sized_by_hits_hold_them_or_reach_their_limit(
    folds: int, min_hits: int, rate: float, seed: int
) -> None:
    """Each validation block holds split.min_fold_hits hits, or reached back as far as it may
    (its fold keeps half the final training window); blocks never overlap or pass the final
    validation window, and a block reaches back no further than it needs."""
    lodged = _lodged(600, 3_000, seed)
    hits = np.random.default_rng(seed + 7_919).random(len(lodged)) < rate
    config = SplitConfig(
        valid_days=30,
        calibration_days=20,
        test_days=30,
        gap_days=7,
        folds=folds,
        min_fold_hits=min_hits,
    )
    windows = make_windows(lodged, config)
    pairs = rolling_folds(lodged, config, windows, hits)
    earliest = windows.train.start + (windows.valid.start - windows.train.start) / 2
    assert pairs[-1][1].end == windows.valid.end
    for train, valid in pairs:
        held = int(hits[valid.contains(lodged)].sum())
        assert valid.end - valid.start >= pd.Timedelta(days=30)
        floor = earliest.ceil("D")
        reached = valid.start <= floor or not Window("x", floor, valid.start).contains(lodged).any()
        assert held >= min_hits or reached
        if valid.start < valid.end - pd.Timedelta(days=30) and not reached:  # as far as needed
            later = Window("later", valid.start + pd.Timedelta(days=1), valid.end)
            assert int(hits[later.contains(lodged)].sum()) < min_hits
        if valid.start < pairs[-1][1].start:
            assert valid.end <= pairs[-1][1].start
        assert train.end == valid.start - pd.Timedelta(days=7)
    for (_, before), (_, after) in itertools.pairwise(pairs):
        assert before.end <= after.start


def test_explicit_dates_lay_windows_forwards() -> None:
    lodged = _lodged(455, 5_000, 1)  # 2024-01-01 .. 2025-03-31
    config = SplitConfig(
        train_start=dt.date(2024, 1, 1),
        train_end=dt.date(2024, 8, 1),
        valid_days=31,
        calibration_days=31,
        gap_days=30,
        test_start=dt.date(2025, 1, 1),
        test_end=dt.date(2025, 3, 31),
    )
    windows = make_windows(lodged, config)
    assert windows.train.end == pd.Timestamp("2024-08-01")
    assert windows.valid.start == pd.Timestamp("2024-08-31")
    assert windows.calibration.start == windows.valid.end + pd.Timedelta(days=30)
    assert windows.test.start == pd.Timestamp("2025-01-01")
    assert windows.test.end == pd.Timestamp("2025-03-31")


def test_an_overlapping_window_is_refused_with_its_dates() -> None:
    lodged = _lodged(455, 5_000, 2)
    config = SplitConfig(
        train_end=dt.date(2024, 8, 1),
        valid_days=60,
        calibration_days=60,
        gap_days=14,
        test_start=dt.date(2024, 9, 1),
    )
    with pytest.raises(SplitError, match=r"test \[2024-09-01.*overlaps calibration"):
        make_windows(lodged, config)


def test_a_gap_shorter_than_the_label_delay_is_refused() -> None:
    lodged = _lodged(455, 5_000, 2)
    config = SplitConfig(
        train_end=dt.date(2024, 6, 1),
        valid_days=30,
        calibration_days=30,
        gap_days=14,
        test_start=dt.date(2024, 9, 1),
    )
    with pytest.raises(SplitError, match=r"test \[2024-09-01.*4 days after calibration.*14 days"):
        make_windows(lodged, config)


def test_an_empty_window_is_refused() -> None:
    lodged = pd.concat([_lodged(100, 1_000, 3), _lodged(100, 1_000, 4) + pd.Timedelta(days=300)])
    config = SplitConfig(valid_days=30, calibration_days=30, test_days=30, gap_days=10)
    # valid falls in the 200-day hole of the data
    config = config.model_copy(update={"train_end": dt.date(2024, 4, 20)})
    with pytest.raises(SplitError, match=r"valid \[2024-04-30.*holds no declaration"):
        make_windows(lodged, config)


def test_windows_past_the_data_or_the_holdout_are_refused() -> None:
    lodged = _lodged(200, 1_000, 5)
    with pytest.raises(SplitError, match="reaches past the usable data"):
        make_windows(
            lodged,
            SplitConfig(test_start=dt.date(2024, 7, 1), test_end=dt.date(2024, 9, 1)),
        )
    with pytest.raises(SplitError, match="nothing is left"):
        make_windows(lodged, SplitConfig(), holdout_days=400)


def test_the_reference_window_lies_after_the_test_window_never_on_it() -> None:
    lodged = pd.Series(pd.date_range("2023-01-01", "2024-12-31 12:00", freq="6h"))
    config = SplitConfig(reference_days=30, test_days=60, valid_days=60, calibration_days=30)
    windows = make_windows(lodged, config, holdout_days=30)
    reference = lay_reference(lodged, windows.test, days=60, holdout_days=30)
    assert reference.start >= windows.test.end  # after the test window
    assert reference.end == pd.Timestamp("2025-01-01") - pd.Timedelta(days=30)  # held out after
    assert reference.days == 30  # only what lies after the test window, even when 60 are asked
    assert not (windows.test.contains(lodged) & reference.contains(lodged)).any()
    # a test window at the very end of the data: the stretch just before it
    flush = make_windows(lodged, SplitConfig(reference_days=0), holdout_days=30)
    before = lay_reference(lodged, flush.test, days=60, holdout_days=30)
    assert before.end == flush.test.start and before.days == 60
