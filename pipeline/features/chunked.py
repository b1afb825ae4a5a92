"""The FeatureSet built over time-ordered chunks of declarations, carrying state between them.

`build_feature_set_chunked` gives the same features as `build.build_feature_set` while the
derived columns of only one chunk are held at a time. Chunks begin on month starts (a month's
reference prices come from all of its declarations, so a month is never split). Before each
chunk the carried state is what a snapshot as of the chunk's start holds: profile tables (what
each entity did and what was known of it), reference prices of the months ended and the
importer history (with every importer-partner pair, which the distinct counts need). A chunk's
features are the serving join of that state plus the in-memory as-of join of the chunk's own
declarations and of the outcomes that become known during it, whichever chunk their declaration
was lodged in. The category levels come from a first pass over every declaration, so X's
categories equal the in-memory ones. Key columns become categories once, so the carried tables
share the chunks' codes and nothing is hashed again from chunk to chunk.

What stays whole: the declarations (sorted, as given), the outcomes and the metadata of every
row (labels, weights, ids). `build_chunked` also fills the whole X; `write_chunked` (the features
job with ``features.chunk_months``) writes each chunk's rows to the Parquet file as they are built,
so its working set is one chunk's features (at 1M declarations in one-month chunks the job's peak
is 0.86 GiB instead of 1.93 GiB filling the whole X, 2.02 GiB in memory).

Counts, maxima and categories are exactly those of the in-memory build; summed money (revenue,
reference prices, inverse-propensity weights) is added in another order, so it may differ in
the last bits of a float64 before the cast to float32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import FeaturesConfig
from pipeline.features import history, profiles, valuation
from pipeline.features.build import (
    ProfileTotals,
    Snapshot,
    aligned_outcomes,
    build_feature_set,
    combine_totals,
    label_columns,
    profile_tables,
    raw_levels,
    run_stages,
    sorted_declarations,
    stream_totals,
    table_totals,
)
from pipeline.features.featureset import META_COLUMNS, FeatureSet, FeatureSetWriter


def chunk_starts(
    lodged_at: pd.Series, chunk_months: int = 1, starts: Sequence[pd.Timestamp] | None = None
) -> list[pd.Timestamp]:
    """Starts of the chunks that hold declarations, each a month start.

    Chunks span ``chunk_months`` calendar months from the first lodging's month, or begin at the
    given ``starts``; a chunk without declarations joins the one before it. The first chunk
    also holds whatever is lodged before its start.
    """
    times = lodged_at.to_numpy(dtype="datetime64[ns]")
    if len(times) == 0:
        return []
    if starts is None:
        if chunk_months < 1:
            raise ValueError(f"chunk_months must be at least 1, got {chunk_months}")
        months = times.astype("datetime64[M]").astype(np.int64)
        first = int(months.min())
        ids = np.unique((months - first) // chunk_months)
        candidates = (first + ids * chunk_months).astype("datetime64[M]").astype("datetime64[ns]")
    else:
        stamps = sorted({pd.Timestamp(s) for s in starts})
        odd = [s for s in stamps if s != s.to_period("M").start_time]
        if odd:
            raise ValueError(f"chunks must start on month starts, not at {odd[:3]}")
        candidates = np.array([s.to_datetime64() for s in stamps], dtype="datetime64[ns]")
    chunk = np.searchsorted(candidates, times, side="right") - 1
    used = np.unique(np.maximum(chunk, 0))
    return [pd.Timestamp(candidates[i]) for i in used]


def build_feature_set_chunked(
    declarations: pd.DataFrame,
    outcomes: pd.DataFrame,
    config: FeaturesConfig,
    chunk_months: int = 1,
    starts: Sequence[pd.Timestamp] | None = None,
) -> FeatureSet:
    """`build_feature_set` over chunks of ``chunk_months`` months (or beginning at ``starts``).

    Same rows in the same order, same columns, dtypes and categories; see the module docstring
    for what is carried from one chunk to the next.
    """
    feature_set, _ = build_chunked(declarations, outcomes, config, chunk_months, starts)
    return feature_set


@dataclass(frozen=True)
class Chunks:
    """How the declarations are cut: chunks of ``months`` calendar months from the first
    lodging's month, or beginning at ``starts`` (`chunk_starts`); and, given ``snapshot_as_of``
    (after every lodging), the instant as of which the state carried out of the last chunk is
    kept as the serving snapshot."""

    months: int = 1
    starts: Sequence[pd.Timestamp] | None = None
    snapshot_as_of: pd.Timestamp | None = None


@dataclass(frozen=True)
class Carried:
    """What a snapshot as of a chunk's ``start`` holds, carried into the chunk: the profile
    tables, the reference prices of the months ended and the importer history (each None before
    the first chunk: nothing is known yet)."""

    start: pd.Timestamp
    tables: dict[str, pd.DataFrame] | None = None
    references: valuation.ValuationState | None = None
    importers: history.HistoryCarry | None = None


def build_chunked(
    declarations: pd.DataFrame,
    outcomes: pd.DataFrame,
    config: FeaturesConfig,
    chunk_months: int = 1,
    starts: Sequence[pd.Timestamp] | None = None,
    snapshot_as_of: pd.Timestamp | None = None,
) -> tuple[FeatureSet, Snapshot | None]:
    """The chunked FeatureSet and, given ``snapshot_as_of`` (after every lodging), the snapshot
    as of then, carried out of the last chunk (what `build_snapshot` gives, without a second
    pass over the declarations)."""
    if declarations.empty:
        return build_feature_set(declarations, outcomes, config), None
    columns: dict[str, np.ndarray] = {}
    dtypes: dict[str, pd.CategoricalDtype] = {}

    def fill(lo: int, hi: int, X: pd.DataFrame, labels: dict[str, pd.Series]) -> None:
        if not columns:
            columns.update(_allocate(X, len(labels["y"]), dtypes))
        for name, values in columns.items():
            part = X[name]
            values[lo:hi] = part.cat.codes.to_numpy() if name in dtypes else part.to_numpy()

    chunks = Chunks(chunk_months, starts, snapshot_as_of)
    labels, manifest, snapshot = _build(declarations, outcomes, config, chunks, fill)
    X = pd.DataFrame(
        {
            name: pd.Categorical.from_codes(values, dtype=dtypes[name])
            if name in dtypes
            else values
            for name, values in columns.items()
        },
        copy=False,
    )
    return FeatureSet(X=X, manifest=manifest, **labels), snapshot


@dataclass(frozen=True)
class WrittenFeatures:
    """What `write_chunked` wrote: declarations, labelled ones, hits and feature columns."""

    rows: int
    labelled: int
    hits: int
    features: int


def write_chunked(
    declarations: pd.DataFrame,
    outcomes: pd.DataFrame,
    config: FeaturesConfig,
    path: Path,
    manifest_path: Path,
    chunks: Chunks = Chunks(),
) -> tuple[WrittenFeatures, Snapshot | None]:
    """`build_chunked` written to the feature-set file chunk by chunk (`FeatureSet.to_parquet`'s
    layout and what `FeatureSet.read_parquet` reads back of the in-memory build): the whole X is
    never assembled, only the chunk being written is held."""
    if declarations.empty:
        feature_set = build_feature_set(declarations, outcomes, config)
        feature_set.to_parquet(path, manifest_path)
        return WrittenFeatures(0, 0, 0, feature_set.X.shape[1]), None
    with FeatureSetWriter(path) as writer:

        def append(lo: int, hi: int, X: pd.DataFrame, labels: dict[str, pd.Series]) -> None:
            rows = slice(lo, hi)
            meta = pd.DataFrame(
                {name: labels[name].iloc[rows].reset_index(drop=True) for name in META_COLUMNS}
            )
            writer.write(meta.set_axis(X.index), X)

        labels, manifest, snapshot = _build(declarations, outcomes, config, chunks, append)
    manifest.to_csv(manifest_path, index=False)
    y = labels["y"].to_numpy(dtype=float)
    written = WrittenFeatures(
        rows=len(y),
        labelled=int(np.isfinite(y).sum()),
        hits=int((y == 1).sum()),
        features=len(manifest),
    )
    return written, snapshot


ChunkSink = Callable[[int, int, pd.DataFrame, dict[str, pd.Series]], None]


def _build(
    declarations: pd.DataFrame,
    outcomes: pd.DataFrame,
    config: FeaturesConfig,
    chunks: Chunks,
    sink: ChunkSink,
) -> tuple[dict[str, pd.Series], pd.DataFrame, Snapshot | None]:
    """Build chunk after chunk, handing each chunk's X (rows ``lo:hi`` of the sorted
    declarations) and the labels of every row to ``sink``; returns the labels, the manifest and
    the snapshot carried out of the last chunk when ``chunks.snapshot_as_of`` is given."""
    snapshot_as_of = chunks.snapshot_as_of
    decl = sorted_declarations(declarations)
    if snapshot_as_of is not None and not pd.Timestamp(snapshot_as_of) > decl["lodged_at"].max():
        raise ValueError(
            f"snapshot_as_of {snapshot_as_of} must come after the last lodging: "
            "use build_snapshot for a cut-off inside the data"
        )
    levels = raw_levels(decl, config)
    _keys_as_categories(decl, config)
    out, row = aligned_outcomes(outcomes, decl, config)
    labels = label_columns(decl, out, row)
    events = profiles.outcome_events(decl["lodged_at"], out, row, config)
    order = np.argsort(events.known_at, kind="stable")  # keeps the in-memory order of ties
    events = _take(events, order)
    times = decl["lodged_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    borders = chunk_starts(decl["lodged_at"], chunks.months, chunks.starts)
    cuts = np.array([b.value for b in borders[1:]], dtype=np.int64)
    row_bounds = np.concatenate([[0], np.searchsorted(times, cuts), [len(decl)]])
    event_bounds = np.concatenate([[0], np.searchsorted(events.known_at, cuts), [len(events.row)]])
    key_columns = ["lodged_at", *dict.fromkeys(c for k in profiles.profile_keys(config) for c in k)]
    key_positions = [decl.columns.get_loc(c) for c in key_columns]

    tables: dict[str, pd.DataFrame] | None = None  # None: nothing before the first chunk
    references: valuation.ValuationState | None = None
    carry: history.HistoryCarry | None = None
    snapshot: Snapshot | None = None
    manifest = pd.DataFrame()
    for i, start in enumerate(borders):
        lo, hi = int(row_bounds[i]), int(row_bounds[i + 1])
        chunk = decl.iloc[lo:hi].reset_index(drop=True)
        due = _take(events, slice(int(event_bounds[i]), int(event_bounds[i + 1])))
        # The chunk's declarations, then those of the outcomes known during it (any chunk's).
        frame = decl.iloc[np.concatenate([np.arange(lo, hi), due.row]), key_positions]
        frame = frame.reset_index(drop=True)
        due = replace(due, row=np.arange(hi - lo, hi - lo + len(due.row)))
        carried = Carried(start, tables, references, carry)
        X, manifest = _chunk_features(chunk, frame, due, carried, levels, config)
        sink(lo, hi, X, labels)
        del X
        last = i + 1 == len(borders)
        if last and snapshot_as_of is None:
            break
        end = pd.Timestamp(snapshot_as_of) if last else borders[i + 1]
        if last:  # only the outcomes known before the snapshot's cut-off
            due = _take(due, due.known_at < end.value)
        tables = profile_tables(frame, hi - lo, due, config, tables, object_keys=last)
        references = valuation.valuation_state(chunk, end, references, object_keys=last)
        carry = history.advance_history(carry, chunk, end, config)
        if last:
            snapshot = Snapshot(
                as_of=end,
                config=config.model_dump(mode="json"),
                profiles=tables,
                valuation=references,
                history=history.as_snapshot_state(carry),
                categories=levels,
            )
    return labels, manifest, snapshot


def _chunk_features(
    chunk: pd.DataFrame,
    frame: pd.DataFrame,
    due: profiles.OutcomeEvents,
    carried: Carried,
    levels: dict[str, list[Any]],
    config: FeaturesConfig,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """X and manifest of one chunk: the carried state plus the chunk's own events."""
    stream = stream_totals(frame, len(chunk), due, config)
    tables, start = carried.tables, carried.start

    def totals(key: tuple[str, ...]) -> ProfileTotals:
        now = stream(key)
        if tables is None:
            return now
        table = tables[profiles.key_name(key) or "__global__"]
        return combine_totals(now, table_totals(chunk, table, key, start, config))

    return run_stages(
        chunk,
        config,
        totals,
        lambda: valuation.chunk_valuation_features(chunk, carried.references, start, config),
        lambda: history.chunk_history_features(chunk, carried.importers, start, config),
        levels,
    )


