"""The scorer on real features, a real (small) XGBoost model and real thresholds."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers.serve import (
    declarations,
    labelled_training,
    make_snapshot,
    outcomes,
    scored_reference,
    serve_config,
    thresholds_document,
    train_model,
    watch_list_rules,
)
from hypothesis import given
from hypothesis import strategies as st

from pipeline.config import FeaturesConfig
from pipeline.features import build
from pipeline.serve.model import TargetingModel
from pipeline.serve.ranking import prepare
from pipeline.serve.scorer import (
    OUTPUT_COLUMNS,
    Scorer,
    reason_codes,
    reason_phrases,
)
from pipeline.serve.selectivity import ThresholdsError
from pipeline.serve.thresholds import Thresholds

HISTORY_START = dt.date(2024, 1, 1)


@dataclass
class World:
    """History, features, a model, its thresholds and a scorer; new declarations to score."""

    history: pd.DataFrame
    feature_set: Any
    model: TargetingModel
    reference: pd.DataFrame
    reference_X: pd.DataFrame
    thresholds: Thresholds
    scorer: Scorer
    incoming: pd.DataFrame


@pytest.fixture(scope="module")
def world() -> World:
    config = FeaturesConfig()
    history = declarations(5_000, seed=11, start=HISTORY_START, days=120)
    inspected = outcomes(history, seed=11)
    feature_set = build.build_feature_set(history, inspected, config)
    snapshot = make_snapshot(history, inspected, config)
    cut = pd.Timestamp(HISTORY_START) + pd.Timedelta(days=90)
    early = (feature_set.lodged_at < cut).to_numpy()
    X, y = labelled_training(feature_set.subset(early))
    model = train_model(X, y)
    late = feature_set.subset(~early)
    reference = scored_reference(history, late, model)
    descriptions = dict(
        zip(feature_set.manifest["name"], feature_set.manifest["description"], strict=True)
    )
    document = thresholds_document(
        model, reference, serve_config(rules=watch_list_rules()), descriptions
    )
    thresholds = Thresholds.from_document(document, model.booster_sha256())
    scorer = Scorer(model, snapshot, thresholds, config)
    incoming = declarations(1_500, seed=12, start=dt.date(2024, 5, 1), days=10)
    return World(history, feature_set, model, reference, late.X, thresholds, scorer, incoming)


def test_every_row_is_scored_with_the_output_contract(world: World):
    scored = world.scorer.score(world.incoming)
    assert list(scored.columns) == list(OUTPUT_COLUMNS)
    assert len(scored) == len(world.incoming)
    assert scored["declaration_id"].tolist() == world.incoming["declaration_id"].tolist()
    assert scored["error"].isna().all()
    assert scored["probability"].between(0, 1).all()
    assert set(scored["channel"]) <= {"red", "yellow", "green"}
    controlled = scored["channel"].isin(["red", "yellow"])
    assert controlled.any()
    assert scored.loc[controlled, "reasons"].notna().all()
    assert scored.loc[~controlled, "reasons"].isna().all()


def test_realised_shares_on_the_reference_window_meet_the_targets(world: World):
    reference = world.reference
    scored = world.scorer.score_features(reference, world.reference_X)
    shares = scored["channel"].value_counts(normalize=True)
    assert abs(shares.get("red", 0.0) - 0.02) <= 0.005
    assert abs(shares.get("yellow", 0.0) - 0.06) <= 0.005


def test_scores_are_the_models_calibrated_probabilities(world: World):
    scored = world.scorer.score(world.incoming)
    X = world.scorer.features(world.incoming.reset_index(drop=True))
    np.testing.assert_allclose(scored["probability"], world.model.predict_proba(X), rtol=1e-6)
    np.testing.assert_allclose(scored["score"], scored["probability"])


def test_fast_preparation_equals_the_models(world: World):
    X = world.scorer.features(world.incoming.reset_index(drop=True))
    categorical = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]
    assert categorical
    for column in categorical:  # an unseen level, and levels in another order
        values = (
            X[column]
            .cat.add_categories(["NEVER-SEEN"])
            .cat.reorder_categories(["NEVER-SEEN", *X[column].cat.categories])
        )
        values.iloc[0] = "NEVER-SEEN"
        X = X.assign(**{column: values})
    expected = world.model.prepare(X)
    got = prepare(world.model, X)
    pd.testing.assert_frame_equal(got, expected)


def test_reason_codes_are_the_top_treeshap_contributions(world: World):
    X = world.scorer.features(world.incoming.reset_index(drop=True)).iloc[:200]
    reasons = reason_codes(world.model, X, 3, {})
    contributions = world.model.contributions(X)[:, :-1]
    # a missing value is never a reason: its contribution is not a finding to check
    contributions[prepare(world.model, X).isna().to_numpy()] = -np.inf
    for i in (0, 57, 199):
        listed = json.loads(reasons.iloc[i])
        top = np.argsort(-contributions[i], kind="stable")[:3]
        expected = [world.model.feature_names[j] for j in top if contributions[i, j] > 0]
        assert [r["feature"] for r in listed] == expected
        for entry in listed:
            j = world.model.feature_names.index(entry["feature"])
            assert entry["contribution"] == pytest.approx(contributions[i, j], abs=1e-4)
            assert entry["phrase"]


def test_unseen_categories_and_missing_optional_fields_are_scored(world: World):
    odd = world.incoming.iloc[:6].copy()
    odd["office"] = "NEW-OFFICE"
    odd["origin_country"] = "ZZ"
    odd["importer"] = [f"NEVER-SEEN-{i}" for i in range(6)]
    odd["hs_code"] = "999999"
    odd["seller"] = None
    odd["quantity"] = np.nan
    odd["declared_duty"] = np.nan
    scored = world.scorer.score(odd)
    assert scored["error"].isna().all(), scored["error"].tolist()
    assert scored["probability"].notna().all()
    assert (scored["channel"] != "manual").all()


def test_rules_and_random_draw_reach_the_scored_rows(world: World):
    incoming = world.incoming.copy()
    incoming.loc[:9, "importer"] = "IMP7"  # watch-listed
    scored = world.scorer.score(incoming)
    ruled = scored.iloc[:10]
    assert (ruled["channel"] == "red").all()
    assert set(ruled["selection_reason"]) <= {"watch-listed importer", "random"}
    drawn = scored["selection_reason"] == "random"
    assert (scored.loc[drawn, "selection_probability"] == 0.005).all()


def test_a_threshold_file_made_for_another_model_is_refused(world: World):
    X, y = labelled_training(world.feature_set)
    other = train_model(X, y, seed=5, rounds=12)
    with pytest.raises(ThresholdsError, match="another model"):
        Scorer(other, world.scorer.snapshot, world.thresholds, FeaturesConfig())


CORRUPTIONS: dict[str, list[Any]] = {
    "declared_value": [None, -10.0, "lots"],
    "lodged_at": [None, "not a date"],
    "declaration_id": [None],
    "net_mass_kg": [None, -1.0],
    "hs_code": [None, "ABC"],
    "office": [None],
    "duty_rate": ["eight percent", -0.5],
    "aeo": [None, "maybe"],
    "seller": [None],
    "quantity": [None],
}


@given(
    rows=st.lists(st.integers(0, 1_499), min_size=0, max_size=25),
    damage=st.lists(
        st.tuples(
            st.integers(0, 24),
            st.sampled_from(sorted(CORRUPTIONS)),
            st.integers(0, 2),
        ),
        max_size=8,
    ),
)
def test_one_row_in_one_row_out(world: World, rows: list[int], damage: list[tuple[int, str, int]]):
    batch = world.incoming.iloc[rows].astype(object).copy()
    batch.index = np.arange(len(batch)) * 5 + 3  # an index the scorer must not rely on
    for position, column, choice in damage:
        if position < len(batch):
            values = CORRUPTIONS[column]
            batch.iloc[position, batch.columns.get_loc(column)] = values[choice % len(values)]
    scored = world.scorer.score(batch)
    assert len(scored) == len(batch)
    manual = scored["channel"] == "manual"
    assert scored.loc[manual, "error"].notna().all()
    assert scored.loc[~manual, "error"].isna().all()
    assert scored.loc[~manual, "probability"].notna().all()
    sent = batch["declaration_id"].astype(object).where(batch["declaration_id"].notna(), None)
    same = [a == b for a, b in zip(scored["declaration_id"], sent, strict=True) if b is not None]
    assert all(same)


def test_from_files_loads_what_the_export_names_and_refuses_another_model(
    world: World, tmp_path: Path
):
    world.model.save(tmp_path / "model")
    world.scorer.snapshot.save(tmp_path / "snapshot")
    document = json.loads(world.thresholds.to_json())
    document["model"]["uri"] = str(tmp_path / "model")
    document["snapshot"] = {"path": str(tmp_path / "snapshot"), "uri": None}
    path = Thresholds(document).save(tmp_path / "selectivity.json")

    loaded = Scorer.from_files(path)
    batch = world.incoming.iloc[:300]
    pd.testing.assert_frame_equal(loaded.score(batch), world.scorer.score(batch))

    X, y = labelled_training(world.feature_set)
    train_model(X, y, seed=9, rounds=8).save(tmp_path / "other")
    with pytest.raises(ThresholdsError, match="another model"):
        Scorer.from_files(path, model_uri=str(tmp_path / "other"))
    document["snapshot"] = {"path": str(tmp_path / "nowhere"), "uri": None}
    Thresholds(document).save(path)
    with pytest.raises(FileNotFoundError, match="snapshot"):
        Scorer.from_files(path)


def test_reason_phrases_speak_customs():
    values = pd.Series([-0.97, 0.3, np.nan])
    undervalued = reason_phrases("unit_value_log_ratio_hs6_origin", values, None)
    assert undervalued[0] == "unit value 62 % below the reference for this HS6 and origin"
    assert undervalued[1] == "unit value 35 % above the reference for this HS6 and origin"
    assert undervalued[2].endswith("not known")
    rate = reason_phrases("origin_country_x_hs6_hit_rate", pd.Series([0.125]), None)
    assert rate[0] == "past hit rate of this origin x HS6: 12 %"
    office = reason_phrases("office", pd.Series(["ICN01"], dtype="category"), "customs office")
    assert office[0] == "office ICN01"
    per_kg = reason_phrases(
        "value_per_kg_log_ratio",
        pd.Series([-1.0, -1.0]),
        None,
        pd.DataFrame({"reference_level": [0.0, 2.0]}),
    )
    assert per_kg.tolist() == [
        "value per kg 63 % below the reference for this HS6 and origin",
        "value per kg 63 % below the reference for this HS4",
    ]
    assert reason_phrases("importer_new", pd.Series([1.0]), None)[0].startswith("new importer")
    # a coded feature reads as what its code means, not as its legend and a number
    legend = "reference used: 0 hs6 x origin, 1 hs6, 2 hs4 (NaN: none)"
    level = reason_phrases("reference_level", pd.Series([0.0, 2.0, np.nan]), legend)
    assert level.tolist() == [
        "reference price of this HS6 and origin",
        "reference price of this HS4",
        "reference price: not known",
    ]


def test_score_job_summary_counts_manual_reasons_by_kind():
    from pipeline.jobs.score import summarise

    scored = pd.DataFrame(
        {
            "channel": ["red", "green", "green", "manual", "manual", "manual"],
            "error": [
                None,
                None,
                None,
                "net_mass_kg: negative (-3.0)",
                "net_mass_kg: negative (-1)",
                "x",
            ],
        }
    )
    lines = summarise(scored, {"red": 0.02, "yellow": 0.06}, "manual")
    assert lines[0].startswith("6 declarations scored (3 valid)")
    assert any("red" in line and "33.33%" in line and "target 2.0%" in line for line in lines)
    assert any(line.strip().startswith("2  net_mass_kg: negative") for line in lines)


def test_the_columns_a_kcs_model_reads_are_its_raw_and_key_columns_not_its_statistics() -> None:
    """A target statistic of a KCS column (kcs_tax_type_hit_rate) is computed from the column
    kcs_tax_type: the scorer asks the declarations for the column, never for the statistic."""
    from types import SimpleNamespace

    from pipeline.config import FeaturesConfig
    from pipeline.serve.scorer import Scorer

    config = FeaturesConfig(
        raw_categories=["hs6", "kcs_import_type"], target_stat_keys=[["kcs_tax_type"]]
    )
    model = SimpleNamespace(
        feature_names=["hs6", "kcs_import_type", "kcs_tax_type_hit_rate", "kcs_payment_type"]
    )
    scorer = SimpleNamespace(model=model, features_config=config)
    read = Scorer.read_columns(scorer)  # type: ignore[arg-type]
    assert read == ["hs6", "kcs_import_type", "kcs_tax_type", "kcs_payment_type"]
    lacking = Scorer.missing_columns(
        SimpleNamespace(read_columns=lambda: read),  # type: ignore[arg-type]
        pd.DataFrame(columns=["hs6", "kcs_import_type"]),
    )
    assert lacking is not None and "kcs_tax_type, kcs_payment_type" in lacking
    assert "hit_rate" not in lacking
