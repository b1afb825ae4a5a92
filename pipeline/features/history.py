"""Importer history known at lodging: tenure, recent activity, novelty, AEO status.

Counts use lodging order: a declaration counts for declarations of the same importer lodged
strictly later. Training counts over the whole history with `profiles.as_of_sum`; serving passes
the snapshot's state (one row per importer, the importer-partner pairs seen, the declarations of
the last window) through the same function.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.config import FeaturesConfig
from pipeline.features.lookup import EntityLookup, KeyIndex, RequestKeys, Vocabulary
from pipeline.features.profiles import (
    NS_PER_DAY,
    EventSums,
    OwnActivity,
    as_of_sum,
    column_codes,
    stack,
)

# Partners whose number of distinct values so far is a feature, and the pair flagged when new.
PARTNERS = ("hs6", "origin_country", "seller", "declarant")
NEW_PAIR = "seller"


@dataclass(frozen=True)
class HistoryState:
    """What serving needs about importers as of a cut-off."""

    importers: pd.DataFrame  # importer, declarations, distinct_<partner>..., first_seen_day
    pairs: pd.DataFrame  # importer, seller: the importer-seller pairs seen
    recent: pd.DataFrame  # importer, lodged_at: declarations within the longest window


def describe(config: FeaturesConfig) -> dict[str, str]:
    """Manifest descriptions of the history features."""
    out = {
        "importer_tenure_days": "days since the importer's first declaration",
        "importer_new": "1 when the importer has no earlier declaration",
        "importer_seller_new": "1 when this importer has never declared goods from this seller",
        "aeo": "1 when the importer is an Authorised Economic Operator",
    }
    for days in config.history_windows_days:
        out[f"importer_declarations_{days}d"] = (
            f"declarations of the importer in the last {days} days"
        )
    for partner in PARTNERS:
        out[f"importer_distinct_{partner}"] = (
            f"distinct {partner} values the importer declared so far"
        )
    return out


class EventCounts:
    """Events (key codes, int64 times) sorted once by (key, time) into one int64 code (key x time
    rank), so that counting the events of a key before a time is two binary searches, the key's
    start cancelling out. Serving prepares the snapshot's recent declarations once; training
    counts the declarations themselves. Written by hand because a grouped running count over
    three copies of the stream cost five times as much."""

    def __init__(self, event_codes: np.ndarray, event_times: np.ndarray) -> None:
        ordered = np.sort(event_times)  # (np.unique hashes; sorting sorted times is a pass)
        keep = np.concatenate([[True], ordered[1:] != ordered[:-1]])[: len(ordered)]
        self.instants = ordered[keep]
        self.span = len(self.instants) + 1
        self.keyed = np.sort(
            event_codes.astype(np.int64) * self.span + np.searchsorted(self.instants, event_times)
        )

    def before(
        self, query_codes: np.ndarray, query_times: Sequence[np.ndarray]
    ) -> list[np.ndarray]:
        """For each array of query times, the events of the query's key strictly before it."""
        base = query_codes.astype(np.int64) * self.span
        order = np.argsort(base, kind="stable")  # sorted probes make the searches cache-friendly
        start = np.searchsorted(self.keyed, base[order], side="left")
        out = []
        for times in query_times:
            probe = (base + np.searchsorted(self.instants, times, side="left"))[order]
            counts = np.empty(len(times), dtype=np.float64)
            counts[order] = np.searchsorted(self.keyed, probe, side="left") - start
            out.append(counts)
        return out


def count_before(
    query_codes: np.ndarray,
    query_times: Sequence[np.ndarray],
    event_codes: np.ndarray,
    event_times: np.ndarray,
) -> list[np.ndarray]:
    """For each array of query times, the events of the query's key strictly before that time
    (`EventCounts`). Training passes the declarations as their own events (a declaration lodged
    at the same instant is not before)."""
    return EventCounts(event_codes, event_times).before(query_codes, query_times)


def _windows(
    codes: np.ndarray,
    times: np.ndarray,
    config: FeaturesConfig,
    events: EventCounts | None,
) -> dict[str, np.ndarray]:
    """Declarations of the importer in [t - w, t) for each window w.

    Without ``events`` the declarations count themselves (training); otherwise ``events`` are
    the earlier declarations (a snapshot's recent ones), prepared.
    """
    windows = config.history_windows_days
    counter = EventCounts(codes, times) if events is None else events
    probes = [times - int(w * NS_PER_DAY) for w in windows] + [times]
    counts = counter.before(codes, probes)
    return {f"importer_declarations_{w}d": counts[-1] - counts[i] for i, w in enumerate(windows)}


