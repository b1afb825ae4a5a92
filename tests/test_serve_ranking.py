"""The one ranking path: probability ranks as the margin, one tie rule, the blend option."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers_train import feature_set, train_config

from pipeline.evaluate import metrics as mx
from pipeline.evaluate.assess import model_score
from pipeline.serve.ranking import control_priority, ranking_score, resolve_rank_by, top_mask
from pipeline.serve.scorer import model_scores
from pipeline.train.fit import fit, window_metrics, window_rows
from pipeline.train.split import make_windows, rows_in


@pytest.fixture(scope="module")
def isotonic_fit(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """A real XGBoost model with isotonic calibration (plateaus) on a small feature set."""
    fs = feature_set(rows=6_000, seed=4)
    config = train_config(tmp_path_factory.mktemp("rank"), train={"calibration": "isotonic"})
    windows = make_windows(fs.lodged_at, config.split)
    return fs, windows, config, fit(fs, windows, config.train.params, config)


def test_isotonic_calibration_makes_ties_that_the_ranking_never_sees(isotonic_fit: tuple) -> None:
    fs, windows, _config, result = isotonic_fit
    model = result.model
    test = fs.subset(windows.test.contains(fs.lodged_at))
    margin = model.margin(test.X)
    probability = model.predict_proba(test.X)
    # the calibration has plateaus: far fewer distinct probabilities than margins
    assert len(np.unique(probability)) < len(np.unique(margin)) / 5
    priority, proba, ranked_by = model_score(model, test.X, "probability")
    assert ranked_by == "probability of a hit"
    np.testing.assert_array_equal(proba, probability)
    assert len(np.unique(priority)) == len(priority)  # tie-free
    # ranked by probability is ranked by margin exactly
    np.testing.assert_array_equal(np.argsort(-priority), np.argsort(-margin, kind="stable"))


def test_ranking_metrics_of_the_calibrated_model_equal_those_of_the_margin(
    isotonic_fit: tuple,
) -> None:
    fs, windows, _config, result = isotonic_fit
    model = result.model
    test = fs.subset(windows.test.contains(fs.lodged_at))
    labelled = test.labelled.to_numpy()
    y = test.y.to_numpy(dtype=float)[labelled]
    priority, _, _ = model_score(model, test.X, "probability")
    margin = model.margin(test.X)
    rates = [0.01, 0.02, 0.05, 0.1]
    calibrated = mx.metrics_table(y, {"m": priority[labelled]}, rates, replicates=0)
    by_margin = mx.metrics_table(y, {"m": margin[labelled]}, rates, replicates=0)
    pd.testing.assert_series_equal(calibrated["value"], by_margin["value"])
    # the training log ranks the same way: precision@n% of the log is the margin's
    rows = window_rows(fs, rows_in(fs, windows.test, None))
    m = model.margin(rows.X)
    logged = window_metrics(rows, 1 / (1 + np.exp(-m)), model.calibration.apply(m), False, m)
    for rate in rates:
        top = top_mask(m, rate)  # by margin, no tie in a continuous margin
        assert logged[f"precision_at_{round(rate * 100)}"] == pytest.approx(rows.y[top].mean())
    assert result.log.metrics["test"]["precision_at_5"] == logged["precision_at_5"]


def test_the_scorer_and_the_report_rank_alike(isotonic_fit: tuple) -> None:
    fs, windows, _config, result = isotonic_fit
    test = fs.subset(windows.test.contains(fs.lodged_at))
    for rank_by in ("probability", "expected_revenue", "blend"):
        served = model_scores(result.model, test.X, rank_by, 0.5)
        served_order = control_priority(served["score"], served["margin"])
        priority, _, _ = model_score(result.model, test.X, rank_by, 0.5)
        np.testing.assert_array_equal(served_order, priority)


def test_blend_runs_from_probability_to_expected_revenue() -> None:
    rng = np.random.default_rng(0)
    p, money = rng.uniform(0, 1, 500), rng.lognormal(5, 2, 500)
    np.testing.assert_array_equal(ranking_score(p, money, "blend", 0.0), p)
    np.testing.assert_allclose(ranking_score(p, money, "blend", 1.0), p * money)
    np.testing.assert_allclose(ranking_score(p, money, "expected_revenue"), p * money)
    middle = ranking_score(p, money, "blend", 0.5)
    np.testing.assert_allclose(middle, p * np.sqrt(money))
    with pytest.raises(ValueError, match="revenue_weight"):
        ranking_score(p, money, "blend", 1.5)
    with pytest.raises(ValueError, match="no revenue part"):
        resolve_rank_by(False, "blend")
    assert resolve_rank_by(False, "auto") == "probability"
    assert resolve_rank_by(True, "auto") == "expected_revenue"


def test_ties_are_broken_by_margin_then_position() -> None:
    score = np.array([0.2, 0.5, 0.5, 0.5, np.nan, 0.1])
    margin = np.array([0.0, -1.0, 2.0, -1.0, 9.0, 3.0])
    priority = control_priority(score, margin)
    assert list(np.argsort(-priority)) == [2, 1, 3, 0, 5, 4]


def test_a_config_may_ask_for_the_blend(tmp_path: Path) -> None:
    config = train_config(tmp_path, serve={"rank_by": "blend", "revenue_weight": 0.3})
    assert config.serve.rank_by == "blend" and config.serve.revenue_weight == 0.3
    with pytest.raises(ValueError, match="revenue_weight"):
        train_config(tmp_path, serve={"revenue_weight": 2.0})
