"""The run plan: what `targeting train` decides once and every later stage reads.

`build_plan` lays, from the config and the data's time axis, the windows by role (the evaluated
model's train, valid, calibration and test windows; the deployed refit's train, calibration and
selection windows; the thresholds' reference window; the incoming stretch `run` scores), and
records the random-stratum rule, the ranking policy and the headline rate. The plan is frozen and
pure; it is written with the model (`ModelInfo.plan`), and a model saved before the plan existed
has its plan rebuilt from the windows it recorded (`plan_of`), by the same functions.

Windows are start-inclusive and end-exclusive. The evaluated model's, in time order::

    train | gap | valid (early stopping) | gap | calibration | gap | test | reference

The last `holdout_days` of a simulated stream belong to no window of the fit: they play the
declarations scored after training (`incoming`). Pure pandas: `serve` may import it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from pipeline.config import Config, DataConfig, ServeConfig, SplitConfig
from pipeline.features.featureset import FeatureSet
from pipeline.ingest.columns import RANDOM
from pipeline.timeaxis import Window, after_last, data_end, datetimes, instants

Role = Literal["evaluated", "deployed"]


class SplitError(ValueError):
    """A window that is empty, overlaps another or lies outside the data."""


# --- the end of the data --------------------------------------------------------------------------


def held_out_days(data: DataConfig, serve: ServeConfig) -> int:
    """Days at the end of the data kept away from training (the declarations `run` scores): the
    last `serve.score_last_days` of a simulated stream, none of data read from files."""
    return serve.score_last_days if data.source == "simulate" else 0


def data_span(lodged_at: pd.Series, holdout_days: int = 0) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First lodging day and the end (exclusive) of the usable data (`timeaxis.data_end`)."""
    times = datetimes(lodged_at)
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


# --- the evaluated model's windows ----------------------------------------------------------------


@dataclass(frozen=True)
class Windows:
    """The evaluated model's four windows, in time order."""

    train: Window
    valid: Window
    calibration: Window
    test: Window

    def ordered(self) -> tuple[Window, ...]:
        """The windows in time order (an empty calibration window is left out)."""
        every = (self.train, self.valid, self.calibration, self.test)
        return tuple(w for w in every if w.end > w.start)

    def as_dict(self) -> dict[str, dict[str, str]]:
        """Window name -> {start, end}."""
        return {w.name: w.as_dict() for w in (self.train, self.valid, self.calibration, self.test)}

    @classmethod
    def from_dict(cls, windows: dict[str, dict[str, str]]) -> Windows:
        """The windows written by `as_dict` (a model's info)."""
        made = {
            name: Window(
                name, pd.Timestamp(windows[name]["start"]), pd.Timestamp(windows[name]["end"])
            )
            for name in ("train", "valid", "calibration", "test")
        }
        return cls(**made)

    def labels_known_by(self, window: Window) -> pd.Timestamp | None:
        """The moment a window's labels must be known by: the next window's start (test: none)."""
        following = self.ordered()
        names = [w.name for w in following]
        if window.name not in names or window.name == following[-1].name:
            return None
        return following[names.index(window.name) + 1].start


def check_windows(
    windows: list[Window], gap: pd.Timedelta, lodged_at: pd.Series, end: pd.Timestamp
) -> None:
    """Refuse an empty window, a window past the data, or two windows closer than the gap."""
    times = datetimes(lodged_at)
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


def _day(value: object) -> pd.Timestamp:
    return pd.Timestamp(value)


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
    check_windows(windows, gap, lodged_at, end)
    if not config.calibration_days:
        calibration = Window("calibration", valid.end, valid.end)
    return Windows(train=train, valid=valid, calibration=calibration, test=test)


# --- the deployed refit's windows -----------------------------------------------------------------