def _running(
    declarations: pd.DataFrame,
    importer: np.ndarray,
    times: np.ndarray,
    carry: HistoryCarry | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Within these declarations, each as of its own lodging: the importer's running totals
    (declarations, new partners), its first lodging day, and each importer-seller pair's first
    lodging time. Shared by the in-memory build and each chunk of the chunked one."""
    own = np.ones((len(declarations), 1 + len(PARTNERS)))
    own[:, 1:], first_pair_rows = _new_pairs(declarations, carry)
    empty = np.empty(0, np.int64)
    sums, _ = as_of_sum(
        importer,
        times,
        empty,
        EventSums(empty, np.empty((0, own.shape[1]))),
        OwnActivity(own, range(own.shape[1])),
    )
    # The earliest lodging of the importer is in the past whenever it has declarations before.
    # Rows ascend in time, so a key's earliest time is the time of its first row.
    day = times / NS_PER_DAY
    first_day = day[_first_rows(importer)]
    pair_first = times[first_pair_rows]
    return sums, first_day, pair_first


def history_features(declarations: pd.DataFrame, config: FeaturesConfig) -> dict[str, np.ndarray]:
    """History features of declarations sorted by lodging time, each as of its own lodging."""
    times = declarations["lodged_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    day = times / NS_PER_DAY
    (importer,) = column_codes([declarations], ["importer"])
    sums, first_day, pair_first = _running(declarations, importer, times, None)
    return _assemble(
        declarations,
        day,
        sums,
        first_day,
        pair_first == times,
        _windows(importer, times, config, None),
    )


def _assemble(
    declarations: pd.DataFrame,
    day: np.ndarray,
    sums: np.ndarray,
    first_day: np.ndarray,
    new_pair: np.ndarray,
    windows: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """The history features from the as-of counts (shared by training and serving)."""
    seen = sums[:, 0] > 0
    out: dict[str, np.ndarray] = {
        "importer_tenure_days": np.where(seen, day - first_day, np.nan),
        "importer_new": (~seen).astype(np.float64),
        "importer_seller_new": new_pair.astype(np.float64),
        "aeo": declarations["aeo"].to_numpy(dtype=np.float64, na_value=np.nan),
    }
    out.update(windows)
    for j, partner in enumerate(PARTNERS, start=1):
        out[f"importer_distinct_{partner}"] = sums[:, j]
    return out


def history_state(
    declarations: pd.DataFrame, as_of: pd.Timestamp, config: FeaturesConfig
) -> HistoryState:
    """The importer state after ``declarations`` (all lodged before the cut-off)."""
    times = declarations["lodged_at"]
    importers = (
        pd.DataFrame({"importer": declarations["importer"].astype(object)})
        .assign(first_seen_day=times.to_numpy(dtype="datetime64[ns]").astype(np.int64) / NS_PER_DAY)
        .groupby("importer", sort=True, dropna=False)
        .agg(declarations=("first_seen_day", "size"), first_seen_day=("first_seen_day", "min"))
    )
    for partner in PARTNERS:
        distinct = (
            declarations[["importer", partner]]
            .astype(object)
            .drop_duplicates()
            .groupby("importer", dropna=False)
            .size()
        )
        importers[f"distinct_{partner}"] = distinct.reindex(importers.index).to_numpy(float)
    pairs = (
        declarations[["importer", NEW_PAIR]].astype(object).drop_duplicates().reset_index(drop=True)
    )
    longest = max(config.history_windows_days, default=0)
    cutoff = pd.Timestamp(as_of) - pd.Timedelta(days=longest)
    recent = declarations.loc[times >= cutoff, ["importer", "lodged_at"]].astype(
        {"importer": object}
    )
    return HistoryState(
        importers=importers.reset_index(), pairs=pairs, recent=recent.reset_index(drop=True)
    )


def _importer_sums(
    codes: np.ndarray, at: np.ndarray, table_codes: np.ndarray, table: pd.DataFrame, as_of: int
) -> tuple[np.ndarray, np.ndarray]:
    """Declarations and distinct partners of each query's importer in a state table valid from
    before ``as_of``, and the importer's first lodging day (inf when the table lacks it)."""
    values = np.column_stack(
        [table["declarations"].to_numpy(float)]
        + [table[f"distinct_{p}"].to_numpy(float) for p in PARTNERS]
    )
    sums, first = as_of_sum(
        codes,
        at,
        table_codes,
        EventSums(
            np.full(len(table), as_of - 1, dtype=np.int64),
            values,
            maxes=-table["first_seen_day"].to_numpy(float),
        ),
    )
    assert first is not None
    return sums, -first


@dataclass(frozen=True)
class HistoryLookup:
    """A history state as lookups: each importer's counts and first lodging day (negated, the
    join's maxima), the recent declarations' counts by importer, the importer-seller pairs."""

    importers: EntityLookup
    recent: EventCounts
    pairs: KeyIndex


def key_tables(state: HistoryState) -> list[tuple[pd.DataFrame, list[str]]]:
    """The state's tables and their key columns (what a `lookup.Vocabulary` is built from)."""
    return [
        (state.importers, ["importer"]),
        (state.recent, ["importer"]),
        (state.pairs, ["importer", NEW_PAIR]),
    ]


def lookup(state: HistoryState, vocabulary: Vocabulary) -> HistoryLookup:
    """The state's tables as lookups, with the values `_importer_sums` joins."""
    table = state.importers
    values = np.column_stack(
        [table["declarations"].to_numpy(float)]
        + [table[f"distinct_{p}"].to_numpy(float) for p in PARTNERS]
    )
    recent = state.recent
    codes = vocabulary.codes(recent, ["importer"])["importer"]
    return HistoryLookup(
        importers=EntityLookup(
            KeyIndex(table, ["importer"], vocabulary),
            values,
            maxes=-table["first_seen_day"].to_numpy(float),
        ),
        recent=EventCounts(codes, recent["lodged_at"].to_numpy("datetime64[ns]").astype(np.int64)),
        pairs=KeyIndex(state.pairs, ["importer", NEW_PAIR], vocabulary),
    )


def attach_history(
    declarations: pd.DataFrame, state: HistoryLookup, keys: RequestKeys, config: FeaturesConfig
) -> dict[str, np.ndarray]:
    """History features of new declarations (serving, all counted from the state's cut-off):
    the same counts as `_importer_sums`, `_windows` and `_known_pairs`, from the lookups."""
    times = declarations["lodged_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    sums, first = state.importers.take(keys)
    assert first is not None
    codes = keys.of(["importer"])["importer"]
    # An importer no table holds counts nothing: a code past every recent declaration's.
    codes = np.where(codes >= 0, codes, keys.vocabulary.width("importer"))
    windows = _windows(codes, times, config, state.recent)
    new_pair = state.pairs.find(keys) < 0
    return _assemble(declarations, times / NS_PER_DAY, sums, -first, new_pair, windows)


def _known_pairs(declarations: pd.DataFrame, pairs: pd.DataFrame, partner: str) -> np.ndarray:
    """Whether each declaration's (importer, partner) pair is among ``pairs``."""
    codes, known = column_codes([declarations, pairs], ["importer", partner])
    return pd.Series(codes, copy=False).isin(known).to_numpy()


def _first_sighting(declarations: pd.DataFrame, partner: str) -> tuple[np.ndarray, np.ndarray]:
    """Whether each declaration is the first of its (importer, partner) pair in row order, and
    the row of the first declaration of each row's pair."""
    (pair,) = column_codes([declarations], ["importer", partner])
    ids = pd.factorize(pair)[0]  # numbered in order of first sighting
    first = ids > np.maximum.accumulate(np.concatenate([[-1], ids[:-1]]))
    return first, np.flatnonzero(first)[ids]


def _first_rows(codes: np.ndarray) -> np.ndarray:
    """Row of the first occurrence of each row's code (codes are small non-negative ints)."""
    rows = np.arange(len(codes))
    first = np.empty(int(codes.max(initial=-1)) + 1, dtype=np.int64)
    first[codes[::-1]] = rows[::-1]  # repeated indices: the last assignment, the earliest row
    return first[codes]


@dataclass(frozen=True)
class HistoryCarry:
    """The importer state carried from one chunk of declarations to the next.

    ``state`` is what a snapshot holds; ``partners`` are the importer-partner pairs seen for
    every partner (the snapshot keeps only the seller pairs), which the distinct counts need.
    Key columns keep the declarations' dtypes (categories shared by every chunk).
    """

    state: HistoryState
    partners: dict[str, pd.DataFrame]


def _new_pairs(
    declarations: pd.DataFrame, carry: HistoryCarry | None
) -> tuple[np.ndarray, np.ndarray]:
    """1 where a declaration brings its importer a new partner (one column per partner): the
    first of its pair in the declarations (row order) and not among the carried pairs; and the
    row of the first declaration of each row's importer-`NEW_PAIR` pair."""
    out = np.zeros((len(declarations), len(PARTNERS)))
    first_pair_rows = np.zeros(0, dtype=np.int64)
    for j, partner in enumerate(PARTNERS):
        new, first_rows = _first_sighting(declarations, partner)
        if partner == NEW_PAIR:
            first_pair_rows = first_rows
        if carry is not None:
            new &= ~_known_pairs(declarations, carry.partners[partner], partner)
        out[:, j] = new
    return out, first_pair_rows


def chunk_history_features(
    declarations: pd.DataFrame,
    carry: HistoryCarry | None,
    start: pd.Timestamp,
    config: FeaturesConfig,
) -> dict[str, np.ndarray]:
    """History features of a chunk of declarations lodged from ``start`` on, each as of its own
    lodging: the carry (everything lodged before ``start``; None before the first chunk) plus
    the chunk's earlier rows."""
    if carry is None:
        return history_features(declarations, config)
    state = carry.state
    times = declarations["lodged_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    day = times / NS_PER_DAY
    codes, table_codes, recent_codes = column_codes(
        [declarations, state.importers, state.recent], ["importer"]
    )
    before, first_before = _importer_sums(
        codes, times, table_codes, state.importers, pd.Timestamp(start).value
    )
    sums, first_day, pair_first = _running(declarations, codes, times, carry)
    new_pair = (pair_first == times) & ~_known_pairs(declarations, state.pairs, NEW_PAIR)
    recent_times = state.recent["lodged_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    windows = _windows(
        codes,
        times,
        config,
        EventCounts(np.concatenate([recent_codes, codes]), np.concatenate([recent_times, times])),
    )
    return _assemble(
        declarations, day, before + sums, np.minimum(first_before, first_day), new_pair, windows
    )


def advance_history(
    carry: HistoryCarry | None,
    declarations: pd.DataFrame,
    end: pd.Timestamp,
    config: FeaturesConfig,
) -> HistoryCarry:
    """The carry after a chunk of ``declarations`` (all lodged before ``end``)."""
    new, _ = _new_pairs(declarations, carry)
    times = declarations["lodged_at"].reset_index(drop=True)
    importer = declarations["importer"].reset_index(drop=True)
    rows = pd.DataFrame(
        {
            "importer": importer,
            "declarations": 1.0,
            "first_seen_day": times.to_numpy(dtype="datetime64[ns]").astype(np.int64) / NS_PER_DAY,
        }
        | {f"distinct_{p}": new[:, j] for j, p in enumerate(PARTNERS)}
    )
    recent = pd.DataFrame({"importer": importer, "lodged_at": times})
    partners = {
        p: declarations[["importer", p]].loc[new[:, j] > 0].reset_index(drop=True)
        for j, p in enumerate(PARTNERS)
    }
    if carry is not None:
        rows = stack([carry.state.importers, rows])
        recent = stack([carry.state.recent, recent])
        partners = {p: stack([carry.partners[p], partners[p]]) for p in PARTNERS}
    importers = (
        rows.groupby("importer", sort=True, dropna=False, observed=True)
        .agg(
            {"declarations": "sum", "first_seen_day": "min"}
            | {f"distinct_{p}": "sum" for p in PARTNERS}
        )
        .reset_index()
    )
    longest = max(config.history_windows_days, default=0)
    recent = recent.loc[recent["lodged_at"] >= pd.Timestamp(end) - pd.Timedelta(days=longest)]
    state = HistoryState(
        importers=importers, pairs=partners[NEW_PAIR], recent=recent.reset_index(drop=True)
    )
    return HistoryCarry(state=state, partners=partners)


def as_snapshot_state(carry: HistoryCarry) -> HistoryState:
    """The carried state as a snapshot stores it (keys as objects, not shared categories)."""
    state = carry.state
    return HistoryState(
        importers=state.importers.astype({"importer": object}),
        pairs=state.pairs.astype(object),
        recent=state.recent.astype({"importer": object}),
    )
