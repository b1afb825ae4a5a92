"""Entity risk profiles known as of each declaration's lodging time.

A profile is a table ``(key, valid_from, statistics)``: what was known about an importer, an HS
code, a route... from ``valid_from`` on. Training attaches it to every historical declaration with
an as-of join on ``lodged_at`` (strictly before); serving attaches the latest row of a snapshot.
Both go through `as_of_sum`, so a feature cannot see the future in training and differ in
production.

An outcome counts from ``known_at`` (``result_at`` + reporting delay, or ``lodged_at`` + the
missing-result delay when there is no result date). A declaration counts in the activity of its
keys for declarations lodged strictly later: declarations lodged at the same instant do not count
each other, whatever the row order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas._libs import groupby as libgroupby

from pipeline.config import FeaturesConfig
from pipeline.ingest.columns import random_stratum

NS_PER_DAY = 86_400 * 10**9

# Event columns summed by the as-of join, and the one column maximised (the last hit).
SUM_COLUMNS = ("declarations", "controls", "hits", "revenue", "revenue_known")
RATE_COLUMNS = ("rate_controls", "rate_weight", "rate_hits")
LAST_HIT = "last_hit_day"
HS_PARENT = {"hs6": "hs4", "hs4": "hs2"}
HS_DIGITS = {"hs2": 2, "hs4": 4, "hs6": 6}
# The depth of history (`features.history_depth`): the day of the first declaration of a key
# lodged before (a profile table's column; inf when none), and the data's own depth feature.
FIRST_DAY = "first_declared_day"
DEPTH = "history_depth_days"


def key_name(columns: Sequence[str]) -> str:
    """Feature-name prefix of a profile key: ``importer`` or ``importer_x_hs6``."""
    return "_x_".join(columns)


def profile_keys(config: FeaturesConfig) -> list[tuple[str, ...]]:
    """Single, cross and target-statistic keys of the config, in order (duplicates removed)."""
    keys: list[tuple[str, ...]] = [(k,) for k in config.profile_keys]
    keys += [tuple(k) for k in config.cross_keys]
    keys += [tuple(k) for k in config.target_stat_keys]
    return list(dict.fromkeys(keys))


def column_codes(frames: Sequence[pd.DataFrame], columns: Sequence[str]) -> list[np.ndarray]:
    """Integer codes of the key ``columns``, factorised jointly over ``frames``.

    A missing value is a level of its own (a declaration without a seller still has a profile).
    Category columns of one dtype (one frame, or frames cut from one) use the category codes
    directly (no hashing).
    """
    sizes = [len(f) for f in frames]
    combined: np.ndarray | None = None
    for column in columns:
        parts = [f[column] for f in frames]
        dtype = parts[0].dtype
        if isinstance(dtype, pd.CategoricalDtype) and all(p.dtype == dtype for p in parts[1:]):
            codes = np.concatenate([p.cat.codes.to_numpy() for p in parts]).astype(np.int64) + 1
            levels = len(dtype.categories) + 1
        else:
            values = pd.concat([p.astype(object) for p in parts], ignore_index=True)
            raw, uniques = pd.factorize(values, use_na_sentinel=False)
            codes, levels = raw.astype(np.int64), len(uniques) + 1
        if combined is None:
            combined = codes
        elif int(combined.max(initial=0) + 1) * levels < 2**62:
            combined = combined * levels + codes
        else:  # re-compact before the product overflows
            combined = pd.factorize(combined)[0].astype(np.int64) * levels + codes
    if combined is None:
        combined = np.zeros(sum(sizes), dtype=np.int64)
    return list(np.split(combined, np.cumsum(sizes)[:-1]))


def stack(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The rows of ``frames`` (same columns) one after another, on a fresh RangeIndex.

    Category columns of one dtype are stacked through their codes: pandas' concat hashes every
    category again on each call, which cost more than the rest of a chunked build's carry.
    """
    total = sum(len(f) for f in frames)
    columns: dict[str, object] = {}
    for name in frames[0].columns:
        parts = [f[name] for f in frames]
        dtype = parts[0].dtype
        if isinstance(dtype, pd.CategoricalDtype) and all(p.dtype == dtype for p in parts[1:]):
            codes = np.concatenate([p.cat.codes.to_numpy() for p in parts])
            columns[name] = pd.Categorical.from_codes(codes, dtype=dtype)
        elif all(p.dtype == dtype for p in parts[1:]):
            columns[name] = pd.concat(parts, ignore_index=True)
        else:  # mixed (a snapshot's object keys and shared categories): objects
            columns[name] = pd.concat([p.astype(object) for p in parts], ignore_index=True)
    return pd.DataFrame(columns, index=pd.RangeIndex(total), copy=False)


