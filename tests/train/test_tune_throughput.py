"""Tuning throughput (issue 27): parallel workers that run the trials one process runs, the
default workers and storage, and pruning that reports every tenth round only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
import xgboost as xgb
from helpers.train import feature_set, train_config

from pipeline.config import Config
from pipeline.features.featureset import FeatureSet
from pipeline.jobs.train import windows_of
from pipeline.plan import Windows
from pipeline.train.tune import (
    PRUNE_EVERY,
    ThinnedPruning,
    run_study,
    storage_url,
    tuning_workers,
)


def _setup(tmp_path: Path, rows: int = 2_000, **tune: object) -> tuple[FeatureSet, Windows, Config]:
    fs = feature_set(rows=rows, seed=11)
    config = train_config(tmp_path, tune={"n_trials": 4, **tune}, split={"folds": 2})
    return fs, windows_of(config, fs), config


def test_parallel_workers_run_the_trials_one_process_runs(tmp_path: Path) -> None:
    """The random first trials draw by their own number, so two workers sharing the default
    journal study run the very trials (points and values) one process runs, whichever worker
    takes which."""
    runs = {}
    for workers in (1, 2):
        fs, windows, config = _setup(tmp_path / str(workers))
        config.compute.threads = workers  # one thread per worker on both sides
        study = run_study(fs, windows, config, workers=workers)
        assert 4 <= len(study.trials) <= 5  # a trial may start as two workers finish at once
        runs[workers] = {t.number: (t.params, t.value) for t in study.trials if t.number < 4}
        assert all(t.state.is_finished() for t in study.trials)
    assert len(runs[1]) == 4
    assert runs[2] == runs[1]


def test_unset_workers_follow_the_threads_where_the_storage_can_share(tmp_path: Path) -> None:
    _, _, config = _setup(tmp_path)
    assert storage_url(config).endswith("optuna.journal")  # the default storage is shareable
    config.compute.threads = 2
    assert tuning_workers(config, trials=8) == 1  # workers of 2 threads each
    config.compute.threads = 8
    assert tuning_workers(config, trials=8) == 4
    assert tuning_workers(config, trials=3) == 3  # never more workers than trials
    assert tuning_workers(config, trials=8, workers=3) == 3  # --workers
    config.tune.workers = 1
    assert tuning_workers(config, trials=8) == 1  # tune.workers
    config.tune.workers = None
    config.tune.storage = f"sqlite:///{tmp_path / 'study.db'}"
    assert tuning_workers(config, trials=8) == 1  # SQLite: one writer


def test_pruning_reports_and_asks_every_tenth_round_only(tmp_path: Path) -> None:
    """The pruned fold's metric goes to the study every PRUNE_EVERY rounds (a storage write and
    a read each), and a trial below the pruner's bar stops at the first of those rounds."""
    fs, windows, config = _setup(tmp_path, n_trials=2, pruning=True)
    study = run_study(fs, windows, config)
    steps = [step for trial in study.trials for step in trial.intermediate_values]
    assert steps and all((step + 1) % PRUNE_EVERY == 0 for step in steps)

    rng = np.random.default_rng(0)
    rows = xgb.DMatrix(rng.normal(size=(300, 3)), label=rng.integers(0, 2, 300))
    bar = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(2.0))
    trial = bar.ask()
    with pytest.raises(optuna.TrialPruned, match=f"iteration {PRUNE_EVERY - 1}"):
        xgb.train(
            {"objective": "binary:logistic", "eval_metric": "aucpr", "nthread": 1},
            rows,
            num_boost_round=50,
            evals=[(rows, "valid")],
            callbacks=[ThinnedPruning(trial, "valid-aucpr")],
            verbose_eval=False,
        )
    assert list(bar.trials[0].intermediate_values) == [PRUNE_EVERY - 1]
