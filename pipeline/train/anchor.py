"""The anchor of the calibrated level on the random stratum: its self-normalised IPW hit rate
over a span long enough to hold hits, the log-odds shift that matches it, and the level's
uncertainty (quantiles of the rate as further shifts)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.config import TrainConfig
from pipeline.features.featureset import FeatureSet
from pipeline.plan import RefitPlan, Windows
from pipeline.serve.model import Calibration
from pipeline.timeaxis import Window, datetimes
from pipeline.train.engine import Trees, margin
from pipeline.train.propensity import effective_rows, recorded_propensity
from pipeline.train.rows import cast_levels


@dataclass(frozen=True)
class Lodged:
    """The declarations an anchor reads, and from when `fs` holds every one of them (None: all
    along; on dask the workers read the training window, `fs` then holding only its hits)."""

    fs: FeatureSet
    whole_from: pd.Timestamp | None = None


@dataclass(frozen=True)
class CalibrationWindow:
    """The window a calibration was fitted on and the moment its labels had to be known by: the
    anchor's span ends where the window ends and counts only labels known by then (None: any)."""

    window: Window
    known_by: pd.Timestamp | None

    @classmethod
    def of_evaluated(cls, windows: Windows) -> CalibrationWindow:
        """The evaluated model's calibration window (its validation window when calibration
        has no days), its labels known by the start of the window after it."""
        window = windows.calibration if windows.calibration.days > 0 else windows.valid
        return cls(window, windows.labels_known_by(window))

    @classmethod
    def of_refit(cls, refit: RefitPlan) -> CalibrationWindow:
        """The deployed refit's calibration window, its labels known when it is deployed."""
        return cls(refit.calibration, refit.labels_known_by)


@dataclass(frozen=True)
class RandomStratum:
    """The random stratum of a span: its self-normalised IPW hit rate and its counts."""

    rate: float
    rows: int
    hits: int
    effective_rows: float  # Kish's effective rows (the rows themselves at one selection rate)

    @property
    def effective_hits(self) -> float:
        """The hits an unweighted sample of `effective_rows` with this hit rate would hold."""
        return self.rate * self.effective_rows if self.rows else 0.0


def random_stratum_rows(fs: FeatureSet, span: Window, known_by: pd.Timestamp | None) -> np.ndarray:
    """Mask of the random stratum's rows (`FeatureSet.stratum`) lodged in `span` whose label
    was known by `known_by` (any time when None)."""
    keep = fs.stratum & fs.labelled.to_numpy() & span.contains(fs.lodged_at)
    if known_by is not None:
        known = datetimes(fs.label_known_at) < known_by
        keep &= np.asarray(known.fillna(False), dtype=bool)
    return keep


def random_stratum_rate(
    fs: FeatureSet, span: Window, known_by: pd.Timestamp | None
) -> RandomStratum:
    """Hit rate of every declaration estimated on the random stratum (rows with a recorded
    selection probability) lodged in `span`, labels known by `known_by`: self-normalised IPW."""
    probability = recorded_propensity(fs)
    keep = random_stratum_rows(fs, span, known_by)
    y = fs.y.to_numpy(dtype=float)[keep]
    weight = 1.0 / probability[keep]
    rate = float((weight * y).sum() / weight.sum()) if len(y) else float("nan")
    return RandomStratum(rate, int(keep.sum()), int(y.sum()), effective_rows(weight))


def anchor_shift(probability: np.ndarray, target: float) -> float:
    """The log-odds shift that makes the mean of `probability` equal `target` (bisection)."""
    if not 0.0 < target < 1.0 or len(probability) == 0:
        return 0.0
    from scipy.optimize import brentq

    from pipeline.serve.model import shift_log_odds

    def gap(shift: float) -> float:
        return float(shift_log_odds(probability, shift).mean() - target)

    if gap(-20.0) > 0 or gap(20.0) < 0:
        return 0.0
    return float(brentq(gap, -20.0, 20.0, xtol=1e-6))


# Quantiles of the anchored level kept in the bundle: (k + 1/2) %, so the 3rd and the 98th are
# the 2.5 % and 97.5 % ends of its 95 % interval.
LEVEL_QUANTILES = 100
LEVEL_GRID_ROWS = 20_000  # rows the level's grid of shifts is read on (`level_shifts`)