def _keys_as_categories(declarations: pd.DataFrame, config: FeaturesConfig) -> None:
    """Every key column of the (sorted, private) declarations as a category, in place, so that
    the chunks and the carried tables share codes: joining a chunk with the carry and stacking
    the carry then hash no key."""
    columns = {c for key in profiles.profile_keys(config) for c in key}
    columns |= {c for level in valuation.LEVELS for c in level} | {"hs4", "importer"}
    columns |= set(history.PARTNERS)
    for column in sorted(columns & set(declarations.columns)):
        if not isinstance(declarations[column].dtype, pd.CategoricalDtype):
            declarations[column] = declarations[column].astype("category")


def _take(events: profiles.OutcomeEvents, which: np.ndarray | slice) -> profiles.OutcomeEvents:
    """The outcome events at ``which``."""
    return profiles.OutcomeEvents(
        row=events.row[which],
        known_at=events.known_at[which],
        values=events.values[which],
        last_hit_day=events.last_hit_day[which],
    )


def _allocate(
    X: pd.DataFrame, n: int, dtypes: dict[str, pd.CategoricalDtype]
) -> dict[str, np.ndarray]:
    """Empty columns for ``n`` rows shaped like a chunk's X (category columns as codes, their
    dtypes added to ``dtypes``)."""
    columns: dict[str, np.ndarray] = {}
    for name in X.columns:
        dtype = X[name].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            dtypes[name] = dtype
            columns[name] = np.empty(n, dtype=X[name].cat.codes.dtype)
        else:
            columns[name] = np.empty(n, dtype=dtype)
    return columns
