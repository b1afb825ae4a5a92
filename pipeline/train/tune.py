"""The Optuna study over XGBoost parameters, averaged over prequential folds.

Seeded TPE, whose random first trials draw each trial's point from a seed of its own (so that
parallel workers run the trials one process would); the number of trees by early stopping on a
fixed number of stalled rounds (`train.early_stopping_rounds`); pruning on the latest fold's
validation curve with Optuna's XGBoost callback (passed to `xgboost.train`, the native API),
reported every `PRUNE_EVERY` rounds. Trials run in parallel worker processes when the threads
allow (`tune.workers`, default one per 2 threads of `compute.threads`), sharing the study
through its storage: a journal file by default (`optuna.journal`, Optuna's JournalStorage), a
SQLite file (one worker only) or any RDB URL. A study is named by a digest of what it tunes
(`study_key`: features, windows, search space, objective): a changed config starts a new study,
and re-running the same config continues it, `tune.n_trials` counting every finished trial.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
import xgboost as xgb
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from optuna_integration import XGBoostPruningCallback
from threadpoolctl import threadpool_limits

from pipeline.compute import cap_threads
from pipeline.config import Config, SplitConfig, TrainConfig, TuneConfig
from pipeline.features.featureset import FeatureSet
from pipeline.plan import Windows
from pipeline.timeaxis import Window
from pipeline.train.engine import (
    CATEGORY_ORDER,
    CATEGORY_ORDERS,
    EVAL_METRIC,
    Rounds,
    category_order,
    dmatrix,
    margin,
    split_params,
    train_booster,
)
from pipeline.train.objectives import objective_value
from pipeline.train.rebalance import IMBALANCE_METHODS, rebalance
from pipeline.train.revenue import has_revenue
from pipeline.train.rows import (
    LevelRule,
    WindowRows,
    frequent_levels,
    window_rows,
    with_levels,
)
from pipeline.train.split import rolling_folds, rows_in

logger = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
TAKEN = (*FINISHED, TrialState.RUNNING)  # what a worker counts before it starts another trial
HEARTBEAT_S = 60  # RDB servers: a RUNNING trial without a heartbeat for 5 of these is stale
START_TIMEOUT_S = 300.0  # longest wait of a parallel worker for the others to be ready


# Bump when `search_space` changes: a study of another space must not be continued.
SEARCH_SPACE_VERSION = 3  # 3: the conventional parameters are the first trial


def study_key(config: Config, features: list[str], windows: Windows) -> str:
    """Digest of what a study tunes: the features, the windows and folds, the search space, the
    objective and the fixed training settings. A changed config starts a new study; a rerun of
    the same one continues it."""
    what = {
        "features": features,
        "windows": windows.as_dict(),
        "folds": config.split.folds,
        "search_space": SEARCH_SPACE_VERSION,
        "tune_imbalance": config.tune.tune_imbalance,
        "objective": [config.tune.objective, config.tune.at_rate],
        "train": config.train.model_dump(
            mode="json",
            include={"params", "num_boost_round", "early_stopping_rounds", "imbalance"},
        ),
        "seed": config.seed,
    }
    if config.tune.tune_category_order or config.train.category_order != "native":
        # Only where the order is not XGBoost's own: the keys of existing studies stay.
        train = config.train
        what["category_order"] = [
            config.tune.tune_category_order,
            train.category_order,
            train.category_prior,
        ]
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:12]


def study_name(tune: TuneConfig, experiment: str, key: str | None = None) -> str:
    """The study's name: `tune.study_name`, else `<experiment name>-<objective>-<study_key>`."""
    if tune.study_name:
        return tune.study_name
    return "-".join(part for part in (experiment, tune.objective, key) if part)


# Threads each default worker boosts on. On 2 loaded cores (bench/tune.py, KCS folds, the same 8
# trials), two 1-thread workers ran 0.98x the trials per minute of one 2-thread process at a load
# of 3 and 0.71x at a load of 12: the second process's start (imports, its own fold matrices)
# costs more than XGBoost's threads lose by waiting for each other, so parallel trials are the
# default only where the threads allow workers of 2 threads each.
THREADS_PER_WORKER = 2


def storage_url(config: Config) -> str:
    """Where the study lives: `tune.storage`, else the journal file at `paths.study`."""
    if config.tune.storage:
        return config.tune.storage
    return str(config.paths.study)


