"""Exponentially decayed profiles (`features.profile_half_lives`): controls and hits counted with
a weight that halves every half-life since the controlled declaration was lodged, and the hit
rate smoothed from those counts, so that what an entity did last month weighs more than what it
did a year ago.

At lodging day t a decayed count is ``sum_e v_e exp(-(t - d_e) / tau)`` over the outcomes known
before t (``v_e`` the control or hit, ``d_e`` the lodging day of the controlled declaration,
``tau = half_life / ln 2``). Training computes it with the profiles' own as-of join: each event
is scaled by ``exp((d_e - ref) / tau)``, summed as of each declaration like any count, and the
sum multiplied back by ``exp((ref - t) / tau)``. The reference day ``ref`` is the first day
joined (no later declaration moves it), and neither factor may leave float64's range
(`reference_day` refuses a half-life too short for the span). A profile table (snapshot, chunk
carry) holds each key's decayed sums as logarithms relative to day 0 of the epoch,
``log sum_e v_e exp(d_e / tau)``: valid at any cut-off, merged by log-sum-exp, and read back at
a lodging day t as ``exp(log - t / tau)``; serving and training therefore give the same values
up to float64 rounding (far below float32's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.config import FeaturesConfig
from pipeline.features.profiles import RATE_COLUMNS, event_columns, smoothed_rate

LN2 = float(np.log(2.0))
# Largest exponent a scale factor may take: exp(709) overflows float64; the margin leaves room
# for the sums of many scaled events.
MAX_EXPONENT = 600.0


@dataclass(frozen=True)
class Decayed:
    """One decayed column: the summed ``source`` column (controls, hits...) at ``half_life``."""

    source: str
    half_life: int

    @property
    def column(self) -> str:
        """Its name among a key's totals: ``controls_hl30``."""
        return f"{self.source}_hl{self.half_life}"

    @property
    def log_column(self) -> str:
        """Its name in a profile table, which holds it as a logarithm: ``log_controls_hl30``."""
        return f"log_{self.column}"

    @property
    def per_day(self) -> float:
        """The decay rate 1 / tau, per day."""
        return LN2 / self.half_life


def family(half_life: int) -> str:
    """The feature family of a half-life's decayed profiles: ``decayed_30``."""
    return f"decayed_{half_life}"


def decayed_columns(config: FeaturesConfig) -> list[Decayed]:
    """The decayed columns of the config: controls and hits (and the random stratum's rate
    columns when the rates come from it) at every half-life."""
    sources = ["controls", "hits", *(RATE_COLUMNS if config.random_stratum_only else ())]
    return [Decayed(s, h) for h in config.profile_half_lives for s in sources]


def reference_day(days: Sequence[np.ndarray], config: FeaturesConfig) -> float:
    """The first whole day of the ``days`` joined in one pass, where the scale factors are 1:
    it depends on no later day, so adding later declarations changes no earlier value, not even
    in its last bit. Refuses a half-life whose factors would leave float64's range over the
    span."""
    finite = [d[np.isfinite(d)] for d in days]
    values = np.concatenate(finite) if finite else np.zeros(0)
    if not len(values) or not config.profile_half_lives:
        return 0.0
    ref, high = float(np.floor(values.min())), float(values.max())
    shortest = min(config.profile_half_lives)
    if (high - ref) * LN2 / shortest > MAX_EXPONENT:
        longest_span = MAX_EXPONENT * shortest / LN2
        raise ValueError(
            f"features.profile_half_lives: a half-life of {shortest} days is too short for the "
            f"{high - ref:.0f} days joined in one pass (at most {longest_span:.0f}); use longer "
            "half-lives or build over chunks (features.chunk_months)"
        )
    return ref


def _source_positions(config: FeaturesConfig) -> list[int]:
    """The position of each decayed column's source among the outcome events' values (the
    profile columns without `declarations`)."""
    names = event_columns(config)[1:]
    return [names.index(d.source) for d in decayed_columns(config)]


def scaled_events(
    values: np.ndarray, event_day: np.ndarray, ref: float, config: FeaturesConfig
) -> np.ndarray:
    """Events x decayed columns: each outcome event's source value scaled by
    ``exp((d_e - ref) / tau)``, what the as-of join sums."""
    decayed = decayed_columns(config)
    rates = np.array([d.per_day for d in decayed])
    return values[:, _source_positions(config)] * np.exp(np.outer(event_day - ref, rates))


