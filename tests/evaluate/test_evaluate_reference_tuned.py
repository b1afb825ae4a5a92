"""The reference learners tuned with the model's budget (`evaluate.tune_references`): the same
trials, folds, objective and first-trial rule as the model's study, reproducible from the seed,
and nothing at all when the switch is off."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from helpers.train import feature_set, train_config

from pipeline.config import Config
from pipeline.evaluate import reference as ref
from pipeline.features.featureset import FeatureSet
from pipeline.plan import Windows
from pipeline.timeaxis import Window
from pipeline.train import tune

pytestmark = pytest.mark.slow

LEARNERS = [name for name in ref.LIBRARIES if importlib.util.find_spec(name) is not None]
TRIALS = 2
# The final fit's windows over `feature_set`'s year, 14 days apart (`split.gap_days`).
WINDOWS = Windows(
    train=Window("train", pd.Timestamp("2023-01-01"), pd.Timestamp("2023-08-01")),
    valid=Window("valid", pd.Timestamp("2023-08-15"), pd.Timestamp("2023-09-29")),
    calibration=Window("calibration", pd.Timestamp("2023-10-13"), pd.Timestamp("2023-11-05")),
    test=Window("test", pd.Timestamp("2023-11-19"), pd.Timestamp("2024-01-01")),
)


def _config(folder: Path, tuned: bool = True, seed: int = 3) -> Config:
    config = train_config(
        folder,
        evaluate={
            "reference_learners": LEARNERS,
            "reference_rounds": 300,
            "reference_min_trees": 20,
            "tune_references": tuned,
        },
        tune={"n_trials": TRIALS},
    )
    return config.model_copy(update={"seed": seed})


@pytest.fixture(scope="module")
def world() -> tuple[FeatureSet, Windows, np.ndarray]:
    fs = feature_set(rows=4_000, seed=3)
    return fs, WINDOWS, WINDOWS.test.contains(fs.lodged_at)


@pytest.fixture(scope="module")
def tuned(
    world: tuple[FeatureSet, Windows, np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> ref.ReferenceScores:
    fs, windows, test_rows = world
    config = _config(tmp_path_factory.mktemp("tuned"))
    return ref.reference_scores(fs, windows, test_rows, config)


def test_each_reference_is_also_fitted_tuned_with_the_models_trials(
    tuned: ref.ReferenceScores, world: tuple[FeatureSet, Windows, np.ndarray]
) -> None:
    _fs, _windows, test_rows = world
    rows = {str(row["name"]): row for row in tuned.fitted}
    for learner in LEARNERS:
        name, tuned_name = ref.NAMES[learner], ref.TUNED[learner]
        assert name in rows and tuned_name in rows, sorted(rows)
        row = rows[tuned_name]
        assert row["trials"] == TRIALS
        assert row["chosen trial"] in range(TRIALS)
        assert "conventional parameters" in str(row["tuning"])
        assert row["healthy"] == "yes" and len(tuned.scores[tuned_name]) == int(test_rows.sum())
        assert row["train_rows"] == rows[name]["train_rows"]  # the untuned one's windows
        # trial 0 is the untuned fit: kept, its scores are the untuned reference's
        kept_first = row["chosen trial"] == 0
        assert kept_first == np.array_equal(tuned.scores[tuned_name], tuned.scores[name])
    # judged like the untuned ones: healthy, so the best reference may be a tuned one
    assert set(tuned.healthy) == {
        name for learner in LEARNERS for name in (ref.NAMES[learner], ref.TUNED[learner])
    }
    assert not tuned.notes


def test_trial_0_is_the_conventional_point_run_as_the_untuned_reference_runs(
    world: tuple[FeatureSet, Windows, np.ndarray], tmp_path: Path
) -> None:
    fs, windows, _test_rows = world
    config = _config(tmp_path)
    folds = ref.tuning_folds(fs, windows, ref.raw_columns(fs, config.features), config.split)
    # the model's own folds: the same validation blocks
    assert [len(fold.valid) for fold in folds] == [
        len(valid)
        for _, _, valid in tune.fold_rows(
            fs, windows, config.split, config.train.min_category_count
        )
    ]
    settings = ref.ReferenceSettings.of(config)
    for learner in LEARNERS:
        study = tune.memory_study(
            ref._objective(learner, folds, settings),
            ref.SPACES[learner][1],
            config.tune,
            config.seed,
            learner,
        )
        first = study.trials[0]
        assert first.params == ref.SPACES[learner][1]
        assert first.user_attrs[tune.CONVENTIONAL] and first.user_attrs[tune.NOISE] > 0
        assert first.user_attrs[ref.FITTED] == {}  # nothing laid over the untuned parameters
        boosting = ref.Boosting.of(config)
        untuned = [ref.LEARNERS[learner](fold.data, boosting, {})[1] for fold in folds]
        assert first.user_attrs["trees"] == untuned
        assert len(study.trials) == TRIALS and study.trials[1].user_attrs[ref.FITTED]


def test_the_same_seed_gives_the_same_tuned_references_and_another_seed_other_trials(
    world: tuple[FeatureSet, Windows, np.ndarray], tuned: ref.ReferenceScores, tmp_path: Path
) -> None:
    fs, windows, test_rows = world
    again = ref.reference_scores(fs, windows, test_rows, _config(tmp_path))
    assert sorted(again.scores) == sorted(tuned.scores)
    for name, score in tuned.scores.items():
        np.testing.assert_array_equal(again.scores[name], score)
    assert [r.get("parameters") for r in again.fitted] == [
        r.get("parameters") for r in tuned.fitted
    ]
    other = _config(tmp_path, seed=4)
    folds = ref.tuning_folds(fs, windows, ref.raw_columns(fs, other.features), other.split)
    drawn = [
        tune.memory_study(
            ref._objective("xgboost", folds, ref.ReferenceSettings.of(c)),
            ref.XGBOOST_CONVENTIONAL,
            c.tune,
            c.seed,
            "x",
        )
        .trials[1]
        .params
        for c in (_config(tmp_path), other)
    ]
    assert drawn[0] != drawn[1]


def test_a_trial_that_beats_the_first_by_more_than_its_noise_is_fitted(
    world: tuple[FeatureSet, Windows, np.ndarray],
    tuned: ref.ReferenceScores,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fs, windows, test_rows = world
    monkeypatch.setattr(ref, "objective_noise", lambda scored, tune, seed: 0.0)
    config = _config(tmp_path)
    references = ref.reference_scores(fs, windows, test_rows, config)
    folds = ref.tuning_folds(fs, windows, ref.raw_columns(fs, config.features), config.split)
    rows = {str(row["name"]): row for row in references.fitted}
    moved = 0
    settings = ref.ReferenceSettings.of(config)
    for learner in LEARNERS:
        study = tune.memory_study(
            ref._objective(learner, folds, settings),
            ref.SPACES[learner][1],
            config.tune,
            config.seed,
            learner,
        )
        best = study.best_trial  # no noise: any gain over trial 0 is kept
        row = rows[ref.TUNED[learner]]
        assert row["chosen trial"] == best.number
        assert row["parameters"] == json.dumps(best.params, sort_keys=True)
        if best.number != 0:
            moved += 1
            untuned = references.scores[ref.NAMES[learner]]
            assert not np.array_equal(references.scores[ref.TUNED[learner]], untuned)
    assert moved  # on these rows, some learner's second trial beats its conventional one
    # with its noise, the same trials keep the conventional parameters more often
    kept = [int(str(r["chosen trial"])) for r in tuned.fitted if "trials" in r]
    assert sum(k == 0 for k in kept) >= len(LEARNERS) - moved


def test_switched_off_nothing_is_tuned_and_the_cache_key_ignores_tuning(
    world: tuple[FeatureSet, Windows, np.ndarray], tmp_path: Path
) -> None:
    fs, windows, test_rows = world
    off = _config(tmp_path, tuned=False)
    off.evaluate.reference_learners = ["xgboost"]
    references = ref.reference_scores(fs, windows, test_rows, off)
    assert list(references.scores) == ["plain XGBoost"] and not references.notes
    assert set(references.fitted[0]) == {
        "name", "trees", "distinct scores", "healthy", "why",
        "seconds", "train_rows", "valid_rows", "columns",
    }  # fmt: skip
    seen: list[str] = []

    def cache(key: str, fit: Callable[[], ref.ReferenceScores]) -> ref.ReferenceScores:
        seen.append(key)
        return references

    more_trials = off.model_copy(update={"tune": off.tune.model_copy(update={"n_trials": 9})})
    on = off.model_copy(
        update={"evaluate": off.evaluate.model_copy(update={"tune_references": True})}
    )
    for config in (off, more_trials, on):
        ref.reference_scores(fs, windows, test_rows, config, cache)
    assert seen[0] == seen[1] != seen[2]


def test_no_tuning_budget_no_tuned_reference(
    world: tuple[FeatureSet, Windows, np.ndarray], tmp_path: Path
) -> None:
    fs, windows, test_rows = world
    config = _config(tmp_path)
    config.evaluate.reference_learners = ["xgboost"]
    config.tune.n_trials = 0
    references = ref.reference_scores(fs, windows, test_rows, config)
    assert list(references.scores) == ["plain XGBoost"]
    assert references.notes == [
        "Tuned reference learners skipped: tune.n_trials is 0 (the model is not tuned)."
    ]


def test_the_plain_xgboost_space_keeps_xgboosts_own_categories(tmp_path: Path) -> None:
    """The model's study may try the hit-rate category order; the plain XGBoost's does not (it
    takes XGBoost's own categories, so an order drawn there would be fitted as native)."""
    tune_section = _config(tmp_path).tune.model_copy(update={"tune_category_order": True})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    assert "category_order" in tune.search_space(study.ask(), tune_section)
    assert "category_order" not in ref._xgboost_space(study.ask(), tune_section)