def level_shifts(anchored: np.ndarray, stratum: RandomStratum) -> list[float]:
    """The anchored level's uncertainty, as log-odds shifts of the anchored probabilities.

    The random stratum is the only unbiased evidence of the level (officers pick on what the
    features do not show), so the level is as uncertain as its hit rate: Jeffreys' posterior
    Beta(hits + 1/2, rows - hits + 1/2) on the effective counts. Each of `LEVEL_QUANTILES`
    equally spaced quantiles of that rate becomes the shift that moves the mean of `anchored`
    (every declaration of the anchor's span) onto it, read off a grid of shifts: the mean is
    monotone in the shift, so interpolating its inverse is exact to the grid's curvature.
    """
    from scipy.stats import beta

    from pipeline.serve.model import shift_log_odds

    # The means over a sorted, evenly thinned copy (at most LEVEL_GRID_ROWS rows, each the middle
    # of its stretch of the order): the quantiles need the level to a fraction of a per cent, and
    # every anchored fit (a backtest's retrains too) would otherwise pay 241 passes over the span.
    ordered = np.sort(np.asarray(anchored, dtype=float))
    step = max(1, -(-len(ordered) // LEVEL_GRID_ROWS))
    thinned = ordered[step // 2 :: step]
    grid = np.linspace(-6.0, 6.0, 241)
    means = np.array([shift_log_odds(thinned, d).mean() for d in grid])
    hits, rows = stratum.effective_hits, stratum.effective_rows
    quantiles = (np.arange(LEVEL_QUANTILES) + 0.5) / LEVEL_QUANTILES
    rates = beta.ppf(quantiles, hits + 0.5, rows - hits + 0.5)
    return [round(float(d), 6) for d in np.interp(rates, means, grid)]


def anchor_span(
    fs: FeatureSet, available: Window, known_by: pd.Timestamp | None, train: TrainConfig
) -> Window:
    """The last `train.anchor_days` of `available`, reaching further back (day by day, to the
    start of `available` at most) when they hold fewer than `train.min_random_hits` random-stratum
    hits: a short span follows the fraud rate's drift, but a level needs hits to rest on."""
    days = pd.Timedelta(days=train.anchor_days)
    start = max(available.start, available.end - days)
    hit = random_stratum_rows(fs, available, known_by) & (fs.y.to_numpy(dtype=float) == 1.0)
    times = np.sort(datetimes(fs.lodged_at[hit]).to_numpy())
    needed = train.min_random_hits
    if len(times) >= needed and times[-needed] < start:
        start = max(available.start, pd.Timestamp(times[-needed]).floor("D"))
    return Window("anchor", start, available.end)


def anchor_calibration(
    calibration: Calibration,
    trees: Trees,
    lodged: Lodged,
    held: CalibrationWindow,
    train: TrainConfig,
) -> tuple[Calibration, str]:
    """Shift the calibrated log-odds so the mean probability over every declaration (controlled
    or not) of the last `train.anchor_days` before the calibration window's end is the random
    stratum's hit rate over the same days, labels known by `held.known_by`
    (`random_stratum_rate`), and keep the level's uncertainty (`level_shifts`). The evaluated
    model and the deployed refit each pass their own calibration window."""
    from pipeline.serve.model import shift_log_odds

    fs, earliest, booster = lodged.fs, lodged.whole_from, trees.booster
    first = pd.Timestamp(datetimes(fs.lodged_at).min())
    if earliest is not None:  # `fs` holds every declaration only from `earliest` on
        first = max(first, earliest)
    known_by = held.known_by
    span = anchor_span(fs, Window("data", first, held.window.end), known_by, train)
    stratum = random_stratum_rate(fs, span, known_by)
    if stratum.hits < train.min_random_hits:
        return calibration, (
            f"not anchored: {stratum.hits} random-stratum hits ({stratum.rows} rows) in {span}, "
            f"need {train.min_random_hits}"
        )
    # The mean probability over every declaration of the same span as the random rows: the two
    # sides of the match come from the same stretch of time (fraud drifts).
    inside = span.contains(fs.lodged_at)
    X = fs.X.loc[inside, booster.feature_names] if booster.feature_names else fs.X.loc[inside]
    p = calibration.apply(margin(booster, cast_levels(X, trees.levels, trees.ordered)))
    shift = anchor_shift(p, stratum.rate)
    bounds = level_shifts(shift_log_odds(p, shift), stratum)
    anchored = Calibration(
        **{**calibration.__dict__, "shift": calibration.shift + shift, "level_shifts": bounds}
    )
    return anchored, (
        f"anchored on the random stratum: {stratum.hits} hits in {stratum.rows} rows, hit rate "
        f"{stratum.rate:.2%}; mean probability over {int(inside.sum()):,} declarations of {span} "
        f"{p.mean():.2%} -> {stratum.rate:.2%} (log-odds shift {shift:+.3f}); the level's 95 % "
        f"interval is a further shift of [{bounds[2]:+.3f}, {bounds[97]:+.3f}]"
    )
