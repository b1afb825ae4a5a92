"""Issue 24, item 3: hierarchical shrinkage, the depth of history and decayed profiles.

Each is checked against a brute-force computation on small data, for leakage (nothing lodged or
known at or after t reaches a feature before t) and for serving == training == chunked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.features import same_values, small_config, tiny_tables
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline.config import FeaturesConfig
from pipeline.features import decay, profiles
from pipeline.features.build import (
    Snapshot,
    attach,
    build_feature_set,
    build_snapshot,
    feature_families,
    known_at,
)
from pipeline.features.chunked import build_feature_set_chunked
from pipeline.features.featureset import FeatureSet

DECLARATIONS, OUTCOMES = tiny_tables(300, seed=7)
CONFIG = small_config(
    shrinkage="hierarchical",
    history_depth=True,
    profile_half_lives=[3, 30],
    cross_keys=[["importer", "hs6"], ["importer", "hs4"], ["origin_country", "hs6"]],
)
BASE = build_feature_set(DECLARATIONS, OUTCOMES, CONFIG)
DAY = profiles.NS_PER_DAY


def _days(times: pd.Series) -> np.ndarray:
    return times.to_numpy(dtype="datetime64[ns]").astype(np.int64) / DAY


def _close(left: pd.DataFrame, right: pd.DataFrame) -> None:
    """Same columns; decayed features within float32 rounding (training scales them to a
    reference day, a snapshot holds logarithms), every other column exactly equal."""
    assert list(left.columns) == list(right.columns)
    decayed = [c for c in left.columns if "_hl" in c]
    assert decayed
    rest = [c for c in left.columns if c not in decayed]
    assert same_values(left[rest].reset_index(drop=True), right[rest].reset_index(drop=True))
    np.testing.assert_allclose(
        left[decayed].to_numpy(np.float64), right[decayed].to_numpy(np.float64), rtol=2e-6
    )


def _brute_force(fs: FeatureSet, declarations: pd.DataFrame, outcomes: pd.DataFrame) -> dict:
    """Per feature-set row, over the outcomes of the same importer known before its lodging:
    decayed controls and hits at each half-life, and the importer's first earlier lodging."""
    decl = declarations.set_index("declaration_id").loc[fs.declaration_id]
    lodged = outcomes["declaration_id"].map(declarations.set_index("declaration_id")["lodged_at"])
    known = _days(known_at(outcomes, lodged, CONFIG))
    inspected = outcomes["inspected"].to_numpy(bool)
    hit = outcomes["hit"].to_numpy(bool) & inspected
    importer = outcomes["declaration_id"].map(declarations.set_index("declaration_id")["importer"])
    t = _days(fs.lodged_at)[:, None]
    same = decl["importer"].to_numpy(object)[:, None] == importer.to_numpy(object)[None, :]
    counted = same & (known[None, :] < t) & inspected[None, :]
    out = {}
    for h in CONFIG.profile_half_lives:
        weight = np.where(counted, np.exp(-(t - _days(lodged)[None, :]) * np.log(2) / h), 0.0)
        out[f"controls_hl{h}"] = weight.sum(axis=1)
        out[f"hits_hl{h}"] = (weight * hit[None, :]).sum(axis=1)
    own = decl["importer"].to_numpy(object)
    earlier = (own[:, None] == own[None, :]) & (t > t.T)  # row j lodged strictly before row i
    first = np.where(earlier, np.broadcast_to(t.T, earlier.shape), np.inf).min(axis=1)
    out["days_known"] = np.where(np.isfinite(first), t[:, 0] - first, np.nan)
    return out


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(5, 80))
def test_decayed_counts_and_days_known_equal_a_brute_force_sum(seed: int, n: int) -> None:
    declarations, outcomes = tiny_tables(n, seed=seed, hours=24 * 20)
    fs = build_feature_set(declarations, outcomes, CONFIG)
    expected = _brute_force(fs, declarations, outcomes)
    for h in CONFIG.profile_half_lives:
        for column in (f"controls_hl{h}", f"hits_hl{h}"):
            got = fs.X[f"importer_{column}"].to_numpy(np.float64)
            np.testing.assert_allclose(got, expected[column], rtol=1e-5, atol=1e-30)
    np.testing.assert_allclose(
        fs.X["importer_days_known"].to_numpy(np.float64), expected["days_known"], rtol=1e-6
    )


def test_the_brute_force_check_can_fail() -> None:
    """A decayed count is not the cumulative one: the half-life changes it."""
    assert not np.allclose(BASE.X["importer_controls_hl3"], BASE.X["importer_controls"])
    assert not np.allclose(BASE.X["importer_controls_hl3"], BASE.X["importer_controls_hl30"])