def make_storage(url: str) -> BaseStorage:
    """The Optuna storage object at ``url`` (`storage_url`; the folder of a file storage is
    created here)."""
    if url.endswith(".journal"):
        path = url.removeprefix("file://")
        from pathlib import Path

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    if url.startswith("sqlite:///"):
        from pathlib import Path

        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("sqlite"):
        return RDBStorage(url, heartbeat_interval=None)
    return RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=5 * HEARTBEAT_S)


def fail_abandoned_trials(url: str, study: optuna.Study) -> list[int]:
    """Mark FAIL the trials a stopped process left RUNNING, say so, and return their numbers.

    A file study (SQLite, journal) is tuned from one machine, and this runs before the
    command's own workers start: every RUNNING trial is abandoned (do not start two `tune`
    commands on one file study at once). An RDB server's trials carry heartbeats: only those
    silent for the grace period are failed (Optuna's `fail_stale_trials`). ``url``: the study's
    storage (`storage_url`).
    """
    if not (url.startswith("sqlite") or url.endswith(".journal")):
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        optuna.storages.fail_stale_trials(study)
        after = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        numbers = sorted(t.number for t in after if t.number not in before)
    else:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        storage = study._storage
        for trial in running:
            storage.set_trial_system_attr(
                trial._trial_id, "fail_reason", "left RUNNING by a process that stopped"
            )
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        numbers = [t.number for t in running]
    if numbers:
        logger.warning(
            "study %s: trial(s) %s were left RUNNING by a process that stopped; marked FAIL "
            "(they do not count towards tune.n_trials)",
            study.study_name,
            ", ".join(map(str, numbers)),
        )
    return numbers


def tuning_workers(config: Config, trials: int, workers: int | None = None) -> int:
    """Worker processes for ``trials`` more trials: ``workers``, else `tune.workers`, else one
    per `THREADS_PER_WORKER` threads of `compute.threads` (one on a SQLite storage); never more
    than the trials."""
    chosen = workers or config.tune.workers
    if chosen is None:  # unset: as many as the threads allow, where the storage can share
        shared = not storage_url(config).startswith("sqlite")
        chosen = config.compute.threads // THREADS_PER_WORKER if shared else 1
    return max(1, min(chosen, trials))


def check_parallel(url: str, workers: int) -> None:
    """Refuse parallel workers on a SQLite study at ``url`` (concurrent writers lock each other
    out)."""
    if workers > 1 and url.startswith("sqlite"):
        raise ValueError(
            f"tune.workers={workers} needs a storage that parallel processes can share: SQLite "
            f"({url}) fails with 'database is locked'. Set tune.storage to a path "
            "ending in .journal (one machine) or a PostgreSQL/MySQL URL (several machines)"
        )


