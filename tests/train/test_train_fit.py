"""The final fit: early-stopping slice, calibration, imbalance treatments, revenue model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.train import feature_set, train_config

from pipeline.plan import make_windows
from pipeline.train.fit import fit
from pipeline.train.rebalance import rebalance_step
from pipeline.train.rows import window_rows
from pipeline.train.split import rows_in


def test_booster_is_sliced_at_its_best_iteration(tmp_path: Path) -> None:
    fs = feature_set(seed=1)
    config = train_config(
        tmp_path,
        train={
            "num_boost_round": 300,
            "early_stopping_rounds": 5,
            "params": {"learning_rate": 0.5},
        },
    )
    result = fit(fs, make_windows(fs.lodged_at, config.split), {"learning_rate": 0.5}, config)
    best = result.log.best_iteration
    assert best + 1 < 300  # early stopping did stop early
    assert result.model.booster.num_boosted_rounds() == best + 1
    assert result.model.info.best_iteration == best


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibration_lowers_the_brier_score_of_a_distorted_model(
    tmp_path: Path, method: str
) -> None:
    fs = feature_set(rows=6_000, seed=2)
    config = train_config(
        tmp_path,
        train={"imbalance": "scale_pos_weight", "calibration": method, "isotonic_min_hits": 0},
    )
    result = fit(fs, make_windows(fs.lodged_at, config.split), config.train.params, config)
    test = result.log.metrics["test"]  # held out: neither fitted nor calibrated on
    assert result.log.params["scale_pos_weight"] > 2
    assert test["brier_calibrated"] < test["brier_raw"]
    assert abs(test["mean_score"] - test["hit_rate"]) < 0.05
    assert result.model.calibration.method == method


def test_imbalance_treatments_touch_the_training_window_only(tmp_path: Path) -> None:
    fs = feature_set(seed=3)
    config = train_config(tmp_path)
    windows = make_windows(fs.lodged_at, config.split)
    train_y = fs.y[rows_in(fs, windows.train, windows.valid.start)]
    hits, labelled = int(train_y.sum()), len(train_y)
    rows = {}
    for method in ("none", "undersample", "smotenc", "inverse_propensity"):
        result = fit(fs, windows, {**config.train.params, "imbalance": method}, config)
        rows[method] = result.log.rows
        assert result.model.info.imbalance == method
        proba = result.model.predict_proba(fs.X)
        assert np.isfinite(proba).all() and ((proba >= 0) & (proba <= 1)).all()
    assert rows["none"]["train"].fitted == labelled
    assert rows["undersample"]["train"].fitted == 2 * hits
    assert rows["smotenc"]["train"].fitted == 2 * (labelled - hits)
    for method in rows:  # evaluation windows are never resampled
        assert rows[method]["valid"] == rows["none"]["valid"]
        assert rows[method]["test"] == rows["none"]["test"]


def test_fit_leaves_the_feature_set_untouched(tmp_path: Path) -> None:
    fs = feature_set(seed=4)
    before = pd.util.hash_pandas_object(pd.concat([fs.X, fs.meta()], axis=1)).sum()
    config = train_config(tmp_path, train={"imbalance": "smotenc"})
    fit(fs, make_windows(fs.lodged_at, config.split), config.train.params, config)
    after = pd.util.hash_pandas_object(pd.concat([fs.X, fs.meta()], axis=1)).sum()
    assert before == after


def test_revenue_model_is_added_when_the_data_has_revenue(tmp_path: Path) -> None:
    fs = feature_set(seed=5)
    config = train_config(tmp_path)
    result = fit(fs, make_windows(fs.lodged_at, config.split), config.train.params, config)
    assert result.model.revenue_booster is not None
    expected = result.model.expected_revenue(fs.X)
    assert np.isfinite(expected).all() and (expected >= 0).all()
    assert "revenue_at_5" in result.log.metrics["test"]


def test_revenue_model_is_skipped_without_revenue(tmp_path: Path) -> None:
    fs = feature_set(seed=5, revenue=False)
    config = train_config(tmp_path)
    result = fit(fs, make_windows(fs.lodged_at, config.split), config.train.params, config)
    assert result.model.revenue_booster is None
    assert "no revenue" in result.log.revenue_model
    assert np.isnan(result.model.expected_revenue(fs.X)).all()
    assert "revenue_at_5" not in result.log.metrics["test"]


def test_a_validation_window_without_hits_is_refused(tmp_path: Path) -> None:
    fs = feature_set(seed=6)
    config = train_config(tmp_path)
    windows = make_windows(fs.lodged_at, config.split)
    y = fs.y.where(~windows.valid.contains(fs.lodged_at), 0.0)
    no_hits = type(fs)(**{**fs.__dict__, "y": y})
    with pytest.raises(ValueError, match=r"valid \[.*no hit"):
        fit(no_hits, windows, config.train.params, config)


def test_the_fit_log_names_what_tracking_logs(tmp_path: Path) -> None:
    """The typed log gives fit_log.json's sections and the MLflow metric names."""
    fs = feature_set(seed=7)
    config = train_config(tmp_path)
    result = fit(fs, make_windows(fs.lodged_at, config.split), config.train.params, config)
    written = result.log.to_dict()
    assert list(written) == [
        "params", "imbalance", "category_order", "best_iteration", "windows", "rows", "metrics",
        "revenue_model",
        "selection_correction", "anchoring", "boosted_from", "timings", "warnings",
    ]  # fmt: skip
    assert written["rows"]["train"] == {
        "lodged": result.log.rows["train"].lodged,
        "labelled": result.log.rows["train"].labelled,
        "fitted": result.log.rows["train"].fitted,
    }
    metrics = result.log.tracked_metrics()
    assert metrics["best_iteration"] == result.log.best_iteration
    assert (
        metrics["test.inspected.average_precision"]
        == (result.log.metrics["test"]["average_precision"])
    )
    assert {"rows.train.fitted", "seconds.boost", "seconds.total"} <= set(metrics)
    params = result.log.tracked_params()
    assert params["fit.imbalance"] == result.log.imbalance == result.model.info.imbalance
    assert params["fit.category_order"] == "native"
    assert params["fit.seed"] == config.seed


