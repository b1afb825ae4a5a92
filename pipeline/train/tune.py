"""The Optuna study over XGBoost parameters, averaged over prequential folds.

Seeded TPE; the number of trees by early stopping; pruning with Optuna's XGBoost callback
(passed to `xgboost.train`, the native API); storage from config: a SQLite file by default, a
journal file (path ending ``.journal``) for several worker processes on one machine, or any RDB
URL. The study is loaded if it exists, and `tune.n_trials` counts every finished trial, so
re-running continues a study rather than restarting it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
import xgboost as xgb
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from optuna_integration import XGBoostPruningCallback

from pipeline.config import Config
from pipeline.features.featureset import FeatureSet
from pipeline.train.fit import (
    EVAL_METRIC,
    IMBALANCE_METHODS,
    WindowRows,
    has_revenue,
    margin,
    objective_value,
    rebalance,
    split_params,
    train_booster,
    window_rows,
)
from pipeline.train.split import Window, Windows, rolling_folds, rows_in

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
START_TIMEOUT_S = 300.0  # longest wait of a parallel worker for the others to be ready


def study_name(config: Config) -> str:
    """The study's name: `tune.study_name`, else `<experiment name>-<objective>`."""
    return config.tune.study_name or f"{config.name}-{config.tune.objective}"


def storage_url(config: Config) -> str:
    """Where the study lives: `tune.storage`, else a SQLite file at `paths.study`."""
    if config.tune.storage:
        return config.tune.storage
    return f"sqlite:///{config.paths.study}"


def make_storage(config: Config) -> BaseStorage:
    """The Optuna storage object (the folder of a file storage is created here)."""
    url = storage_url(config)
    if url.endswith(".journal"):
        path = url.removeprefix("file://")
        from pathlib import Path

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    if url.startswith("sqlite:///"):
        from pathlib import Path

        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return RDBStorage(url, heartbeat_interval=None)


def check_parallel(config: Config, workers: int) -> None:
    """Refuse parallel workers on a SQLite study (concurrent writers lock each other out)."""
    if workers > 1 and storage_url(config).startswith("sqlite"):
        raise ValueError(
            f"tune.workers={workers} needs a storage that parallel processes can share: SQLite "
            f"({storage_url(config)}) fails with 'database is locked'. Set tune.storage to a path "
            "ending in .journal (one machine) or a PostgreSQL/MySQL URL (several machines)"
        )


def search_space(trial: optuna.Trial, config: Config) -> dict[str, Any]:
    """XGBoost parameters of one trial (and the imbalance method with tune.tune_imbalance)."""
    params: dict[str, Any] = {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "max_depth": trial.suggest_int("max_depth", 2, 10),
        "min_child_weight": trial.suggest_float("min_child_weight", 0.5, 50.0, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
        "reg_alpha": trial.suggest_float("reg_alpha", 1e-3, 10.0, log=True),
        "gamma": trial.suggest_float("gamma", 1e-4, 5.0, log=True),
        "max_cat_to_onehot": trial.suggest_int("max_cat_to_onehot", 1, 16),
        "max_cat_threshold": trial.suggest_int("max_cat_threshold", 8, 128, log=True),
    }
    if config.tune.tune_imbalance:
        params["imbalance"] = trial.suggest_categorical("imbalance", list(IMBALANCE_METHODS))
    return params


def quantile_matrix(
    rows: WindowRows,
    config: Config,
    weighted: bool = True,
    ref: xgb.QuantileDMatrix | None = None,
) -> xgb.QuantileDMatrix:
    """A window's rows quantised once for every trial and fold that boosts or stops on them.

    A plain DMatrix keeps the raw values and each trial's booster cuts them into histogram bins
    again; a QuantileDMatrix holds the bins (and a quarter of the memory). A validation window
    takes its training window's cuts (``ref``), so trees split it exactly where they split the
    training rows: the trials' values are those of plain matrices (tests/test_train_tune.py).
    """
    return xgb.QuantileDMatrix(
        rows.X,
        label=rows.y,
        weight=rows.weight if weighted else None,
        enable_categorical=True,
        max_bin=int(config.train.params.get("max_bin", 256)),
        ref=ref,
        nthread=config.train.n_jobs,
    )


class Objective:
    """Mean tuning objective over the rolling folds; matrices are built once per fold."""

    def __init__(self, fs: FeatureSet, windows: Windows, config: Config) -> None:
        if config.tune.objective == "revenue_at" and not has_revenue(fs):
            raise ValueError(
                "tune.objective=revenue_at needs revenue_recovered, and this feature set has no "
                "revenue for any hit (KCS has none): use average_precision or precision_at"
            )
        self.config = config
        folds = rolling_folds(fs.lodged_at, config.split, windows)
        valid_known_by = windows.labels_known_by(windows.valid)
        # Latest fold first: the pruner watches the fold nearest to the final fit.
        self.folds: list[tuple[Window, Any, Any]] = []
        for train_window, valid_window in reversed(folds):
            train = window_rows(fs, rows_in(fs, train_window, valid_window.start))
            valid = window_rows(fs, rows_in(fs, valid_window, valid_known_by))
            if train.y.sum() == 0 or valid.y.sum() == 0:
                raise ValueError(
                    f"tuning fold {train_window} / {valid_window} has no hit in one of its "
                    "windows: use fewer split.folds or longer windows"
                )
            self.folds.append((valid_window, train, valid))
        self._matrices: dict[tuple[int, str], tuple[xgb.QuantileDMatrix, dict[str, Any]]] = {}
        self._valid: dict[tuple[int, str], xgb.DMatrix] = {}

    def _train_matrix(
        self, fold: int, imbalance: str
    ) -> tuple[xgb.QuantileDMatrix, dict[str, Any]]:
        key = (fold, imbalance)
        if key not in self._matrices:
            rows, extra = rebalance(self.folds[fold][1], imbalance, self.config.seed)
            self._matrices[key] = (quantile_matrix(rows, self.config), extra)
        return self._matrices[key]

    def _valid_matrix(self, fold: int, imbalance: str = "none") -> xgb.DMatrix:
        key = (fold, imbalance)
        if key not in self._valid:
            dtrain, _ = self._train_matrix(fold, imbalance)
            valid = self.folds[fold][2]
            self._valid[key] = quantile_matrix(valid, self.config, weighted=False, ref=dtrain)
        return self._valid[key]

    def __call__(self, trial: optuna.Trial) -> float:
        tune = self.config.tune
        params, imbalance = split_params(search_space(trial, self.config), self.config)
        values, rounds = [], []
        for fold, (_, _, valid) in enumerate(self.folds):
            dtrain, extra = self._train_matrix(fold, imbalance)
            callbacks: list[xgb.callback.TrainingCallback] = []
            if tune.pruning and fold == 0:
                callbacks.append(XGBoostPruningCallback(trial, f"valid-{EVAL_METRIC}"))
            booster, best = train_booster(
                dtrain,
                self._valid_matrix(fold, imbalance),
                {**params, **extra},
                self.config.train.num_boost_round,
                self.config.train.early_stopping_rounds,
                callbacks,
            )
            score = 1.0 / (1.0 + np.exp(-margin(booster, valid.X)))
            values.append(
                objective_value(tune.objective, valid.y, score, valid.revenue, tune.at_rate)
            )
            rounds.append(best + 1)
        trial.set_user_attr("trees", rounds)
        # Which process ran it: with several workers (or machines) on one storage, the study
        # shows how the trials were shared.
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("fold_values", values)
        return float(np.mean(values))


def load_study(config: Config, seed_offset: int = 0) -> optuna.Study:
    """Create or load the study (seeded TPE; median pruner when pruning is on)."""
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=10)
        if config.tune.pruning
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        study_name=study_name(config),
        storage=make_storage(config),
        pruner=pruner,
        direction="maximize",
        load_if_exists=True,
    )
    # Seeded by the number of trials already done: a continued study draws new points instead of
    # replaying the first ones, and stays reproducible.
    done = len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=config.seed + seed_offset + done)
    return study


