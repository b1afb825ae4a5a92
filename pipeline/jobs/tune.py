"""`targeting tune`: run or continue the Optuna study, optionally with parallel workers."""

from __future__ import annotations

import optuna

from pipeline.config import Config
from pipeline.jobs import JobResult, catalog
from pipeline.jobs.train import trial_progress, windows_of
from pipeline.train.tune import best_params, choice_line, finished_trials, run_study, storage_url


def tune(config: Config, workers: int | None = None) -> JobResult:
    """Run the study until it holds `tune.n_trials` finished trials (it continues if it exists)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fs = catalog.feature_set(config)
    reports = [trial_progress(config.tune.n_trials)]
    study = run_study(
        fs, windows_of(config, fs), config, workers=workers, progress=True, callbacks=reports
    )
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    lines = [
        f"study {study.study_name} at {storage_url(config)}: {finished_trials(study)} trials "
        f"({pruned} pruned)",
        f"{config.tune.objective}: {choice_line(study, config.tune.objective)}",
        f"kept: {best_params(study)}",
        "`targeting train` fits the kept parameters and logs the trials to MLflow",
    ]
    return JobResult(
        stage="tune",
        figures={
            "best_value": study.best_value,
            "best_params": study.best_params,
            "kept_params": best_params(study),
            "trials": finished_trials(study),
            "pruned": pruned,
        },
        lines=lines,
    )
