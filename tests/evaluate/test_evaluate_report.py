"""The reviewer's report: baselines in the metrics table, warnings, and a page that renders."""

from __future__ import annotations

import re
from pathlib import Path

import helpers.evaluate as h
import numpy as np
import pandas as pd
import pytest

from pipeline.evaluate.assess import (
    LeakageLimits,
    Review,
    assess,
    review_warnings,
)
from pipeline.evaluate.keys import COLUMNS, Kind, Population, rendered
from pipeline.evaluate.report import render_report


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    world = h.world(rows=5000, seed=2)
    cfg = h.config(tmp_path_factory.mktemp("review"))
    local = (str(world["features"].declaration_id.iloc[-1]),)
    model, assessment = h.assessed_against_champion(world, cfg, local)
    return {"world": world, "model": model, "config": cfg, "assessment": assessment}


def test_metrics_table_holds_the_model_and_every_baseline(reviewed: dict) -> None:
    metrics = reviewed["assessment"].metrics
    assert list(metrics.columns) == COLUMNS
    assert set(metrics["population"]) == set(Population)
    # the reviewer's files hold the same rows, populations in words and no machine column
    shown = rendered(metrics)
    assert list(shown.columns) == [c for c in COLUMNS if c != "kind"]
    assert set(shown["population"]) == {p.label for p in Population}
    # a thin stratum is never a number: either enough rows or a "too few to judge" note
    ipw = metrics.loc[metrics["population"] == Population.IPW]
    thin = [n for n in reviewed["assessment"].report.notes if "too few to judge" in n]
    assert ipw.loc[ipw["model"] == "model", "value"].isna().any() == bool(thin)
    truth = metrics.loc[metrics["population"] == Population.TRUTH]
    assert {
        "model",
        "random",
        "historical policy",
        "model at office capacity",
        "rules",
        "plain XGBoost",
        "LightGBM",
        "CatBoost",
        "champion v1",
        "model - champion v1",
    } <= set(truth["model"])
    # the model against every healthy reference learner, each with a paired interval
    paired = truth.loc[truth["kind"] == Kind.DIFFERENCE, "model"]
    against = {m for m in set(paired) if "champion" not in m}
    references = reviewed["assessment"].report.references
    healthy = set(references.loc[references["healthy"] == "yes", "name"])
    assert against == {f"model - {name}" for name in healthy}
    for rate in reviewed["config"].evaluate.rates:
        rows = truth.loc[(truth["model"] == "model") & np.isclose(truth["rate"], rate)]
        assert set(rows["metric"]) >= {"precision", "recall", "revenue", "precision_norm"}
    model_rows = truth.loc[(truth["model"] == "model") & truth["low"].notna()]
    assert (model_rows["low"] <= model_rows["value"] + 1e-12).all()
    assert (model_rows["value"] <= model_rows["high"] + 1e-12).all()


def test_historical_policy_is_what_was_controlled(reviewed: dict) -> None:
    world = reviewed["world"]
    metrics = reviewed["assessment"].metrics
    policy = metrics.loc[metrics["model"] == "historical policy"].set_index("metric")["value"]
    fs = world["features"]
    test = (fs.lodged_at >= pd.Timestamp(h.WINDOWS["test"]["start"])).to_numpy()
    controlled = fs.y.notna().to_numpy()[test]
    fraud = world["ground_truth"]["fraud"].to_numpy()[test]
    assert policy["control_share"] == pytest.approx(controlled.mean())
    assert policy["precision"] == pytest.approx(fraud[controlled].mean())
    assert policy["recall"] == pytest.approx(fraud[controlled].sum() / fraud.sum())
    # the model at the offices' historical capacities controls as many declarations
    capacity = metrics.loc[metrics["model"] == "model at office capacity"].set_index("metric")
    assert capacity.loc["control_share", "value"] == pytest.approx(controlled.mean())


def test_the_clean_model_raises_no_leakage_warning(reviewed: dict) -> None:
    warnings = reviewed["assessment"].report.warnings
    assert not [w for w in warnings if "leakage" in w]


def test_a_feature_that_copies_the_outcome_is_flagged(tmp_path: Path) -> None:
    world = h.world(rows=4000, seed=3, leak=True)
    model = h.train_model(world["features"])
    cfg = h.config(tmp_path, bootstrap=0)
    assessment = assess(model, world["features"], cfg, Review(declarations=world["declarations"]))
    leaks = [w for w in assessment.report.warnings if "leakage" in w]
    assert leaks and all("result_code" in w for w in leaks)