def test_rebalancing_without_resampling_weighs_by_the_labels_the_workers_read(
    tmp_path: Path,
) -> None:
    """When dask workers read the training window from the file, nothing is resampled and
    scale_pos_weight comes from the file's labels, not from the rows held in memory."""
    fs = feature_set(seed=8)
    config = train_config(tmp_path)
    windows = make_windows(fs.lodged_at, config.split)
    train = window_rows(fs, rows_in(fs, windows.train, windows.labels_known_by(windows.train)))
    hits_only = train.y[train.y == 1]
    labels = np.concatenate([hits_only, np.zeros(3 * len(hits_only))])
    read = rebalance_step(train, labels, "scale_pos_weight", {"eta": 0.1}, 7, resample=False)
    assert read.rows is train and read.fitted == len(labels)
    assert read.params == {"eta": 0.1, "scale_pos_weight": 3.0}
    held = rebalance_step(train, train.y, "undersample", {"eta": 0.1}, 7, resample=True)
    assert held.fitted == len(held.rows) == 2 * int(train.y.sum())


def test_isotonic_falls_back_to_platt_on_a_window_with_few_hits(tmp_path: Path) -> None:
    fs = feature_set(rows=6_000, seed=2)
    config = train_config(tmp_path, train={"calibration": "isotonic", "isotonic_min_hits": 1e6})
    result = fit(fs, make_windows(fs.lodged_at, config.split), config.train.params, config)
    assert result.model.calibration.method == "platt"
    assert str(result.model.info.calibration).startswith("platt (fallback:")
    p = result.model.predict_proba(fs.X)
    margins = result.model.margin(fs.X)
    # Platt is strictly monotone in the margin: no staircase, no tie the trees did not make
    assert pd.Series(p).nunique() == pd.Series(margins).nunique()


def test_a_calibrated_probability_is_never_exactly_0_or_1() -> None:
    from pipeline.serve.model import Calibration
    from pipeline.train.fit import calibrate

    rng = np.random.default_rng(0)
    margins = rng.normal(size=400)
    y = (margins > 1.8).astype(float)  # the lower three quarters hold no hit at all
    iso = calibrate(margins, y, "isotonic")
    p = iso.apply(np.linspace(-30, 30, 1_001))
    assert (p > 0).all() and (p < 1).all()
    assert min(iso.knots_y) >= 1 / 402 and max(iso.knots_y) <= 1 - 1 / 402
    extreme = Calibration(method="platt", platt_a=50.0).apply(np.array([-40.0, 40.0]))
    assert extreme[0] > 0 and extreme[1] < 1