@settings(max_examples=10, deadline=None)
@given(cut=st.floats(0.05, 0.95), seed=st.integers(0, 1000))
def test_nothing_lodged_or_known_from_t_on_reaches_a_feature_before_t(
    cut: float, seed: int
) -> None:
    """Dropping every declaration lodged at or after t, and changing or dropping outcomes known
    at or after t, leaves the features of the declarations before t exactly as they were."""
    t = BASE.lodged_at.quantile(cut)
    lodged = OUTCOMES["declaration_id"].map(DECLARATIONS.set_index("declaration_id")["lodged_at"])
    late = (known_at(OUTCOMES, lodged, CONFIG) >= t).to_numpy()
    rng = np.random.default_rng(seed)
    changed = OUTCOMES.copy()
    flip = late & (rng.random(len(changed)) < 0.5)
    changed.loc[flip, "hit"] = ~changed.loc[flip, "hit"]
    kept = DECLARATIONS.loc[DECLARATIONS["lodged_at"] < t]
    changed = changed.loc[~(late & (rng.random(len(changed)) < 0.3))]
    changed = changed.loc[changed["declaration_id"].isin(kept["declaration_id"])]
    after = build_feature_set(kept, changed, CONFIG)
    before_t = (BASE.lodged_at < t).to_numpy()
    assert same_values(BASE.X[before_t].reset_index(drop=True), after.X)


@pytest.mark.parametrize("position", [1, 120, 299])
def test_a_snapshot_serves_the_training_features_just_after_its_cut_off(
    position: int, tmp_path: Path
) -> None:
    as_of = BASE.lodged_at.iloc[position]
    build_snapshot(DECLARATIONS, OUTCOMES, CONFIG, as_of).save(tmp_path / "snapshot")
    served = attach(
        DECLARATIONS.loc[DECLARATIONS["lodged_at"] >= as_of],
        Snapshot.load(tmp_path / "snapshot"),
        CONFIG,
    )
    at_cut = (BASE.lodged_at == as_of).to_numpy()
    first = (served.lodged_at == as_of).to_numpy()
    assert first.sum() == at_cut.sum() > 0
    _close(BASE.X[at_cut], served.X[first])


@pytest.mark.parametrize("chunk_months", [1, 2])
def test_chunked_features_equal_in_memory_features(chunk_months: int) -> None:
    _close(BASE.X, build_feature_set_chunked(DECLARATIONS, OUTCOMES, CONFIG, chunk_months).X)


def test_the_ancestors_of_a_key_and_their_order() -> None:
    chain = [("importer", "hs6")]
    while (parent := profiles.coarser(chain[-1])) is not None:
        chain.append(parent)
    assert chain == [("importer", "hs6"), ("importer", "hs4"), ("importer", "hs2"), ("importer",)]
    assert profiles.coarser(("hs6",)) == ("hs4",) and profiles.coarser(("hs2",)) is None
    assert profiles.coarser(("departure_country", "origin_country", "transport_mode")) == (
        "departure_country",
        "origin_country",
    )
    ranks = sorted([("importer", "hs6"), ("hs6",), ("importer",), ("importer", "hs4"), ("hs2",)])
    ordered = sorted(ranks, key=profiles.hierarchy_rank)
    for key in ordered:
        parent = profiles.coarser(key)
        if parent in ordered:
            assert ordered.index(parent) < ordered.index(key)


def _shrunk(controls: np.ndarray, hits: np.ndarray, parent: np.ndarray) -> np.ndarray:
    k = CONFIG.prior_strength
    return (hits + k * parent) / (controls + k)


def test_hierarchical_rates_are_shrunk_towards_the_nearest_computed_ancestor() -> None:
    X = BASE.X.astype({c: np.float64 for c in BASE.X.columns if c.endswith("rate")})
    pair = X["importer_x_hs6_hit_rate"]
    parent = X["importer_x_hs4_hit_rate"]
    expected = _shrunk(X["importer_x_hs6_controls"], X["importer_x_hs6_hits"], parent)
    np.testing.assert_allclose(pair, expected, rtol=1e-5)
    # importer x hs4's nearest computed ancestor is the importer (no importer x hs2 key)
    expected = _shrunk(
        X["importer_x_hs4_controls"], X["importer_x_hs4_hits"], X["importer_hit_rate"]
    )
    np.testing.assert_allclose(parent, expected, rtol=1e-5)
    unseen = (X["importer_x_hs6_controls"] == 0).to_numpy()
    assert unseen.any()
    np.testing.assert_allclose(pair[unseen], parent[unseen], rtol=1e-6)
    decayed = _shrunk(
        X["importer_x_hs6_controls_hl30"],
        X["importer_x_hs6_hits_hl30"],
        X["importer_x_hs4_hit_rate_hl30"],
    )
    np.testing.assert_allclose(X["importer_x_hs6_hit_rate_hl30"], decayed, rtol=1e-5)


