"""Selection correction: inspected declarations weighted by inverse selection probability, so
the calibrated probability is the chance of a hit for any declaration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.train import feature_set, train_config

from pipeline.features.featureset import FeatureSet
from pipeline.plan import make_windows
from pipeline.serve.cutoffs import hit_rate_bounds
from pipeline.serve.model import shift_log_odds
from pipeline.timeaxis import Window
from pipeline.train.anchor import LEVEL_QUANTILES, RandomStratum, anchor_span, level_shifts
from pipeline.train.fit import fit
from pipeline.train.propensity import (
    fit_selection_model,
    ipw_weights,
    recorded_propensity,
    selection_propensities,
    selection_propensity,
)

RANDOM_RATE = 0.08


def selected_by_policy(seed: int) -> tuple[FeatureSet, np.ndarray]:
    """Every declaration's true hit (`truth`), but labels only where a policy controlled that
    favours undervaluation and, like officers, senses the fraud itself (selection not ignorable
    given the features), plus a random stratum with a recorded probability."""
    full = feature_set(rows=12_000, seed=seed, labelled_share=1.0)
    truth = full.y.to_numpy(dtype=float)
    rng = np.random.default_rng(seed)
    undervaluation = full.X["undervaluation"].to_numpy()
    sensed = 2.0 * truth
    policy = rng.random(len(truth)) < 1 / (1 + np.exp(-(1.5 * undervaluation - 2.5 + sensed)))
    drawn = rng.random(len(truth)) < RANDOM_RATE
    controlled = policy | drawn
    # the random draw is taken first, whatever the policy would have done (as in the simulator)
    weight = np.where(drawn, 1 / RANDOM_RATE, 1.0)
    reason = np.where(drawn, "random", np.where(policy, "rule", None))
    fs = dataclasses.replace(
        full,
        y=pd.Series(np.where(controlled, truth, np.nan)),
        revenue_recovered=full.revenue_recovered.where(controlled),
        sample_weight=pd.Series(weight),
        selection_reason=pd.Series(reason, dtype=object),
        label_known_at=full.label_known_at.where(controlled),
        selection_probability=pd.Series(np.where(drawn, RANDOM_RATE, np.nan)),
    )
    return fs, truth


def test_weights_are_self_normalised_and_use_the_recorded_probability_first() -> None:
    fs, _ = selected_by_policy(1)
    recorded = recorded_propensity(fs)
    assert np.allclose(recorded[fs.sample_weight.to_numpy() > 1], RANDOM_RATE)
    assert np.isnan(recorded[fs.sample_weight.to_numpy() == 1]).all()
    labelled = fs.labelled.to_numpy()
    propensity = selection_propensity(fs, labelled, None, floor=0.1)
    assert propensity.min() == pytest.approx(0.1)  # the floor clips the recorded 0.08
    weight = ipw_weights(propensity)
    assert weight.mean() == pytest.approx(1.0)


def test_one_prediction_over_every_window_gives_each_window_its_own(tmp_path: Path) -> None:
    """The selection model predicts once over the windows' unrecorded rows: each window gets,
    bit for bit, what predicting its own rows alone gave it (as it did before)."""
    fs, _ = selected_by_policy(4)
    config = train_config(tmp_path)
    windows = make_windows(fs.lodged_at, config.split)
    selection = fit_selection_model(fs, windows.valid, config)
    labelled = fs.labelled.to_numpy()
    masks = {
        w.name: labelled & w.contains(fs.lodged_at)
        for w in (windows.train, windows.valid, windows.test)
    }
    masks["overlapping"] = masks["valid"] | masks["test"]
    floor = config.train.propensity_floor
    together = selection_propensities(fs, masks, selection, floor)
    recorded = recorded_propensity(fs)
    for name, mask in masks.items():
        unknown = np.isnan(recorded[mask])
        assert unknown.any() and not unknown.all()
        alone = np.asarray(
            selection.inplace_predict(fs.X.iloc[np.flatnonzero(mask)[unknown]]), dtype=float
        )
        expected = np.clip(np.where(unknown, 1.0, recorded[mask]), floor, 1.0)
        expected[unknown] = np.clip(alone, floor, 1.0)
        np.testing.assert_array_equal(together[name], expected)
        np.testing.assert_array_equal(
            selection_propensity(fs, mask, selection, floor), together[name]
        )


@pytest.mark.parametrize("seed", [2, 3])
def test_ipw_calibration_gives_the_hit_rate_of_every_declaration(tmp_path: Path, seed: int) -> None:
    fs, truth = selected_by_policy(seed)
    windows = make_windows(fs.lodged_at, train_config(tmp_path).split)
    test = windows.test.contains(fs.lodged_at)
    true_rate = truth[test].mean()
    expected = {}
    for correction, anchor in (("none", False), ("ipw", True), ("calibration", True)):
        config = train_config(
            tmp_path,
            train={
                "selection_correction": correction,
                "anchor_to_random": anchor,
                "calibration": "platt",
            },
        )
        result = fit(fs, windows, config.train.params, config)
        expected[correction] = result.model.predict_proba(fs.X.loc[test]).mean()
        meaning = result.model.info.probability_means
        assert ("any declaration" in meaning) == (correction != "none")
        assert result.log.anchoring.startswith("anchored") == anchor
    # unweighted: the probability of a hit among the policy's controls, far above the truth
    assert expected["none"] > 1.5 * true_rate
    assert abs(expected["ipw"] - true_rate) < 0.2 * true_rate
    assert abs(expected["calibration"] - true_rate) < 0.2 * true_rate


def test_a_fully_inspected_stream_needs_no_selection_model(tmp_path: Path) -> None:
    fs = feature_set(rows=3_000, seed=6, labelled_share=1.0)
    nothing = pd.Series(np.full(len(fs), np.nan))  # no probability recorded: no random stratum
    fs = dataclasses.replace(
        fs, sample_weight=pd.Series(np.ones(len(fs))), selection_probability=nothing
    )
    config = train_config(tmp_path)
    result = fit(fs, make_windows(fs.lodged_at, config.split), config.train.params, config)
    assert "every declaration controlled" in result.log.selection_correction
    assert result.log.anchoring.startswith("not anchored")


@pytest.mark.parametrize("seed", [2, 3])
def test_the_anchored_level_interval_holds_the_true_hit_rate(tmp_path: Path, seed: int) -> None:
    """The level's uncertainty kept with the anchor gives an interval of the expected hit rate
    that holds what every declaration of the test window really had, and it is not vacuous."""
    fs, truth = selected_by_policy(seed)
    config = train_config(tmp_path, train={"calibration": "platt"})
    windows = make_windows(fs.lodged_at, config.split)
    model = fit(fs, windows, config.train.params, config).model
    shifts = model.calibration.level_shifts
    assert shifts is not None and len(shifts) == LEVEL_QUANTILES
    assert np.all(np.diff(shifts) >= 0) and shifts[2] < 0 < shifts[97]
    test = windows.test.contains(fs.lodged_at)
    interval, spread = hit_rate_bounds(model.predict_proba(fs.X.loc[test]), shifts, int(test.sum()))
    assert interval is not None and spread is not None
    assert interval[0] <= truth[test].mean() <= interval[1]
    assert interval[1] - interval[0] < truth[test].mean()


def test_level_shifts_follow_the_random_stratum_posterior() -> None:
    """Each kept shift moves the mean probability of the anchor's declarations onto the same
    quantile of the random stratum's hit rate (Jeffreys); more random rows, a narrower level."""
    from scipy.stats import beta

    anchored = np.random.default_rng(0).beta(0.5, 12.0, 20_000)
    narrow = {}
    for rows in (500, 5_000):
        hits = round(rows * anchored.mean())
        stratum = RandomStratum(hits / rows, rows, hits, float(rows))
        shifts = level_shifts(anchored, stratum)
        quantiles = (np.arange(LEVEL_QUANTILES) + 0.5) / LEVEL_QUANTILES
        target = beta.ppf(quantiles, hits + 0.5, rows - hits + 0.5)
        means = np.array([shift_log_odds(anchored, d).mean() for d in shifts])
        assert np.allclose(means, target, rtol=2e-3)
        narrow[rows] = shifts[97] - shifts[2]
    assert narrow[5_000] < narrow[500] / 2


def test_a_short_anchor_reaches_back_until_it_holds_enough_random_hits(tmp_path: Path) -> None:
    fs, _ = selected_by_policy(4)
    config = train_config(tmp_path, train={"anchor_days": 1, "min_random_hits": 12})
    lodged = pd.to_datetime(fs.lodged_at)
    available = Window("data", lodged.min(), lodged.max())
    span = anchor_span(fs, available, None, config.train)
    random_hits = (recorded_propensity(fs) > 0) & (fs.y.to_numpy() == 1.0)
    inside = span.contains(fs.lodged_at)
    assert (random_hits & inside).sum() >= 12  # one day would hold almost none
    assert (random_hits & inside & (lodged >= span.start + pd.Timedelta(days=1))).sum() < 12
    roomy = train_config(tmp_path, train={"anchor_days": 90, "min_random_hits": 1})
    assert anchor_span(fs, available, None, roomy.train).days == pytest.approx(90)
