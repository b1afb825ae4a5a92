"""The one ranking path: probability ranks as the margin, one tie rule, the blend option, and
one rule for a model without a revenue part."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.train import feature_set, train_config

from pipeline.evaluate import metrics as mx
from pipeline.plan import BY_PROBABILITY, RankingPolicy, make_windows
from pipeline.serve.ranking import (
    Ranking,
    control_priority,
    rank,
    ranking_score,
    resolve_rank_by,
    top_mask,
)
from pipeline.train.fit import fit, window_metrics
from pipeline.train.rows import window_rows
from pipeline.train.split import rows_in


@pytest.fixture(scope="module")
def isotonic_fit(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """A real XGBoost model with isotonic calibration (plateaus) on a small feature set."""
    fs = feature_set(rows=6_000, seed=4)
    config = train_config(
        tmp_path_factory.mktemp("rank"), train={"calibration": "isotonic", "isotonic_min_hits": 0}
    )
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
    ranked = rank(model, test.X, BY_PROBABILITY)
    priority = ranked.priority
    assert ranked.rank_by == "probability" and not ranked.fell_back
    np.testing.assert_array_equal(ranked.probability, probability)
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
    priority = rank(model, test.X, BY_PROBABILITY).priority
    margin = model.margin(test.X)
    rates = [0.01, 0.02, 0.05, 0.1]
    calibrated = mx.metrics_table(
        y, {"m": priority[labelled]}, rates, resampling=mx.Resampling(replicates=0)
    )
    by_margin = mx.metrics_table(
        y, {"m": margin[labelled]}, rates, resampling=mx.Resampling(replicates=0)
    )
    pd.testing.assert_series_equal(calibrated["value"], by_margin["value"])
    # the training log ranks the same way: precision@n% of the log is the margin's
    rows = window_rows(fs, rows_in(fs, windows.test, None))
    m = model.margin(rows.X)
    logged = window_metrics(rows, 1 / (1 + np.exp(-m)), model.calibration.apply(m), False, m)
    for rate in rates:
        top = top_mask(m, rate)  # by margin, no tie in a continuous margin
        assert logged[f"precision_at_{round(rate * 100)}"] == pytest.approx(rows.y[top].mean())
    assert result.log.metrics["test"]["precision_at_5"] == logged["precision_at_5"]


def test_rank_computes_what_the_model_computes_bit_for_bit(isotonic_fit: tuple) -> None:
    """One preparation of the matrix for both boosters, the same numbers as the model's own
    methods (`TargetingModel.prepare`), and the one tie rule on the score."""
    fs, windows, _config, result = isotonic_fit
    model = result.model
    test = fs.subset(windows.test.contains(fs.lodged_at))
    assert model.revenue_booster is not None
    for rank_by in ("probability", "expected_revenue", "blend"):
        ranked = rank(model, test.X, RankingPolicy(rank_by, 0.5))
        assert ranked.rank_by == rank_by
        np.testing.assert_array_equal(ranked.margin, model.margin(test.X))
        np.testing.assert_array_equal(ranked.probability, model.predict_proba(test.X))
        np.testing.assert_array_equal(ranked.revenue_if_hit, model.revenue_if_hit(test.X))
        np.testing.assert_array_equal(
            ranked.expected_revenue, model.expected_revenue(test.X, ranked.probability)
        )
        np.testing.assert_array_equal(
            ranked.priority, control_priority(ranked.score, ranked.margin)
        )
        frame = ranked.frame(test.X.index)
        assert list(frame.columns) == ["margin", "probability", "expected_revenue", "score"]
    assert rank(model, test.X).rank_by == "expected_revenue"  # auto, with a revenue part


def test_without_a_revenue_part_a_revenue_ranking_raises_unless_the_fallback_is_asked(
    isotonic_fit: tuple,
) -> None:
    fs, windows, _config, result = isotonic_fit
    bare = dataclasses.replace(result.model, revenue_booster=None)
    X = fs.subset(windows.test.contains(fs.lodged_at)).X
    for rank_by in ("expected_revenue", "blend"):
        with pytest.raises(ValueError, match="no revenue part"):
            rank(bare, X, RankingPolicy(rank_by))
        ranked = rank(bare, X, RankingPolicy(rank_by), fallback_to_probability=True)
        assert ranked.fell_back and ranked.rank_by == "probability"
        assert ranked.revenue_if_hit is None and np.isnan(ranked.expected_revenue).all()
        np.testing.assert_array_equal(ranked.score, ranked.probability)
    # nothing to fall back from: auto and probability rank by probability, no fallback recorded
    for rank_by in ("auto", "probability"):
        ranked = rank(bare, X, RankingPolicy(rank_by), fallback_to_probability=True)
        assert ranked.rank_by == "probability" and not ranked.fell_back
    # a model with its revenue part never falls back
    assert not rank(result.model, X, RankingPolicy("blend"), fallback_to_probability=True).fell_back


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
    # a Ranking's priority is the same order, tie-free
    ranking = Ranking(margin, score, None, score, "probability")
    np.testing.assert_array_equal(ranking.priority, priority)
    assert len(np.unique(ranking.priority)) == len(score)


def test_a_config_may_ask_for_the_blend(tmp_path: Path) -> None:
    config = train_config(tmp_path, serve={"rank_by": "blend", "revenue_weight": 0.3})
    assert config.serve.rank_by == "blend" and config.serve.revenue_weight == 0.3
    with pytest.raises(ValueError, match="revenue_weight"):
        train_config(tmp_path, serve={"revenue_weight": 2.0})
