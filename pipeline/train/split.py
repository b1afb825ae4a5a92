"""Time windows by lodging date, with a gap equal to the label delay.

Windows are start-inclusive and end-exclusive. The final fit uses, in time order::

    train | gap | valid (early stopping) | gap | calibration | gap | test

and tuning uses prequential (rolling) folds: an expanding training window, then a validation
block after a gap. A window's labelled rows count only when their label was known before the next
window starts (`rows_in`): a model deployed at that moment could not have used a later label. The
last `holdout_days` of data belong to no window: they play the declarations scored after training.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.config import Config, SplitConfig
from pipeline.features.featureset import FeatureSet
from pipeline.timeaxis import Window, Windows, data_end, instants


class SplitError(ValueError):
    """A window that is empty, overlaps another or lies outside the data."""


def _day(value: object) -> pd.Timestamp:
    return pd.Timestamp(value)


def data_span(lodged_at: pd.Series, holdout_days: int = 0) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First lodging day and the end (exclusive) of the usable data (`timeaxis.data_end`)."""
    times = pd.to_datetime(lodged_at)
    if times.isna().all():
        raise SplitError("lodged_at has no dates: cannot place time windows")
    first = times.min().normalize()
    end = data_end(times, holdout_days)
    if end <= first:
        raise SplitError(
            f"the data spans {first:%Y-%m-%d}..{times.max():%Y-%m-%d}: nothing is left after "
            f"holding out the last {holdout_days} days"
        )
    return first, end


def _check(
    windows: list[Window], gap: pd.Timedelta, lodged_at: pd.Series, end: pd.Timestamp
) -> None:
    """Refuse an empty window, a window past the data, or two windows closer than the gap."""
    times = pd.to_datetime(lodged_at)
    for window in windows:
        if window.end <= window.start:
            raise SplitError(f"{window} is empty: its end is not after its start")
        if window.end > end:
            raise SplitError(f"{window} reaches past the usable data, which ends {end:%Y-%m-%d}")
        if not window.contains(times).any():
            raise SplitError(f"{window} holds no declaration")
    for before, after in itertools.pairwise(windows):
        if after.start < before.end:
            raise SplitError(f"{after} overlaps {before}")
        if after.start - before.end < gap:
            raise SplitError(
                f"{after} starts {(after.start - before.end) / pd.Timedelta(days=1):g} days after "
                f"{before}; the gap (label delay) is {gap / pd.Timedelta(days=1):g} days"
            )


def make_windows(lodged_at: pd.Series, config: SplitConfig, holdout_days: int = 0) -> Windows:
    """Train, validation, calibration and test windows over the lodging dates.

    With `config.train_end`, windows are laid out forwards from it (valid after a gap, then
    calibration, then test; `test_start` / `test_end` may pin the test window). Without it they are
    laid out backwards from the end of the usable data (or from `test_end`). `train_start`
    defaults to the first lodging day, moved past `burn_in_days` (cold start) when set. A
    calibration window of 0 days is allowed (no calibration).
    """
    first, end = data_span(lodged_at, holdout_days)
    gap = pd.Timedelta(days=config.gap_days)
    valid_len = pd.Timedelta(days=config.valid_days)
    cal_len = pd.Timedelta(days=config.calibration_days)
    test_len = pd.Timedelta(days=config.test_days)
    explicit_test_start = _day(config.test_start) if config.test_start else None
    explicit_test_end = _day(config.test_end) if config.test_end else None

    if config.train_end is None and explicit_test_end is None:
        end = end - pd.Timedelta(days=config.reference_days)  # kept for the reference window
    if config.train_end is not None:
        train_end = _day(config.train_end)
        valid = Window("valid", train_end + gap, train_end + gap + valid_len)
        cal_start = valid.end + (gap if config.calibration_days else pd.Timedelta(0))
        calibration = Window("calibration", cal_start, cal_start + cal_len)
        test_start = explicit_test_start or (calibration.end + gap)
        test_end = explicit_test_end or min(test_start + test_len, end)
    else:
        test_end = explicit_test_end or end
        test_start = explicit_test_start or (test_end - test_len)
        cal_end = test_start - gap
        calibration = Window("calibration", cal_end - cal_len, cal_end)
        valid_end = calibration.start - (gap if config.calibration_days else pd.Timedelta(0))
        valid = Window("valid", valid_end - valid_len, valid_end)
        train_end = valid.start - gap
    train_start = _day(config.train_start) if config.train_start else first
    train_start = max(train_start, first + pd.Timedelta(days=config.burn_in_days))
    train = Window("train", train_start, train_end)
    test = Window("test", test_start, test_end)
    windows = [train, valid, *([calibration] if config.calibration_days else []), test]
    _check(windows, gap, lodged_at, end)
    if not config.calibration_days:
        calibration = Window("calibration", valid.end, valid.end)
    return Windows(train=train, valid=valid, calibration=calibration, test=test)


