"""The Optuna study: resume, determinism, storages, parallel workers, objectives."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from helpers.train import feature_set, train_config

from pipeline.config import Config
from pipeline.features.featureset import FeatureSet
from pipeline.plan import Windows, make_windows
from pipeline.train.fit import fit
from pipeline.train.tune import best_params, finished_trials, run_study


def _setup(tmp_path: Path, rows: int = 3_000, **tune: object) -> tuple[FeatureSet, Windows, Config]:
    fs = feature_set(rows=rows, seed=11)
    config = train_config(tmp_path, tune={"n_trials": 3, **tune}, split={"folds": 2})
    return fs, make_windows(fs.lodged_at, config.split), config


def test_a_stopped_study_continues_to_n_trials(tmp_path: Path) -> None:
    fs, windows, config = _setup(tmp_path)
    first = run_study(fs, windows, config)
    assert finished_trials(first) == 3
    kept = [t.params for t in first.trials]
    more = config.model_copy(update={"tune": config.tune.model_copy(update={"n_trials": 5})})
    study = run_study(fs, windows, more)
    assert finished_trials(study) == 5
    assert [t.params for t in study.trials[:3]] == kept  # continued, not restarted
    assert study.trials[3].params not in kept  # new points, not a replay of the first draws
    assert (tmp_path / "out" / "optuna.journal").exists()  # the default storage
    again = run_study(fs, windows, more)  # complete: nothing more to run
    assert len(again.trials) == 5


def test_one_seed_gives_the_same_study_and_model(tmp_path: Path) -> None:
    results = []
    for name in ("a", "b"):
        fs, windows, config = _setup(tmp_path / name)
        study = run_study(fs, windows, config)
        model = fit(fs, windows, best_params(study), config)
        results.append(([t.params for t in study.trials], [t.value for t in study.trials], model))
    (params_a, values_a, model_a), (params_b, values_b, model_b) = results
    assert params_a == params_b
    assert values_a == values_b
    assert model_a.log.metrics == model_b.log.metrics
    assert model_a.model.booster_sha256() == model_b.model.booster_sha256()


def test_pruning_reports_intermediate_values_only_when_on(tmp_path: Path) -> None:
    fs, windows, config = _setup(tmp_path, pruning=True)
    study = run_study(fs, windows, config)
    assert all(t.intermediate_values for t in study.trials)
    off = config.model_copy(
        update={"tune": config.tune.model_copy(update={"pruning": False, "study_name": "off"})}
    )
    study = run_study(fs, windows, off)
    assert not any(t.intermediate_values for t in study.trials)


def test_journal_storage_shares_one_study_between_two_workers(tmp_path: Path) -> None:
    journal = tmp_path / "study.journal"
    fs, windows, config = _setup(tmp_path, rows=2_000, n_trials=4, storage=str(journal))
    study = run_study(fs, windows, config, workers=2)
    assert journal.exists()
    assert 4 <= finished_trials(study) <= 5  # one in-flight trial may finish after the 4th
    reloaded = optuna.load_study(
        study_name=study.study_name,
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(journal))
        ),
    )
    assert len(reloaded.trials) == len(study.trials)


def test_parallel_workers_on_sqlite_are_refused(tmp_path: Path) -> None:
    fs, windows, config = _setup(tmp_path, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    with pytest.raises(ValueError, match=r"database is locked.*\.journal"):
        run_study(fs, windows, config, workers=2)


def test_revenue_objective_without_revenue_is_refused(tmp_path: Path) -> None:
    fs = feature_set(rows=2_000, seed=3, revenue=False)
    config = train_config(tmp_path, tune={"n_trials": 1, "objective": "revenue_at"})
    with pytest.raises(ValueError, match="revenue_at needs revenue_recovered"):
        run_study(fs, make_windows(fs.lodged_at, config.split), config)


@pytest.mark.parametrize("objective", ["precision_at", "revenue_at"])
def test_capacity_objectives_and_tuned_imbalance(tmp_path: Path, objective: str) -> None:
    fs, windows, config = _setup(
        tmp_path, n_trials=2, objective=objective, tune_imbalance=True, at_rate=0.1
    )
    study = run_study(fs, windows, config)
    assert all(0 <= t.value <= 1 for t in study.trials if t.value is not None)
    assert "imbalance" in best_params(study)
    result = fit(fs, windows, best_params(study), config)
    assert result.model.info.imbalance == best_params(study)["imbalance"]


def test_the_conventional_parameters_are_the_first_trial_and_the_floor(tmp_path: Path) -> None:
    """Tuning can only help: train.params (over XGBoost's defaults) is trial 0, so the kept trial
    is never worse on validation than them, and a trial kept instead must beat them by more than
    their validation value's bootstrap noise."""
    from pipeline.train.tune import CONVENTIONAL, NOISE, chosen_trial, conventional_point

    fs, windows, config = _setup(tmp_path, n_trials=4)
    study = run_study(fs, windows, config)
    first = study.trials[0]
    assert first.user_attrs[CONVENTIONAL] and first.user_attrs[NOISE] > 0
    point = conventional_point(config.train, config.tune)
    assert first.params == point
    assert point["learning_rate"] == config.train.params["learning_rate"]
    assert point["max_depth"] == config.train.params["max_depth"]
    kept = chosen_trial(study)
    assert kept.value is not None and first.value is not None and kept.value >= first.value
    if kept.number != first.number:
        assert kept.value - first.value > first.user_attrs[NOISE]
    else:
        assert study.best_value - first.value <= first.user_attrs[NOISE]
    # a gain within the conventional trial's noise keeps it; a larger one keeps the best
    for noise, kept_number in ((0.05, 0), (0.01, 1)):
        probe = optuna.create_study(direction="maximize")
        space = {"learning_rate": optuna.distributions.FloatDistribution(0.03, 0.3, log=True)}
        probe.add_trial(
            optuna.trial.create_trial(
                params={"learning_rate": 0.1},
                distributions=space,
                value=0.50,
                user_attrs={CONVENTIONAL: True, NOISE: noise},
            )
        )
        probe.add_trial(
            optuna.trial.create_trial(
                params={"learning_rate": 0.2}, distributions=space, value=0.52
            )
        )
        assert chosen_trial(probe).number == kept_number
