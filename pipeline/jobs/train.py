"""`targeting train`: tune (when tune.n_trials > 0), fit, calibrate, track and register.

Reads the FeatureSet written by `targeting features`, places the time windows (the last
`serve.score_last_days` of a simulated stream are held out for `run` to score), runs or continues
the Optuna study, fits the final model and hands everything to `train.tracking`: one parent MLflow
run holding the trials as nested runs, the config, data fingerprint, metrics and the model,
registered with the alias `challenger`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from pipeline.config import Config
from pipeline.features.featureset import FeatureSet
from pipeline.jobs import JobResult
from pipeline.train import tracking
from pipeline.train.fit import fit
from pipeline.train.split import Windows, make_windows
from pipeline.train.tune import best_params, finished_trials, run_study

SIGNATURE_ROWS = 100


def read_feature_set(config: Config) -> FeatureSet:
    """The FeatureSet of this config, or a clear error when the features job has not run."""
    for path in (config.paths.features, config.paths.manifest):
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run `targeting features` first")
    return FeatureSet.read_parquet(config.paths.features, config.paths.manifest)


def holdout_days(config: Config) -> int:
    """Days at the end of the data kept away from training (the declarations `run` scores)."""
    return config.serve.score_last_days if config.data.source == "simulate" else 0


def windows_of(config: Config, fs: FeatureSet) -> Windows:
    """The final fit's windows for this config and feature set."""
    return make_windows(fs.lodged_at, config.split, holdout_days(config))


def train_feature_set(
    config: Config,
    fs: FeatureSet,
    progress: bool = True,
    workers: int | None = None,
    source: Path | None = None,
) -> JobResult:
    """Tune, fit, log and register on a FeatureSet in memory (the body of `train`); ``source``,
    the Parquet file `fs` was read from, is where dask workers read the final fit's windows."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    windows = windows_of(config, fs)
    tracking.configure(config)
    study: optuna.Study | None = None
    with tracking.start_parent_run(config, run_name=f"{config.name}-train") as run_id:
        if config.tune.n_trials > 0:
            study = run_study(fs, windows, config, workers=workers, progress=progress)
            # The parent run holds the whole study, trials of earlier invocations included.
            tracking.log_trials(run_id, study.trials)
            params: dict[str, Any] = {**config.train.params, **best_params(study)}
        else:
            params = dict(config.train.params)
        result = fit(fs, windows, params, config, source=source)
        sample = fs.X.loc[windows.train.contains(fs.lodged_at)].head(SIGNATURE_ROWS)
        fingerprint = tracking.data_fingerprint([fs.X, fs.meta()])
        info = tracking.log_training(config, result, fs.manifest, fingerprint, study, sample)
    last = tracking.write_last_run(config, info)
    test = result.log["metrics"].get("test", {})
    ui = tracking.ui_command(config)
    lines = [
        "windows: " + ", ".join(str(w) for w in windows.ordered()),
        f"best iteration {result.log['best_iteration']}, imbalance {result.log['imbalance']}, "
        f"boosted on {config.train.engine} from {result.log['boosted_from']}, "
        f"revenue model: {result.log['revenue_model']}",
        "test: "
        + ", ".join(
            f"{k} {v:.3f}"
            for k, v in test.items()
            if k.startswith(("average", "precision_at", "brier"))
        ),
        f"MLflow run {info.run_id}, registered {config.tracking.registered_model} v{info.version} "
        f"(alias {tracking.CHALLENGER})",
        f"open it with: {ui}",
    ]
    if study is not None:
        lines.insert(
            0,
            f"study {study.study_name}: {finished_trials(study)} trials, best "
            f"{config.tune.objective} {study.best_value:.4f}",
        )
    return JobResult(
        stage="train",
        outputs={"last_run": last},
        figures={
            "run_id": info.run_id,
            "model_uri": info.model_uri,
            "version": info.version,
            "ui_command": ui,
            "best_iteration": result.log["best_iteration"],
            "windows": [str(w) for w in windows.ordered()],
            "test": test,
            "boosted_from": result.log["boosted_from"],
            "timings": result.log["timings"],
        },
        lines=lines,
    )


def train(config: Config) -> JobResult:
    """Fit the model of a config (tuning first when tune.n_trials > 0) and register it; on
    train.engine=dask the workers read the final fit's training windows from the feature file."""
    fs = read_feature_set(config)
    return train_feature_set(config, fs, source=config.paths.features)