@dataclass(frozen=True)
class RefitRule:
    """How the deployed refit's windows are laid: its calibration stretch (days, reaching back
    until it holds `min_hits` hits) and its selection model's stretch (days; 0: none)."""

    calibration_days: int
    min_hits: int = 1
    selection_days: int = 0

    @classmethod
    def of(cls, config: Config) -> RefitRule:
        """The rule `targeting train` lays the refit by (the walk-forward's, at each cut-off)."""
        return cls(
            config.split.calibration_days,
            config.train.min_calibration_hits,
            config.split.valid_days,
        )


@dataclass(frozen=True)
class RefitPlan:
    """The deployed refit's windows: every label known by `labels_known_by` (the moment it is
    deployed), the latest stretch of it held for calibration, everything before it for training;
    the selection model learns on the training window's last stretch (`selection`), never on the
    calibration rows it weighs."""

    train: Window
    calibration: Window
    labels_known_by: pd.Timestamp
    selection: Window | None = None

    def as_dict(self) -> dict[str, dict[str, str]]:
        """Window name -> {start, end}."""
        own = {"train": self.train.as_dict(), "calibration": self.calibration.as_dict()}
        return own | ({"selection": self.selection.as_dict()} if self.selection else {})

    def to_dict(self) -> dict[str, object]:
        """As the plan records it: the windows and when the labels had to be known."""
        return {"windows": self.as_dict(), "labels_known_by": self.labels_known_by.isoformat()}

    @classmethod
    def from_dict(cls, refit: Mapping[str, Any]) -> RefitPlan:
        """The refit written by `to_dict`."""
        windows = refit["windows"]
        found = windows.get("selection")
        return cls(
            _window("refit-train", windows["train"]),
            _window("refit-calibration", windows["calibration"]),
            pd.Timestamp(refit["labels_known_by"]),
            _window("refit-selection", found) if found else None,
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


def lay_refit(
    fs: FeatureSet, train_start: pd.Timestamp, end: pd.Timestamp, rule: RefitRule
) -> RefitPlan:
    """Windows of the refit on every label known at `end` (the end of the usable data, or a past
    cut-off of the walk-forward evaluation: the same rule at both).

    Training starts at `train_start` (where the evaluated model's did); the calibration window is
    the last `rule.calibration_days` before the latest labelled declaration, reaching back until
    it holds `rule.min_hits` hits, never past the middle of the labelled span (none with 0 days).
    No gap is needed between them: every label counts only if known before `end`, the moment the
    refit is deployed. `rule.selection_days` > 0: the selection model's window, the last days of
    the training window.
    """
    known = datetimes(fs.label_known_at)
    lodged = instants(fs.lodged_at)
    usable = fs.y.notna().to_numpy() & np.asarray((known < end).fillna(False), dtype=bool)
    usable &= lodged < end.to_datetime64()
    if not usable.any():
        raise SplitError(f"no label is known before the end of the data ({end:%Y-%m-%d})")
    last = pd.Timestamp(lodged[usable].max())
    labelled_end = last.normalize() + pd.Timedelta(days=1)
    hit = usable & (fs.y.to_numpy(dtype=float) == 1.0)
    days = rule.calibration_days
    cal_start = (
        _calibration_start(lodged, hit, labelled_end, days, rule.min_hits) if days else labelled_end
    )
    # Reaching back for hits never takes more than half of the labelled span from training.
    half = train_start + (labelled_end - train_start) / 2
    cal_start = max(cal_start, min(half.floor("D"), labelled_end - pd.Timedelta(days=days)))
    cal_start = max(cal_start, train_start + pd.Timedelta(days=1))
    train = Window("refit-train", train_start, cal_start)
    calibration = Window("refit-calibration", cal_start, labelled_end)
    if train.end <= train.start:
        raise SplitError(f"{train} is empty: fewer labelled days than split.calibration_days")
    reach = pd.Timedelta(days=rule.selection_days)
    selection = (
        Window("refit-selection", max(train.start, cal_start - reach), cal_start)
        if rule.selection_days
        else None
    )
    return RefitPlan(train, calibration, end, selection)


# --- the reference and incoming stretches ---------------------------------------------------------


def lay_reference(lodged_at: pd.Series, test: Window, days: int, holdout_days: int = 0) -> Window:
    """The thresholds' reference window: the most recent `days` of the usable data (before the
    held-out days) that lie after the test window, never the test window itself.

    The cut-offs and expected channel KPIs are set there, for the evaluated model and the
    deployed refit alike, so they are not computed on the rows the test metrics come from. When
    nothing lies after the test window (a test window pinned at the end of the data), the `days`
    before it.
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


def lay_incoming(lodged_at: pd.Series, days: int) -> Window:
    """The stretch `run` scores as incoming declarations: the last `days` of the data, from the
    day boundary where the training holdout begins to the first instant after the last one."""
    return Window("incoming", data_end(lodged_at, days), after_last(lodged_at))


# --- ranking and the headline ---------------------------------------------------------------------

RANK_BY = ("auto", "probability", "expected_revenue", "blend")
TARGET_RATE = 0.05  # the control rate a headline is read at when configured, else the nearest


def resolve_rank_by(has_revenue: bool, setting: str) -> str:
    """`probability`, `expected_revenue` or `blend` from the config's `serve.rank_by`.

    ``auto`` ranks by expected revenue when the model has a revenue part, else by probability.
    """
    if setting not in RANK_BY:
        raise ValueError(f"serve.rank_by={setting!r}: choose one of {RANK_BY}")
    if setting == "auto":
        return "expected_revenue" if has_revenue else "probability"
    if setting in ("expected_revenue", "blend") and not has_revenue:
        raise ValueError(f"serve.rank_by={setting}, but the model has no revenue part")
    return setting


def headline_rate(rates: list[float] | tuple[float, ...]) -> float:
    """The configured control rate nearest 5 %, at which the headline and breakdowns are read."""
    return min((float(r) for r in rates), key=lambda r: abs(r - TARGET_RATE))


@dataclass(frozen=True)
class RankingPolicy:
    """How declarations are ranked for control: `rank_by` (the config's setting, ``auto`` until
    resolved against a model) and the blend's weight of E[revenue | hit], one object."""

    rank_by: str
    revenue_weight: float = 1.0

    def resolved(self, has_revenue: bool) -> RankingPolicy:
        """The policy resolved against a model with or without a revenue part."""
        return replace(self, rank_by=resolve_rank_by(has_revenue, self.rank_by))


AUTO = RankingPolicy("auto")  # by expected revenue where the model has a revenue part
BY_PROBABILITY = RankingPolicy("probability")


# --- the plan -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunPlan:
    """What a run decided once: the windows by role, the random stratum's selection reason (its
    rows: `ingest.columns.random_stratum`, the one rule), the ranking policy (resolved against the
    model the plan is recorded with) and the headline rate.

    `evaluated`: the evaluated model's four windows; `refit`: the deployed refit's windows (None
    without a refit); `reference`: where the cut-offs are set; `incoming`: the stretch `run`
    scores; `usable_end`: the end of the usable data (before the held-out days), where the
    deployed refit's labels had to be known and the walk-forward's last cut-off lies.
    """

    evaluated: Windows
    refit: RefitPlan | None
    reference: Window
    incoming: Window
    usable_end: pd.Timestamp
    ranking: RankingPolicy
    headline_rate: float
    random_reason: str = RANDOM

    @property
    def test(self) -> Window:
        """The evaluated model's test window: where every held-out judgement is made."""
        return self.evaluated.test

    def training_window(self, role: Role) -> Window:
        """The window the booster of the model in `role` learned from."""
        if role == "deployed" and self.refit is not None:
            return self.refit.train
        return self.evaluated.train

    def named_windows(self, role: Role) -> dict[str, Window]:
        """The windows of the model in `role` by name, the test window last: the evaluated
        model's four, or the deployed refit's train and calibration windows with the evaluated
        model's test window (the refit learned from it: its figures there are in sample)."""
        e, refit = self.evaluated, self.refit
        if role == "deployed" and refit is not None:
            return {"train": refit.train, "calibration": refit.calibration, "test": e.test}
        return {"train": e.train, "valid": e.valid, "calibration": e.calibration, "test": e.test}

    def reference_at(self, cutoff: pd.Timestamp) -> Window:
        """The reference window of a deployment at `cutoff` (the walk-forward's): as long as the
        plan's, ending at the cut-off."""
        return Window("reference", cutoff - pd.Timedelta(days=self.reference.days), cutoff)

    def drift_reference(self, role: Role, days: int | None) -> Window:
        """The drift monitor's reference: the last `days` of the training window of the model in
        `role` (all of it when None)."""
        train = self.training_window(role)
        start = train.start
        if days is not None:
            start = max(start, train.end - pd.Timedelta(days=days))
        return Window("reference", start, train.end)

    def for_model(self, has_revenue: bool) -> RunPlan:
        """The plan with its ranking resolved against a model (with or without revenue part)."""
        return replace(self, ranking=self.ranking.resolved(has_revenue))

    def to_dict(self) -> dict[str, object]:
        """As the model's info records it (`ModelInfo.plan`)."""
        return {
            "windows": self.evaluated.as_dict(),
            "refit": self.refit.to_dict() if self.refit is not None else None,
            "reference": self.reference.as_dict(),
            "incoming": self.incoming.as_dict(),
            "usable_end": self.usable_end.isoformat(),
            "rank_by": self.ranking.rank_by,
            "revenue_weight": self.ranking.revenue_weight,
            "headline_rate": self.headline_rate,
            "random_reason": self.random_reason,
        }

    @classmethod
    def from_dict(cls, plan: Mapping[str, Any]) -> RunPlan:
        """The plan written by `to_dict`."""
        return cls(
            evaluated=Windows.from_dict(dict(plan["windows"])),
            refit=RefitPlan.from_dict(plan["refit"]) if plan.get("refit") else None,
            reference=_window("reference", plan["reference"]),
            incoming=_window("incoming", plan["incoming"]),
            usable_end=pd.Timestamp(plan["usable_end"]),
            ranking=RankingPolicy(str(plan["rank_by"]), float(plan["revenue_weight"])),
            headline_rate=float(plan["headline_rate"]),
            random_reason=str(plan.get("random_reason", RANDOM)),
        )


def _window(name: str, span: Mapping[str, str]) -> Window:
    return Window(name, pd.Timestamp(span["start"]), pd.Timestamp(span["end"]))


def plan_around(
    config: Config, lodged_at: pd.Series, evaluated: Windows, refit: RefitPlan | None
) -> RunPlan:
    """The plan around the evaluated model's windows and the refit's: the reference window after
    the test window, the incoming stretch, the ranking policy and the headline rate."""
    held = held_out_days(config.data, config.serve)
    serve = config.serve
    return RunPlan(
        evaluated=evaluated,
        refit=refit,
        reference=lay_reference(lodged_at, evaluated.test, serve.reference_days, held),
        incoming=lay_incoming(lodged_at, serve.score_last_days),
        usable_end=data_span(lodged_at, held)[1],
        ranking=RankingPolicy(serve.rank_by, serve.revenue_weight),
        headline_rate=headline_rate(config.evaluate.rates),
    )


def build_plan(config: Config, fs: FeatureSet) -> RunPlan:
    """The run's plan, laid once by `targeting train` from the config and the feature set's time
    axis and labels (the refit's windows, when `train.refit`); the ranking stays the config's
    setting until resolved against a model (`RunPlan.for_model`)."""
    held = held_out_days(config.data, config.serve)
    evaluated = make_windows(fs.lodged_at, config.split, held)
    refit = None
    if config.train.refit:
        _, end = data_span(fs.lodged_at, held)
        refit = lay_refit(fs, evaluated.train.start, end, RefitRule.of(config))
    return plan_around(config, fs.lodged_at, evaluated, refit)
