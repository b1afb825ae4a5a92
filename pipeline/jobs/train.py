"""`targeting train`: tune (when tune.n_trials > 0), fit, calibrate, track and register.

Reads the FeatureSet written by `targeting features`, places the time windows (the last
`serve.score_last_days` of a simulated stream are held out for `run` to score), runs or continues
the Optuna study, fits the final model and hands everything to `tracking`: one parent MLflow
run holding the trials as nested runs, the config, data fingerprint, metrics and the model,
registered with the alias `challenger`.

On train.engine=dask without tuning or resampling (`workers_read_training`) the job never holds the
whole FeatureSet: the workers read the training and validation windows from the file, the job
reads the lodging times (to place the windows), the rows lodged from the validation window on and
the hits, and fingerprints the file a batch at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from pipeline import tracking
from pipeline.config import Config
from pipeline.features import featureset
from pipeline.features.featureset import META_COLUMNS, FeatureSet, recorded_fingerprint
from pipeline.jobs import JobResult, catalog, step
from pipeline.jobs.feature_file import FeatureFile
from pipeline.plan import RunPlan, Windows, build_plan, held_out_days, make_windows, plan_around
from pipeline.serve.model import FamiliesKept
from pipeline.train.engine import FILE_IMBALANCE
from pipeline.train.fit import FitResult, RefitResult, fit, refit
from pipeline.train.select import FamilySelection, select_families
from pipeline.train.tune import best_params, choice_line, finished_trials, run_study

SIGNATURE_ROWS = 100


def trial_progress(total: int) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    """An Optuna callback that reports each finished trial as a `step` (a log line without a
    terminal): trial k of n, how it ended, and the best value so far."""

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        try:
            best = f", best {study.best_value:.4f}"
        except ValueError:  # no trial completed yet (all pruned or failed)
            best = ""
        done = finished_trials(study)
        step(f"tuning: trial {done} of {total} {trial.state.name.lower()}{best}")

    return report


def _pruned(study: optuna.Study) -> int:
    """Trials the pruner stopped early (counted among the finished ones, but never fitted)."""
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,)))


STUDY_RUNS_KEPT = 50  # the study's user attribute names at most this many runs, newest last


def link_study(study: optuna.Study, run_id: str, config: Config) -> None:
    """Name on the Optuna study the MLflow runs it tuned (user attributes `mlflow_run_ids`,
    newest last, `config`, `registered_model`): a study found in optuna.db or the dashboard
    leads to its runs, as the run's `study_name` tag leads back."""
    runs = [str(r) for r in study.user_attrs.get("mlflow_run_ids", []) if str(r) != run_id]
    study.set_user_attr("mlflow_run_ids", [*runs, run_id][-STUDY_RUNS_KEPT:])
    study.set_user_attr("config", config.name)
    study.set_user_attr("registered_model", config.tracking.registered_model)


def windows_of(config: Config, fs: FeatureSet) -> Windows:
    """The final fit's windows for this config and feature set (the run plan's `evaluated`)."""
    return make_windows(fs.lodged_at, config.split, held_out_days(config.data, config.serve))


