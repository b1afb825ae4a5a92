"""Each evaluator of the review alone on one small test window: what a reviewer relies on."""

from __future__ import annotations

import helpers.evaluate as h
import numpy as np
import pandas as pd
import pytest

from pipeline.config import Config
from pipeline.evaluate import assess as a
from pipeline.evaluate import metrics as mx
from pipeline.evaluate.headline import primary_population
from pipeline.evaluate.keys import Kind, Population, difference_name
from pipeline.features.featureset import FeatureSet
from pipeline.serve.model import TargetingModel, plan_of
from pipeline.serve.ranking import top_count

CHAMPION = "champion v1"


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict:
    world = h.world(rows=5000, seed=2)
    features: FeatureSet = world["features"]
    model = h.train_model(features, rounds=15)
    champion = h.train_model(features, seed=1, rounds=5)
    config: Config = h.config(
        tmp_path_factory.mktemp("assess"),
        bootstrap=100,
        shap_sample=200,
        top_dependence=1,
        red_waterfalls=2,
        reference_learners=["xgboost"],
    )
    plan = plan_of(model, config, features.lodged_at)
    window = a.build_window(model, features, plan, world["declarations"], world["ground_truth"])
    compared = a.comparators(window, model, features, config, (CHAMPION, champion))
    return {
        "world": world,
        "model": model,
        "config": config,
        "window": window,
        "compared": compared,
        "population": a.population_metrics(window, compared, a.ReviewSettings.of(config)),
    }


def test_the_window_holds_the_test_rows_lined_up_with_their_truth(case: dict) -> None:
    window: a.TestWindow = case["window"]
    features: FeatureSet = case["world"]["features"]
    start, end = (pd.Timestamp(h.WINDOWS["test"][k]) for k in ("start", "end"))
    inside = ((features.lodged_at >= start) & (features.lodged_at < end)).to_numpy()
    assert np.array_equal(window.rows, inside) and len(window.test) == inside.sum()
    assert window.truth is not None and window.declarations is not None
    ids = window.test.declaration_id.astype(str).to_numpy()
    assert list(window.truth.index) == list(ids)
    assert list(window.declarations["declaration_id"]) == list(ids)
    assert np.array_equal(window.labelled, np.isfinite(window.y))
    assert window.stratum.any() and not (window.stratum & ~window.labelled).any()
    assert (window.test.selection_reason[window.stratum] == "random").all()
    # the model's ranking: tie-free, and by probability it is the booster margin's order
    assert len(np.unique(window.score)) == len(window.score)
    margin = case["model"].margin(window.test.X)
    assert window.rank_by == "probability"
    top = np.argsort(-window.score, kind="stable")
    assert np.all(np.diff(margin[top]) <= 0)


def test_comparators_rank_every_learner_on_the_same_rows(case: dict) -> None:
    compared: a.Comparators = case["compared"]
    n = len(case["window"].test)
    assert {"model", CHAMPION, "rules", "plain XGBoost"} <= set(compared.scores)
    assert all(len(score) == n for score in compared.scores.values())
    assert ("model", CHAMPION) in compared.compare
    assert compared.best_reference == "plain XGBoost"
    assert ("model", "plain XGBoost") in compared.compare
    names = set(compared.scores)
    assert all(c in names and r in names for c, r in compared.compare)
    assert np.array_equal(compared.probabilities["model"], case["window"].probability)
    assert np.array_equal(compared.scores["model"], case["window"].score)


def test_a_champion_missing_features_is_skipped_with_a_note(case: dict) -> None:
    champion: TargetingModel = h.train_model(case["world"]["features"], seed=1, rounds=3)
    champion.feature_names = [*champion.feature_names, "not_here"]
    config = case["config"].model_copy(
        update={"evaluate": case["config"].evaluate.model_copy(update={"reference_learners": []})}
    )
    compared = a.comparators(
        case["window"], case["model"], case["world"]["features"], config, ("old", champion)
    )
    assert "old" not in compared.scores and not compared.compare
    assert any(note.startswith("Champion old skipped") for note in compared.notes)


def test_a_champion_whose_served_model_learned_from_the_test_window_is_refused(
    case: dict,
) -> None:
    from dataclasses import replace

    from pipeline.plan import RefitPlan
    from pipeline.serve.model import ModelInfo
    from pipeline.timeaxis import Window

    window: a.TestWindow = case["window"]
    test = window.windows["test"]
    served: TargetingModel = h.train_model(case["world"]["features"], seed=1, rounds=5)
    # the champion's deployed refit: trained on every label up to the end of the test window
    served.info = ModelInfo(
        role="deployed",
        refit=RefitPlan(
            train=Window("train", pd.Timestamp("2024-01-01"), test.end - pd.Timedelta(days=10)),
            calibration=Window("calibration", test.end - pd.Timedelta(days=10), test.end),
            labels_known_by=test.end,
        ),
        refit_trees=5,
    )
    compared = a.comparators(
        window, case["model"], case["world"]["features"], case["config"], ("champion v3", served)
    )
    assert "champion v3" not in compared.scores
    assert not [pair for pair in compared.compare if "champion v3" in pair]
    assert compared.champion_refused is not None
    assert "train window 2024-01-01 .. 2024-04-20 overlaps" in compared.champion_refused
    assert any(n.startswith("Champion champion v3 not compared:") for n in compared.notes)
    # a bundle without windows cannot show it never saw the test window: refused too
    served.info = replace(served.info, refit=None)
    assert a.champion_overlap(served.info, test) is not None
    # the evaluated-role champion of the fixture learned only before the test window
    assert a.champion_overlap(h.train_model(case["world"]["features"]).info, test) is None
    assert case["compared"].champion_refused is None


