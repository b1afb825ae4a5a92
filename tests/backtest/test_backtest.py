"""The policy backtest: selection within capacity, reveal only what is controlled, retraining,
the random stratum against the ground truth, and the `targeting backtest` job."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.feedback import small_config
from hypothesis import given
from hypothesis import strategies as st
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from pipeline.backtest import policies
from pipeline.backtest.replay import BacktestResult, run_backtest
from pipeline.backtest.selection import (
    EXPLORE,
    MODEL,
    RULE,
    Candidates,
    PastControls,
    Selection,
    candidates,
    select,
    take_top,
)
from pipeline.backtest.settings import ReplaySettings
from pipeline.backtest.stream import BacktestError, Draws, daily_capacity, make_stream, reveal
from pipeline.cli import app
from pipeline.config import Config, PolicyConfig, RuleConfig, to_yaml
from pipeline.ingest.columns import RANDOM
from pipeline.jobs.simulate import simulate as simulate_job
from pipeline.serve.draw import random_draw
from pipeline.simulate import SimulatedData, simulate

# --- selection ---------------------------------------------------------------------------------


@given(
    st.lists(st.tuples(st.integers(0, 4), st.floats(-5, 5)), min_size=1, max_size=80),
    st.lists(st.integers(0, 6), min_size=5, max_size=5),
)
def test_take_top_is_the_top_k_of_each_group(rows: list[tuple[int, float]], k: list[int]) -> None:
    groups = np.array([g for g, _ in rows])
    priority = np.array([p for _, p in rows])
    slots = np.array(k)
    taken = take_top(groups, priority, np.ones(len(rows), dtype=bool), slots)
    frame = pd.DataFrame({"g": groups, "p": priority, "pos": np.arange(len(rows))})
    frame = frame.sort_values(["g", "p", "pos"], ascending=[True, False, True])
    expected = np.zeros(len(rows), dtype=bool)
    expected[frame.loc[frame.groupby("g").cumcount() < slots[frame["g"]], "pos"]] = True
    np.testing.assert_array_equal(taken, expected)


def _step(n: int, days: int, cap: int, seed: int, **scores: np.ndarray) -> Candidates:
    """`n` declarations over `days` office-days of capacity `cap`, hs codes by chapter."""
    rng = np.random.default_rng(seed)
    declarations = pd.DataFrame(
        {
            "declaration_id": [f"D{seed}-{i}" for i in range(n)],
            "hs_code": rng.choice(
                ["620000", "850000", "010000", "030000"], n, p=[0.01, 0.01, 0.49, 0.49]
            ),
        }
    )
    return candidates(declarations, rng.integers(0, days, n), np.full(days, cap), **scores)


def test_select_fills_each_office_day_in_order_random_rules_model_exploration() -> None:
    n, days = 3_000, 30
    score = np.random.default_rng(9).random(n)
    step = _step(n, days, 5, seed=0, score=score, probability=score / 2)
    groups, capacity = step.groups, step.capacity
    shares = [
        policies.RandomShare(0.01, "k:random"),
        policies.Rules([RuleConfig(name="chapters", column="hs_code", prefix=["62", "85"])]),
        policies.Uncertainty(0.2, policies.Exploit()),
    ]
    selection = select(step, shares, np.random.default_rng(1))
    drawn = random_draw(step.declarations["declaration_id"], "k:random", 0.01)
    per_group = np.bincount(groups[selection.selected], minlength=days)
    assert (per_group <= capacity).all()
    assert drawn.any() and selection.selected[drawn].all()  # few draws: none had to be cut
    assert (selection.reason[drawn] == RANDOM).all()
    assert np.allclose(selection.probability[drawn], 0.01)
    reasons = pd.Series(selection.reason[selection.selected]).value_counts()
    assert reasons[EXPLORE] > 0 and reasons[MODEL] > reasons[EXPLORE]
    assert reasons.get(RULE, 0) > 0
    # the model's picks are the group's highest scores among the rows not already taken
    model = selection.reason == MODEL
    for g in range(days):
        rows = groups == g
        free = rows & ~(selection.reason == RANDOM) & ~(selection.reason == RULE)
        if model[rows].any():
            assert score[model & rows].min() >= score[free & ~model & ~selection.selected].max(
                initial=-1
            )
    without = select(
        _step(n, days, 5, seed=0), [policies.RandomShare(0.01, "k:random"), policies.Rules([])],
        np.random.default_rng(1),
    )  # fmt: skip
    np.testing.assert_array_equal(without.selected, drawn)


def test_random_draws_count_inside_the_capacity() -> None:
    n, days = 2_000, 20
    step = _step(n, days, 3, seed=2, score=np.random.default_rng(2).random(n))
    groups, capacity = step.groups, step.capacity
    shares = [policies.RandomShare(0.1, "k:random"), policies.Rules([]), policies.Exploit()]
    selection = select(step, shares, np.random.default_rng(3))
    # ~10 draws per office-day against a capacity of 3
    drawn = random_draw(step.declarations["declaration_id"], "k:random", 0.1)
    per_group = np.bincount(groups[selection.selected], minlength=days)
    np.testing.assert_array_equal(per_group, capacity)  # full, never beyond
    random = selection.reason == RANDOM
    assert random.sum() == capacity.sum() and (selection.reason != MODEL).all()
    drawn_per = np.bincount(groups[drawn], minlength=days)
    expected = 0.1 * 3 / drawn_per[groups[random]]
    np.testing.assert_allclose(selection.probability[random], expected)


# --- each policy strategy alone, on a tiny step ------------------------------------------------

TINY_GROUPS = np.array([0, 0, 0, 1, 1, 1, 1])
TINY_SCORE = np.array([0.1, 0.9, 0.5, 0.3, 0.8, 0.2, 0.7])


def _tiny(capacity: list[int], **extra: np.ndarray) -> Candidates:
    declarations = pd.DataFrame(
        {
            "declaration_id": [f"T{i}" for i in range(7)],
            "hs_code": ["620000", "010000", "850000", "010000", "620000", "010000", "010000"],
        }
    )
    return candidates(declarations, TINY_GROUPS, np.array(capacity), **extra)


def test_exploit_takes_the_top_scores_of_each_office_day() -> None:
    step = _tiny([2, 1], score=TINY_SCORE, probability=TINY_SCORE)
    taken = policies.Exploit().select(step, np.random.default_rng(0))
    np.testing.assert_array_equal(np.flatnonzero(taken.selected), [1, 2, 4])
    assert (taken.reason[taken.selected] == MODEL).all()
    assert np.isnan(taken.probability).all()
    assert not policies.Exploit().select(_tiny([2, 1]), np.random.default_rng(0)).selected.any()


def test_random_share_draws_count_inside_the_capacity_and_are_marked_random() -> None:
    step = _tiny([1, 2])
    taken = policies.RandomShare(1.0, "k").select(step, np.random.default_rng(0))
    per_group = np.bincount(TINY_GROUPS[taken.selected], minlength=2)
    np.testing.assert_array_equal(per_group, [1, 2])  # every row drawn, the capacity kept
    assert (taken.reason[taken.selected] == RANDOM).all()
    np.testing.assert_allclose(taken.probability[taken.selected], [1 / 3, 2 / 4, 2 / 4])
    assert (taken.reason[~taken.selected] == None).all()  # noqa: E711


def test_rules_take_the_matches_within_the_capacity_left() -> None:
    rule = RuleConfig(name="chapters", column="hs_code", prefix=["62", "85"])
    step = _tiny([5, 5]).after(Selection.of(np.arange(7) == 4, RANDOM, 0.5))
    taken = policies.Rules([rule]).select(step, np.random.default_rng(0))
    np.testing.assert_array_equal(np.flatnonzero(taken.selected), [0, 2])  # row 4 already taken
    assert (taken.reason[taken.selected] == RULE).all() and (taken.probability[[0, 2]] == 1).all()


def test_uncertainty_keeps_its_share_back_from_the_ranking() -> None:
    step = _tiny([2, 2], score=TINY_SCORE, probability=np.full(7, 0.5))
    share = policies.Uncertainty(0.5, policies.Exploit())
    taken = share.select(step, np.random.default_rng(0))
    for group in (0, 1):
        rows = step.groups == group
        assert (taken.reason[rows] == MODEL).sum() == 1  # the best score of the office-day
        assert (taken.reason[rows] == EXPLORE).sum() == 1
    np.testing.assert_array_equal(np.flatnonzero(taken.reason == MODEL), [1, 4])


def test_historical_replays_the_recorded_controls() -> None:
    recorded = np.array([True, False, False, True, False, False, True])
    reason = np.array(["rule", None, None, "random", None, None, "officer"], dtype=object)
    step = _tiny([0, 0], recorded=PastControls(recorded, reason))
    taken = policies.Historical(0.01).select(step, np.random.default_rng(0))
    np.testing.assert_array_equal(taken.selected, recorded)  # capacity aside: what happened
    assert list(taken.reason[recorded]) == ["historical", "random", "historical"]
    np.testing.assert_allclose(taken.probability[recorded], [np.nan, 0.01, np.nan])


def test_policy_shares_follow_the_config() -> None:
    config = small_config(Path("unused"))
    kinds = {
        "historical": PolicyConfig(name="h", kind="historical"),
        "exploit": PolicyConfig(name="e"),
        "uncertainty": PolicyConfig(name="u", explore_share=0.1, random_share=0.05),
        "rules": PolicyConfig(name="r", kind="rules"),
    }
    settings = ReplaySettings.of(config)
    shares = {k: policies.policy_shares(p, settings) for k, p in kinds.items()}
    assert [type(s).__name__ for s in shares["historical"]] == ["Historical"]
    assert [type(s).__name__ for s in shares["exploit"]] == ["RandomShare", "Rules", "Exploit"]
    assert [type(s).__name__ for s in shares["uncertainty"]] == [
        "RandomShare", "Rules", "Uncertainty",
    ]  # fmt: skip
    assert [type(s).__name__ for s in shares["rules"]] == ["RandomShare", "Rules"]
    assert shares["exploit"][0].rate == 0.0 and shares["uncertainty"][0].rate > 0


def test_daily_capacity_keeps_the_rate_on_average() -> None:
    groups = np.repeat(np.arange(2_000), 7)  # 2,000 office-days of 7 declarations
    capacity = daily_capacity(groups, 0.05, seed=3)
    assert capacity.mean() == pytest.approx(0.35, abs=0.03)  # a floor would give 0


# --- the stream and what is revealed ---------------------------------------------------------


@pytest.fixture(scope="module")
def data() -> SimulatedData:
    config = small_config(Path("unused"))
    return simulate(config.simulate, config.seed)


def test_stream_reveals_recorded_outcomes_and_the_truth_otherwise(data: SimulatedData) -> None:
    stream = make_stream(
        data.declarations.sample(frac=1.0, random_state=0),  # any row order
        data.outcomes,
        data.ground_truth,
        Draws(detection_rate=0.85, result_delay_days=14, key="k"),
    )
    assert stream.lodged_at.is_monotonic_increasing
    ids = stream.declarations["declaration_id"]
    recorded = data.outcomes.set_index("declaration_id")["hit"]
    np.testing.assert_array_equal(
        stream.hit[stream.recorded], recorded.loc[ids[stream.recorded]].to_numpy(dtype=bool)
    )
    other = ~stream.recorded
    assert not (stream.hit[other] & ~stream.fraud[other]).any()  # no hit without fraud
    detected = stream.hit[other & stream.fraud].mean()
    assert 0.8 < detected < 0.9  # detection_rate
    assert (stream.result_after[other] > stream.selected_after[other]).all()
    again = make_stream(
        data.declarations, data.outcomes, data.ground_truth,
        Draws(detection_rate=0.85, result_delay_days=14, key="k"),
    )  # fmt: skip
    np.testing.assert_array_equal(again.hit, stream.hit)  # common random numbers


def test_without_ground_truth_every_declaration_needs_an_outcome(data: SimulatedData) -> None:
    with pytest.raises(BacktestError, match="no ground truth"):
        make_stream(
            data.declarations, data.outcomes, None,
            Draws(detection_rate=0.85, result_delay_days=14, key="k"),
        )  # fmt: skip


def test_reveal_gives_outcomes_to_the_selected_rows_only(data: SimulatedData) -> None:
    stream = make_stream(
        data.declarations, data.outcomes, data.ground_truth,
        Draws(detection_rate=0.85, result_delay_days=14, key="k"),
    )  # fmt: skip
    rows = np.arange(1_000, 1_400)
    selected = np.zeros(len(rows), dtype=bool)
    selected[::7] = True
    reason = np.where(selected, MODEL, None).astype(object)
    reason[::14] = RANDOM
    reason[~selected] = None
    prob = np.where(reason == RANDOM, 0.01, np.nan)
    revealed = reveal(stream, rows, Selection(selected, reason, prob))
    assert len(revealed) == selected.sum()
    assert set(revealed["declaration_id"]) == set(
        stream.declarations["declaration_id"].iloc[rows[selected]]
    )
    assert (revealed["result_at"] > revealed["selected_at"]).all()
    assert set(revealed["selection_reason"].astype(str)) == {"random", "model"}


# --- the replay ------------------------------------------------------------------------------


POLICIES = (
    "backtest.warmup_days=150",
    "backtest.weeks=8",
    "backtest.retrain_every_steps=4",
    "backtest.valid_days=21",
    "backtest.calibration_days=21",
)


def _config(folder: Path, *extra: str) -> Config:
    config = small_config(folder, *POLICIES, *extra)
    config.backtest.policies = [
        PolicyConfig(name="historical", kind="historical"),
        PolicyConfig(name="exploit"),
        PolicyConfig(name="random_all", random_share=1.0, retrain_every_steps=0),
        PolicyConfig(name="uncertainty_20", explore_share=0.2, retrain_every_steps=2),
    ]
    return config


@pytest.fixture(scope="module")
def result(data: SimulatedData, tmp_path_factory: pytest.TempPathFactory) -> BacktestResult:
    config = _config(tmp_path_factory.mktemp("bt"))
    return run_backtest(data.declarations, data.outcomes, data.ground_truth, config)


def test_kpis_per_step_and_policy_respect_capacity(result: BacktestResult) -> None:
    kpis = result.kpis
    assert set(kpis["policy"]) == {"historical", "exploit", "random_all", "uncertainty_20"}
    assert kpis.groupby("policy")["step"].nunique().eq(8).all()
    model = kpis.loc[kpis["policy"] != "historical"]
    # at most the capacity, plus random draws beyond it on rare office-days
    assert (model["controls"] <= model["capacity"] + model["controls_random"]).all()
    assert (model["controls"] >= 0.9 * model["capacity"]).all()
    assert (kpis["hits"] <= kpis["controls"]).all()
    assert ((kpis["recall"] >= 0) & (kpis["recall"] <= 1)).all()
    explore = kpis.loc[kpis["policy"] == "uncertainty_20", "controls_explore"]
    assert explore.sum() > 0
    assert (kpis.loc[kpis["policy"] == "exploit", "controls_explore"] == 0).all()


def test_retraining_follows_each_policy_schedule(result: BacktestResult) -> None:
    retrained = result.kpis.loc[result.kpis["retrained"], ["policy", "step"]]
    steps = retrained.groupby("policy")["step"].apply(list).to_dict()
    attempted = pd.DataFrame(result.fits).groupby("policy")["step"].apply(list).to_dict()
    assert attempted == {"exploit": [4], "uncertainty_20": [2, 4, 6]}
    failed = {(f["policy"], f["step"]) for f in result.fits if "error" in f}
    for policy, done in steps.items():  # a failed fit (no hit in a window) keeps the old model
        assert sorted(set(done) | {s for p, s in failed if p == policy}) == attempted[policy]
    fits = [f for f in result.fits if "error" not in f]
    assert all(pd.Timestamp(f["windows"]["test"]["start"]) > result.warm_end for f in fits)


def test_random_stratum_agrees_with_the_ground_truth(result: BacktestResult) -> None:
    """A random draw as large as the capacity: its hit rate estimates the true rate."""
    row = result.summary.set_index("policy").loc["random_all"]
    steps = result.kpis.loc[result.kpis["policy"] == "random_all"]
    # the draws count inside the capacity (office-days whose capacity rounds to 0 draw none)
    assert row["random_controls"] <= steps["capacity"].sum()
    assert row["random_controls"] > 80
    assert row["random_low"] <= row["truth_hit_rate"] <= row["random_high"]
    assert row["truth_in_interval"]


def test_first_detections_name_the_emerging_scheme(result: BacktestResult) -> None:
    schemes = result.schemes
    assert {"policy", "fraud_type", "first_known_at", "first_known_step"} <= set(schemes.columns)
    emerging = schemes.loc[schemes["fraud_type"].str.startswith("emerging")]
    assert set(emerging["policy"]) == set(result.kpis["policy"])
    known = emerging.dropna(subset=["first_known_at"])
    assert (known["first_known_at"] >= known["appeared_at"]).all()
    # a scheme is known to a policy exactly when one of its replayed controls found it
    hits = result.kpis.groupby("policy")["hits_emerging"].sum()
    assert set(known["policy"]) == set(hits[hits > 0].index)
    from pipeline.jobs.backtest import summary_lines

    lines = summary_lines(result, 1.0)[1:]
    assert lines and all("emerging recall" in line and "revenue" in line for line in lines)


# --- the job ---------------------------------------------------------------------------------


def _not_json(constant: str) -> None:
    raise ValueError(f"a bare {constant}: not JSON")


def test_backtest_job_writes_tables_plots_and_one_child_run_per_policy(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, "backtest.weeks=3")
    config.backtest.policies = config.backtest.policies[:3]
    simulate_job(config)
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(config), encoding="utf-8")
    outcome = CliRunner().invoke(app, ["backtest", "--config", str(path)])
    assert outcome.exit_code == 0, outcome.output
    folder = config.paths.backtest
    for name in ("kpis.parquet", "kpis.csv", "summary.csv", "schemes.csv", "backtest.png"):
        assert (folder / name).stat().st_size > 0
    written = sorted(folder.glob("*.json"))
    assert written  # timings and fits, strict JSON (a NaN would be a bare NaN otherwise)
    for path in written:
        json.loads(path.read_text(encoding="utf-8"), parse_constant=_not_json)
    kpis = pd.read_parquet(folder / "kpis.parquet")
    assert len(kpis) == 3 * 3
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("feedback-tests")
    assert experiment is not None
    parents = client.search_runs(
        [experiment.experiment_id],
        "tags.stage = 'backtest' and attributes.run_name LIKE '% backtest %'",
    )
    assert len(parents) == 1
    children = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'"
    )
    assert sorted(c.info.run_name for c in children) == ["exploit", "historical", "random_all"]
    history = client.get_metric_history(
        next(c for c in children if c.info.run_name == "exploit").info.run_id, "step.hit_rate"
    )
    assert [m.step for m in history] == [0, 1, 2]


def test_rules_policy_controls_rule_matches_only(data: SimulatedData, tmp_path: Path) -> None:
    config = small_config(tmp_path, *POLICIES, "backtest.weeks=2")
    config.backtest.policies = [PolicyConfig(name="rules_only", kind="rules")]
    with pytest.raises(BacktestError, match="rules are empty"):
        run_backtest(data.declarations, data.outcomes, data.ground_truth, config)
    config.backtest.rules = [RuleConfig(name="chapters", column="hs_code", prefix=["62", "85"])]
    result = run_backtest(data.declarations, data.outcomes, data.ground_truth, config)
    kpis = result.kpis
    assert (kpis["controls"] == kpis["controls_rule"]).all() and kpis["controls"].sum() > 0
    assert (kpis["controls"] <= kpis["capacity"]).all()


def test_every_row_labelled_without_revenue_like_kcs(data: SimulatedData, tmp_path: Path) -> None:
    """No ground truth, every declaration inspected, no revenue and no result date (KCS)."""
    decl = data.declarations
    truth = data.ground_truth.set_index("declaration_id").loc[decl["declaration_id"]]
    outcomes = pd.DataFrame(
        {
            "declaration_id": decl["declaration_id"].to_numpy(),
            "selected_at": decl["lodged_at"].to_numpy(),
            "selection_reason": "unknown",
            "selection_probability": np.nan,
            "inspected": True,
            "hit": truth["fraud"].to_numpy(),
            "fraud_type": truth["fraud_type"].astype(str).to_numpy(),
            "revenue_recovered": np.nan,
            "result_at": pd.NaT,
        }
    )
    config = small_config(
        tmp_path, *POLICIES, "backtest.weeks=6", "backtest.retrain_every_steps=2",
        "backtest.gap_days=30", "features.missing_result_delay_days=30",
    )  # fmt: skip
    config.backtest.policies = [PolicyConfig(name="random_10", random_share=0.1)]
    result = run_backtest(decl, outcomes, None, config)
    kpis = result.kpis
    assert (kpis["controls"] >= 0.9 * kpis["capacity"]).all()  # every step scored
    assert kpis["revenue_recovered"].eq(0).all()
    assert np.isnan(kpis["revenue_share"]).all()
    from pipeline.jobs.backtest import summary_lines

    assert not any("revenue" in line for line in summary_lines(result, 1.0))  # none recorded
