"""Guarantees of the feature builder: no leakage, order-free, pure, serving equals training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.features import same_values, simulated, small_config, tiny_tables
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import FeaturesConfig
from pipeline.features.build import (
    Snapshot,
    attach,
    build_feature_set,
    build_snapshot,
    feature_families,
    known_at,
)

DECLARATIONS, OUTCOMES = tiny_tables(400, seed=1)
CONFIG = small_config()
BASE = build_feature_set(DECLARATIONS, OUTCOMES, CONFIG)


def _known(outcomes: pd.DataFrame, declarations: pd.DataFrame) -> pd.Series:
    lodged = outcomes["declaration_id"].map(declarations.set_index("declaration_id")["lodged_at"])
    return known_at(outcomes, lodged, CONFIG)


@settings(max_examples=15, deadline=None)
@given(
    cut=st.floats(0.05, 0.95),
    change=st.sampled_from(["remove", "flip", "revenue", "later"]),
    seed=st.integers(0, 1000),
)
def test_outcomes_known_at_or_after_t_change_no_feature_before_t(
    cut: float, change: str, seed: int
) -> None:
    t = BASE.lodged_at.quantile(cut)
    late = (_known(OUTCOMES, DECLARATIONS) >= t).to_numpy()
    rng = np.random.default_rng(seed)
    touched = late & (rng.random(len(OUTCOMES)) < 0.7)
    changed = OUTCOMES.copy()
    if change == "remove":
        changed = changed.loc[~touched]
    elif change == "flip":
        changed.loc[touched, "hit"] = ~changed.loc[touched, "hit"]
    elif change == "revenue":
        changed.loc[touched, "revenue_recovered"] = 1e6
    else:  # the result arrives even later
        changed.loc[touched, "result_at"] = changed.loc[touched, "result_at"] + pd.Timedelta(
            days=30
        )
    after = build_feature_set(DECLARATIONS, changed, CONFIG)
    before_t = (BASE.lodged_at < t).to_numpy()
    assert same_values(BASE.X[before_t], after.X[before_t])


def test_the_leakage_property_covers_every_family_with_outcomes() -> None:
    """The property above is checked on every column of BASE: the as-of target statistics, the
    profiles and the crosses are among them (and the hit-rate features of each are not constant)."""
    family = feature_families(BASE.manifest, CONFIG)
    for name in ("profiles", "crosses", "target_stats"):
        rates = [c for c in family.index[family == name] if c.endswith("_hit_rate")]
        assert rates and BASE.X[rates].nunique().gt(1).all()


def test_an_outcome_known_before_t_does_change_later_features() -> None:
    """The leakage test can fail: flipping early outcomes moves later profile rates."""
    early = (_known(OUTCOMES, DECLARATIONS) < BASE.lodged_at.quantile(0.3)).to_numpy()
    changed = OUTCOMES.copy()
    changed.loc[early, "hit"] = ~changed.loc[early, "hit"]
    after = build_feature_set(DECLARATIONS, changed, CONFIG)
    assert not same_values(BASE.X, after.X)


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_shuffling_rows_changes_nothing(seed: int) -> None:
    declarations = DECLARATIONS.sample(frac=1.0, random_state=seed)
    outcomes = OUTCOMES.sample(frac=1.0, random_state=seed + 1)
    shuffled = build_feature_set(declarations, outcomes, CONFIG)
    assert same_values(BASE.X, shuffled.X)
    pd.testing.assert_frame_equal(BASE.meta(), shuffled.meta())


def test_inputs_are_not_mutated() -> None:
    declarations, outcomes = DECLARATIONS.copy(deep=True), OUTCOMES.copy(deep=True)
    build_feature_set(declarations, outcomes, CONFIG)
    snapshot = build_snapshot(declarations, outcomes, CONFIG, BASE.lodged_at.iloc[200])
    attach(declarations.iloc[200:], snapshot, CONFIG)
    pd.testing.assert_frame_equal(declarations, DECLARATIONS)
    pd.testing.assert_frame_equal(outcomes, OUTCOMES)


@pytest.mark.parametrize("position", [1, 150, 399])
def test_serving_snapshot_gives_the_training_features_just_after_the_cut_off(
    position: int, tmp_path: Path
) -> None:
    as_of = BASE.lodged_at.iloc[position]
    snapshot = build_snapshot(DECLARATIONS, OUTCOMES, CONFIG, as_of)
    snapshot.save(tmp_path / "snapshot")
    loaded = Snapshot.load(tmp_path / "snapshot")
    new = DECLARATIONS.loc[DECLARATIONS["lodged_at"] >= as_of]
    served = attach(new, loaded, CONFIG)
    at_cut = (BASE.lodged_at == as_of).to_numpy()
    first = served.lodged_at == as_of
    assert first.sum() == at_cut.sum() > 0
    assert list(served.declaration_id[first]) == list(BASE.declaration_id[at_cut])
    assert same_values(BASE.X[at_cut], served.X[first.to_numpy()])
    assert list(served.X.columns) == list(BASE.X.columns)
    assert list(served.X.dtypes.astype(str)) == list(BASE.X.dtypes.astype(str))


def test_attach_keeps_every_row_and_gives_unseen_entities_their_parent_rate() -> None:
    as_of = BASE.lodged_at.iloc[300]
    snapshot = build_snapshot(DECLARATIONS, OUTCOMES, CONFIG, as_of)
    new = DECLARATIONS.iloc[:5].copy()
    new["lodged_at"] = as_of + pd.Timedelta(days=1)
    new["importer"] = new["importer"].astype(object)
    new.loc[new.index[0], "importer"] = "NEVER-SEEN"
    new.loc[new.index[1], "hs_code"] = "9999999999"
    new = new.drop(columns=["hs2", "hs4", "hs6"])
    served = attach(new, snapshot, CONFIG)
    assert len(served) == 5 and served.y.isna().all()
    row = served.declaration_id.tolist().index(new["declaration_id"].iloc[0])
    assert served.X.loc[row, "importer_declarations"] == 0
    assert served.X.loc[row, "importer_new"] == 1
    global_rate = snapshot.profiles["__global__"]
    rate = float(global_rate["hits"].iloc[0] / global_rate["controls"].iloc[0])
    assert served.X.loc[row, "importer_hit_rate"] == pytest.approx(rate, rel=1e-5)
    unseen = served.declaration_id.tolist().index(new["declaration_id"].iloc[1])
    assert served.X.loc[unseen, "hs6_declarations"] == 0
    assert pd.isna(served.X.loc[unseen, "hs2"])


def test_two_controls_one_hit_is_not_a_fifty_percent_risk() -> None:
    declarations, outcomes = tiny_tables(6, seed=2, ties=False)
    declarations = declarations.assign(
        importer=pd.Categorical(["A", "A", "A", "B", "B", "B"]),
        lodged_at=pd.date_range("2024-01-01", periods=6, freq="10D"),
    )
    ids = declarations["declaration_id"].tolist()
    outcomes = pd.DataFrame(
        {
            "declaration_id": [ids[0], ids[1], ids[3], ids[4]],
            "selected_at": declarations["lodged_at"].iloc[[0, 1, 3, 4]].to_numpy(),
            "selection_reason": pd.Categorical(["rule"] * 4),
            "selection_probability": np.nan,
            "inspected": True,
            "hit": [False, False, True, False],
            "fraud_type": pd.Categorical(["none", "none", "x", "none"]),
            "revenue_recovered": [0.0, 0.0, 10.0, 0.0],
            "result_at": declarations["lodged_at"].iloc[[0, 1, 3, 4]].to_numpy(),
        }
    )
    features = build_feature_set(declarations, outcomes, small_config(prior_strength=10.0))
    last_a = features.X.loc[5]
    assert last_a["importer_controls"] == 2 and last_a["importer_hits"] == 1
    # Shrunk towards the global rate then known (1 hit in 4 controls) with 10 pseudo-controls.
    assert last_a["importer_hit_rate"] == pytest.approx((1 + 10 * 0.25) / (2 + 10))
    assert last_a["importer_revenue_per_control"] == pytest.approx(5.0)
    assert last_a["importer_declarations"] == 2
    assert last_a["importer_days_since_hit"] == pytest.approx(20.0)


def test_declarations_at_the_same_instant_do_not_count_each_other() -> None:
    declarations, outcomes = tiny_tables(5, seed=4)
    declarations = declarations.assign(
        importer=pd.Categorical(["A"] * 5),
        lodged_at=pd.to_datetime(["2024-01-01"] * 3 + ["2024-01-02"] * 2),
    )
    features = build_feature_set(declarations, outcomes.iloc[:0], CONFIG)
    assert features.X["importer_declarations"].tolist() == [0, 0, 0, 3, 3]
    assert features.X["importer_new"].tolist() == [1, 1, 1, 0, 0]


def test_feature_set_contract() -> None:
    fs = BASE
    assert isinstance(fs.X.index, pd.RangeIndex) and len(fs) == len(DECLARATIONS)
    order = pd.DataFrame({"t": fs.lodged_at, "id": fs.declaration_id})
    assert order.equals(order.sort_values(["t", "id"]).reset_index(drop=True))
    for column in fs.X.columns:
        assert fs.X[column].dtype == np.float32 or isinstance(
            fs.X[column].dtype, pd.CategoricalDtype
        )
    # trader ids enter only as categories of their own family (kept if validation says so)
    assert "declaration_id" not in fs.X.columns
    for column in ("importer", "declarant"):
        assert isinstance(fs.X[column].dtype, pd.CategoricalDtype)
    family = feature_families(fs.manifest, FeaturesConfig())
    assert family[["importer", "declarant"]].tolist() == ["id_importer", "id_declarant"]
    # the as-of target statistics of trader x goods pairs are a family of their own
    assert family["importer_x_hs4_hit_rate"] == "target_stats"
    assert family["declarant_x_office_days_since_hit"] == "target_stats"
    assert family["importer_x_hs6_hit_rate"] == "crosses" and family["hs6_hits"] == "profiles"
    assert list(fs.manifest["name"]) == list(fs.X.columns)
    assert fs.manifest["description"].str.len().gt(0).all()
    inspected = OUTCOMES.loc[OUTCOMES["inspected"]]
    labelled = fs.declaration_id[fs.y.notna()]
    assert set(labelled) == set(inspected["declaration_id"])
    assert fs.label_known_at.notna().sum() == len(inspected)
    random = OUTCOMES.loc[OUTCOMES["selection_reason"] == "random", "declaration_id"]
    assert fs.sample_weight[fs.declaration_id.isin(random)].eq(20.0).all()
    assert fs.sample_weight[~fs.declaration_id.isin(random)].eq(1.0).all()


def test_random_stratum_rates_use_only_random_controls() -> None:
    config = small_config(random_stratum_only=True)
    rated = build_feature_set(DECLARATIONS, OUTCOMES, config)
    assert not same_values(rated.X[["importer_hit_rate"]], BASE.X[["importer_hit_rate"]])
    assert rated.X["importer_hit_rate"].dropna().between(0, 1).all()


def test_missing_input_column_is_named() -> None:
    with pytest.raises(ValueError, match="declared_value"):
        build_feature_set(DECLARATIONS.drop(columns="declared_value"), OUTCOMES, CONFIG)


def test_on_the_simulator_profiles_rank_hits_above_misses(tmp_path: Path) -> None:
    declarations, outcomes = simulated()
    fs = build_feature_set(declarations, outcomes, small_config())
    labelled = fs.y.notna()
    assert labelled.sum() > 100 and fs.X.shape[1] > 60
    hits = fs.X.loc[labelled & (fs.y == 1), "importer_hit_rate"].mean()
    misses = fs.X.loc[labelled & (fs.y == 0), "importer_hit_rate"].mean()
    assert hits > misses
    fs.to_parquet(tmp_path / "fs.parquet", tmp_path / "manifest.csv")
    back = type(fs).read_parquet(tmp_path / "fs.parquet", tmp_path / "manifest.csv")
    assert same_values(fs.X, back.X)


def test_attach_refuses_a_snapshot_built_with_other_settings() -> None:
    snapshot = build_snapshot(DECLARATIONS, OUTCOMES, CONFIG, BASE.lodged_at.iloc[100])
    with pytest.raises(ValueError, match="prior_strength"):
        attach(DECLARATIONS.iloc[100:], snapshot, small_config(prior_strength=50.0))


def test_a_repeated_declaration_id_with_an_outcome_is_named() -> None:
    repeated = DECLARATIONS.copy()
    repeated.loc[repeated.index[1], "declaration_id"] = OUTCOMES["declaration_id"].iloc[0]
    repeated.loc[repeated.index[2], "declaration_id"] = OUTCOMES["declaration_id"].iloc[0]
    with pytest.raises(ValueError, match="declaration_id repeats"):
        build_feature_set(repeated, OUTCOMES, CONFIG)