@dataclass(frozen=True)
class RefitWindows:
    """The deployed model's windows: every label known at the end of the data, the latest
    stretch of it (at least `calibration_days`, reaching back for hits) held for calibration,
    everything before it for training; the selection model learns on the training window's last
    stretch (`selection`), never on the calibration rows it weighs."""

    train: Window
    calibration: Window
    labels_known_by: pd.Timestamp
    selection: Window | None = None

    def as_dict(self) -> dict[str, dict[str, str]]:
        """Window name -> {start, end}."""
        own = {"train": self.train.as_dict(), "calibration": self.calibration.as_dict()}
        return own | ({"selection": self.selection.as_dict()} if self.selection else {})

    def as_windows(self) -> Windows:
        """As `Windows` (no validation window; the deployment opens when the labels had to be
        known), so that the calibration's labels count only if known by then."""
        start = self.calibration.start
        return Windows(
            train=self.train,
            valid=Window("refit-valid", start, start),
            calibration=self.calibration,
            test=Window(
                "deployment", self.labels_known_by, self.labels_known_by + pd.Timedelta(days=1)
            ),
        )


def _calibration_start(
    lodged: np.ndarray, hit: np.ndarray, labelled_end: pd.Timestamp, days: int, min_hits: int
) -> pd.Timestamp:
    """The start of the last `days` before `labelled_end`, moved back to the day of the
    `min_hits`-th latest hit when those days hold fewer (the latest days hold few known labels)."""
    start = labelled_end - pd.Timedelta(days=days)
    times = np.sort(lodged[hit])
    if len(times) >= min_hits and times[-min_hits] < start.to_datetime64():
        start = pd.Timestamp(times[-min_hits]).floor("D")
    return start


def refit_windows(
    fs: FeatureSet,
    windows: Windows,
    calibration_days: int,
    holdout_days: int = 0,
    *,
    end: pd.Timestamp | None = None,
    min_hits: int = 1,
    selection_days: int = 0,
) -> RefitWindows:
    """Windows of the refit on every label known at the end of the usable data (or at `end`, a
    past cut-off of the walk-forward evaluation).

    Training starts where the evaluated model's did; the calibration window is the last
    `calibration_days` before the latest labelled declaration, reaching back until it holds
    `min_hits` hits, never past the middle of the labelled span (none with 0 days). No gap is
    needed between them: every label counts only if known before `end`, the moment the refit is
    deployed. `selection_days` > 0: the selection
    model's window, the last days of the training window.
    """
    if end is None:
        _, end = data_span(fs.lodged_at, holdout_days)
    known = pd.to_datetime(fs.label_known_at)
    lodged = instants(fs.lodged_at)
    usable = fs.y.notna().to_numpy() & np.asarray((known < end).fillna(False), dtype=bool)
    usable &= lodged < end.to_datetime64()
    if not usable.any():
        raise SplitError(f"no label is known before the end of the data ({end:%Y-%m-%d})")
    last = pd.Timestamp(lodged[usable].max())
    labelled_end = last.normalize() + pd.Timedelta(days=1)
    hit = usable & (fs.y.to_numpy(dtype=float) == 1.0)
    cal_start = (
        _calibration_start(lodged, hit, labelled_end, calibration_days, min_hits)
        if calibration_days
        else labelled_end
    )
    # Reaching back for hits never takes more than half of the labelled span from training.
    half = windows.train.start + (labelled_end - windows.train.start) / 2
    cal_start = max(
        cal_start, min(half.floor("D"), labelled_end - pd.Timedelta(days=calibration_days))
    )
    cal_start = max(cal_start, windows.train.start + pd.Timedelta(days=1))
    train = Window("refit-train", windows.train.start, cal_start)
    calibration = Window("refit-calibration", cal_start, labelled_end)
    if train.end <= train.start:
        raise SplitError(f"{train} is empty: fewer labelled days than split.calibration_days")
    reach = pd.Timedelta(days=selection_days)
    selection = (
        Window("refit-selection", max(train.start, cal_start - reach), cal_start)
        if selection_days
        else None
    )
    return RefitWindows(train, calibration, end, selection)


def deployed_windows(
    fs: FeatureSet,
    windows: Windows,
    config: Config,
    *,
    holdout_days: int = 0,
    end: pd.Timestamp | None = None,
) -> RefitWindows:
    """The deployed refit's windows as `targeting train` lays them (`refit_windows`) at the end
    of the usable data, or at `end` (a walk-forward cut-off)."""
    return refit_windows(
        fs,
        windows,
        config.split.calibration_days,
        holdout_days,
        end=end,
        min_hits=config.train.min_calibration_hits,
        selection_days=config.split.valid_days,
    )


