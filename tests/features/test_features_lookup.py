"""The snapshot's per-entity lookups serve what the as-of join served: the same sums and maxima
per entity, hence the same features, for known, unknown and mixed entities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.features import same_values, small_config, tiny_tables
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import FeaturesConfig
from pipeline.features import history, profiles, valuation
from pipeline.features.build import (
    Snapshot,
    attach,
    build_feature_set,
    build_snapshot,
    run_stages,
    sorted_declarations,
    table_sums,
    totals_frame,
)
from pipeline.features.featureset import FeatureSet
from pipeline.features.lookup import (
    FEW_ROWS,
    EntityLookup,
    KeyIndex,
    RequestKeys,
    Vocabulary,
)

DECLARATIONS, OUTCOMES = tiny_tables(400, seed=4)
CONFIG = small_config()
LODGED = build_feature_set(DECLARATIONS, OUTCOMES, CONFIG).lodged_at
CUT = pd.Timestamp("2024-06-01")  # the cut-off of the tables of the as-of join tests

# Key values: texts, the kinds of null a column may hold, and values only some tables hold.
VALUES = st.sampled_from(["A", "B", "C", "D", None, np.nan])


def _frame(columns: list[str], rows: list[tuple[object, ...]], dtype: str) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns, dtype=object)
    return frame.astype(dtype) if dtype == "category" else frame


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(1, 3),
    table_rows=st.lists(st.tuples(VALUES, VALUES, VALUES), max_size=12),
    query_rows=st.lists(st.tuples(VALUES, VALUES, VALUES), min_size=1, max_size=10),
    many=st.booleans(),
    query_dtype=st.sampled_from(["object", "category"]),
    seed=st.integers(0, 2**16),
)
def test_entity_lookup_gives_what_the_as_of_join_gives_at_or_after_the_cut_off(
    width: int,
    table_rows: list[tuple[object, ...]],
    query_rows: list[tuple[object, ...]],
    many: bool,
    query_dtype: str,
    seed: int,
) -> None:
    """Any key width, repeated keys (summed, as the join sums them), nulls of every kind, NaN
    values, entities the table lacks; a request of a few rows (dict) or of many (pandas)."""
    columns = ["importer", "hs6", "origin_country"][:width]
    rng = np.random.default_rng(seed)
    table = _frame(columns, [row[:width] for row in table_rows], "object")
    events = profiles.event_columns(CONFIG)
    values = rng.choice([0.0, 1.0, 2.5, np.nan], size=(len(table), len(events)))
    values[:, -1] = 0.0  # a column no row fills
    table[events] = values
    table[profiles.LAST_HIT] = rng.choice([-np.inf, 3.0, 7.0, np.nan], size=len(table))
    queries = [row[:width] for row in query_rows]
    if many:  # past the few-rows path: the same rows, repeated
        queries = queries * (FEW_ROWS // len(queries) + 1)
    request = _frame(columns, queries, query_dtype)
    # any lodging at or after the cut-off
    request["lodged_at"] = CUT + pd.to_timedelta(rng.integers(0, 50, len(request)), unit="h")

    vocabulary = Vocabulary([(table, columns)])
    index = KeyIndex(table, columns, vocabulary)
    lookup = EntityLookup(index, values, table[profiles.LAST_HIT].to_numpy())
    sums, maxes = lookup.take(RequestKeys(request, vocabulary))

    joined, joined_maxes = table_sums(request, table, tuple(columns), CUT, CONFIG)
    np.testing.assert_array_equal(sums, joined)
    assert maxes is not None and joined_maxes is not None
    np.testing.assert_array_equal(maxes, joined_maxes)


def test_the_key_of_no_column_reads_the_one_all_declarations_row() -> None:
    table = pd.DataFrame({"hits": [3.0], "controls": [10.0]})
    request = pd.DataFrame({"importer": ["X", "Y"]})
    vocabulary = Vocabulary([(table, [])])
    sums, _ = EntityLookup(KeyIndex(table, [], vocabulary), table.to_numpy()).take(
        RequestKeys(request, vocabulary)
    )
    np.testing.assert_array_equal(sums, [[3.0, 10.0], [3.0, 10.0]])
    empty = table.iloc[:0]
    sums, _ = EntityLookup(KeyIndex(empty, [], vocabulary), empty.to_numpy()).take(
        RequestKeys(request, vocabulary)
    )
    np.testing.assert_array_equal(sums, np.zeros((2, 2)))


def joined_attach(
    declarations: pd.DataFrame, snapshot: Snapshot, config: FeaturesConfig
) -> pd.DataFrame:
    """The features `attach` served before the lookups: every snapshot table as-of joined to
    the request (`table_sums`, `valuation._state_sums`, `history._importer_sums`)."""
    decl = sorted_declarations(declarations)
    as_of = snapshot.as_of

    def totals(key: tuple[str, ...]) -> dict[str, np.ndarray]:
        table = snapshot.profiles[profiles.key_name(key) or "__global__"]
        return totals_frame(*table_sums(decl, table, key, as_of, config), config)

    def valuation_of() -> dict[str, np.ndarray]:
        sums, lowest = valuation._state_sums(decl, snapshot.valuation, as_of)
        return valuation._features(decl, sums, -lowest, config)

    def history_of() -> dict[str, np.ndarray]:
        state = snapshot.history
        times = decl["lodged_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        codes, table_codes, recent_codes = profiles.column_codes(
            [decl, state.importers, state.recent], ["importer"]
        )
        at = np.maximum(times, as_of.value)
        sums, first = history._importer_sums(codes, at, table_codes, state.importers, as_of.value)
        recent_times = state.recent["lodged_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        probes = [times - int(w * profiles.NS_PER_DAY) for w in config.history_windows_days]
        counts = history.count_before(codes, [*probes, times], recent_codes, recent_times)
        windows = {
            f"importer_declarations_{w}d": counts[-1] - counts[i]
            for i, w in enumerate(config.history_windows_days)
        }
        new_pair = ~history._known_pairs(decl, state.pairs, history.NEW_PAIR)
        day = times / profiles.NS_PER_DAY
        return history._assemble(decl, day, sums, first, new_pair, windows)

    X, _ = run_stages(decl, config, totals, valuation_of, history_of, snapshot.categories)
    return X


def _request(cut: pd.Timestamp, kind: str, size: int, seed: int) -> pd.DataFrame:
    """Declarations to serve: past ones lodged again after the cut-off (`known` entities), with
    entities no table holds (`unknown`), or some of each (`mixed`); some lodged before it."""
    rng = np.random.default_rng(seed)
    rows = DECLARATIONS.sample(size, replace=True, random_state=seed).copy()
    rows["declaration_id"] = [f"NEW{i}" for i in range(size)]
    rows["lodged_at"] = cut + pd.to_timedelta(rng.integers(-48, 24 * 40, size), unit="h")
    rows = rows.drop(columns=["hs2", "hs4", "hs6"])
    changed = np.ones(size, bool) if kind == "unknown" else rng.random(size) < 0.5
    if kind == "known":
        return rows
    for column, fresh in (("importer", "I-NEW"), ("seller", "S-NEW"), ("origin_country", "ZZ")):
        values = rows[column].astype(object).to_numpy()
        values[changed & (rng.random(size) < 0.7)] = fresh
        values[changed & (rng.random(size) < 0.1)] = None
        rows[column] = values
    codes = rows["hs_code"].to_numpy().copy()
    codes[changed & (rng.random(size) < 0.5)] = "9999999999"
    rows["hs_code"] = codes
    return rows


@settings(max_examples=12, deadline=None)
@given(
    position=st.integers(20, 380),
    kind=st.sampled_from(["known", "unknown", "mixed"]),
    size=st.sampled_from([1, 7, 200]),
    seed=st.integers(0, 2**16),
)
def test_served_features_are_the_as_of_join_features(
    position: int, kind: str, size: int, seed: int
) -> None:
    cut = LODGED.iloc[position]
    snapshot = build_snapshot(DECLARATIONS, OUTCOMES, CONFIG, cut)
    request = _request(cut, kind, size, seed)
    served: FeatureSet = attach(request, snapshot, CONFIG)
    assert same_values(served.X, joined_attach(request, snapshot, CONFIG))


def test_a_loaded_snapshot_serves_the_join_features_and_builds_its_lookups_once(
    tmp_path: Path,
) -> None:
    cut = LODGED.iloc[250]
    build_snapshot(DECLARATIONS, OUTCOMES, CONFIG, cut).save(tmp_path / "snapshot")
    loaded = Snapshot.load(tmp_path / "snapshot")
    request = _request(cut, "mixed", 50, seed=1)
    served = attach(request, loaded, CONFIG)
    lookups = loaded.lookups(CONFIG)
    assert same_values(served.X, joined_attach(request, loaded, CONFIG))
    assert attach(request.iloc[:1], loaded, CONFIG).X.shape[0] == 1
    assert loaded.lookups(CONFIG) is lookups  # one build, every request after it reads it
    other = small_config(prior_strength=50.0)
    assert loaded.lookups(other) is not lookups  # other settings: built for them


@pytest.mark.parametrize("random_stratum_only", [False, True])
def test_served_rates_with_either_kind_of_control_are_the_join_rates(
    random_stratum_only: bool,
) -> None:
    config = small_config(random_stratum_only=random_stratum_only)
    cut = LODGED.iloc[300]
    snapshot = build_snapshot(DECLARATIONS, OUTCOMES, config, cut)
    request = _request(cut, "mixed", 40, seed=2)
    assert same_values(
        attach(request, snapshot, config).X, joined_attach(request, snapshot, config)
    )
