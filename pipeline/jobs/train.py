"""`targeting train`: tune (when tune.n_trials > 0), fit, calibrate, track and register.

Reads the FeatureSet written by `targeting features`, places the time windows (the last
`serve.score_last_days` of a simulated stream are held out for `run` to score), runs or continues
the Optuna study, fits the final model and hands everything to `train.tracking`: one parent MLflow
run holding the trials as nested runs, the config, data fingerprint, metrics and the model,
registered with the alias `challenger`.

On train.engine=dask without tuning or resampling (`workers_read_training`) the job never holds the
whole FeatureSet: the workers read the training and validation windows from the file, the job
reads the lodging times (to place the windows), the rows lodged from the validation window on and
the hits, and fingerprints the file a batch at a time.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from pipeline.config import Config
from pipeline.features.featureset import META_COLUMNS, FeatureSet
from pipeline.jobs import JobResult
from pipeline.train import tracking
from pipeline.train.fit import FILE_IMBALANCE, fit
from pipeline.train.split import Windows, make_windows
from pipeline.train.tune import best_params, finished_trials, run_study

SIGNATURE_ROWS = 100


def _check_written(config: Config) -> None:
    """A clear error when the features job has not run."""
    for path in (config.paths.features, config.paths.manifest):
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run `targeting features` first")


def read_feature_set(config: Config) -> FeatureSet:
    """The FeatureSet of this config, or a clear error when the features job has not run."""
    _check_written(config)
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
    around_training: Windows | None = None,
) -> JobResult:
    """Tune, fit, log and register on a FeatureSet in memory (the body of `train`); ``source``,
    the Parquet file `fs` was read from, is where dask workers read the final fit's windows.

    Given ``around_training`` (the windows of the whole file), `fs` is what
    `read_around_training` read: the workers read the training window, the data fingerprint is
    taken over the file.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if around_training is not None and (source is None or config.tune.n_trials > 0):
        raise ValueError("a feature set read around the training window needs its file, no tuning")
    windows = around_training or windows_of(config, fs)
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
        fingerprint = (
            file_fingerprint(config)
            if around_training is not None
            else tracking.data_fingerprint([fs.X, fs.meta()])
        )
        info = tracking.log_training(config, result, fs.manifest, fingerprint, study, sample)
    last = tracking.write_last_run(config, info)
    test = result.log["metrics"].get("test", {})
    ui = tracking.ui_command(config)
    lines = [
        "windows: " + ", ".join(str(w) for w in windows.ordered()),
        f"best iteration {result.log['best_iteration']}, imbalance {result.log['imbalance']}, "
        f"boosted on {config.train.engine} from {result.log['boosted_from']}, "
        f"revenue model: {result.log['revenue_model']}",
        "test, inspected declarations ranked by margin: "
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


def workers_read_training(config: Config) -> bool:
    """Whether the final fit's training window need not be in memory: dask workers read it from
    the feature-set file (no tuning, which runs in memory, and no resampling treatment)."""
    imbalance = config.train.params.get("imbalance", config.train.imbalance)
    return (
        config.train.engine == "dask" and config.tune.n_trials == 0 and imbalance in FILE_IMBALANCE
    )


def read_around_training(config: Config) -> tuple[FeatureSet, Windows]:
    """What the train job holds when the workers read the training window: every declaration
    lodged from the validation window on and every hit (for the revenue model), with the windows
    placed on the lodging times of the whole file (the only column read whole)."""
    _check_written(config)
    path = config.paths.features
    lodged = pd.read_parquet(path, columns=["lodged_at"])["lodged_at"]
    windows = make_windows(lodged, config.split, holdout_days(config))
    del lodged
    frame = pd.read_parquet(
        path, filters=[[("lodged_at", ">=", windows.valid.start)], [("y", "==", 1.0)]]
    )
    manifest = pd.read_csv(config.paths.manifest)
    fs = FeatureSet(
        X=frame[list(manifest["name"])],
        manifest=manifest,
        **{name: frame[name] for name in META_COLUMNS},
    )
    return fs, windows


def file_fingerprint(config: Config, batch_rows: int = 200_000) -> str:
    """`tracking.data_fingerprint([X, meta])` of the feature-set file, read a batch at a time."""
    import pyarrow.parquet as pq

    manifest = pd.read_csv(config.paths.manifest)
    digest = hashlib.sha256()
    for columns in (list(manifest["name"]), list(META_COLUMNS)):
        first, offset = True, 0
        # A loop over batches (a handful), not over declarations.
        for batch in pq.ParquetFile(config.paths.features).iter_batches(
            batch_rows, columns=columns
        ):
            part = batch.to_pandas()
            part.index = pd.RangeIndex(offset, offset + len(part))
            offset += len(part)
            if first:
                dtypes = [[str(c), str(t)] for c, t in part.dtypes.items()]
                digest.update(json.dumps(dtypes).encode())
                first = False
            digest.update(pd.util.hash_pandas_object(part, index=True).to_numpy().tobytes())
    return digest.hexdigest()


def train(config: Config) -> JobResult:
    """Fit the model of a config (tuning first when tune.n_trials > 0) and register it; on
    train.engine=dask the workers read the final fit's training windows from the feature file,
    and the job reads only the rows around them when it can (`workers_read_training`)."""
    source = config.paths.features
    if workers_read_training(config):
        fs, windows = read_around_training(config)
        return train_feature_set(config, fs, source=source, around_training=windows)
    return train_feature_set(config, read_feature_set(config), source=source)