def test_inspected_metrics_are_evaluate_metrics_on_the_labelled_rows(case: dict) -> None:
    window: a.TestWindow = case["window"]
    config: Config = case["config"]
    metrics = case["population"].metrics
    labelled = window.labelled
    rates = [float(r) for r in config.evaluate.rates]
    expected = mx.metrics_table(
        window.y[labelled],
        {"model": window.score[labelled]},
        rates,
        revenue=window.revenue[labelled],
        probabilities={"model": window.probability[labelled]},
        resampling=mx.Resampling(replicates=config.evaluate.bootstrap, seed=int(config.seed)),
    )
    got = metrics.loc[(metrics["population"] == "inspected") & (metrics["model"] == "model")]
    columns = ["rate", "metric", "value", "low", "high"]
    pd.testing.assert_frame_equal(
        got[columns].reset_index(drop=True), expected[columns].reset_index(drop=True)
    )


def test_the_paired_difference_is_the_point_difference_inside_its_interval(case: dict) -> None:
    metrics = case["population"].metrics
    for population in (Population.INSPECTED, Population.TRUTH):
        part = metrics.loc[metrics["population"] == population]
        cells = part.loc[part["kind"] == Kind.VALUE].set_index(["model", "metric", "rate"])["value"]
        diff = part.loc[part["model"] == difference_name("model", CHAMPION)]
        assert set(diff["kind"]) == {Kind.DIFFERENCE}
        assert len(diff) > 0
        for r in diff.itertuples():
            mine, theirs = cells[("model", r.metric, r.rate)], cells[(CHAMPION, r.metric, r.rate)]
            assert r.value == pytest.approx(mine - theirs, abs=1e-12)
            if np.isfinite(r.low):
                assert r.low - 1e-12 <= r.value <= r.high + 1e-12, (population, r.metric, r.rate)


def test_the_truth_population_holds_the_policy_at_its_own_share(case: dict) -> None:
    window: a.TestWindow = case["window"]
    metrics = case["population"].metrics
    truth = metrics.loc[metrics["population"] == Population.TRUTH]
    policy = truth.loc[(truth["model"] == "historical policy")]
    assert set(policy["kind"]) == {Kind.POLICY}
    share = float(policy.loc[policy["metric"] == "control_share", "value"].iloc[0])
    assert share == pytest.approx(window.labelled.mean())
    assert share in set(truth.loc[truth["model"] == "model", "rate"])
    assert primary_population(metrics) == Population.TRUTH
    assert {Population.IPW, Population.DR} <= set(metrics["population"])


def test_a_declaration_without_ground_truth_is_noted(case: dict) -> None:
    world = case["world"]
    window: a.TestWindow = case["window"]
    dropped = str(window.test.declaration_id.iloc[0])
    truth = world["ground_truth"].loc[world["ground_truth"]["declaration_id"] != dropped]
    plan = plan_of(case["model"], case["config"], world["features"].lodged_at)
    partial = a.build_window(case["model"], world["features"], plan, None, truth)
    assert a.truth_notes(partial) == [
        "1 test declarations have no ground truth and are left out of the true figures."
    ]
    assert a.truth_notes(window) == []


def test_curves_agree_with_the_metrics_on_the_same_ranking(case: dict) -> None:
    window: a.TestWindow = case["window"]
    config: Config = case["config"]
    drawn = a.curves(window, case["compared"], a.ReviewSettings.of(config))
    labelled = window.labelled
    expected = mx.calibration_table(window.y[labelled], window.probability[labelled])
    pd.testing.assert_frame_equal(drawn.calibration_inspected, expected)  # a diagnostic only
    # judged on the population the probability claims: every declaration, against the truth
    # (fraud x detection: the chance a control finds something), not the inspected rows
    assert drawn.calibration_population == Population.TRUTH.label
    known = window.truth["fraud"].notna().to_numpy()
    chance = window.truth["fraud"].to_numpy(dtype=float)[known] * config.simulate.detection_rate
    table = drawn.calibration
    assert table["rows"].sum() == known.sum()
    observed = float((table["observed"] * table["rows"]).sum() / table["rows"].sum())
    assert observed == pytest.approx(chance.mean())
    predicted = float((table["predicted"] * table["rows"]).sum() / table["rows"].sum())
    assert predicted == pytest.approx(window.probability[known].mean())
    assert drawn.gain["gain"].iloc[-1] == pytest.approx(1.0)
    assert drawn.gain["gain"].is_monotonic_increasing
    # the model has no revenue part: one ranking, by probability, the metrics' own
    assert set(drawn.tradeoff["revenue_weight"]) == {0.0}
    assert drawn.tradeoff_population == Population.TRUTH.label
    metrics = case["population"].metrics
    model = metrics.loc[
        (metrics["population"] == Population.TRUTH)
        & (metrics["model"] == "model")
        & (metrics["metric"] == "precision")
    ].set_index("rate")["value"]
    for r in drawn.tradeoff.itertuples():
        assert r.precision == pytest.approx(model[r.rate])


