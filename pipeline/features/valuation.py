"""Unit-value anomalies against reference prices from past declarations, and duty incentives.

Reference prices are profile tables too: one row per (commodity group, month), valid from the end
of that month, joined with `profiles.as_of_sum`. Approximation (stated because it matters): the
reference of a declaration is the count-weighted mean of the monthly medians of its group over
all months that ended before it was lodged, and its scale the mean of the monthly MADs
(x 1.4826) weighted by count - 1. Exact medians over every past declaration would need one sort
per declaration; monthly medians are exact within each month, cost two grouped medians, and are
leakage-free because a month counts only once it has ended. Coarser groups (hs6, then hs4) use
the monthly statistics of the finest group (hs6 x origin), pooled the same way, when the finer
group has fewer than ``valuation_min_support`` past declarations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.config import FeaturesConfig
from pipeline.features.lookup import EntityLookup, KeyIndex, RequestKeys, Vocabulary
from pipeline.features.profiles import AsOfJoin, EventSums, as_of_sum, column_codes, stack

LEVELS: tuple[tuple[str, ...], ...] = (("hs6", "origin_country"), ("hs6",), ("hs4",))
KINDS = ("kg", "unit")
MAD_TO_SIGMA = 1.4826
STATS = 4  # summed statistics per kind: count, count x median, count - 1, (count - 1) x MAD
MIN_SCALE = 0.05  # floor of the log-price scale: a 5 % spread


@dataclass(frozen=True)
class MonthlyEvents:
    """Per (finest group, month): the row of a representative declaration, the instant the
    month ends (its statistics count from the next instant on) and the summed statistics."""

    row: np.ndarray
    ends: np.ndarray  # int64 ns, last nanosecond of the month
    values: np.ndarray  # count, count x median, count x MAD for each kind
    lowest_row: np.ndarray  # (hs4, month) representatives
    lowest_ends: np.ndarray
    lowest_rate: np.ndarray  # lowest duty rate of the hs4 in that month


@dataclass(frozen=True)
class ValuationState:
    """Reference totals per level (key columns + summed statistics) and lowest hs4 rates."""

    references: dict[str, pd.DataFrame]
    lowest_rate: pd.DataFrame  # hs4, lowest_rate


def describe() -> dict[str, str]:
    """Manifest descriptions of the valuation features."""
    out = {
        "duty_expected": "declared value x duty rate",
        "duty_declared_ratio": "declared duty over value x duty rate",
        "duty_rate_gap_hs4": "duty rate minus the lowest rate seen in the same hs4 before",
        "reference_level": "reference used: 0 hs6 x origin, 1 hs6, 2 hs4 (NaN: none)",
    }
    for kind in KINDS:
        out[f"value_per_{kind}_log"] = f"log of declared value per {kind}"
        out[f"value_per_{kind}_log_ratio"] = f"log ratio of value per {kind} to its reference"
        out[f"value_per_{kind}_z"] = f"robust z-score of value per {kind} (reference, MAD)"
        out[f"reference_support_{kind}"] = f"past declarations behind the {kind} reference"
    return out


def level_name(level: tuple[str, ...]) -> str:
    """Name of a reference level: ``hs6_x_origin_country``."""
    return "_x_".join(level)


def _log_values(declarations: pd.DataFrame) -> np.ndarray:
    """log value per kg and per unit (NaN where mass or quantity is not positive)."""
    value = declarations["declared_value"].to_numpy(dtype=np.float64, na_value=np.nan)
    out = np.full((len(declarations), 2), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        for j, column in enumerate(("net_mass_kg", "quantity")):
            if column not in declarations:
                continue
            amount = declarations[column].to_numpy(dtype=np.float64, na_value=np.nan)
            ok = (amount > 0) & (value > 0)
            out[:, j] = np.where(
                ok, np.log(np.where(ok, value, 1.0) / np.where(ok, amount, 1.0)), np.nan
            )
    return out


def _month(times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Month index of each instant and the last nanosecond of that month."""
    months = times.astype("datetime64[ns]").astype("datetime64[M]")
    ends = (months + np.timedelta64(1, "M")).astype("datetime64[ns]").astype(np.int64) - 1
    return months.astype(np.int64), ends