def search_space(trial: optuna.Trial, tune: TuneConfig) -> dict[str, Any]:
    """XGBoost parameters of one trial (and the imbalance method with tune.tune_imbalance).

    Depth-wise or loss-guided growth (`max_leaves`), child weight, split loss, L1/L2, row and
    column subsampling, the categorical split settings, and the learning rate (the number of
    trees follows it by early stopping, up to train.num_boost_round).
    """
    params: dict[str, Any] = {
        "learning_rate": trial.suggest_float("learning_rate", 0.03, 0.3, log=True),
        "grow_policy": trial.suggest_categorical("grow_policy", ["depthwise", "lossguide"]),
    }
    if params["grow_policy"] == "lossguide":
        params["max_leaves"] = trial.suggest_int("max_leaves", 8, 256, log=True)
        params["max_depth"] = 0
    else:
        params["max_depth"] = trial.suggest_int("max_depth", 2, 10)
    params |= {
        "min_child_weight": trial.suggest_float("min_child_weight", 0.5, 50.0, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
        "reg_alpha": trial.suggest_float("reg_alpha", 1e-3, 10.0, log=True),
        "gamma": trial.suggest_float("gamma", 1e-4, 5.0, log=True),
        "max_cat_to_onehot": trial.suggest_int("max_cat_to_onehot", 1, 16),
        "max_cat_threshold": trial.suggest_int("max_cat_threshold", 8, 128, log=True),
    }
    if tune.tune_imbalance:
        params["imbalance"] = trial.suggest_categorical("imbalance", list(IMBALANCE_METHODS))
    if tune.tune_category_order:
        params[CATEGORY_ORDER] = trial.suggest_categorical(CATEGORY_ORDER, list(CATEGORY_ORDERS))
    return params


# XGBoost's own defaults, each inside the search space (L1, split loss: its floor), for the
# parameters `search_space` draws; `conventional_point` lays train.params over them.
XGBOOST_DEFAULTS: dict[str, Any] = {
    "learning_rate": 0.3,
    "grow_policy": "depthwise",
    "max_depth": 6,
    "min_child_weight": 1.0,
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "reg_lambda": 1.0,
    "reg_alpha": 1e-3,
    "gamma": 1e-4,
    "max_cat_to_onehot": 4,
    "max_cat_threshold": 64,
}
SPACE_BOUNDS: dict[str, tuple[float, float]] = {
    "learning_rate": (0.03, 0.3),
    "max_depth": (2, 10),
    "max_leaves": (8, 256),
    "min_child_weight": (0.5, 50.0),
    "subsample": (0.5, 1.0),
    "colsample_bytree": (0.4, 1.0),
    "reg_lambda": (1e-3, 30.0),
    "reg_alpha": (1e-3, 10.0),
    "gamma": (1e-4, 5.0),
    "max_cat_to_onehot": (1, 16),
    "max_cat_threshold": (8, 128),
}
CONVENTIONAL = "conventional"  # the user attribute that marks the first, enqueued trial
NOISE = "noise"  # its user attribute: the bootstrap spread of its validation value


def conventional_point(train: TrainConfig, tune: TuneConfig) -> dict[str, Any]:
    """The study's first trial: train.params (the conventional parameters a data scientist would
    start from) over XGBoost's defaults, each moved into the search space, so the chosen trial
    is never worse on validation than what tuning was meant to improve on."""
    point = dict(XGBOOST_DEFAULTS)
    for name, value in train.params.items():
        if name in point or name == "max_leaves":
            point[name] = value
    if point.get("grow_policy") == "lossguide":
        point.pop("max_depth", None)
        point.setdefault("max_leaves", 31)
    else:
        point.pop("max_leaves", None)
    for name, (low, high) in SPACE_BOUNDS.items():
        if name in point:
            kind = int if isinstance(high, int) and isinstance(low, int) else float
            point[name] = kind(min(max(point[name], low), high))
    if tune.tune_imbalance:
        point["imbalance"] = train.imbalance
    if tune.tune_category_order:
        point[CATEGORY_ORDER] = train.category_order
    return point


def other_order_point(train: TrainConfig, tune: TuneConfig) -> dict[str, Any] | None:
    """The conventional parameters with the other category order (trial 1 when
    tune.tune_category_order): the order is measured against the configured one on the same
    parameters before the search moves both; None when the order is not tuned."""
    if not tune.tune_category_order:
        return None
    point = conventional_point(train, tune)
    point[CATEGORY_ORDER] = next(o for o in CATEGORY_ORDERS if o != train.category_order)
    return point


def conventional_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The study's enqueued first trial of the conventional parameters, None in an older study."""
    trials = study.get_trials(deepcopy=False)
    return next((t for t in trials if t.user_attrs.get(CONVENTIONAL)), None)


def chosen_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The best trial, unless it beats the conventional first trial by no more than that
    trial's noise (the bootstrap spread of its validation value): then the conventional one.
    A study without a conventional trial (an older one) gives its best."""
    best = study.best_trial
    first = conventional_trial(study)
    if first is None or first.value is None or best.value is None:
        return best
    noise = float(first.user_attrs.get(NOISE, 0.0))
    return best if best.value - first.value > noise else first


def choice_line(study: optuna.Study, objective: str) -> str:
    """What the study chose, in words: the best trial against the conventional first one and
    its noise, and which was kept."""
    chosen, best = chosen_trial(study), study.best_trial
    first = conventional_trial(study)
    if first is None or first.value is None:
        return f"best {objective} {best.value:.4f} (trial {best.number})"
    noise = float(first.user_attrs.get(NOISE, 0.0))
    kept = (
        "the conventional parameters" if chosen.number == first.number else f"trial {best.number}"
    )
    return (
        f"conventional parameters {first.value:.4f} (noise {noise:.4f}), best trial "
        f"{best.number} {best.value:.4f}: kept {kept}"
    )


def memory_study(
    objective: Callable[[optuna.Trial], float],
    first: dict[str, Any],
    tune: TuneConfig,
    seed: int,
    name: str,
) -> optuna.Study:
    """A study of another learner on the model's budget and rule: `tune.n_trials` trials (within
    `tune.timeout_s`) of ``objective`` in memory, with the model's sampler (`TrialSeededTPE`,
    seeded by ``seed``), ``first`` (that learner's conventional parameters) enqueued as
    trial 0 and marked `CONVENTIONAL`, so that `chosen_trial` applies as it does to the model's
    study. No pruner: the objective is not the model's XGBoost curve. The evaluation's tuned
    reference learners are tuned here."""
    study = optuna.create_study(
        study_name=name,
        storage=optuna.storages.InMemoryStorage(),
        # the model's own sampler (`TrialSeededTPE`), so neither side's search is luckier by
        # its sampler's settings
        sampler=TrialSeededTPE(seed=seed, draws_from=seed),
        pruner=optuna.pruners.NopPruner(),
        direction="maximize",
    )
    study.enqueue_trial(first, user_attrs={CONVENTIONAL: True})
    study.optimize(objective, n_trials=tune.n_trials, timeout=tune.timeout_s)
    return study


def quantile_matrix(rows: WindowRows, max_bin: int, threads: int) -> xgb.QuantileDMatrix:
    """A training window's rows quantised once (into ``max_bin`` bins, on ``threads`` threads)
    for every trial that boosts on them.

    A plain DMatrix keeps the raw values and each trial's booster cuts them into histogram bins
    again; a QuantileDMatrix holds the bins (and a quarter of the memory). The trials' values are
    those of plain matrices (tests/train/test_tune_matrices.py).
    """
    return xgb.QuantileDMatrix(
        rows.X,
        label=rows.y,
        weight=rows.weight,
        enable_categorical=True,
        max_bin=max_bin,
        nthread=threads,
    )


def fold_rows(
    fs: FeatureSet, windows: Windows, split: SplitConfig, min_category_count: int
) -> list[tuple[Window, WindowRows, WindowRows]]:
    """(validation window, training rows, validation rows) of each rolling fold (`split.folds`),
    oldest first, category levels met `min_category_count` times in the fold's training rows
    kept, the others pooled (`frequent_levels`)."""
    valid_known_by = windows.labels_known_by(windows.valid)
    out = []
    hits = fs.y.to_numpy(dtype=float) == 1.0
    for train_window, valid_window in rolling_folds(fs.lodged_at, split, windows, hits):
        train = window_rows(fs, rows_in(fs, train_window, valid_window.start))
        valid = window_rows(fs, rows_in(fs, valid_window, valid_known_by))
        levels = frequent_levels(train.X, min_category_count)
        train, valid = with_levels(train, levels), with_levels(valid, levels)
        if train.y.sum() == 0 or valid.y.sum() == 0:
            raise ValueError(
                f"tuning fold {train_window} / {valid_window} has no hit in one of its "
                "windows: use fewer split.folds or longer windows"
            )
        out.append((valid_window, train, valid))
    return out


# The pruned fold's validation metric goes to the study, and the pruner is asked, every this
# many boosting rounds: each report is a write to the storage and each question a read of every
# trial, which cost more than the round itself (on 2 loaded cores: 78 ms a round on a SQLite file,
# 8 ms on a journal file, where a round of a KCS fold boosts in a few ms).
PRUNE_EVERY = 10


class ThinnedPruning(XGBoostPruningCallback):
    """Optuna's XGBoost pruning callback (`optuna_integration.XGBoostPruningCallback`) on every
    `every`-th round only: its report and its pruner's verdict, at the same steps in every trial,
    so the pruner compares like with like."""

    def __init__(self, trial: optuna.Trial, observation_key: str, every: int = PRUNE_EVERY) -> None:
        super().__init__(trial, observation_key)
        self.every = every

    def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, Any]) -> bool:
        if (epoch + 1) % self.every:
            return False
        return bool(super().after_iteration(model, epoch, evals_log))


STARTUP_TRIALS = 10  # TPE's random first trials (Optuna's default), before it models the history


class TrialSeededTPE(optuna.samplers.TPESampler):
    """Seeded TPE whose random first trials (the first `STARTUP_TRIALS` by number) each draw
    their point from a seed of their own, ``draws_from + number - 1`` (the enqueued conventional
    trial 0 draws nothing, so trial 1 draws from the config's seed), instead of from one stream
    shared by the trials one process runs: parallel workers then run the very trials a single
    process would, whichever worker takes which. Later trials are TPE's, modelled on the trials
    finished when they start (with parallel workers, on fewer of them: Optuna's constant liar)."""

    def __init__(self, seed: int, draws_from: int) -> None:
        super().__init__(seed=seed, n_startup_trials=STARTUP_TRIALS)
        self.draws_from = draws_from
        self._draws: dict[int, optuna.samplers.RandomSampler] = {}

    def sample_independent(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        param_name: str,
        param_distribution: optuna.distributions.BaseDistribution,
    ) -> Any:
        if trial.number >= STARTUP_TRIALS:
            return super().sample_independent(study, trial, param_name, param_distribution)
        if trial.number not in self._draws:
            seed = self.draws_from + trial.number - 1
            self._draws[trial.number] = optuna.samplers.RandomSampler(seed=seed)
        draws = self._draws[trial.number]
        return draws.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._draws.pop(trial.number, None)
        super().after_trial(study, trial, state, values)


class Objective:
    """Mean tuning objective over the rolling folds; matrices are built once per fold."""

    def __init__(self, fs: FeatureSet, windows: Windows, config: Config) -> None:
        if config.tune.objective == "revenue_at" and not has_revenue(fs):
            raise ValueError(
                "tune.objective=revenue_at needs revenue_recovered, and this feature set has no "
                "revenue for any hit (KCS has none): use average_precision or precision_at"
            )
        self.config = config
        # Latest fold first: the pruner watches the fold nearest to the final fit.
        self.folds = fold_rows(fs, windows, config.split, config.train.min_category_count)[::-1]
        self._sorted: dict[int, tuple[WindowRows, WindowRows]] = {}
        self._matrices: dict[tuple[int, str, str], tuple[xgb.QuantileDMatrix, dict[str, Any]]]
        self._matrices = {}
        self._valid: dict[tuple[int, str], xgb.DMatrix] = {}

    def fold(self, fold: int, order: str = "native") -> tuple[WindowRows, WindowRows]:
        """(training rows, validation rows) of a fold, its categories as `order` has them:
        XGBoost categories, or positions in the fold's training levels sorted by hit rate
        (the fit's own `rows.LevelRule`, shrunk by train.category_prior), built once."""
        _, train, valid = self.folds[fold]
        if order != "hit_rate":
            return train, valid
        if fold not in self._sorted:
            train_config = self.config.train
            rule = LevelRule(train_config.min_category_count, True, train_config.category_prior)
            levels, columns = rule.vocabulary(train)
            self._sorted[fold] = (
                with_levels(train, levels, columns),
                with_levels(valid, levels, columns),
            )
        return self._sorted[fold]

    def _train_matrix(
        self, fold: int, imbalance: str, order: str = "native"
    ) -> tuple[xgb.QuantileDMatrix, dict[str, Any]]:
        key = (fold, imbalance, order)
        if key not in self._matrices:
            rows, extra = rebalance(self.fold(fold, order)[0], imbalance, self.config.seed)
            max_bin = int(self.config.train.params.get("max_bin", 256))
            matrix = quantile_matrix(rows, max_bin, self.config.compute.threads)
            self._matrices[key] = (matrix, extra)
        return self._matrices[key]

    def _valid_matrix(self, fold: int, order: str = "native") -> xgb.DMatrix:
        """The fold's validation rows as a plain DMatrix, unweighted (whatever the imbalance
        treatment), built once: early stopping and the pruner predict it every round, and
        XGBoost predicts a QuantileDMatrix from its bins three times slower than raw values (on
        a KCS fold, 20 ms against 6 ms a round beside 50 ms of boosting), for the same curve."""
        if (fold, order) not in self._valid:
            self._valid[(fold, order)] = dmatrix(self.fold(fold, order)[1], weighted=False)
        return self._valid[(fold, order)]

    def __call__(self, trial: optuna.Trial) -> float:
        tune = self.config.tune
        drawn = search_space(trial, tune)
        params, imbalance = split_params(drawn, self.config)
        order = category_order(drawn, self.config)
        values, rounds = [], []
        scored: list[tuple[WindowRows, np.ndarray]] = []
        for fold in range(len(self.folds)):
            valid = self.fold(fold, order)[1]
            dtrain, extra = self._train_matrix(fold, imbalance, order)
            callbacks: list[xgb.callback.TrainingCallback] = []
            if tune.pruning and fold == 0:
                callbacks.append(ThinnedPruning(trial, f"valid-{EVAL_METRIC}"))
            booster, best = train_booster(
                dtrain,
                self._valid_matrix(fold, order),
                {**params, **extra},
                Rounds.of(self.config.train),
                callbacks,
            )
            score = 1.0 / (1.0 + np.exp(-margin(booster, valid.X)))
            scored.append((valid, score))
            values.append(
                objective_value(tune.objective, valid.y, score, valid.revenue, tune.at_rate)
            )
            rounds.append(best + 1)
        if trial.user_attrs.get(CONVENTIONAL):
            trial.set_user_attr(NOISE, objective_noise(scored, tune, self.config.seed))
        trial.set_user_attr("trees", rounds)
        # Which process ran it: with several workers (or machines) on one storage, the study
        # shows how the trials were shared.
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("fold_values", values)
        return float(np.mean(values))


NOISE_REPLICATES = 50  # bootstrap replicates of the conventional trial's validation value


def objective_noise(
    scored: list[tuple[WindowRows, np.ndarray]],
    tune: TuneConfig,
    seed: int,
    replicates: int = NOISE_REPLICATES,
) -> float:
    """The standard deviation of the mean validation value over bootstrap resamples of each
    fold's validation rows (seeded): how far the objective moves for one parameter set by the
    luck of which declarations the folds hold."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(replicates):
        values = []
        for valid, score in scored:
            idx = rng.integers(0, len(valid.y), len(valid.y))
            values.append(
                objective_value(
                    tune.objective, valid.y[idx], score[idx], valid.revenue[idx], tune.at_rate
                )
            )
        draws.append(float(np.mean(values)))
    return float(np.std(draws, ddof=1)) if len(draws) > 1 else 0.0


def load_study(config: Config, key: str | None = None, seed_offset: int = 0) -> optuna.Study:
    """Create or load the study named by `study_name` (seeded TPE; median pruner
    when pruning is on)."""
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=10)
        if config.tune.pruning
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        study_name=study_name(config.tune, config.name, key),
        storage=make_storage(storage_url(config)),
        pruner=pruner,
        direction="maximize",
        load_if_exists=True,
    )
    # TPE seeded by the number of trials already done (and the worker, `seed_offset`): a continued
    # study draws new points instead of replaying the first ones, and stays reproducible. The
    # random first trials draw by their own number (`TrialSeededTPE`), whoever runs them.
    done = len(study.get_trials(deepcopy=False))
    study.sampler = TrialSeededTPE(seed=config.seed + seed_offset + done, draws_from=config.seed)
    return study


def latest_study(config: Config) -> optuna.Study:
    """The most recently started study of this config in its storage (the one `targeting tune`
    or `train` last ran), whatever its key."""
    storage = make_storage(storage_url(config))
    prefix = study_name(config.tune, config.name)
    studies = [
        summary
        for summary in optuna.get_all_study_summaries(storage, include_best_trial=False)
        if summary.study_name == prefix or summary.study_name.startswith(f"{prefix}-")
    ]
    if not studies:
        raise LookupError(
            f"no study named {prefix}* in {storage_url(config)}: run `targeting tune` or "
            "`targeting train` with tune.n_trials > 0 first"
        )
    latest = max(studies, key=lambda s: (s.datetime_start is not None, s.datetime_start))
    return optuna.load_study(study_name=latest.study_name, storage=storage)


def finished_trials(study: optuna.Study) -> int:
    """Trials that completed or were pruned (stale RUNNING or FAILED trials do not count)."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def _optimize(
    study: optuna.Study,
    objective: Objective,
    tune: TuneConfig,
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] | None = None,
    progress: bool = False,
) -> None:
    """Trials until the study's finished and running trials make n_trials: a worker that
    counted only the finished ones would start a trial too many while another's last one runs."""
    missing = tune.n_trials - finished_trials(study)
    if missing <= 0:
        return
    study.optimize(
        objective,
        n_trials=missing,
        timeout=tune.timeout_s,
        callbacks=[optuna.study.MaxTrialsCallback(tune.n_trials, states=TAKEN)] + (callbacks or []),
        show_progress_bar=progress,
    )


def _worker(
    fs: FeatureSet, windows: Windows, config: Config, index: int, start: Any = None
) -> None:
    """A spawned worker process of a parallel study: trials until the study holds n_trials.

    ``start`` (a multiprocessing barrier) holds every worker, this process's first one included,
    until all have built their matrices: otherwise, on a loaded machine, the first worker runs
    a short study alone while the others still import. Which worker runs which trial changes no
    trial (`TrialSeededTPE`); a worker that died first costs the others the barrier's timeout.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cap_threads(config)  # this process's share of compute.threads
    study = load_study(config, study_key(config, list(fs.X.columns), windows), 1000 * index)
    objective = Objective(fs, windows, config)
    _wait(start)
    _optimize(study, objective, config.tune)


def _wait(start: Any) -> None:
    """Wait at the workers' start barrier, if any (a broken or timed-out one lets all go)."""
    if start is not None:
        with contextlib.suppress(threading.BrokenBarrierError):
            start.wait(timeout=START_TIMEOUT_S)


def run_study(
    fs: FeatureSet,
    windows: Windows,
    config: Config,
    workers: int | None = None,
    progress: bool = False,
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] | None = None,
) -> optuna.Study:
    """Run (or continue) the study until it holds `tune.n_trials` finished trials.

    With more than one worker (`tuning_workers`: ``workers``, else `tune.workers`, else one per
    2 threads of `compute.threads`), that many processes share the study through its storage; each
    gets `compute.threads // workers` threads. A worker that finishes its trial while another
    worker's last one runs stops, so the study holds n_trials trials (one more or so only when
    two workers finish at the very same moment).
    """
    key = study_key(config, list(fs.X.columns), windows)
    study = load_study(config, key)
    fail_abandoned_trials(storage_url(config), study)
    if not study.get_trials(deepcopy=False):
        first = conventional_point(config.train, config.tune)
        study.enqueue_trial(first, user_attrs={CONVENTIONAL: True})
        other = other_order_point(config.train, config.tune)
        if other is not None:
            study.enqueue_trial(other)
    missing = config.tune.n_trials - finished_trials(study)
    if missing <= 0:
        return study
    workers = tuning_workers(config, missing, workers)
    check_parallel(storage_url(config), workers)
    if workers <= 1:
        _optimize(study, Objective(fs, windows, config), config.tune, callbacks, progress)
        return study
    share = config.model_copy(deep=True)
    share.compute.threads = max(1, config.compute.threads // workers)
    # This process is the first worker, on its share of the threads for the study's time only;
    # it builds its matrices while the spawned ones import, then all start together.
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(workers)
    processes = [
        context.Process(target=_worker, args=(fs, windows, share, index, start), daemon=False)
        for index in range(1, workers)
    ]
    for process in processes:
        process.start()
    try:
        threads = share.compute.threads
        with xgb.config_context(nthread=threads), threadpool_limits(limits=threads):
            objective = Objective(fs, windows, share)
            _wait(start)
            _optimize(study, objective, share.tune, callbacks, progress)
    finally:
        for process in processes:
            process.join()
    failed = [p.exitcode for p in processes if p.exitcode]
    if failed:
        raise RuntimeError(f"{len(failed)} tuning worker(s) failed (exit codes {failed})")
    return load_study(config, key)


def best_params(study: optuna.Study) -> dict[str, Any]:
    """The chosen trial's parameters (`chosen_trial`: the best, unless within the noise of the
    conventional first trial; imbalance included when it was tuned); loss-guided growth comes
    with max_depth 0 (no depth limit), as the trial ran it."""
    params = dict(chosen_trial(study).params)
    if params.get("grow_policy") == "lossguide":
        params["max_depth"] = 0
    return params