def test_flat_shrinkage_keeps_the_global_rate_as_the_parent_of_a_cross_key() -> None:
    flat = build_feature_set(
        DECLARATIONS, OUTCOMES, CONFIG.model_copy(update={"shrinkage": "flat"})
    )
    unseen = (flat.X["importer_x_hs6_controls"] == 0).to_numpy()
    assert not np.allclose(
        flat.X["importer_x_hs6_hit_rate"][unseen], BASE.X["importer_x_hs6_hit_rate"][unseen]
    )
    assert flat.X["importer_x_hs6_hit_rate"][unseen].nunique() < unseen.sum()


def test_each_half_life_and_the_depth_are_families_of_their_own() -> None:
    family = feature_families(BASE.manifest, CONFIG)
    assert family["importer_x_hs6_hit_rate_hl30"] == "decayed_30"
    assert family["importer_controls_hl3"] == "decayed_3"
    assert family["history_depth_days"] == family["hs6_days_known"] == "depth"
    assert family["importer_x_hs6_hit_rate"] == "crosses"
    assert {"decayed_3", "decayed_30", "depth", "crosses", "profiles"} <= set(family.to_numpy())
    plain = build_feature_set(DECLARATIONS, OUTCOMES, small_config())
    assert not {"decayed_3", "depth"} & set(feature_families(plain.manifest, small_config()))


def test_depth_of_history_counts_from_the_first_declaration_of_the_data() -> None:
    day = _days(BASE.lodged_at)
    depth = BASE.X[profiles.DEPTH].to_numpy(np.float64)
    later = day > day.min()
    np.testing.assert_allclose(depth[later], (day - day.min())[later], rtol=1e-6)
    assert np.isnan(depth[~later]).all()


def test_half_lives_are_validated_and_too_short_ones_refused() -> None:
    for wrong in ([0], [30, 30], [-7]):
        with pytest.raises(ValidationError):
            FeaturesConfig(profile_half_lives=wrong)
    config = small_config(profile_half_lives=[1])
    with pytest.raises(ValueError, match="too short"):
        decay.reference_day([np.array([0.0, 5000.0])], config)
    assert decay.reference_day([np.array([10.5, 20.0])], config) == 10.0


def test_a_snapshot_saved_before_the_new_settings_serves_with_their_defaults() -> None:
    config = small_config()
    snapshot = build_snapshot(DECLARATIONS, OUTCOMES, config, BASE.lodged_at.iloc[150])
    for setting in ("shrinkage", "history_depth", "profile_half_lives"):
        snapshot.config.pop(setting)
    attach(DECLARATIONS.iloc[:5], snapshot, config)
    with pytest.raises(ValueError, match="other feature settings"):
        attach(DECLARATIONS.iloc[:5], snapshot, CONFIG)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n_events=st.integers(0, 30), n_queries=st.integers(1, 20))
def test_the_join_takes_several_maxima_columns_as_it_takes_one(
    seed: int, n_events: int, n_queries: int
) -> None:
    """A profile table's extra columns ride the join as maxima: a matrix of them gives, column
    by column, what each column gives alone."""
    rng = np.random.default_rng(seed)
    event_codes, query_codes = rng.integers(0, 4, n_events), rng.integers(0, 5, n_queries)
    events_at, queries_at = rng.integers(0, 50, n_events), rng.integers(0, 50, n_queries)
    sums = rng.random((n_events, 2))
    maxima = np.where(rng.random((n_events, 3)) < 0.2, -np.inf, rng.normal(size=(n_events, 3)))
    joined = profiles.as_of_sum(
        query_codes, queries_at, event_codes, profiles.EventSums(events_at, sums, maxima)
    )[1]
    assert joined is not None and joined.shape == (n_queries, 3)
    for j in range(3):
        alone = profiles.as_of_sum(
            query_codes, queries_at, event_codes, profiles.EventSums(events_at, sums, maxima[:, j])
        )[1]
        np.testing.assert_array_equal(joined[:, j], alone)


def test_random_stratum_decayed_rates_serve_and_chunk_as_they_train() -> None:
    """With rates from the random stratum only, the decayed rate columns (random controls,
    weights, weighted hits) go the same three ways."""
    config = CONFIG.model_copy(update={"random_stratum_only": True})
    base = build_feature_set(DECLARATIONS, OUTCOMES, config)
    assert base.X["hs6_hit_rate_hl30"].notna().any()
    _close(base.X, build_feature_set_chunked(DECLARATIONS, OUTCOMES, config, 1).X)
    as_of = base.lodged_at.iloc[200]
    snapshot = build_snapshot(DECLARATIONS, OUTCOMES, config, as_of)
    served = attach(DECLARATIONS.loc[DECLARATIONS["lodged_at"] >= as_of], snapshot, config)
    at_cut, first = (base.lodged_at == as_of).to_numpy(), (served.lodged_at == as_of).to_numpy()
    _close(base.X[at_cut], served.X[first])