def finished_trials(study: optuna.Study) -> int:
    """Trials that completed or were pruned (stale RUNNING or FAILED trials do not count)."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def _worker(
    fs: FeatureSet, windows: Windows, config: Config, index: int, start: Any = None
) -> None:
    """One worker process of a parallel study: trials until the study holds n_trials.

    ``start`` (a multiprocessing barrier) holds each worker until all have built their matrices,
    so the trials are shared from the first one instead of going to whichever process was
    scheduled first; a worker that died before it only costs the others the barrier's timeout.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_study(config, seed_offset=1000 * index)
    objective = Objective(fs, windows, config)
    if start is not None:
        with contextlib.suppress(threading.BrokenBarrierError):
            start.wait(timeout=START_TIMEOUT_S)
    missing = config.tune.n_trials - finished_trials(study)
    if missing <= 0:
        return
    study.optimize(
        objective,
        n_trials=missing,
        timeout=config.tune.timeout_s,
        callbacks=[optuna.study.MaxTrialsCallback(config.tune.n_trials, states=FINISHED)],
        catch=(),
    )


def run_study(
    fs: FeatureSet,
    windows: Windows,
    config: Config,
    workers: int | None = None,
    progress: bool = False,
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] | None = None,
) -> optuna.Study:
    """Run (or continue) the study until it holds `tune.n_trials` finished trials.

    With `workers` > 1 (default `tune.workers`), that many processes share the study through its
    storage; each gets `train.n_jobs // workers` threads. The total may exceed n_trials by up to
    workers - 1 trials that were already running when the last one finished.
    """
    workers = workers or config.tune.workers
    check_parallel(config, workers)
    study = load_study(config)
    missing = config.tune.n_trials - finished_trials(study)
    if missing <= 0:
        return study
    if workers <= 1:
        study.optimize(
            Objective(fs, windows, config),
            n_trials=missing,
            timeout=config.tune.timeout_s,
            show_progress_bar=progress,
            callbacks=callbacks,
        )
        return study
    share = config.model_copy(deep=True)
    share.train.n_jobs = max(1, config.train.n_jobs // workers)
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(workers)
    processes = [
        context.Process(target=_worker, args=(fs, windows, share, index, start), daemon=False)
        for index in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    failed = [p.exitcode for p in processes if p.exitcode]
    if failed:
        raise RuntimeError(f"{len(failed)} tuning worker(s) failed (exit codes {failed})")
    return load_study(config)


def best_params(study: optuna.Study) -> dict[str, Any]:
    """The best trial's parameters (imbalance included when it was tuned)."""
    return dict(study.best_trial.params)