def test_review_warnings_name_leakage_and_dominance() -> None:
    importance = pd.DataFrame({"feature": ["a", "b"], "share": [0.3, 0.7]})
    dominance = pd.DataFrame(
        {
            "feature": ["a", "a"],
            "entity_column": ["importer", "transport_mode"],
            "entity": ["IMP9", "sea"],
            "share": [0.8, 0.9],
            "row_share": [0.01, 0.85],  # sea is common: its mass is no dominance
        }
    )
    warnings = review_warnings(importance, dominance, None)
    assert any("b carries 70%" in w for w in warnings)
    assert [w for w in warnings if "dominated" in w] == [
        "Feature a is dominated by one entity: importer = IMP9 carries 80% of its SHAP mass "
        "with 1.0% of the declarations."
    ]
    assert not [w for w in warnings if w.startswith("Drift")]  # drift warns on its own
    stricter = review_warnings(importance, dominance, None, LeakageLimits(mass_limit=0.25))
    assert any("a carries 30%" in w for w in stricter)


def test_report_renders_every_figure_in_headless_chromium(reviewed: dict, tmp_path: Path) -> None:
    report = reviewed["assessment"].report
    html = render_report(report, reviewed["config"].evaluate.rates)
    # calibration, gain and the ranking trade-off
    expected_images = 3 + len(report.explanations.figures) + len(report.local_figures)
    assert html.count("<img ") == expected_images
    assert len(report.local_figures) == 3  # two red-channel declarations and the one asked for
    for anchor in (
        "decision",
        "walkforward",
        "summary",
        "windows",
        "metrics",
        "calibration",
        "breakdowns",
        "explanations",
        "warnings",
        "manifest",
        "card",
    ):
        assert f'id="{anchor}"' in html and f'href="#{anchor}"' in html
    assert "importer_hit_rate" in html  # the feature manifest
    assert "Proportionality" in html and "AEO status" in html
    assert not re.search(r"&lt;(table|img|p)\b", html)  # fragments are not escaped twice
    seen = h.rendered_images(html, tmp_path)
    assert seen == {"images": expected_images, "decoded": expected_images, "sections": 12}


def test_configured_office_capacity_is_a_count_per_day(tmp_path: Path) -> None:
    world = h.world(rows=3000, seed=4)
    model = h.train_model(world["features"], rounds=10)
    cfg = h.config(tmp_path, bootstrap=0, shap_sample=100, top_dependence=0, red_waterfalls=0)
    cfg.serve = cfg.serve.model_copy(update={"office_capacity": {"ICN01": 2.0, "PUS02": 0.5}})
    assessment = assess(model, world["features"], cfg, Review(ground_truth=world["ground_truth"]))
    rows = assessment.metrics.loc[assessment.metrics["model"] == "model at configured capacity"]
    share = float(rows.loc[rows["metric"] == "control_share", "value"].iloc[0])
    fs = world["features"]
    in_test = (fs.lodged_at >= pd.Timestamp(h.WINDOWS["test"]["start"])).to_numpy()
    days = (pd.Timestamp(h.WINDOWS["test"]["end"]) - pd.Timestamp(h.WINDOWS["test"]["start"])).days
    whole = 2 * days + np.floor(0.5 * days)  # whole controls
    assert share == pytest.approx(whole / in_test.sum())


def test_drift_warnings_concern_only_what_the_monitor_judges() -> None:
    """Running statistics drift by construction: the reviewer is warned about raw attributes."""
    from pipeline.config import MonitorConfig
    from pipeline.evaluate.monitor import is_judged

    config = MonitorConfig()
    assert is_judged("declared_value", "raw", config)
    assert not is_judged("importer_hit_rate", "profiles", config)
    assert not is_judged("transport_mode_declarations", "raw", config)
    assert not is_judged("month", "calendar", config)


def test_the_model_card_says_what_the_probability_means(reviewed: dict) -> None:
    card = reviewed["assessment"].report.model_card
    # the helper's model records no selection correction: the card says how to read it
    assert "historical policy" in card["What the probability means"]
    assert "margin" in card["What the probability means"]


def test_every_feature_has_a_drift_verdict_and_warnings_say_why(reviewed: dict) -> None:
    report = reviewed["assessment"].report
    drift = report.drift
    assert set(drift["feature"]) == set(reviewed["model"].feature_names)
    assert drift["verdict"].str.len().gt(0).all()
    fired = drift.loc[drift["level"] != "", "feature"]
    lines = [w for w in report.warnings if w.startswith("Drift")]
    assert len(lines) == len(fired)
    assert all("SHAP mass" in w and "inside the training window" in w for w in lines)


def test_the_decision_judges_stable_features_and_leaves_out_those_set_aside() -> None:
    from pipeline.evaluate.assess import judged_features

    drift = pd.DataFrame(
        {
            "feature": ["hs6", "seller", "importer_hit_rate"],
            "psi": [0.02, 0.4, 0.3],
            "judged": [True, True, False],
            "verdict": [
                "stable: PSI 0.02 < 0.1",
                "alarm: PSI 0.40 >= 0.25, 4.0x its drift inside the training window",
                "not judged: PSI 0.30, but it carries 1.0% of the SHAP mass (< 5%)",
            ],
        }
    )
    assert list(judged_features(drift)["feature"]) == ["hs6", "seller"]
