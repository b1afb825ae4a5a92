"""Fair selections: one ranking target and one label set for every learner; the trade-off."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers.train import feature_set, train_config

from pipeline.evaluate import selections as sel
from pipeline.plan import make_windows
from pipeline.train.fit import fit


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    fs = feature_set(rows=6_000, seed=5)
    config = train_config(tmp_path_factory.mktemp("sel"))
    windows = make_windows(fs.lodged_at, config.split)
    return fs, windows, config, fit(fs, windows, config.train.params, config)


def test_the_baseline_learns_from_exactly_the_model_s_training_labels(fitted: tuple) -> None:
    fs, windows, _config, result = fitted
    spans = {w.name: w for w in windows.ordered()}
    own = sel.training_labels(fs, spans)
    assert own is not None
    assert len(own) == result.log.rows["train"].labelled
    # a label known only after the validation window opened is not used
    late = pd.to_datetime(fs.label_known_at) >= windows.valid.start
    assert (windows.train.contains(fs.lodged_at) & fs.labelled.to_numpy() & late.to_numpy()).any()


def test_every_learner_is_ranked_both_ways_and_the_blend_spans_them(fitted: tuple) -> None:
    fs, windows, config, result = fitted
    spans = {w.name: w for w in windows.ordered()}
    test = fs.subset(windows.test.contains(fs.lodged_at))
    own = sel.training_labels(fs, spans)
    assert own is not None
    revenue = sel.raw_revenue_if_hit(own, test.X, config)
    assert revenue is not None  # a revenue model on the same training hits
    probability = 1 / (1 + np.exp(-result.model.margin(test.X) + 0.3))  # a stand-in learner
    (raw,) = sel.reference_learners({"raw XGBoost": probability}, revenue).values()
    learners = {"model": sel.learner_scores(result.model, test.X), "raw XGBoost": raw}
    scores = sel.both_rankings(learners, "expected_revenue", 1.0)
    assert set(scores) == {
        "model",
        "model by probability",
        "model by expected revenue",
        "raw XGBoost",
        "raw XGBoost by probability",
        "raw XGBoost by expected revenue",
    }
    np.testing.assert_array_equal(scores["model"], scores["model by expected revenue"])
    np.testing.assert_array_equal(scores["raw XGBoost"], scores["raw XGBoost by expected revenue"])
    labelled = test.labelled.to_numpy()
    y = test.y.to_numpy(dtype=float)[labelled]
    money = np.nan_to_num(test.revenue_recovered.to_numpy(dtype=float)[labelled])
    mine = learners["model"]
    kept = sel.LearnerScores(
        mine.margin[labelled], mine.probability[labelled], mine.revenue_if_hit[labelled]
    )
    table = sel.tradeoff_table(y, money, kept, [0.05, 0.1])
    assert sorted(table["revenue_weight"].unique()) == list(sel.BLEND_WEIGHTS)
    for weight, name in ((0.0, "model by probability"), (1.0, "model by expected revenue")):
        order = np.argsort(-scores[name][labelled])
        k = int(np.ceil(0.05 * len(y)))
        row = table.loc[(table["revenue_weight"] == weight) & (table["rate"] == 0.05)].iloc[0]
        assert row["precision"] == pytest.approx(y[order[:k]].mean())
        assert row["revenue"] == pytest.approx(money[order[:k]].sum() / money.sum())
    png = sel.tradeoff_figure(table)
    assert png[:4] == b"\x89PNG"