def rescaled(
    sums: np.ndarray, query_day: np.ndarray, ref: float, config: FeaturesConfig
) -> dict[str, np.ndarray]:
    """The decayed totals at each query's lodging day from the join's sums of `scaled_events`
    (queries x decayed columns)."""
    return {
        d.column: sums[:, j] * np.exp((ref - query_day) * d.per_day)
        for j, d in enumerate(decayed_columns(config))
    }


def log_events(values: np.ndarray, event_day: np.ndarray, config: FeaturesConfig) -> np.ndarray:
    """Events x decayed columns as a profile table holds them: ``log v_e + d_e / tau``
    (-inf where the value is 0)."""
    decayed = decayed_columns(config)
    rates = np.array([d.per_day for d in decayed])
    with np.errstate(divide="ignore"):
        return np.log(values[:, _source_positions(config)]) + np.outer(event_day, rates)


def group_logsumexp(group: np.ndarray, logs: np.ndarray) -> np.ndarray:
    """``log sum exp`` of the rows of ``logs`` within each group, groups in sorted order (as
    pandas' sorted groupby gives them); -inf for a group without a positive value."""
    if not logs.shape[1]:
        return np.zeros((len(np.unique(group)), 0))
    frame = pd.DataFrame(logs, copy=False)
    top = frame.groupby(group, sort=True).max().to_numpy(np.float64)
    inverse = np.unique(group, return_inverse=True)[1].reshape(-1)
    shift = top[inverse]
    finite = np.isfinite(shift)
    with np.errstate(invalid="ignore"):
        scaled = np.where(finite, np.exp(logs - np.where(finite, shift, 0.0)), 0.0)
    sums = pd.DataFrame(scaled, copy=False).groupby(group, sort=True).sum().to_numpy(np.float64)
    with np.errstate(divide="ignore"):
        return np.where(np.isfinite(top), top + np.log(sums), -np.inf)


def from_logs(
    logs: np.ndarray, query_day: np.ndarray, config: FeaturesConfig
) -> dict[str, np.ndarray]:
    """The decayed totals at each query's lodging day from a profile table's logarithms
    (queries x decayed columns; -inf: nothing known)."""
    return {
        d.column: np.exp(logs[:, j] - query_day * d.per_day)
        for j, d in enumerate(decayed_columns(config))
    }


def _view(
    totals: Mapping[str, np.ndarray], half_life: int, config: FeaturesConfig
) -> dict[str, np.ndarray]:
    """The decayed totals of one half-life under the names of the cumulative ones."""
    return {
        d.source: np.asarray(totals[d.column])
        for d in decayed_columns(config)
        if d.half_life == half_life
    }


def decayed_rate(
    totals: Mapping[str, np.ndarray], half_life: int, config: FeaturesConfig
) -> np.ndarray:
    """The all-declarations decayed hit rate (NaN before any control): the global level of the
    decayed rates' shrinkage."""
    view = _view(totals, half_life, config)
    weight_column = "rate_weight" if config.random_stratum_only else "controls"
    hits_column = "rate_hits" if config.random_stratum_only else "hits"
    weight, hits = view[weight_column], view[hits_column]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, hits / weight, np.nan)


def decayed_features(
    name: str,
    totals: Mapping[str, np.ndarray],
    parent_rate: np.ndarray,
    half_life: int,
    config: FeaturesConfig,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A key's decayed controls, hits and smoothed hit rate at one half-life (shrunk towards
    ``parent_rate``, its parent level's decayed rate, as `profiles.smoothed_rate` shrinks the
    cumulative one); returns (features, smoothed rate)."""
    view = _view(totals, half_life, config)
    rate = smoothed_rate(view, parent_rate, config)
    suffix = f"_hl{half_life}"
    features = {
        f"{name}_controls{suffix}": view["controls"].astype(np.float32),
        f"{name}_hits{suffix}": view["hits"].astype(np.float32),
        f"{name}_hit_rate{suffix}": rate.astype(np.float32),
    }
    return features, rate


def describe(name: str, half_life: int) -> dict[str, str]:
    """Manifest descriptions of a key's decayed features at one half-life."""
    who = name.replace("_x_", " x ")
    weighed = f"each weighed by half every {half_life} days since lodging"
    return {
        f"{name}_controls_hl{half_life}": f"controls of this {who}, {weighed}",
        f"{name}_hits_hl{half_life}": f"hits of this {who}, {weighed}",
        f"{name}_hit_rate_hl{half_life}": f"hit rate of this {who} from those decayed counts, "
        "shrunk towards its parent level's",
    }