def test_breakdowns_cover_every_declaration_once(case: dict) -> None:
    window: a.TestWindow = case["window"]
    rate = plan_of(case["model"], case["config"], case["world"]["features"].lodged_at).headline_rate
    assert rate == 0.05
    found = a.breakdowns(window, rate)
    assert set(found.catches) == {"office", "HS chapter", "month"}
    n = len(window.test)
    for frame in found.catches.values():
        assert frame["declarations"].sum() == n
    assert set(found.proportionality) == {"office", "AEO status", "origin"}
    for frame in found.proportionality.values():
        assert frame["selected"].sum() == top_count(n, rate)


def test_explanations_drift_and_warnings_of_the_window(case: dict) -> None:
    window: a.TestWindow = case["window"]
    model: TargetingModel = case["model"]
    config: Config = case["config"]
    local = [str(window.test.declaration_id.iloc[-1])]
    explained = a.explanation_summary(window, model, a.ReviewSettings.of(config), local)
    assert len(explained.local_figures) == config.evaluate.red_waterfalls + 1
    assert explained.explanations.importance["share"].sum() == pytest.approx(1.0)
    found = a.drift_and_leakage(window, model, explained.explanations.importance, config.monitor)
    assert set(found.drift["feature"]) == set(model.feature_names)
    assert found.feature_auc["auc"].between(0.5, 1.0).all()
    warnings = a.assessment_warnings(model, explained, found, config.train.num_boost_round)
    fired = found.drift.loc[found.drift["level"] != ""]
    assert len([w for w in warnings if w.startswith("Drift")]) == len(fired)
    assert not any(w.startswith("Possible leakage") for w in warnings)


def test_the_decision_is_judged_on_the_most_honest_population(case: dict) -> None:
    metrics = case["population"].metrics
    drawn = a.curves(case["window"], case["compared"], a.ReviewSettings.of(case["config"]))
    compared: a.Comparators = case["compared"]
    judged = a.decision(
        metrics,
        drawn,
        pd.DataFrame(columns=["feature", "psi"]),
        case["config"].evaluate.acceptance,
        "run-1",
        a.Judged((CHAMPION, case["model"]), compared.references.healthy, None, 0.05),
    )
    assert judged.population == Population.TRUTH and judged.champion == CHAMPION
    assert "--run-id run-1" in judged.approve_command
    names = [c.name for c in judged.criteria]
    assert {f"beats {name}" for name in compared.references.healthy} <= set(names)
    assert "calibrated" in names and "no unexplained drift" in names
    calibrated = judged.criteria[names.index("calibrated")]
    assert Population.TRUTH.label in calibrated.requirement  # not the inspected declarations


def test_the_summary_and_card_describe_the_window(case: dict) -> None:
    window: a.TestWindow = case["window"]
    config: Config = case["config"]
    summary = a.model_summary(window, case["model"], config.evaluate, config.seed)
    assert summary["ranked by"] == "probability of a hit"
    assert f"{len(window.test):,} declarations" in summary["test window"]
    assert summary["random stratum"] == f"{int(window.stratum.sum())} declarations"
    table = a.windows_table(case["world"]["features"], window.windows)
    assert list(table["window"]) == list(h.WINDOWS)
    assert int(table.loc[table["window"] == "test", "declarations"].iloc[0]) == len(window.test)


def test_a_deployed_refit_is_judged_on_the_plan_s_test_window_and_said_in_sample(
    case: dict,
) -> None:
    from dataclasses import replace

    from pipeline.plan import RefitPlan
    from pipeline.timeaxis import Window

    features: FeatureSet = case["world"]["features"]
    evaluated: TargetingModel = case["model"]
    plan = plan_of(evaluated, case["config"], features.lodged_at)
    test, day = plan.test, pd.Timedelta(days=1)
    refit = RefitPlan(
        Window("refit-train", plan.evaluated.train.start, test.end - 10 * day),
        Window("refit-calibration", test.end - 10 * day, test.end),
        test.end,
    )
    deployed = TargetingModel(
        evaluated.booster,
        evaluated.calibration,
        evaluated.feature_names,
        evaluated.categories,
        info=replace(evaluated.info, role="deployed", refit=refit, refit_trees=15),
    )
    window = a.build_window(deployed, features, replace(plan, refit=refit))
    assert list(window.windows) == ["train", "calibration", "test"]
    assert window.windows["train"] == refit.train and window.windows["test"] == test
    assert window.notes == (a.IN_SAMPLE,)
    assert case["window"].windows["test"] == test and case["window"].notes == ()