def _groups(codes: np.ndarray, month: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(group, month) ids and one representative row per id (ids in order of first sighting)."""
    span = int(month.max(initial=0) - month.min(initial=0)) + 1
    ids = pd.factorize(codes * span + (month - month.min(initial=0)))[0]
    running = np.maximum.accumulate(np.concatenate([[-1], ids[:-1]]))
    return ids, np.flatnonzero(ids > running)


def monthly_events(declarations: pd.DataFrame) -> MonthlyEvents:
    """Monthly statistics of the finest group, and monthly lowest duty rates per hs4."""
    times = declarations["lodged_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    month, ends = _month(times)
    (finest,) = column_codes([declarations], LEVELS[0])
    ids, rep = _groups(finest, month)
    logs = _log_values(declarations)
    columns = []
    for j in range(len(KINDS)):
        v = pd.Series(logs[:, j], copy=False)
        grouped = v.groupby(ids, sort=True)
        count = grouped.count().to_numpy(np.float64)
        median = grouped.median().to_numpy(np.float64)
        mad = (v - median[ids]).abs().groupby(ids, sort=True).median().to_numpy(np.float64)
        # A month with one declaration says nothing about spread: MADs weigh count - 1.
        spread = np.maximum(count - 1.0, 0.0)
        columns += [
            count,
            np.nan_to_num(count * median),
            spread,
            np.nan_to_num(spread * mad),
        ]
    (hs4,) = column_codes([declarations], ["hs4"])
    hs4_ids, hs4_rep = _groups(hs4, month)
    rate = declarations["duty_rate"].to_numpy(dtype=np.float64, na_value=np.nan)
    lowest = pd.Series(rate).groupby(hs4_ids, sort=True).min().to_numpy(np.float64)
    return MonthlyEvents(
        row=rep,
        ends=ends[rep],
        values=np.column_stack(columns),
        lowest_row=hs4_rep,
        lowest_ends=ends[hs4_rep],
        lowest_rate=lowest,
    )


def _features(
    declarations: pd.DataFrame,
    sums_by_level: list[np.ndarray],
    lowest: np.ndarray,
    config: FeaturesConfig,
) -> dict[str, np.ndarray]:
    """Valuation features from the as-of reference sums (shared by training and serving)."""
    logs = _log_values(declarations)
    out: dict[str, np.ndarray] = {}
    for j, kind in enumerate(KINDS):
        ref, scale, support, level = _pick(sums_by_level, j, config.valuation_min_support)
        ratio = logs[:, j] - ref
        with np.errstate(invalid="ignore", divide="ignore"):
            z = ratio / np.maximum(scale * MAD_TO_SIGMA, MIN_SCALE)
        out[f"value_per_{kind}_log"] = logs[:, j]
        out[f"value_per_{kind}_log_ratio"] = ratio
        out[f"value_per_{kind}_z"] = z
        out[f"reference_support_{kind}"] = support
        if kind == "kg":
            out["reference_level"] = level
    value = declarations["declared_value"].to_numpy(dtype=np.float64, na_value=np.nan)
    rate = declarations["duty_rate"].to_numpy(dtype=np.float64, na_value=np.nan)
    expected = value * rate
    declared = (
        declarations["declared_duty"].to_numpy(dtype=np.float64, na_value=np.nan)
        if "declared_duty" in declarations
        else np.full(len(declarations), np.nan)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        out["duty_expected"] = expected
        out["duty_declared_ratio"] = np.where(expected > 0, declared / expected, np.nan)
    out["duty_rate_gap_hs4"] = np.where(
        np.isfinite(lowest), rate - np.minimum(rate, lowest), np.nan
    )
    return out


def _pick(
    sums_by_level: list[np.ndarray], kind: int, min_support: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reference, scale, support and level: the finest level with enough support."""
    n = len(sums_by_level[0])
    ref = np.full(n, np.nan)
    scale = np.full(n, np.nan)
    support = np.zeros(n)
    level = np.full(n, np.nan)
    chosen = np.zeros(n, dtype=bool)
    for i, sums in enumerate(sums_by_level):
        count, total = sums[:, STATS * kind], sums[:, STATS * kind + 1]
        spread, mad = sums[:, STATS * kind + 2], sums[:, STATS * kind + 3]
        last = i == len(sums_by_level) - 1
        take = ~chosen & ((count >= min_support) | (last & (count > 0)))
        with np.errstate(invalid="ignore", divide="ignore"):
            ref[take] = (total / count)[take]
            scale[take] = np.where(spread > 0, mad / spread, np.nan)[take]
        support[take] = count[take]
        level[take] = i
        chosen |= take
    return ref, scale, support, level


def _stream_sums(declarations: pd.DataFrame) -> tuple[list[np.ndarray], np.ndarray]:
    """As-of reference sums of each level over the declarations' own months, and the maxima of
    the negated lowest hs4 rates (declarations sorted by lodging time)."""
    times = declarations["lodged_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    events = monthly_events(declarations)
    join = AsOfJoin(times, EventSums(events.ends, events.values))  # one stream, three levels
    sums_by_level = []
    for level in LEVELS:
        (codes,) = column_codes([declarations], level)
        sums, _ = join.by(codes, codes[events.row])
        sums_by_level.append(sums)
    (hs4,) = column_codes([declarations], ["hs4"])
    n_lowest = len(events.lowest_row)
    _, lowest = as_of_sum(
        hs4,
        times,
        hs4[events.lowest_row],
        EventSums(
            events.lowest_ends,
            np.zeros((n_lowest, 1)),
            maxes=-np.nan_to_num(events.lowest_rate, nan=-np.inf),
        ),
    )
    assert lowest is not None
    return sums_by_level, lowest


def valuation_features(declarations: pd.DataFrame, config: FeaturesConfig) -> dict[str, np.ndarray]:
    """Valuation features of declarations sorted by lodging time, each as of its lodging."""
    sums_by_level, lowest = _stream_sums(declarations)
    return _features(declarations, sums_by_level, -lowest, config)


def chunk_valuation_features(
    declarations: pd.DataFrame,
    state: ValuationState | None,
    start: pd.Timestamp,
    config: FeaturesConfig,
) -> dict[str, np.ndarray]:
    """Valuation features of a chunk of declarations lodged from ``start`` (a month start) on.

    The months that ended before ``start`` come from ``state`` (`valuation_state` as of it; None
    before the first chunk), the chunk's own months from its declarations: the same sums as
    `valuation_features` over the whole stream, each month from the same declarations.
    """
    if state is None:
        return valuation_features(declarations, config)
    before, before_lowest = _state_sums(declarations, state, start)
    own, own_lowest = _stream_sums(declarations)
    sums_by_level = [a + b for a, b in zip(before, own, strict=True)]
    return _features(declarations, sums_by_level, -np.maximum(before_lowest, own_lowest), config)


def valuation_state(
    declarations: pd.DataFrame,
    as_of: pd.Timestamp,
    prior: ValuationState | None = None,
    object_keys: bool = True,
) -> ValuationState:
    """Reference totals of the months that ended before ``as_of`` (declarations before it).

    With ``prior`` (the state as of the month start the declarations begin at) its totals are
    added: the state moves forward one chunk of declarations at a time. Key columns are objects
    (a snapshot's), or keep the declarations' dtypes (categories shared with later chunks).
    """
    cut = pd.Timestamp(as_of).value
    events = monthly_events(declarations)
    done = events.ends < cut

    def keys(columns: list[str], rows: np.ndarray) -> pd.DataFrame:
        taken = declarations[columns].iloc[rows].reset_index(drop=True)
        return taken.astype(object) if object_keys else taken

    references = {}
    for level in LEVELS:
        values = pd.DataFrame(events.values[done], columns=_value_columns())
        table = pd.concat([keys(list(level), events.row[done]), values], axis=1)
        if prior is not None:
            table = stack([prior.references[level_name(level)], table])
        references[level_name(level)] = (
            table.groupby(list(level), dropna=False, sort=True, observed=True).sum().reset_index()
        )
    low_done = events.lowest_ends < cut
    # A month whose rates are all missing has no lowest rate, for good (as in training): -inf
    # keeps it through the minimum, where NaN would be skipped.
    lowest = keys(["hs4"], events.lowest_row[low_done]).assign(
        lowest_rate=np.nan_to_num(events.lowest_rate[low_done], nan=-np.inf)
    )
    if prior is not None:
        lowest = stack([prior.lowest_rate, lowest])
    lowest = (
        lowest.groupby("hs4", dropna=False, sort=True, observed=True)["lowest_rate"]
        .min()
        .reset_index()
    )
    return ValuationState(references=references, lowest_rate=lowest)


def _value_columns() -> list[str]:
    return [
        f"{stat}_{kind}" for kind in KINDS for stat in ("count", "median_sum", "spread", "mad_sum")
    ]


def _state_sums(
    declarations: pd.DataFrame, state: ValuationState, as_of: pd.Timestamp
) -> tuple[list[np.ndarray], np.ndarray]:
    """Reference sums of each level and negated lowest hs4 rates from a state as of ``as_of``."""
    times = declarations["lodged_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    at = np.maximum(times, pd.Timestamp(as_of).value)
    valid_from = pd.Timestamp(as_of).value - 1
    sums_by_level = []
    for level in LEVELS:
        table = state.references[level_name(level)]
        codes, table_codes = column_codes([declarations, table], level)
        sums, _ = as_of_sum(
            codes,
            at,
            table_codes,
            EventSums(
                np.full(len(table), valid_from, np.int64),
                table[_value_columns()].to_numpy(np.float64),
            ),
        )
        sums_by_level.append(sums)
    table = state.lowest_rate
    codes, table_codes = column_codes([declarations, table], ["hs4"])
    _, lowest = as_of_sum(
        codes,
        at,
        table_codes,
        EventSums(
            np.full(len(table), valid_from, np.int64),
            np.zeros((len(table), 1)),
            maxes=-np.nan_to_num(table["lowest_rate"].to_numpy(np.float64), nan=-np.inf),
        ),
    )
    assert lowest is not None
    return sums_by_level, lowest


@dataclass(frozen=True)
class ValuationLookup:
    """A valuation state as per-entity lookups (`lookup.EntityLookup`): the reference sums of
    each level (in `LEVELS` order) and the lowest hs4 rates, negated (the join's maxima)."""

    references: list[EntityLookup]
    lowest_rate: EntityLookup


def key_tables(state: ValuationState) -> list[tuple[pd.DataFrame, list[str]]]:
    """The state's tables and their key columns (what a `lookup.Vocabulary` is built from)."""
    tables = [(state.references[level_name(level)], list(level)) for level in LEVELS]
    return [*tables, (state.lowest_rate, ["hs4"])]


def lookup(state: ValuationState, vocabulary: Vocabulary) -> ValuationLookup:
    """The state's tables as lookups, with the values `_state_sums` joins."""
    references = [
        EntityLookup(
            KeyIndex(state.references[level_name(level)], level, vocabulary),
            state.references[level_name(level)][_value_columns()].to_numpy(np.float64),
        )
        for level in LEVELS
    ]
    lowest = state.lowest_rate
    return ValuationLookup(
        references=references,
        lowest_rate=EntityLookup(
            KeyIndex(lowest, ["hs4"], vocabulary),
            maxes=-np.nan_to_num(lowest["lowest_rate"].to_numpy(np.float64), nan=-np.inf),
        ),
    )


def attach_valuation(
    declarations: pd.DataFrame, state: ValuationLookup, keys: RequestKeys, config: FeaturesConfig
) -> dict[str, np.ndarray]:
    """Valuation features of new declarations (serving, all counted from the state's cut-off):
    the same sums as `_state_sums`, read from the state's lookups."""
    sums_by_level = [reference.take(keys)[0] for reference in state.references]
    _, lowest = state.lowest_rate.take(keys)
    assert lowest is not None
    return _features(declarations, sums_by_level, -lowest, config)