def train_feature_set(
    config: Config,
    fs: FeatureSet,
    progress: bool = True,
    workers: int | None = None,
    source: Path | None = None,
    around_training: RunPlan | None = None,
) -> JobResult:
    """Tune, fit, log and register on a FeatureSet in memory (the body of `train`); ``source``,
    the Parquet file `fs` was read from, is where dask workers read the final fit's windows.

    The run plan (`pipeline.plan.build_plan`) is laid here, once, and recorded with both models.
    Given ``around_training`` (the plan laid on the whole file), `fs` is what
    `read_around_training` read: the workers read the training window, the data fingerprint is
    taken over the file.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if around_training is not None and (source is None or config.tune.n_trials > 0):
        raise ValueError("a feature set read around the training window needs its file, no tuning")
    plan = around_training or build_plan(config, fs)
    windows = plan.evaluated
    tracking.configure(config)
    study: optuna.Study | None = None
    notes: list[str] = []
    with tracking.start_parent_run(config, run_name=tracking.run_name(config, "train")) as run_id:
        selection = None
        model_fs = fs
        if config.train.select_families and around_training is None:
            step("choosing the feature families on the tuning folds")
            selection = select_families(fs, windows, dict(config.train.params), config)
            model_fs = fs.select(selection.columns)
        elif config.train.select_families:
            notes.append("feature families not chosen: the workers read the training window")
        params = dict(config.train.params)
        if config.tune.n_trials > 0:
            step(f"tuning: {config.tune.n_trials} Optuna trials")
            reports = [trial_progress(config.tune.n_trials)]
            study = run_study(
                model_fs, windows, config, workers=workers, progress=progress, callbacks=reports
            )
            # The parent run holds the whole study, trials of earlier invocations included.
            tracking.log_trials(run_id, study.trials)
            link_study(study, run_id, config)
            params = {**config.train.params, **best_params(study)}
        step("fitting and calibrating the model")
        feature_file = FeatureFile(source) if source is not None else None
        result = fit(model_fs, windows, params, config, feature_file=feature_file)
        if selection is not None:
            families = FamiliesKept.from_dict(selection.as_dict())
            result.model.info = replace(result.model.info, families=families)
            result.log = replace(result.log, families=families)
        deployed = refit(model_fs, plan.refit, result, config) if plan.refit else None
        if deployed is None and config.train.refit:
            notes.append("no refit: the workers read the training window (train.engine=dask)")
        recorded(result, deployed, plan)
        # the first rows of the training window, without copying the whole window first
        first = np.flatnonzero(windows.train.contains(fs.lodged_at))[:SIGNATURE_ROWS]
        sample = fs.X.iloc[first]
        fingerprint = _fingerprint(config, fs, source, around_training is not None)
        step("logging the run to MLflow")
        optional = list(model_fs.X.columns[model_fs.X.isna().any().to_numpy()])
        trained_on = tracking.TrainedOn(fs.manifest, fingerprint, sample, optional)
        info = tracking.log_training(config, result, trained_on, study, deployed)
    last = tracking.write_last_run(config, info)
    ui = tracking.ui_command(config)
    lines = [
        *_summary_lines(config, windows, result, selection, study),
        *notes,
        *_refit_lines(deployed),
        f"MLflow run {info.run_id} (registered as {config.tracking.registered_model} "
        f"@{tracking.CHALLENGER} by `targeting export`, with its thresholds)",
        f"open it with: {ui}",
    ]
    figures = {
        "run_id": info.run_id,
        "model_uri": info.model_uri,
        "ui_command": ui,
        **_fit_figures(windows, result, selection, deployed),
    }
    return JobResult(stage="train", outputs={"last_run": last}, figures=figures, lines=lines)


def recorded(result: FitResult, deployed: RefitResult | None, plan: RunPlan) -> None:
    """Record the run plan with both models (its ranking resolved against each) and the refit
    deployed in the evaluated model's place."""
    evaluated = result.model
    has_revenue = evaluated.revenue_booster is not None
    evaluated.info = replace(evaluated.info, plan=plan.for_model(has_revenue))
    if deployed is not None:
        model = deployed.model
        model.info = replace(model.info, plan=plan.for_model(model.revenue_booster is not None))
        own = model.info
        evaluated.info = replace(evaluated.info, refit=own.refit, refit_trees=own.refit_trees)


def _fingerprint(config: Config, fs: FeatureSet, source: Path | None, around: bool) -> str:
    """The data fingerprint: taken once by the features job; a feature set not read from the
    file is hashed here (over the file when only the rows around training are held)."""
    recorded = recorded_fingerprint(source, config.paths.manifest) if source is not None else None
    return recorded or (
        file_fingerprint(config) if around else tracking.data_fingerprint([fs.X, fs.meta()])
    )


