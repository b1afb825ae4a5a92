"""Reference learners are real fits: stopped on log-loss with a floor of trees, checked for
health, and a failed fit is never the bar the model is judged against."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from helpers.train import feature_set, train_config

from pipeline.evaluate import reference as ref
from pipeline.plan import make_windows


def test_early_stopping_never_keeps_fewer_trees_than_the_floor() -> None:
    # the validation log-loss is lowest after one tree (what stopping on PR-AUC met on thin rows)
    losses = [0.30, *np.linspace(0.31, 0.40, 200)]
    assert not ref.stop_now(losses[:40], min_trees=50, patience=10)
    assert ref.kept_trees(losses, min_trees=50) == 50
    assert ref.stop_now(losses[:60], min_trees=50, patience=10)
    # a curve still falling keeps its best count above the floor
    falling = [*np.linspace(0.40, 0.20, 120), *np.linspace(0.21, 0.30, 30)]
    assert ref.kept_trees(falling, min_trees=50) == 120
    assert not ref.stop_now(falling[:125], min_trees=50, patience=10)


def test_a_one_tree_reference_is_flagged_and_not_chosen_as_the_best() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(2_000) < 0.1).astype(float)
    noise = rng.random(2_000)
    sharp = y + 0.01 * noise  # the best average precision there is, from a single tree
    fair = 0.6 * y + noise
    references = ref.ReferenceScores()
    for name, score, trees in (("CatBoost", sharp, 1), ("LightGBM", fair, 300)):
        health = ref.reference_health(name, trees, score, min_trees=50, min_distinct=20)
        references.scores[name] = score
        references.health[name] = health
    assert not references.health["CatBoost"].healthy
    assert "1 trees, fewer than the minimum of 50" in references.health["CatBoost"].why
    assert references.health["LightGBM"].healthy and references.health["LightGBM"].why == ""
    assert references.healthy == ["LightGBM"]
    assert ref.best_reference(references, y) == "LightGBM"
    # no healthy reference: no bar at all rather than a failed one
    only_failed = ref.ReferenceScores(
        scores={"CatBoost": sharp}, health={"CatBoost": references.health["CatBoost"]}
    )
    assert ref.best_reference(only_failed, y) is None


def test_near_constant_scores_are_flagged_whatever_the_trees() -> None:
    two_values = np.where(np.arange(1_000) % 7 == 0, 0.2, 0.05)
    health = ref.reference_health("CatBoost", 400, two_values, min_trees=50, min_distinct=20)
    assert not health.healthy and health.distinct_scores == 2
    assert "2 distinct scores" in health.why
    assert health.as_dict() == {"distinct scores": 2, "healthy": "no", "why": health.why}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    fs = feature_set(rows=5_000, seed=3)
    learners = [
        name
        for name in ("xgboost", "lightgbm", "catboost")
        if importlib.util.find_spec(name) is not None
    ]
    config = train_config(
        Path(tmp_path_factory.mktemp("reference")),
        evaluate={
            "reference_learners": learners,
            "reference_rounds": 400,
            "reference_min_trees": 40,
        },
    )
    windows = make_windows(fs.lodged_at, config.split)
    test_rows = windows.test.contains(fs.lodged_at)
    return fs, config, test_rows, ref.reference_scores(fs, windows, test_rows, config)


def test_every_reference_keeps_at_least_the_floor_and_reports_its_health(fitted: tuple) -> None:
    _fs, config, test_rows, references = fitted
    assert references.fitted and len(references.fitted) == len(config.evaluate.reference_learners)
    for row in references.fitted:
        name = str(row["name"])
        assert int(str(row["trees"])) >= config.evaluate.reference_min_trees, row
        assert int(str(row["trees"])) <= config.evaluate.reference_rounds
        assert row["healthy"] == "yes" and row["why"] == "", row
        assert references.health[name].distinct_scores == row["distinct scores"]
        assert len(references.scores[name]) == int(test_rows.sum())
        assert row["valid_rows"] and row["train_rows"]
    assert sorted(references.healthy) == sorted(references.scores)


def test_a_cap_below_the_floor_gives_flagged_references(fitted: tuple) -> None:
    fs, config, test_rows, _references = fitted
    capped = config.model_copy(
        update={
            "evaluate": config.evaluate.model_copy(
                update={"reference_learners": ["xgboost"], "reference_rounds": 5}
            )
        }
    )
    windows = make_windows(fs.lodged_at, capped.split)
    references = ref.reference_scores(fs, windows, test_rows, capped)
    assert references.fitted[0]["trees"] == 5
    assert references.healthy == []
    assert any("not a real fit" in note for note in references.notes)
    y = fs.y.to_numpy(dtype=float)[test_rows]
    assert ref.best_reference(references, y) is None


def test_a_config_whose_cap_is_below_the_floor_is_refused() -> None:
    from pipeline.config import ConfigError, load

    with pytest.raises(ConfigError, match="reference_rounds \\(30\\) is below"):
        load(None, ["evaluate.reference_rounds=30"])
    assert load(None, ["evaluate.reference_rounds=30", "evaluate.reference_min_trees=20"])