@dataclass(frozen=True)
class EventSums:
    """Rows of a profile table as events of the as-of join: the instant each is valid from
    (``times``, int64 ns), what it adds to its key's sums (``sums``, events x columns) and, when
    a column is maximised instead (the last hit's day), its value there (``maxes``)."""

    times: np.ndarray
    sums: np.ndarray
    maxes: np.ndarray | None = None


@dataclass(frozen=True)
class OwnActivity:
    """What each query (a declaration) adds to the later queries of its key: its ``values``
    (queries x len(columns)), added to the summed ``columns`` (a declaration counts in the
    activity of its keys)."""

    values: np.ndarray
    columns: Sequence[int]


class AsOfJoin:
    """The as-of join of a profile table on lodging time, prepared once for many keys.

    An event (`EventSums`) is a row of the profile table valid from its instant; each
    query gets the sums (and maxima) of the events of its key that happened strictly before it.
    Events are cumulated per key in time order (few rows); queries and events are merged into
    one stream by time (a query before an event of the same instant, so equal times do not
    count) and a grouped running maximum of the event rank tells each query the last event of
    its key before it. Training passes every outcome as an event; serving passes the snapshot's
    one row per key, valid from before its cut-off. Same result as ``pd.merge_asof(...,
    allow_exact_matches=False, by=key)`` on the cumulated table, in O(n) after one merge of two
    time-sorted runs (the stream order depends on times only, so every key shares it).

    ``own`` (`OwnActivity`) are values the queries contribute to later queries of their key (a
    declaration counts in the activity of its keys); queries of the same key and instant never
    count each other. Times are int64 nanoseconds.

    With ``reuse_output`` every call writes its sums into one array held by the join (the
    previous call's result is overwritten): a caller that uses each key's sums before asking for
    the next saves allocating (and the kernel zeroing) a fresh queries x columns array per key.
    """

    def __init__(
        self,
        query_times: np.ndarray,
        events: EventSums,
        own: OwnActivity | None = None,
        reuse_output: bool = False,
    ) -> None:
        event_times, event_sums, event_maxes = events.times, events.sums, events.maxes
        query_own = None if own is None else own.values
        n_query, n_event = len(query_times), len(event_times)
        self.output = np.empty((n_query, event_sums.shape[1])) if reuse_output else None
        self.n_query, self.width = n_query, event_sums.shape[1]
        self.event_order = np.argsort(event_times, kind="stable")
        self.event_sums = event_sums[self.event_order]
        self.used = np.flatnonzero(np.any(event_sums != 0, axis=0))  # columns events fill
        self.event_maxes = None if event_maxes is None else event_maxes[self.event_order]
        times = np.concatenate([query_times, event_times[self.event_order]])
        # Stable: a query precedes an event at the same instant; two sorted runs merge in O(n).
        self.order = np.argsort(times, kind="stable")
        self.is_query = self.order < n_query
        self.query_in_stream = self.order[self.is_query]  # query index of each query slot
        slot = np.empty(n_query, dtype=np.int64)  # slot of each query (gathers beat scatters)
        slot[self.query_in_stream] = np.arange(n_query)
        self.query_position = np.flatnonzero(self.is_query)[slot]  # stream row of each query
        self.rank = np.where(self.is_query, -1, self.order - n_query)  # event rank; -1: query
        self.own_columns = [] if own is None else list(own.columns)
        self.own: np.ndarray | None = None
        self.query_own = query_own
        self.tied: tuple[np.ndarray, np.ndarray] | None = None
        if query_own is not None and self.own_columns:
            self.own = np.zeros((n_query + n_event, len(self.own_columns)))
            self.own[self.is_query] = query_own[self.query_in_stream]
            self.tied = _ties(query_times)

    def by(
        self, query_codes: np.ndarray, event_codes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Sums (queries x columns) and maxima (or None) per query, for one key's codes."""
        both, groups = _dense(np.concatenate([query_codes, event_codes[self.event_order]]))
        event_codes = both[self.n_query :]
        maxes = None
        if self.event_maxes is not None:
            maxes = np.full((self.n_query, *self.event_maxes.shape[1:]), -np.inf)
        codes = both[self.order]
        if len(event_codes):
            # Index of the last event of the key before each query; -1 reads the zero row.
            last = _running("max", self.rank[:, None], codes, groups)[self.query_position, 0]
            cumulated = _running("sum", self.event_sums, event_codes, groups)
            # Whole rows from the small cumulated table in one `take` (a gather per column read
            # a strided column each time); columns no event fills are zero, as if not summed.
            table = np.vstack([cumulated, np.zeros((1, self.width))])
            table[:, np.setdiff1d(np.arange(self.width), self.used)] = 0.0
            # mode="wrap" reads -1 as the zero row, and lets `take` write into `out` unbuffered.
            sums = np.take(table, last, axis=0, out=self.output, mode="wrap")
            if self.event_maxes is not None:
                maxes = _last_maxima(self.event_maxes, event_codes, groups, last)
        elif self.output is not None:
            sums = self.output
            sums[:] = 0.0
        else:
            sums = np.zeros((self.n_query, self.width))
        if self.own is not None:
            own_sums = _running("sum", self.own, codes, groups)[self.query_position]
            own_sums -= self._own_and_tied(both[: self.n_query])
            sums[:, self.own_columns] += own_sums
        return sums, maxes

    def _own_and_tied(self, codes: np.ndarray) -> np.ndarray:
        """Each query's own values plus those of earlier queries of the same key and instant.

        A running sum counts the rows before it in the stream; declarations lodged at the same
        instant must not count each other, so their within-instant running sum is taken off.
        Only rows sharing an instant with another row are grouped (few, unless times are dates).
        """
        out = np.array(self.query_own, dtype=np.float64, copy=True)
        if self.tied is None:
            return out
        rows, instant = self.tied
        group, count = _dense(instant * (int(codes.max(initial=0)) + 1) + codes[rows])
        out[rows] = _running("sum", out[rows], group, count)
        return out


def _last_maxima(
    maxes: np.ndarray, labels: np.ndarray, groups: int, last: np.ndarray
) -> np.ndarray:
    """The running maxima of ``maxes`` (events, or events x columns) within each label, read at
    the rows ``last`` (-1: none, read as -inf); the result keeps the columns of ``maxes``."""
    flat = maxes.reshape(len(maxes), int(np.prod(maxes.shape[1:])))
    running = _running("max", flat, labels, groups)
    running = np.vstack([running, np.full((1, flat.shape[1]), -np.inf)])[last]
    return running.reshape((len(last), *maxes.shape[1:]))


def _dense(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """Codes renumbered 0..k-1 when their range is much wider than their count, and k."""
    top = int(codes.max(initial=-1)) + 1
    if top <= 2 * len(codes) + 1024:
        return codes.astype(np.int64, copy=False), top
    dense, uniques = pd.factorize(codes)
    return dense.astype(np.int64, copy=False), len(uniques)


def _running(kind: str, values: np.ndarray, labels: np.ndarray, groups: int) -> np.ndarray:
    """Running sum or maximum of ``values`` (rows x columns) within each label, in row order.

    Calls pandas' own Cython kernels of ``groupby().cumsum()`` / ``cummax()`` with the dense
    labels we already have: the public API hashes the labels again on every call, which cost a
    third of the build at 4M declarations (pandas is pinned by the lock file). Falls back to the
    public API should the private kernels change.
    """
    values = np.ascontiguousarray(values)
    out = np.empty_like(values)
    try:
        kernel = libgroupby.group_cumsum if kind == "sum" else libgroupby.group_cummax
        kernel(out, values, labels, groups, False)
        return out
    except (AttributeError, TypeError, ValueError):
        grouped = pd.DataFrame(values, copy=False).groupby(labels, sort=False)
        result = grouped.cumsum() if kind == "sum" else grouped.cummax()
        return result.to_numpy(dtype=values.dtype)


def _ties(times: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows (in time order, stable) that share their instant with another row, and instant ids."""
    order = np.argsort(times, kind="stable")
    sorted_times = times[order]
    tied = np.zeros(len(times), dtype=bool)
    if len(times) > 1:
        same = sorted_times[1:] == sorted_times[:-1]
        tied[1:] |= same
        tied[:-1] |= same
    if not tied.any():
        return None
    return order[tied], pd.factorize(sorted_times[tied])[0].astype(np.int64)


def as_of_sum(
    query_codes: np.ndarray,
    query_times: np.ndarray,
    event_codes: np.ndarray,
    events: EventSums,
    own: OwnActivity | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """`AsOfJoin` for one key: sums and maxima of the events of each query's key before it."""
    return AsOfJoin(query_times, events, own).by(query_codes, event_codes)


@dataclass(frozen=True)
class OutcomeEvents:
    """Inspected outcomes as events: the declaration row they belong to and when they count."""

    row: np.ndarray  # position of the declaration in the (sorted) declarations frame
    known_at: np.ndarray  # int64 ns
    values: np.ndarray  # n x (SUM_COLUMNS[1:] + RATE_COLUMNS when random_stratum_only)
    last_hit_day: np.ndarray  # lodged day of a hit, -inf otherwise


def outcome_events(
    lodged_at: pd.Series,
    outcomes: pd.DataFrame,
    row: np.ndarray,
    config: FeaturesConfig,
) -> OutcomeEvents:
    """Events of the inspected outcomes of declarations at positions ``row`` of ``lodged_at``.

    ``outcomes`` is row-aligned with ``row`` and holds a ``known_at`` column.
    """
    inspected = outcomes["inspected"].to_numpy(dtype=bool)
    hit = outcomes["hit"].to_numpy(dtype=bool) & inspected
    revenue = outcomes["revenue_recovered"].to_numpy(dtype=np.float64)
    revenue_known = inspected & ~np.isnan(revenue)
    columns = [
        inspected.astype(np.float64),
        hit.astype(np.float64),
        np.where(revenue_known, revenue, 0.0),
        revenue_known.astype(np.float64),
    ]
    if config.random_stratum_only:
        probability = outcomes["selection_probability"].to_numpy(dtype=np.float64)
        reason = outcomes["selection_reason"].astype(object).to_numpy()
        random = inspected & random_stratum(reason, probability)
        weight = np.where(random, 1.0 / np.where(random, probability, 1.0), 0.0)
        columns += [random.astype(np.float64), weight, weight * hit]
    lodged_day = lodged_at.to_numpy(dtype="datetime64[ns]").astype(np.int64)[row] / NS_PER_DAY
    keep = inspected
    return OutcomeEvents(
        row=row[keep],
        known_at=outcomes["known_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)[keep],
        values=np.column_stack(columns)[keep],
        last_hit_day=np.where(hit, lodged_day, -np.inf)[keep],
    )


def event_columns(config: FeaturesConfig) -> list[str]:
    """Names of the summed profile statistics (the columns of a profile table)."""
    names = list(SUM_COLUMNS)
    if config.random_stratum_only:
        names += list(RATE_COLUMNS)
    return names


def profile_features(
    name: str,
    totals: Mapping[str, np.ndarray],
    lodged_day: np.ndarray,
    parent_rate: np.ndarray,
    config: FeaturesConfig,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Features of one key from its as-of totals; returns (features, smoothed hit rate).

    The hit rate is shrunk towards the parent level's rate with ``prior_strength`` pseudo-controls
    (empirical Bayes): an entity with 2 controls and 1 hit sits near its parent, not at 50 %.
    With ``random_stratum_only`` the rate comes from random controls only, each weighted by its
    inverse selection probability (a self-normalised estimate; the weight of evidence is the
    number of random controls).
    """
    f32 = np.float32
    controls = np.asarray(totals["controls"])
    hits = np.asarray(totals["hits"])
    smoothed = smoothed_rate(totals, parent_rate, config)
    with np.errstate(invalid="ignore", divide="ignore"):
        # 0 / 0 is NaN: no control with a known revenue yet.
        per_control = np.asarray(totals["revenue"]) / np.asarray(totals["revenue_known"])
        since = (lodged_day - np.asarray(totals[LAST_HIT])).astype(f32)
    since[np.isinf(since)] = np.nan  # no hit known yet
    features = {
        f"{name}_declarations": np.asarray(totals["declarations"], f32),
        f"{name}_controls": controls.astype(f32),
        f"{name}_hits": hits.astype(f32),
        f"{name}_hit_rate": smoothed.astype(f32),
        f"{name}_revenue_per_control": per_control.astype(f32),
        f"{name}_days_since_hit": since,
    }
    return features, smoothed


def smoothed_rate(
    totals: Mapping[str, np.ndarray], parent_rate: np.ndarray, config: FeaturesConfig
) -> np.ndarray:
    """A key's hit rate from its totals (controls and hits, or the random stratum's rate
    columns), shrunk towards ``parent_rate`` with ``prior_strength`` pseudo-controls; where the
    parent has no rate yet, the key's own rate if it has controls (NaN otherwise)."""
    k = config.prior_strength
    with np.errstate(invalid="ignore", divide="ignore"):
        if config.random_stratum_only:
            evidence = np.asarray(totals["rate_controls"])
            raw = np.asarray(totals["rate_hits"]) / np.asarray(totals["rate_weight"])
            raw[~(evidence > 0)] = 0.0
            smoothed = (evidence * raw + k * parent_rate) / (evidence + k)
        else:
            controls, hits = np.asarray(totals["controls"]), np.asarray(totals["hits"])
            evidence = controls
            smoothed = (hits + k * parent_rate) / (controls + k)
            raw = hits / controls
        orphan = np.isnan(parent_rate)
        if orphan.any():  # no parent rate yet: the entity's own rate, if it has controls
            smoothed[orphan] = np.where(evidence > 0, raw, np.nan)[orphan]
    return np.asarray(smoothed)


def global_rate(totals: Mapping[str, np.ndarray], config: FeaturesConfig) -> np.ndarray:
    """The all-declarations hit rate known at each time (NaN before the first control)."""
    if config.random_stratum_only:
        weight, hits = np.asarray(totals["rate_weight"]), np.asarray(totals["rate_hits"])
    else:
        weight, hits = np.asarray(totals["controls"]), np.asarray(totals["hits"])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, hits / weight, np.nan)


def describe(name: str) -> dict[str, str]:
    """Manifest descriptions of a key's features."""
    who = name.replace("_x_", " x ")
    return {
        f"{name}_declarations": f"declarations of this {who} lodged before",
        f"{name}_controls": f"controls of this {who} with a result known before lodging",
        f"{name}_hits": f"hits among those controls of this {who}",
        f"{name}_hit_rate": f"hit rate of this {who}, shrunk towards its parent level",
        f"{name}_revenue_per_control": f"revenue recovered per control of this {who}",
        f"{name}_days_since_hit": f"days since the last known hit of this {who} was lodged",
    }


def coarser(key: tuple[str, ...]) -> tuple[str, ...] | None:
    """The next level above ``key`` in the hierarchy of hierarchical shrinkage (None: the
    global rate): its HS column one level coarser (hs6 -> hs4 -> hs2), else a cross key without
    its HS column (or its last column), else nothing. importer x hs6 -> importer x hs4 ->
    importer x hs2 -> importer -> global; departure x origin x mode -> departure x origin."""
    for i, column in enumerate(key):
        if column in HS_PARENT:
            return (*key[:i], HS_PARENT[column], *key[i + 1 :])
    if len(key) <= 1:
        return None
    hs = [i for i, column in enumerate(key) if column in HS_DIGITS]
    drop = hs[-1] if hs else len(key) - 1
    return (*key[:drop], *key[drop + 1 :])


def hierarchy_rank(key: tuple[str, ...]) -> tuple[int, int]:
    """A sort key putting every level of `coarser`'s chain before the keys below it: fewer
    columns first, then coarser HS levels (each step of the chain lowers one or the other)."""
    return len(key), sum(HS_DIGITS.get(column, 0) for column in key)


def first_before(codes: np.ndarray, day: np.ndarray) -> np.ndarray:
    """The lodging day of the first declaration of each row's key lodged strictly before it
    (inf when none): the earliest day of the key among the rows, where it is before the row's."""
    dense, groups = _dense(codes)
    first = np.full(groups, np.inf)
    np.minimum.at(first, dense, day)
    found = first[dense]
    return np.where(found < day, found, np.inf)


def days_known(lodged_day: np.ndarray, first_day: np.ndarray) -> np.ndarray:
    """Days between the first declaration known and the lodging (NaN when none is known)."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(first_day), lodged_day - first_day, np.nan).astype(np.float32)


def describe_depth(names: Sequence[str]) -> dict[str, str]:
    """Manifest descriptions of the depth features of the keys ``names``."""
    out = {DEPTH: "days between the first declaration of the data and this lodging"}
    for name in names:
        who = name.replace("_x_", " x ")
        out[f"{name}_days_known"] = f"days since the first declaration of this {who}"
    return out