def _summary_lines(
    config: Config,
    windows: Windows,
    result: FitResult,
    selection: FamilySelection | None,
    study: optuna.Study | None,
) -> list[str]:
    """What the job prints of the study, the families and the fit."""
    log = result.log
    test = log.metrics.get("test", {})
    lines = [
        "windows: " + ", ".join(str(w) for w in windows.ordered()),
        f"best iteration {log.best_iteration}, imbalance {log.imbalance}, "
        f"boosted on {config.train.engine} from {log.boosted_from}, "
        f"revenue model: {log.revenue_model}",
        "test, inspected declarations ranked by margin: "
        + ", ".join(
            f"{k} {v:.3f}"
            for k, v in test.items()
            if k.startswith(("average", "precision_at", "brier"))
        ),
        *log.warnings,
    ]
    if selection is not None:
        dropped = [f for f in selection.effects["family"] if f not in selection.kept]
        lines.insert(
            1,
            f"feature families kept: {', '.join(selection.kept)}"
            + (f"; dropped on validation: {', '.join(dropped)}" if dropped else "")
            + f" (validation AP {selection.ap_chosen:.3f}, all families {selection.ap_all:.3f})",
        )
    if study is not None:
        lines.insert(
            0,
            f"study {study.study_name}: {finished_trials(study)} trials "
            f"({_pruned(study)} of them pruned); {config.tune.objective}: "
            + choice_line(study, config.tune.objective),
        )
    return lines


def _refit_lines(deployed: RefitResult | None) -> list[str]:
    """What the job prints of the deployed refit."""
    if deployed is None:
        return []
    refitted = deployed.log
    calibration = refitted.windows.calibration
    return [
        f"deployed: refit on {refitted.rows['train'].labelled:,} labels known by "
        f"{refitted.windows.labels_known_by.isoformat()[:10]} ({refitted.trees} trees), "
        f"calibrated on {calibration.start.isoformat()[:10]}.."
        f"{calibration.end.isoformat()[:10]}"
    ]


def _fit_figures(
    windows: Windows,
    result: FitResult,
    selection: FamilySelection | None,
    deployed: RefitResult | None,
) -> dict[str, object]:
    """The job's figures of the fit, the families and the refit."""
    log = result.log
    return {
        "best_iteration": log.best_iteration,
        "windows": [str(w) for w in windows.ordered()],
        "test": log.metrics.get("test", {}),
        "boosted_from": log.boosted_from,
        "timings": log.timings.to_dict(),
        "families": selection.as_dict() if selection is not None else None,
        "refit": deployed.log.to_dict() if deployed is not None else None,
        "warnings": log.warnings,
    }


def workers_read_training(config: Config) -> bool:
    """Whether the final fit's training window need not be in memory: dask workers read it from
    the feature-set file (no tuning, which runs in memory, and no resampling treatment)."""
    imbalance = config.train.params.get("imbalance", config.train.imbalance)
    return (
        config.train.engine == "dask" and config.tune.n_trials == 0 and imbalance in FILE_IMBALANCE
    )


def read_around_training(config: Config) -> tuple[FeatureSet, RunPlan]:
    """What the train job holds when the workers read the training window: every declaration
    lodged from the validation window on and every hit (for the revenue model), with the run
    plan laid on the lodging times of the whole file (the only column read whole; no refit)."""
    catalog.require_features(config)
    path = config.paths.features
    lodged = pd.read_parquet(path, columns=["lodged_at"])["lodged_at"]
    windows = make_windows(lodged, config.split, held_out_days(config.data, config.serve))
    plan = plan_around(config, lodged, windows, None)
    del lodged
    frame = pd.read_parquet(
        path, filters=[[("lodged_at", ">=", windows.valid.start)], [("y", "==", 1.0)]]
    )
    manifest = pd.read_csv(config.paths.manifest)
    fs = FeatureSet(
        X=frame[list(manifest["name"])],
        manifest=manifest,
        **{name: frame[name] for name in META_COLUMNS if name in frame.columns},
    )
    return fs, plan


def file_fingerprint(config: Config, batch_rows: int = 200_000) -> str:
    """`tracking.data_fingerprint([X, meta])` of the feature-set file: the one the features job
    recorded when the file is unchanged since, else read a batch at a time."""
    paths = config.paths
    recorded = recorded_fingerprint(paths.features, paths.manifest)
    if recorded is not None:
        return recorded
    return featureset.file_fingerprint(paths.features, paths.manifest, batch_rows)


def train(config: Config) -> JobResult:
    """Fit the model of a config (tuning first when tune.n_trials > 0) and register it; on
    train.engine=dask the workers read the final fit's training windows from the feature file,
    and the job reads only the rows around them when it can (`workers_read_training`)."""
    source = config.paths.features
    if workers_read_training(config):
        fs, plan = read_around_training(config)
        return train_feature_set(config, fs, source=source, around_training=plan)
    return train_feature_set(config, catalog.feature_set(config), source=source)
