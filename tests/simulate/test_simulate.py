"""The simulator: canonical form, the statistics it promises, the drift, the policy, the job."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.golden import check_golden, table_digest
from helpers.simulate import ROWS, small_config, small_stream
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import load
from pipeline.ingest.columns import (
    DECLARATION_COLUMNS,
    GROUND_TRUTH_COLUMNS,
    HS_LEVELS,
    OUTCOME_COLUMNS,
    SELECTION_REASONS,
)
from pipeline.jobs.simulate import simulate as simulate_job
from pipeline.simulate import EMERGING, FRAUD_TYPES, simulate, summary
from pipeline.simulate.entities import Importers, draw_countries, draw_entities
from pipeline.simulate.fraud import Fraud, declare, draw_fraud
from pipeline.simulate.goods import draw_catalogue
from pipeline.simulate.policy import Selection, inspect, select_historically
from pipeline.simulate.scheme import (
    ANTI_DUMPING_DUTY,
    PREFERENTIAL_FACTOR,
    Tariff,
    design_scheme,
    draw_tariff,
)
from pipeline.simulate.stream import Lodging, draw_consignments, draw_lodging, draw_parties
from pipeline.simulate.world import Flow, World

KIND_CHECKS = {
    "id": pd.api.types.is_object_dtype,
    "hs": pd.api.types.is_object_dtype,
    "timestamp": lambda d: str(d) == "datetime64[ns]",
    "category": lambda d: isinstance(d, pd.CategoricalDtype),
    "float": lambda d: str(d) == "float64",
    "bool": lambda d: str(d) == "bool",
}


@pytest.mark.parametrize(
    ("table", "columns"),
    [
        ("declarations", DECLARATION_COLUMNS),
        ("outcomes", OUTCOME_COLUMNS),
        ("ground_truth", GROUND_TRUTH_COLUMNS),
    ],
)
def test_tables_follow_the_column_contract(table: str, columns: tuple) -> None:
    frame = getattr(small_stream(), table)
    for column in columns:
        assert column.name in frame.columns, f"{table}.{column.name} missing"
        dtype = frame[column.name].dtype
        assert KIND_CHECKS[column.kind](dtype), f"{table}.{column.name} has dtype {dtype}"
        if isinstance(dtype, pd.CategoricalDtype):
            assert all(isinstance(c, str) for c in dtype.categories), f"{table}.{column.name}"
        if not column.nullable:
            assert frame[column.name].notna().all(), f"{table}.{column.name} has nulls"
        if column.minimum is not None:
            assert (frame[column.name].dropna() >= column.minimum).all(), f"{table}.{column.name}"


def test_declarations_are_sorted_unique_and_hs_levels_are_prefixes() -> None:
    declarations = small_stream().declarations
    assert len(declarations) == ROWS
    assert declarations["lodged_at"].is_monotonic_increasing
    assert declarations["declaration_id"].is_unique
    assert declarations["declaration_id"].map(type).eq(str).all()
    codes = declarations["hs_code"]
    assert codes.map(type).eq(str).all() and codes.str.fullmatch(r"\d{10}").all()
    for level in HS_LEVELS:
        digits = int(level[2:])
        assert (declarations[level].astype(str) == codes.str[:digits]).all(), level
    assert ((declarations["duty_rate"] >= 0) & (declarations["duty_rate"] < 1)).all()
    lodged = declarations["lodged_at"]
    assert lodged.min() >= pd.Timestamp("2023-01-01")
    assert lodged.max() < pd.Timestamp("2023-01-01") + pd.Timedelta(days=365)


def test_ground_truth_covers_every_declaration_in_order() -> None:
    data = small_stream()
    truth = data.ground_truth
    assert truth["declaration_id"].tolist() == data.declarations["declaration_id"].tolist()
    assert set(truth["fraud_type"].cat.categories) == set(FRAUD_TYPES)
    assert (truth["fraud"] == (truth["fraud_type"] != "none")).all()
    assert (truth["revenue_recoverable"] >= 0).all()
    assert (truth.loc[~truth["fraud"], "revenue_recoverable"] == 0).all()
    assert (truth["critical"] == (truth["fraud_type"] == "prohibited")).all()
    # Every scheme occurs, and revenue frauds carry revenue.
    counts = truth["fraud_type"].value_counts()
    assert (counts[list(FRAUD_TYPES)] > 0).all(), counts
    revenue_frauds = truth["fraud_type"].isin(["misclassification", "origin", EMERGING])
    assert (truth.loc[revenue_frauds, "revenue_recoverable"] > 0).mean() > 0.95


@pytest.mark.parametrize("fraud_rate", [0.04, 0.10])
def test_fraud_rate_is_near_the_configured_rate(fraud_rate: float) -> None:
    truth = small_stream(fraud_rate=fraud_rate).ground_truth
    tolerance = 4 * np.sqrt(fraud_rate * (1 - fraud_rate) / ROWS) + 0.002
    assert abs(truth["fraud"].mean() - fraud_rate) < tolerance


@pytest.mark.parametrize("random_rate", [0.005, 0.02])
def test_random_stratum_has_the_known_probability(random_rate: float) -> None:
    outcomes = small_stream(random_rate=random_rate).outcomes
    random_draw = outcomes["selection_reason"] == "random"
    expected = random_rate * ROWS
    assert abs(random_draw.sum() - expected) < 4 * np.sqrt(expected)
    assert (outcomes.loc[random_draw, "selection_probability"] == random_rate).all()
    assert outcomes.loc[~random_draw, "selection_probability"].isna().all()
    assert set(outcomes["selection_reason"].astype(str)) <= set(SELECTION_REASONS)
    assert {"rule", "intelligence"} <= set(outcomes["selection_reason"].astype(str))


def test_aeo_importers_are_clearly_more_compliant() -> None:
    figures = summary(small_stream())
    assert figures["fraud_rate_aeo"] < 0.4 * figures["fraud_rate_non_aeo"]


@pytest.mark.parametrize("drift_start", [0.3, 0.6])
def test_emerging_scheme_appears_at_drift_start(drift_start: float) -> None:
    data = small_stream(drift_start=drift_start)
    lodged = data.declarations["lodged_at"]
    drift = pd.Timestamp("2023-01-01") + pd.Timedelta(days=drift_start * 365)
    truth = data.ground_truth
    emerging = truth["fraud_type"] == EMERGING
    after = (lodged >= drift).to_numpy()
    assert not emerging[~after].any()
    share_after = emerging[after].sum() / truth["fraud"][after].sum()
    assert share_after > 0.15  # configured 0.25 of the frauds after drift_start
    # The scheme routes through one transit country, declared as the origin.
    declared = data.declarations.loc[emerging.to_numpy()]
    assert declared["origin_country"].nunique() == 1
    assert (
        declared["origin_country"].astype(str) == declared["departure_country"].astype(str)
    ).all()
    true_origin = truth.loc[emerging, "true_origin_country"].astype(str)
    assert (true_origin != declared["origin_country"].astype(str)).all()
    # The scenario names the known answers: transit country, chapters, start day.
    scenario = data.scenario
    assert set(declared["origin_country"].astype(str)) == {scenario["emerging_transit_country"]}
    assert set(declared["hs2"].astype(str)) <= set(scenario["emerging_chapters"])
    assert pd.Timestamp(scenario["drift_start"]) == drift.ceil("D")
    assert scenario["emerging_transit_country"] in scenario["preferential_origins"]


def test_historical_policy_has_a_blind_spot_for_the_emerging_scheme() -> None:
    data = small_stream()
    truth, outcomes = data.ground_truth, data.outcomes
    by_policy = outcomes.loc[outcomes["selection_reason"] != "random", "declaration_id"]
    selected = truth["declaration_id"].isin(by_policy)
    classic = truth["fraud_type"].isin(["undervaluation", "misclassification", "origin"])
    emerging = truth["fraud_type"] == EMERGING
    clean = ~truth["fraud"]
    # Rules and officers find classic schemes far above chance, the emerging one much less.
    assert selected[classic].mean() > 3 * selected[clean].mean()
    assert selected[emerging].mean() < 0.6 * selected[classic].mean()


def test_same_seed_same_frames_other_seed_other_frames() -> None:
    config = small_config(rows=3_000)
    first, again, other = simulate(config, 3), simulate(config, 3), simulate(config, 4)
    for table in ("declarations", "outcomes", "ground_truth"):
        pd.testing.assert_frame_equal(getattr(first, table), getattr(again, table))
    assert not first.declarations["declared_value"].equals(other.declarations["declared_value"])
    assert not first.ground_truth["fraud"].equals(other.ground_truth["fraud"])


def test_outcomes_only_for_selected_declarations_within_capacity() -> None:
    data = small_stream()
    declarations, outcomes = data.declarations, data.outcomes
    assert outcomes["declaration_id"].is_unique
    assert outcomes["declaration_id"].isin(declarations["declaration_id"]).all()
    joined = outcomes.merge(
        declarations[["declaration_id", "office", "lodged_at"]], on="declaration_id"
    )
    joined["date"] = joined["lodged_at"].dt.normalize()
    joined["random"] = joined["selection_reason"] == "random"
    per_day = joined.groupby(["office", "date"], observed=True).agg(
        controls=("declaration_id", "size"), random=("random", "sum")
    )
    capacity = data.capacity.assign(office=lambda f: f["office"].astype(str)).set_index(
        ["office", "date"]
    )["capacity"]
    per_day.index = per_day.index.set_levels(per_day.index.levels[0].astype(str), level=0)
    limit = np.maximum(capacity.reindex(per_day.index).to_numpy(), per_day["random"].to_numpy())
    assert (per_day["controls"].to_numpy() <= limit).all()
    # Capacity binds: most office-days with capacity use it, so the share is near capacity_rate.
    assert 0.5 * 0.05 < len(outcomes) / len(declarations) < 0.05 + 0.01


def test_outcome_times_revenue_and_hits_are_consistent() -> None:
    data = small_stream()
    outcomes = data.outcomes
    lodged = data.declarations.set_index("declaration_id")["lodged_at"]
    assert (
        outcomes["selected_at"].to_numpy() >= lodged.loc[outcomes["declaration_id"]].to_numpy()
    ).all()
    assert (outcomes["result_at"] > outcomes["selected_at"]).all()
    assert (outcomes["revenue_recovered"] >= 0).all()
    assert (outcomes.loc[~outcomes["hit"], "revenue_recovered"] == 0).all()
    assert (outcomes.loc[~outcomes["hit"], "fraud_type"] == "none").all()
    truth = data.ground_truth.set_index("declaration_id").loc[outcomes["declaration_id"]]
    assert truth.loc[outcomes["hit"].to_numpy(), "fraud"].all()
    # Detection below 1: some inspected frauds are missed.
    missed = truth["fraud"].to_numpy() & ~outcomes["hit"].to_numpy()
    assert missed.any()
    recovered = outcomes["revenue_recovered"].to_numpy()
    assert np.allclose(
        recovered[outcomes["hit"]], truth["revenue_recoverable"][outcomes["hit"].to_numpy()]
    )
    figures = summary(data)
    assert figures["hit_rate"] > 2 * figures["fraud_rate"]  # the policy beats chance


def test_declared_duty_is_value_times_rate_but_for_clerical_errors() -> None:
    declarations = small_stream().declarations
    expected = (declarations["declared_value"] * declarations["duty_rate"]).round(2)
    off = ~np.isclose(declarations["declared_duty"], expected, atol=0.011)
    assert 0 < off.mean() < 0.03


def test_output_validates_against_the_schema() -> None:
    schema = pytest.importorskip("pipeline.ingest.schema")
    data = small_stream()
    validated = schema.validate(data.declarations, data.outcomes)
    for report in validated.reports:
        assert report.rows_quarantined == 0, report.summary()
    assert validated.declarations["declaration_id"].tolist() == (
        data.declarations["declaration_id"].tolist()
    )
    assert len(validated.outcomes) == len(data.outcomes)


def test_job_writes_three_parquet_tables(tmp_path: Path) -> None:
    config = load(overrides=[f"output_dir={tmp_path}", "simulate.days=120"])
    result = simulate_job(config, rows=4_000, seed=5)
    assert set(result.outputs) == {"declarations", "outcomes", "ground_truth", "scenario"}
    for name in ("declarations", "outcomes", "ground_truth"):
        path = result.outputs[name]
        assert path == config.paths.data / f"{name}.parquet" and path.is_file()
    scenario = json.loads(result.outputs["scenario"].read_text())
    assert scenario["emerging_scheme"] == EMERGING
    declarations = pd.read_parquet(result.outputs["declarations"])
    assert len(declarations) == 4_000
    assert isinstance(declarations["importer"].dtype, pd.CategoricalDtype)
    assert result.figures["rows"] == 4_000
    text = "\n".join(result.lines)
    for word in (
        "rows",
        "period",
        "fraud rate",
        "inspection rate",
        "hit rate",
        "random",
        "revenue",
    ):
        assert word in text


def test_cli_simulate_writes_to_out(tmp_path: Path) -> None:
    out = tmp_path / "tmp"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "simulate",
            "--rows",
            "5000",
            "--seed",
            "1",
            "--out",
            str(out),
            "--set",
            f"output_dir={tmp_path}",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "fraud rate" in result.output
    truth = pd.read_parquet(out / "ground_truth.parquet")
    assert len(truth) == 5_000
    outcomes = pd.read_parquet(out / "outcomes.parquet")
    assert outcomes["declaration_id"].isin(truth["declaration_id"]).all()


def test_cli_rejects_a_non_positive_row_count(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["simulate", "--rows", "0", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "rows" in result.output


@pytest.mark.parametrize(
    "changes",
    [
        {"rows": 1},
        {"rows": 50, "days": 1},
        {"rows": 800, "fraud_rate": 0.0},
        {"rows": 800, "random_rate": 0.0, "capacity_rate": 0.0},
        {"rows": 800, "importers": 1, "offices": 1, "declarants": 1, "sellers": 1, "aeo_share": 0},
        {"rows": 800, "drift_start": 1.0},
    ],
)
def test_edge_configurations_give_consistent_tables(changes: dict[str, object]) -> None:
    config = small_config(**changes)
    data = simulate(config, 11)
    declarations, outcomes, truth = data.declarations, data.outcomes, data.ground_truth
    assert len(declarations) == len(truth) == config.rows
    assert declarations["declaration_id"].is_unique
    assert outcomes["declaration_id"].isin(declarations["declaration_id"]).all()
    if config.fraud_rate == 0:
        assert not truth["fraud"].any() and not outcomes["hit"].any()
    if config.random_rate == 0 and config.capacity_rate == 0:
        assert outcomes.empty
    if config.drift_start == 1.0:
        assert not (truth["fraud_type"] == EMERGING).any()


def test_written_tables_load_back_through_the_readers(tmp_path: Path) -> None:
    readers = pytest.importorskip("pipeline.ingest.readers")
    config = load(overrides=[f"output_dir={tmp_path}", "simulate.days=120"])
    simulate_job(config, rows=3_000, seed=9)
    inputs = readers.load_inputs(config)
    assert all(report.rows_quarantined == 0 for report in inputs.reports), inputs.summary()
    assert len(inputs.declarations) == 3_000
    assert inputs.ground_truth is not None and len(inputs.ground_truth) == 3_000
    assert inputs.outcomes["selection_reason"].astype(str).isin(SELECTION_REASONS).all()


@given(
    seed=st.integers(0, 2**31 - 1),
    rows=st.integers(1, 1_500),
    days=st.integers(1, 60),
    offices=st.integers(1, 5),
    capacity_rate=st.floats(0.0, 0.3),
    random_rate=st.floats(0.0, 0.1),
)
def test_policy_invariants_hold_for_any_small_stream(
    seed: int, rows: int, days: int, offices: int, capacity_rate: float, random_rate: float
) -> None:
    config = small_config(
        rows=rows,
        days=days,
        offices=offices,
        importers=50,
        sellers=40,
        declarants=10,
        capacity_rate=capacity_rate,
        random_rate=random_rate,
    )
    data = simulate(config, seed)
    declarations, outcomes = data.declarations, data.outcomes
    assert declarations["lodged_at"].is_monotonic_increasing
    assert declarations["declaration_id"].is_unique
    joined = outcomes.merge(declarations[["declaration_id", "office", "lodged_at"]])
    assert len(joined) == len(outcomes)
    assert (joined["selected_at"] >= joined["lodged_at"]).all()
    assert (joined["result_at"] > joined["selected_at"]).all()
    per_day = joined.assign(
        office=joined["office"].astype(str),
        date=joined["lodged_at"].dt.normalize(),
        random=joined["selection_reason"] == "random",
    ).groupby(["office", "date"])
    capacity = data.capacity.set_index(["office", "date"])["capacity"]
    controls, random_draws = per_day.size(), per_day["random"].sum()
    limit = np.maximum(capacity.reindex(controls.index).to_numpy(), random_draws.to_numpy())
    assert (controls.to_numpy() <= limit).all()


# Other seeds and shapes than the whole-chain golden run, recorded before the simulator was split
# into stages: every table, the scenario and the summary must stay identical bit for bit.
DIGEST_CASES: dict[str, tuple[dict[str, object], int]] = {
    "small_seed_11": ({}, 11),
    "one_of_each_entity": (
        {"rows": 800, "importers": 1, "offices": 1, "declarants": 1, "sellers": 1, "aeo_share": 0},
        3,
    ),
    "no_fraud_no_capacity": (
        {"rows": 2_000, "fraud_rate": 0.0, "random_rate": 0.0, "capacity_rate": 0.0},
        5,
    ),
    "early_heavy_drift": (
        {
            "rows": 5_000,
            "days": 120,
            "drift_start": 0.2,
            "emerging_share": 0.6,
            "new_importer_share": 0.5,
        },
        21,
    ),
}


def test_simulated_streams_match_their_recorded_digests() -> None:
    digests: dict[str, object] = {}
    for name, (changes, seed) in DIGEST_CASES.items():
        data = simulate(small_config(**changes), seed)
        digests[name] = {
            "declarations": table_digest(data.declarations),
            "outcomes": table_digest(data.outcomes),
            "ground_truth": table_digest(data.ground_truth),
            "offices": table_digest(data.offices),
            "capacity": table_digest(data.capacity),
            "scenario": data.scenario,
            "summary": {key: repr(value) for key, value in summary(data).items()},
        }
    check_golden("simulate_streams", digests)


def test_each_stage_runs_alone_and_hands_the_next_what_it_needs() -> None:
    config = small_config(rows=3_000, days=90, importers=200, sellers=150, declarants=20)
    rng = np.random.default_rng(5)
    cat = draw_catalogue(rng)
    n_codes, n_hs6 = len(cat.code), len(cat.hs6_code)
    assert len(cat.hs6) == len(cat.duty) == n_codes and cat.hs6_count.sum() == n_codes
    assert ((cat.cheaper_sibling == -1) | (cat.duty[cat.cheaper_sibling] < cat.duty)).all()

    countries = draw_countries(rng)
    assert countries.preferential[countries.hubs].all()
    assert countries.preferential[countries.substitute].all()

    scheme = design_scheme(rng, cat, countries)
    assert not countries.preferential[scheme.source] and scheme.transit in countries.hubs
    assert not set(scheme.emerging_chapters) & set(scheme.rule_chapters)
    tariff = draw_tariff(rng, cat, countries, scheme)
    assert tariff.ref_price.shape == (n_hs6, len(countries.codes))

    entities = draw_entities(rng, config, cat, countries)
    importers = entities.importers
    n_imp = len(importers.size)
    assert n_imp == 200 + round(200 * config.new_importer_share)
    assert importers.scheme_taste.shape == (n_imp, 4) and entities.ties.hs6.shape == (n_imp, 6)
    assert entities.ties.sellers.max() < config.sellers and entities.ties.hs6.max() < n_hs6
    assert not importers.aeo[importers.is_new].any()
    assert entities.declarants.usual.max() < config.declarants

    lodging = draw_lodging(rng, config, importers)
    assert len(lodging.day) == config.rows and (np.diff(lodging.lodged_s) >= 0).all()
    assert lodging.lodged_s.max() < config.days * 86_400
    parties = draw_parties(rng, cat, countries, entities, lodging)
    assert (importers.first_day[parties.importer] <= lodging.day).all()
    assert (cat.hs6[parties.true_code] == parties.hs6).all()
    consignments = draw_consignments(rng, cat, tariff, importers, parties)
    assert (consignments.true_value >= 1).all() and (consignments.quantity >= 1).all()

    world = World(cat, countries, scheme, tariff)
    flow = Flow(entities, lodging, parties, consignments)
    fraud = draw_fraud(rng, config, world, flow)
    emerging = fraud.scheme == FRAUD_TYPES.index(EMERGING)
    assert (np.flatnonzero(emerging) == np.sort(fraud.emerging_rows)).all()
    assert fraud.fraud[fraud.scheme > 0].all() and not fraud.fraud[fraud.scheme == 0].any()
    assert (lodging.day[emerging] >= config.drift_start * config.days).all()
    declared = declare(rng, config, world, flow, fraud)
    assert (declared.origin[fraud.emerging_rows] == scheme.transit).all()
    assert (declared.recoverable[~fraud.fraud] == 0).all()
    assert (parties.departure != declared.departure).sum() <= len(fraud.emerging_rows)

    selection = select_historically(rng, config, world, flow, declared, fraud)
    assert selection.capacity.shape == (config.offices * config.days,)
    assert selection.selected[selection.random_draw].all()
    inspections = inspect(rng, config, lodging, fraud, selection)
    assert (inspections.rows == np.flatnonzero(selection.selected)).all()

    # The stages chained in this order are the simulation itself.
    data = simulate(config, 5)
    assert (data.ground_truth["fraud"].to_numpy() == fraud.fraud).all()
    assert (data.declarations["declared_value"].to_numpy() == declared.value).all()
    assert len(data.outcomes) == len(inspections.rows)
    assert (data.outcomes["hit"].to_numpy() == inspections.hit).all()


def test_lodging_follows_the_flow_of_the_importers_already_trading() -> None:
    config = small_config(rows=20_000, days=100)
    # One importer from day 0, a nine times larger one from day 50: the flow grows tenfold.
    importers = Importers(
        first_day=np.array([0.0, 50.0]),
        size=np.array([1.0, 9.0]),
        is_new=np.array([False, True]),
        aeo=np.zeros(2, dtype=bool),
        risk=np.zeros(2),
        scale=np.zeros(2),
        scheme_taste=np.ones((2, 4)),
        home_office=np.zeros(2, dtype=np.int64),
    )
    lodging = draw_lodging(np.random.default_rng(0), config, importers)
    before, after = (lodging.day < 50).sum(), (lodging.day >= 50).sum()
    assert 6 < after / before < 15


def test_duty_rate_applies_preference_and_anti_dumping() -> None:
    tariff = Tariff(
        ref_price=np.ones((1, 3), dtype=np.float32),
        duty=np.array([0.1, 0.2]),
        code_chapter=np.array([0, 1]),
        preferential=np.array([False, True, False]),
        source=2,
        is_emerging_chapter=np.array([False, True]),
    )
    rate = tariff.rate(np.array([0, 0, 1, 1]), np.array([0, 1, 2, 0]))
    expected = [0.1, 0.1 * PREFERENTIAL_FACTOR, 0.2 + ANTI_DUMPING_DUTY, 0.2]
    assert np.allclose(rate, expected)


def test_inspections_find_only_frauds_and_report_after_selection() -> None:
    config = small_config(rows=1_000, days=1, detection_rate=1.0)
    rows = np.arange(1_000)
    lodging = Lodging(
        day_index=np.arange(1),
        day_p=np.ones(1),
        day=np.zeros(1_000, dtype=np.int32),
        lodged_s=rows.astype(np.int64) * 60,
    )
    is_fraud = rows % 3 == 0
    fraud = Fraud(is_fraud, is_fraud.astype(np.int8), np.empty(0, dtype=np.int64))
    selected = rows % 2 == 0
    selection = Selection(
        office_rows=np.array([1_000]),
        capacity=np.array([500]),
        random_draw=rows % 4 == 0,
        reason_rule=np.ones(1_000, dtype=bool),
        selected=selected,
    )
    inspections = inspect(np.random.default_rng(1), config, lodging, fraud, selection)
    assert (inspections.hit == is_fraud[selected]).all()  # detection_rate 1: every fraud found
    assert (inspections.selected_s > lodging.lodged_s[selected]).all()
    assert (inspections.result_s > inspections.selected_s).all()
    assert set(inspections.reason) == {"random", "rule"}
