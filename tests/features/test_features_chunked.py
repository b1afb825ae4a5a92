"""The chunked feature build equals the in-memory one, whatever the month-start borders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.features import (
    KCS_FILES,
    kcs_sample,
    same_values,
    simulated,
    small_config,
    tiny_tables,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import Config, FeaturesConfig
from pipeline.features.build import Snapshot, attach, build_feature_set, build_snapshot, known_at
from pipeline.features.chunked import build_chunked, build_feature_set_chunked, chunk_starts
from pipeline.features.featureset import FeatureSet
from pipeline.ingest.readers import load_inputs
from pipeline.jobs.features import features

# Features that count (declarations, controls, hits, pairs, support, flags): exactly equal.
COUNT_SUFFIXES = ("_declarations", "_controls", "_hits", "_new", "_level")
COUNT_PARTS = ("_declarations_", "_distinct_", "reference_support_")


def _is_count(name: str) -> bool:
    return name.endswith(COUNT_SUFFIXES) or any(part in name for part in COUNT_PARTS)


def assert_same(chunked: FeatureSet, base: FeatureSet) -> None:
    """Same rows, columns, dtypes and categories; counts exact, other floats within 1e-9."""
    assert chunked.declaration_id.equals(base.declaration_id)
    assert list(chunked.X.columns) == list(base.X.columns)
    assert chunked.X.dtypes.equals(base.X.dtypes)  # category levels included
    pd.testing.assert_frame_equal(chunked.manifest, base.manifest)
    pd.testing.assert_frame_equal(chunked.meta(), base.meta())
    for name in base.X.columns:
        left, right = chunked.X[name], base.X[name]
        if isinstance(right.dtype, pd.CategoricalDtype):
            assert np.array_equal(left.cat.codes.to_numpy(), right.cat.codes.to_numpy()), name
        elif _is_count(name):
            assert np.array_equal(left.to_numpy(), right.to_numpy(), equal_nan=True), name
        else:
            np.testing.assert_allclose(
                left.to_numpy(np.float64), right.to_numpy(np.float64), rtol=1e-9, err_msg=name
            )


def _months(times: pd.Series) -> np.ndarray:
    return times.to_numpy(dtype="datetime64[ns]").astype("datetime64[M]").astype(np.int64)


def late_outcomes(
    declarations: pd.DataFrame, outcomes: pd.DataFrame, config: FeaturesConfig
) -> int:
    """Inspected outcomes known in a later month than their declaration was lodged."""
    lodged = outcomes["declaration_id"].map(declarations.set_index("declaration_id")["lodged_at"])
    known = known_at(outcomes, lodged, config)
    later = _months(known) > _months(lodged)
    return int((later & outcomes["inspected"].to_numpy(dtype=bool)).sum())


SIM_DECLARATIONS, SIM_OUTCOMES = simulated()
SIM_CONFIG = small_config(reporting_delay_days=20.0)
SIM_BASE = build_feature_set(SIM_DECLARATIONS, SIM_OUTCOMES, SIM_CONFIG)


@pytest.mark.parametrize("chunk_months", [1, 3, 120])
def test_chunked_features_equal_in_memory_features(chunk_months: int) -> None:
    assert late_outcomes(SIM_DECLARATIONS, SIM_OUTCOMES, SIM_CONFIG) > 100
    chunked = build_feature_set_chunked(
        SIM_DECLARATIONS, SIM_OUTCOMES, SIM_CONFIG, chunk_months=chunk_months
    )
    assert_same(chunked, SIM_BASE)


def test_random_stratum_rates_and_long_windows_equal_in_memory() -> None:
    config = small_config(
        random_stratum_only=True, reporting_delay_days=45.0, history_windows_days=[7, 400]
    )
    base = build_feature_set(SIM_DECLARATIONS, SIM_OUTCOMES, config)
    assert_same(build_feature_set_chunked(SIM_DECLARATIONS, SIM_OUTCOMES, config), base)


def test_chunk_starts_fall_on_month_starts_and_skip_empty_months() -> None:
    lodged = pd.Series(
        pd.to_datetime(
            ["2024-01-15", "2024-01-31 23:59", "2024-02-01", "2024-05-03", "2024-07-09"],
            format="ISO8601",
        )
    )
    assert chunk_starts(lodged, 1) == [pd.Timestamp(f"2024-0{m}-01") for m in (1, 2, 5, 7)]
    assert chunk_starts(lodged, 3) == [pd.Timestamp(f"2024-0{m}-01") for m in (1, 4, 7)]
    given_starts = [pd.Timestamp("2024-03-01"), pd.Timestamp("2024-06-01")]
    assert chunk_starts(lodged, starts=given_starts) == given_starts
    with pytest.raises(ValueError, match="month starts"):
        chunk_starts(lodged, starts=[pd.Timestamp("2024-03-02")])
    with pytest.raises(ValueError, match="at least 1"):
        chunk_starts(lodged, 0)


def test_a_month_without_declarations_and_outcomes_without_result_dates() -> None:
    """Outcomes known (lodged_at + missing delay) during a month without declarations count."""
    declarations, outcomes = tiny_tables(500, seed=4, ties=False)
    months = _months(declarations["lodged_at"])
    gap = months.min() + 1
    declarations = declarations.loc[months != gap]
    outcomes = outcomes.drop(columns="result_at")
    config = small_config(missing_result_delay_days=35.0)
    lodged = outcomes["declaration_id"].map(declarations.set_index("declaration_id")["lodged_at"])
    assert (_months(known_at(outcomes, lodged, config)) == gap).sum() > 10
    assert chunk_starts(declarations["lodged_at"]) == list(
        pd.date_range("2024-01-01", periods=4, freq="MS").delete(1)
    )
    base = build_feature_set(declarations, outcomes, config)
    assert_same(build_feature_set_chunked(declarations, outcomes, config), base)


TINY_DECLARATIONS, TINY_OUTCOMES = tiny_tables(400, seed=2)
TINY_MONTHS = pd.date_range("2024-01-01", periods=6, freq="MS")


@settings(max_examples=12, deadline=None)
@given(
    borders=st.lists(st.sampled_from(list(TINY_MONTHS)), max_size=5),
    delay=st.floats(0.0, 60.0),
    random_stratum_only=st.booleans(),
)
def test_any_month_borders_give_the_in_memory_features(
    borders: list[pd.Timestamp], delay: float, random_stratum_only: bool
) -> None:
    config = small_config(reporting_delay_days=delay, random_stratum_only=random_stratum_only)
    base = build_feature_set(TINY_DECLARATIONS, TINY_OUTCOMES, config)
    starts = [TINY_MONTHS[0], *borders]
    chunked = build_feature_set_chunked(TINY_DECLARATIONS, TINY_OUTCOMES, config, starts=starts)
    assert_same(chunked, base)


def test_features_job_builds_over_chunks_when_configured(
    simulated_project: Callable[..., Config],
) -> None:
    config = simulated_project(
        "features.chunk_months=2", rows=2000, days=100, importers=200, sellers=150, declarants=20
    )
    result = features(config)
    assert result.figures["chunk_months"] == 2 and "2-month chunks" in result.lines[0]
    written = FeatureSet.read_parquet(config.paths.features, config.paths.manifest)
    inputs = load_inputs(config)
    base = build_feature_set(inputs.declarations, inputs.outcomes, config.features)
    assert written.declaration_id.astype(str).tolist() == base.declaration_id.tolist()
    assert same_values(written.X, base.X)
    # The chunk size is how the features were built, not what they are: the snapshot serves
    # a config that builds in memory.
    in_memory = config.features.model_copy(update={"chunk_months": 0})
    snapshot = Snapshot.load(config.paths.snapshot)
    new = inputs.declarations.head(5).assign(lodged_at=snapshot.as_of)
    assert len(attach(new, snapshot, in_memory)) == 5


@pytest.mark.skipif(not KCS_FILES.is_dir(), reason="KCS files not available")
def test_kcs_declarations_chunked_equal_in_memory() -> None:
    """No revenue, no result dates, extra kcs_* categories."""
    declarations, outcomes = kcs_sample(4000)
    config = small_config(missing_result_delay_days=30.0)
    base = build_feature_set(declarations, outcomes, config)
    assert_same(build_feature_set_chunked(declarations, outcomes, config), base)


def test_text_keys_and_a_given_input_left_untouched() -> None:
    """Object key columns (no categories) give the same features; the inputs are not mutated."""
    declarations, outcomes = tiny_tables(400, seed=5)
    declarations = declarations.astype({c: object for c in ("importer", "seller", "hs6", "hs4")})
    before = declarations.copy()
    config = small_config(reporting_delay_days=10.0)
    base = build_feature_set(declarations, outcomes, config)
    assert_same(build_feature_set_chunked(declarations, outcomes, config), base)
    pd.testing.assert_frame_equal(declarations, before)


@pytest.mark.parametrize("chunk_months", [1, 12])
def test_the_snapshot_carried_out_of_the_chunks_serves_like_build_snapshot(
    chunk_months: int, tmp_path: Path
) -> None:
    config = small_config(reporting_delay_days=30.0)
    as_of = SIM_DECLARATIONS["lodged_at"].max() + pd.Timedelta(seconds=1)
    chunked, carried = build_chunked(
        SIM_DECLARATIONS, SIM_OUTCOMES, config, chunk_months, snapshot_as_of=as_of
    )
    assert carried is not None and carried.as_of == as_of
    carried.save(tmp_path / "snapshot")
    expected = build_snapshot(SIM_DECLARATIONS, SIM_OUTCOMES, config, as_of)
    assert {k: len(v) for k, v in carried.profiles.items()} == {
        k: len(v) for k, v in expected.profiles.items()
    }
    assert carried.categories == expected.categories
    # New declarations of known and unknown traders, an hour to sixty days after the cut-off.
    new = SIM_DECLARATIONS.sample(300, random_state=1).reset_index(drop=True)
    new["lodged_at"] = as_of + pd.to_timedelta(np.linspace(1, 60 * 24, len(new)), unit="h")
    new["importer"] = new["importer"].astype(object).where(new.index % 7 > 0, "unseen")
    served = attach(new, Snapshot.load(tmp_path / "snapshot"), config)
    assert_same(served, attach(new, expected, config))
    assert_same(chunked, build_feature_set(SIM_DECLARATIONS, SIM_OUTCOMES, config))


def test_a_snapshot_inside_the_data_is_refused() -> None:
    inside = SIM_DECLARATIONS["lodged_at"].max()
    with pytest.raises(ValueError, match="after the last lodging"):
        build_chunked(SIM_DECLARATIONS, SIM_OUTCOMES, SIM_CONFIG, snapshot_as_of=inside)