def reference_window(
    lodged_at: pd.Series, test: Window, days: int, holdout_days: int = 0
) -> Window:
    """The thresholds' reference window: the most recent `days` of the usable data (before the
    held-out days) that lie after the test window, never the test window itself.

    The evaluated model's cut-offs and expected channel KPIs are set there, so they are not
    computed on the rows its test metrics come from. A refit on every label calls it with its
    own last window (`test`: the stretch the refit was judged on, or an empty window at the end
    of its training data) to take the stretch before the end of the data. When nothing lies
    after the test window (a test window pinned at the end of the data), the `days` before it.
    """
    first, end = data_span(lodged_at, holdout_days)
    start = max(test.end, end - pd.Timedelta(days=days))
    window = Window("reference", start, end)
    if window.end > window.start and window.contains(lodged_at).any():
        return window
    # Nothing after the test window (a pinned test window at the end of the data, as on KCS):
    # the stretch just before it, still never the test window's rows.
    before = Window("reference", max(first, test.start - pd.Timedelta(days=days)), test.start)
    if before.end <= before.start or not before.contains(lodged_at).any():
        raise SplitError(
            f"no declaration after {test} nor before it for the thresholds' reference window"
        )
    return before


def _block_start(
    day_hits: pd.Series, end: pd.Timestamp, length: pd.Timedelta, hits: int, earliest: pd.Timestamp
) -> pd.Timestamp:
    """The start of a validation block ending at `end`: `length` before it, or earlier, a whole
    day at a time, until the block holds `hits` labelled hits (never before `earliest`)."""
    start = end - length
    if hits <= 0 or start <= earliest:
        return start
    before = day_hits[(day_hits.index < end) & (day_hits.index >= earliest)]
    # Hits in [day, end) for each day, latest day first: the latest start that holds enough.
    held = before.iloc[::-1].cumsum()
    enough = held[(held >= hits) & (held.index <= start)]
    if len(enough):
        return min(start, pd.Timestamp(enough.index[0]))
    return min(start, pd.Timestamp(before.index[0])) if len(before) else start


def rolling_folds(
    lodged_at: pd.Series,
    config: SplitConfig,
    windows: Windows,
    hits: np.ndarray | None = None,
) -> list[tuple[Window, Window]]:
    """Prequential folds for tuning, oldest first: expanding train, gap, a validation block.

    The last fold's validation block is the final fit's validation window; each earlier block
    ends where the next one starts. With `split.min_fold_hits` and `hits` (a labelled-hit flag
    per declaration) a block reaches back past its `valid_days` until it holds that many hits, so
    that every fold can tell trials apart. Nothing after the validation window is ever used.
    """
    gap = pd.Timedelta(days=config.gap_days)
    length = windows.valid.end - windows.valid.start
    day_hits = pd.Series(dtype=float)
    if hits is not None and config.min_fold_hits > 0:
        days = pd.to_datetime(lodged_at).dt.normalize()
        day_hits = pd.Series(np.asarray(hits, dtype=float)).groupby(days.to_numpy()).sum()
    # A block never reaches back so far that its fold trains on less than half of the final
    # fit's training window.
    earliest = windows.train.start + (windows.valid.start - windows.train.start) / 2
    blocks: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    end = windows.valid.end
    for _ in range(config.folds):
        start = _block_start(day_hits, end, length, config.min_fold_hits, earliest.ceil("D"))
        blocks.append((start, end))
        end = start
    folds: list[tuple[Window, Window]] = []
    for number, (start, end) in enumerate(reversed(blocks)):
        valid = Window(f"fold{number}-valid", start, end)
        train = Window(f"fold{number}-train", windows.train.start, valid.start - gap)
        _check([train, valid], gap, lodged_at, windows.valid.end)
        folds.append((train, valid))
    return folds


def rows_in(fs: FeatureSet, window: Window, labels_known_by: pd.Timestamp | None) -> np.ndarray:
    """Labelled declarations lodged in `window` whose label was known before `labels_known_by`.

    None means every known label counts (evaluation on the test window). A row without a
    `label_known_at` is left out when a bound is given.
    """
    mask = window.contains(fs.lodged_at) & fs.y.notna().to_numpy()
    if labels_known_by is not None:
        known = pd.to_datetime(fs.label_known_at)
        mask &= np.asarray((known < labels_known_by).fillna(False), dtype=bool)
    return np.asarray(mask, dtype=bool)
