"""The MLflow adapter: the only module that writes to MLflow (a test holds it to that).

Every job logs, tags, registers and approves through the functions here, and reads the store
through them too (run tags, registry versions, artefacts), so no job calls MLflow itself.

The tracking URI is decided here and nowhere else: `tracking.uri` from the config, else the
environment's MLFLOW_TRACKING_URI, else a SQLite file in the project folder (``mlflow.db``) whose
artefacts go to ``mlartifacts/`` beside it, so nothing lands in the working directory. Nothing
happens at import; `configure` applies the URI when a job asks for it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import mlflow
import numpy as np
import optuna
import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient
from mlflow.types.schema import ColSpec, Schema
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from mlflow.utils.validation import (
    MAX_ENTITIES_PER_BATCH,
    MAX_ENTITY_KEY_LENGTH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
)

from pipeline.config import PROJECT_ROOT, Config, TrackingConfig, flatten, to_yaml
from pipeline.serve.model import TargetingModel
from pipeline.serve.scorer import ScorerModel, pyfunc_signature
from pipeline.train.fit import FitResult, RefitResult

MODEL_ARTIFACT = "targeting_model"  # the deployed model (the refit when train.refit)
EVALUATED_ARTIFACT = "evaluated_model"  # the model judged on the test window (the evidence)
XGBOOST_ARTIFACT = "xgboost_model"
SCORER_ARTIFACT = "scorer"  # the scorer pyfunc that `export` logs and registers
CHALLENGER = "challenger"
PACKAGES = ("xgboost", "scikit-learn", "imbalanced-learn", "optuna", "mlflow", "pandas", "numpy")


@dataclass(frozen=True)
class RunInfo:
    """Where a training run landed: its id, the model's URI, its registry version."""

    run_id: str
    model_uri: str
    version: str | None  # the registry version, once `export` has registered the scorer
    experiment_id: str


def tracking_uri(tracking: TrackingConfig) -> str:
    """The tracking URI this config resolves to (nothing is applied)."""
    return (
        tracking.uri
        or os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"
    )


def _sqlite_folder(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///")).parent


REACH_TIMEOUT_S = 5.0
DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}


class TrackingUnreachable(ValueError):
    """The tracking server named by the config or MLFLOW_TRACKING_URI does not answer."""


def _check_reachable(uri: str) -> None:
    """Refuse, within `REACH_TIMEOUT_S`, a tracking server whose host does not accept a
    connection (a file or SQLite store is always reachable)."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    scheme = parts.scheme.split("+")[0]
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return
    import socket
    import urllib.error
    import urllib.request

    try:
        if scheme in ("http", "https"):  # any HTTP answer, even an error, is a server answering
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=REACH_TIMEOUT_S):
                return
        address = (parts.hostname, parts.port or DEFAULT_PORTS[scheme])
        with socket.create_connection(address, timeout=REACH_TIMEOUT_S):
            return
    except urllib.error.HTTPError:
        return
    except (OSError, ValueError) as exc:  # URLError, refused, timed out, no route, bad URI
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        shown = uri.replace(f":{parts.password}@", ":***@") if parts.password else uri
        raise TrackingUnreachable(
            f"the MLflow tracking server {shown} does not answer ({reason}; waited at most "
            f"{REACH_TIMEOUT_S:g} s): start it, or point MLFLOW_TRACKING_URI or tracking.uri "
            "at one that runs"
        ) from None


def configure(config: Config) -> str:
    """Apply the tracking URI, create the experiment if needed, and return the URI.

    With a SQLite store the experiment's artefact location is `<db folder>/mlartifacts`.
    """
    # No network on the targets we run on: never wait for usage telemetry.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # Artefacts are small local files: a progress bar per download only buries the job's summary.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # A server that does not answer fails the first call within seconds, not after minutes of
    # retries (MLflow's defaults: 7 retries with backoff, 120 s per request).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    uri = tracking_uri(config.tracking)
    folder = _sqlite_folder(uri)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    _check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    name = config.tracking.experiment
    try:  # the store opens on the first call: a damaged SQLite file fails here
        client = MlflowClient()
        experiment = client.get_experiment_by_name(name)
    except Exception as exc:  # MlflowException, or the store's own (sqlalchemy's)
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        raise TrackingUnreachable(
            f"the MLflow tracking store {uri} cannot be used: {first}"
        ) from None
    if experiment is None:
        location = (folder / "mlartifacts" / name).as_uri() if folder is not None else None
        client.create_experiment(name, artifact_location=location)
    mlflow.set_experiment(name)
    return uri


def ui_command(config: Config) -> str:
    """The shell command that opens the MLflow UI on this config's store.

    Names the `mlflow` of this environment (e.g. `.venv/bin/mlflow`) so it works without
    activating the virtual environment.
    """
    local = Path(sys.executable).parent / "mlflow"
    program = "mlflow"
    if local.is_file():
        try:
            program = str(local.relative_to(Path.cwd()))
        except ValueError:
            program = str(local)
    store = tracking_uri(config.tracking)
    return f"{shlex.quote(program)} ui --backend-store-uri {shlex.quote(store)}"


RUN_NAME_LENGTH = 120
UNNAMED_OVERRIDES = ("output_dir", "tracking.")  # where a run goes, not what it is


def run_name(config: Config, stage: str, when: dt.datetime | None = None) -> str:
    """A run's name: config, stage, UTC date and time, and what the command line changed
    (`--set`, where the outputs go left out), e.g. ``default train 2026-12-06 12:40
    simulate.rows=50000 tune.n_trials=4``; at most `RUN_NAME_LENGTH` characters."""
    stamp = (when or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M")
    changed = [o for o in config.overrides if not o.startswith(UNNAMED_OVERRIDES)]
    name = " ".join([config.name, stage, stamp, *changed])
    return name if len(name) <= RUN_NAME_LENGTH else name[: RUN_NAME_LENGTH - 3] + "..."


@contextmanager
def start_parent_run(config: Config, run_name: str | None = None) -> Iterator[str]:
    """Open the run that holds a training (and its trials as nested runs); yields its id."""
    configure(config)
    with mlflow.start_run(run_name=run_name or config.name) as run:
        yield run.info.run_id


def _batches(
    items: Sequence[Any], size: int = MAX_PARAMS_TAGS_PER_BATCH
) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _param(key: str, value: Any) -> Param:
    text = str(value)
    if len(text) > MAX_PARAM_VAL_LENGTH:
        text = text[: MAX_PARAM_VAL_LENGTH - 15] + "...[truncated]"
    return Param(key[:MAX_ENTITY_KEY_LENGTH], text)


def _metrics(
    metrics: dict[str, float], now: int, step: int = 0, model_id: str | None = None
) -> list[Metric]:
    """Finite numeric metrics as MLflow entities (NaN and None are left out), linked to the
    logged model ``model_id`` when given."""
    return [
        Metric(k[:MAX_ENTITY_KEY_LENGTH], float(v), now, step, model_id=model_id)
        for k, v in metrics.items()
        if v is not None and np.isfinite(float(v))
    ]


def log_values(
    run_id: str,
    params: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    tags: dict[str, Any] | None = None,
    curves: dict[str, list[float]] | None = None,
    model_id: str | None = None,
) -> None:
    """Params, metrics, tags and per-step curves (``curves``: name -> value at step 0, 1, ...)
    of a run in as few `log_batch` calls as MLflow's limits allow (100 params and 100 tags, 1000
    entities in all per call): one round trip to the store instead of one per kind. With
    ``model_id`` (a model logged to the run), the metrics are linked to it."""
    now = int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)
    param_entries = [_param(k, v) for k, v in (params or {}).items()]
    tag_entries = [
        RunTag(k[:MAX_ENTITY_KEY_LENGTH], str(v)[:MAX_TAG_VAL_LENGTH])
        for k, v in (tags or {}).items()
    ]
    metric_entries = _metrics(metrics or {}, now, model_id=model_id)
    for name, values in (curves or {}).items():
        for step, value in enumerate(values):
            metric_entries += _metrics({name: value}, now, step)
    client = MlflowClient()
    while param_entries or tag_entries or metric_entries:
        batch_params = param_entries[:MAX_PARAMS_TAGS_PER_BATCH]
        batch_tags = tag_entries[:MAX_PARAMS_TAGS_PER_BATCH]
        room = MAX_ENTITIES_PER_BATCH - len(batch_params) - len(batch_tags)
        batch_metrics = metric_entries[: min(room, MAX_METRICS_PER_BATCH)]
        client.log_batch(run_id, metrics=batch_metrics, params=batch_params, tags=batch_tags)
        param_entries = param_entries[len(batch_params) :]
        tag_entries = tag_entries[len(batch_tags) :]
        metric_entries = metric_entries[len(batch_metrics) :]


def log_params(run_id: str, params: dict[str, Any]) -> None:
    """Log params in batches, values truncated to MLflow's length limit."""
    log_values(run_id, params=params)


def log_metrics(run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    """Log finite numeric metrics to a run (NaN and None are left out)."""
    if step == 0:
        log_values(run_id, metrics=metrics)
        return
    now = int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)
    for batch in _batches(_metrics(metrics, now, step), MAX_METRICS_PER_BATCH):
        MlflowClient().log_batch(run_id, metrics=list(batch))


def set_tags(run_id: str, tags: dict[str, Any]) -> None:
    """Set tags on a run (values truncated to MLflow's limit)."""
    log_values(run_id, tags=tags)


def log_artifacts(run_id: str, local_path: Path, artifact_path: str | None = None) -> None:
    """Log a file or a folder as artefacts of a run."""
    client = MlflowClient()
    path = Path(local_path)
    if path.is_dir():
        client.log_artifacts(run_id, str(path), artifact_path)
    else:
        client.log_artifact(run_id, str(path), artifact_path)


def data_fingerprint(frames: Sequence[pd.DataFrame | pd.Series]) -> str:
    """sha256 over the values, index, column names and dtypes of the frames, in order."""
    digest = hashlib.sha256()
    for frame in frames:
        table = frame.to_frame() if isinstance(frame, pd.Series) else frame
        digest.update(json.dumps([[str(c), str(t)] for c, t in table.dtypes.items()]).encode())
        digest.update(pd.util.hash_pandas_object(table, index=True).to_numpy().tobytes())
    return digest.hexdigest()


def _git(*args: str) -> str:
    """A git command's output in the project folder (raises when git fails or is missing)."""
    done = subprocess.run(
        ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True, timeout=10
    )
    return done.stdout.strip()


def git_commit() -> str:
    """The project's git commit (with '-dirty' for local changes), 'unknown' outside git."""
    try:
        commit = _git("rev-parse", "HEAD")
        changed = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not commit:
        return "unknown"
    return f"{commit}-dirty" if changed else commit


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape a model."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def log_trials(parent_run_id: str, trials: Sequence[optuna.trial.FrozenTrial]) -> None:
    """Each trial as a nested run under the parent: params, objective value, state, trees."""
    client = MlflowClient()
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    for trial in trials:
        run = client.create_run(
            experiment_id,
            run_name=f"trial {trial.number}",
            tags={
                MLFLOW_PARENT_RUN_ID: parent_run_id,
                "optuna.state": trial.state.name,
                "optuna.trial": str(trial.number),
            },
        )
        metrics = {"value": trial.value} if trial.value is not None else {}
        trees = trial.user_attrs.get("trees")
        if trees:
            metrics["trees"] = float(np.mean(trees))
        if trial.duration is not None:
            metrics["seconds"] = trial.duration.total_seconds()
        # a pruned trial ended as Optuna meant it to: finished, and tagged as pruned
        pruned = {"optuna.pruned": "true"} if trial.state.name == "PRUNED" else {}
        log_values(run.info.run_id, params=dict(trial.params), metrics=metrics, tags=pruned)
        client.set_terminated(
            run.info.run_id, "FAILED" if trial.state.name == "FAIL" else "FINISHED"
        )


def _signature_frame(X: pd.DataFrame) -> pd.DataFrame:
    """Category columns as strings: MLflow signatures reject pandas `category` dtypes."""
    cast = {
        c: X[c].astype("string") for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)
    }
    return X.assign(**cast) if cast else X


@dataclass(frozen=True)
class TrainedOn:
    """The feature set a run's model was fit on, as the run records it: its manifest, its data
    fingerprint, and the declarations the models' signatures are inferred from (``sample``; no
    signature when None) with the columns a signature marks not required (``optional``: those
    the feature set leaves missing somewhere)."""

    manifest: pd.DataFrame
    fingerprint: str
    sample: pd.DataFrame | None = None
    optional: Sequence[str] = ()


def log_training(
    config: Config,
    fit_result: FitResult,
    trained_on: TrainedOn,
    study: optuna.Study | None = None,
    deployed: RefitResult | None = None,
) -> RunInfo:
    """Log a fit to the active run: config, params, fingerprint, commit, versions, manifest,
    metrics, the validation curve per boosting round, the evaluated model and the deployed one
    (``deployed``, the refit; the evaluated model itself when None) with its xgboost flavour.
    Nothing is registered here: the registry holds the deployable scorer, registered by
    `export` (`register_scorer`)."""
    manifest, data_fingerprint = trained_on.manifest, trained_on.fingerprint
    sample = trained_on.sample
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_training needs an active run: wrap it in start_parent_run")
    run_id = run.info.run_id
    log = fit_result.log
    model = (deployed or fit_result).model
    metrics = log.tracked_metrics()
    texts = {
        "config.yaml": to_yaml(config),
        "features/manifest.csv": manifest.to_csv(index=False),
        "fit_log.json": json.dumps(log.to_dict(), indent=2, default=str),
    }
    if deployed is not None:
        texts["refit_log.json"] = json.dumps(deployed.log.to_dict(), indent=2, default=str)
        metrics |= deployed.log.tracked_metrics()
    tags = {
        "data_fingerprint": data_fingerprint,
        "git_commit": git_commit(),
        "revenue_model": log.revenue_model,
        **{f"version.{k}": v for k, v in package_versions().items()},
        "mlflow.note.content": _run_note(config.name, fit_result, data_fingerprint),
    }
    if study is not None:
        tags.update(
            study_name=study.study_name,
            study_trials=str(len(study.trials)),
            study_best_value=str(study.best_value) if study.best_trials else "",
        )
    # The model first: MLflow links a run's metrics to a model logged after them with one
    # history query per metric name (a second of a 2-second log); logged after the model, they
    # carry its id and are linked as they are written.
    flavour = _log_bundles(model, fit_result.model, sample, texts, trained_on.optional)
    log_values(
        run_id,
        params={**flatten(config), **log.tracked_params()},
        metrics=metrics,
        tags={**tags, "xgboost_model_uri": flavour.model_uri},
        curves=log.tracked_curves(),
        model_id=flavour.model_id,
    )
    log_training_data(config.name, config.paths.features, data_fingerprint, sample)
    return RunInfo(
        run_id=run_id,
        model_uri=f"runs:/{run_id}/{MODEL_ARTIFACT}",
        version=None,
        experiment_id=run.info.experiment_id,
    )


def _run_note(name: str, fit_result: FitResult, data_fingerprint: str) -> str:
    """The run's description in the MLflow UI (`name`: the config's)."""
    log, info = fit_result.log, fit_result.model.info
    return (
        f"Training run of config {name!r}: XGBoost "
        f"({log.imbalance} imbalance, calibration {info.calibration}) on the feature set with "
        f"fingerprint {data_fingerprint[:12]}; windows "
        + ", ".join(f"{k} {v}" for k, v in log.windows.as_dict().items())
        + ". `targeting evaluate` adds the report, `targeting export` the thresholds and "
        "the registered scorer."
    )


def _log_bundles(
    model: TargetingModel,
    evaluated: TargetingModel,
    sample: pd.DataFrame | None,
    texts: dict[str, str],
    optional: Sequence[str] = (),
) -> ModelInfo:
    """The deployed and evaluated bundles and the ``texts`` (artefact path -> content) as
    artefacts, written to one folder and logged at once, and the deployed booster in MLflow's
    xgboost flavour (a typed signature from ``sample``, the ``optional`` columns not required);
    returns the flavour's model info."""
    with tempfile.TemporaryDirectory() as scratch:
        for artifact, bundle in ((MODEL_ARTIFACT, model), (EVALUATED_ARTIFACT, evaluated)):
            bundle.save(Path(scratch) / artifact)
        for artifact, text in texts.items():
            (Path(scratch) / artifact).parent.mkdir(parents=True, exist_ok=True)
            (Path(scratch) / artifact).write_text(text, encoding="utf-8")
        mlflow.log_artifacts(scratch)

    import xgboost as xgb

    frame = _signature_frame(model.prepare(sample)) if sample is not None else None
    signature = (
        typed_signature(frame, model.margin(sample), optional)
        if frame is not None and sample is not None
        else None
    )
    # No input example: MLflow 3.17 checks one by scoring it through the flavour's pyfunc, whose
    # `xgb.DMatrix(data)` takes no categories, so every run would log a failed check (and load the
    # model to do it); the served model is the scorer (`log_scorer`), not this flavour.
    info = mlflow.xgboost.log_model(
        model.booster,
        name=XGBOOST_ARTIFACT,
        signature=signature,
        pip_requirements=[f"xgboost=={xgb.__version__}"],
    )
    return info


def typed_signature(
    frame: pd.DataFrame, output: np.ndarray, optional: Sequence[str]
) -> ModelSignature:
    """The inputs' types as inferred from ``frame`` (categories as strings), each column named
    in ``optional`` (one the feature set leaves missing somewhere) marked not required, whatever
    the few example rows hold."""
    inferred = infer_signature(frame, output)
    maybe = set(optional)
    inputs = Schema(
        [
            ColSpec(spec.type, spec.name, required=spec.required and spec.name not in maybe)
            for spec in (inferred.inputs.inputs if inferred.inputs is not None else [])
        ]
    )
    return ModelSignature(inputs=inputs, outputs=inferred.outputs)


def log_training_data(
    name: str, features: Path, data_fingerprint: str, sample: pd.DataFrame | None
) -> None:
    """The training feature set (the file at `features`, of the config named `name`) as an
    MLflow dataset input of the active run: its path relative to the project, the data
    fingerprint as digest, and the schema of its columns."""
    from mlflow.data.meta_dataset import MetaDataset

    # made at import by MLflow's artefact-source registry, so invisible to type checkers
    from mlflow.data.sources import LocalArtifactDatasetSource  # type: ignore[attr-defined]

    try:
        where = str(features.relative_to(PROJECT_ROOT))
    except ValueError:
        where = features.name  # never a machine-local absolute path
    schema = infer_signature(_signature_frame(sample)).inputs if sample is not None else None
    dataset = MetaDataset(  # type: ignore[abstract]  # MLflow's dataset without a frame
        LocalArtifactDatasetSource(where),
        name=f"{name}-feature-set",
        digest=data_fingerprint[:32],
        schema=schema,
    )
    mlflow.log_input(dataset, context="training")


def run_tags(run_id: str) -> dict[str, str]:
    """The tags of a run (e.g. ``registered_model`` once `export` has registered its scorer)."""
    return dict(MlflowClient().get_run(run_id).data.tags)


def run_is_live(run_id: str) -> bool:
    """Whether the run is in the configured store and not deleted."""
    try:
        run = MlflowClient().get_run(run_id)
    except MlflowException:
        return False
    return bool(run.info.lifecycle_stage != "deleted")


def artifact_paths(run_id: str, folder: str) -> list[str]:
    """The paths of the artefacts a run holds directly in `folder` (empty when none)."""
    return [entry.path for entry in MlflowClient().list_artifacts(run_id, folder)]


def download_artifact(run_id: str, artifact_path: str, destination: Path) -> Path:
    """A run's artefact (file or folder) downloaded under `destination`; FileNotFoundError when
    the run does not hold it."""
    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact_path, dst_path=str(destination)
        )
    except MlflowException as exc:
        raise FileNotFoundError(f"run {run_id} has no artefact {artifact_path}: {exc}") from exc
    return Path(local)


def load_model(run_id: str, role: Literal["deployed", "evaluated"]) -> TargetingModel:
    """A TargetingModel bundle logged with a run: the ``deployed`` one (export, score, monitor)
    or the ``evaluated`` one (the report and explanations: it never saw the test labels)."""
    artifact = MODEL_ARTIFACT if role == "deployed" else EVALUATED_ARTIFACT
    with tempfile.TemporaryDirectory() as scratch:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact, dst_path=scratch
        )
        return TargetingModel.load(Path(local))


def write_last_run(config: Config, info: RunInfo) -> Path:
    """Record the last training run for the jobs that follow (export, evaluate...)."""
    path = config.paths.last_run
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**asdict(info), "tracking_uri": tracking_uri(config.tracking)}
    path.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return path


def read_last_run(config: Config) -> dict[str, Any]:
    """The last training run of this config: run_id, model_uri, version."""
    path = config.paths.last_run
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `targeting train` first (or pass --run-id)")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def start_child_run(parent_run_id: str, run_name: str, tags: dict[str, Any] | None = None) -> str:
    """Create a run nested under `parent_run_id` (one per backtest policy); returns its id."""
    client = MlflowClient()
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    labels = {MLFLOW_PARENT_RUN_ID: parent_run_id, **{k: str(v) for k, v in (tags or {}).items()}}
    return str(client.create_run(experiment_id, run_name=run_name, tags=labels).info.run_id)


def end_child_run(run_id: str, status: str = "FINISHED") -> None:
    """Mark a run made by `start_child_run` as ended."""
    MlflowClient().set_terminated(run_id, status)


# --- the registry: the deployable scorer, its challenger and champion aliases -------------------

CHAMPION = "champion"
SCORER_COMPONENT = "scorer"  # the `component` tag of every registered version


def log_scorer(
    run_id: str,
    model_folder: Path,
    snapshot_folder: Path,
    thresholds_path: Path,
    name: str = SCORER_ARTIFACT,
    threads: int | None = None,
) -> str:
    """Log the scorer pyfunc (`serve.scorer.ScorerModel`) to a run; returns its URI
    (``runs:/<run id>/scorer``). `threads` (the export's `compute.threads`) is recorded in its
    model config: the served scorer caps XGBoost and OpenMP at it (`serve.scorer.served_threads`).

    Self-contained: the `pipeline` package is bundled as its code and its requirements are the
    pinned core and `serve` extra (`pipeline.serve.bundle`), so any environment MLflow builds
    from them serves it; requirements are given, not inferred (inference would load the model in
    a subprocess).
    """
    from pipeline.serve.bundle import package_folder, serve_requirements

    requirements = serve_requirements()
    with tempfile.TemporaryDirectory() as scratch:
        # Copies, so the logged thresholds keep their file name whatever the source path.
        thresholds_copy = Path(scratch) / "selectivity.json"
        thresholds_copy.write_text(Path(thresholds_path).read_text(encoding="utf-8"))
        pyfunc_log = logging.getLogger("mlflow.pyfunc")
        level = pyfunc_log.level
        with mlflow.start_run(run_id=run_id), warnings.catch_warnings():
            # No input example on purpose: MLflow would score it at logging time.
            warnings.filterwarnings("ignore", message=".*An input example was not provided")
            # MLflow warns that a Python object is pickled: ScorerModel holds no state (it loads
            # its artefacts in load_context), and the warning buried every run's summary.
            pyfunc_log.setLevel(logging.ERROR)
            try:
                mlflow.pyfunc.log_model(
                    name=name,
                    python_model=ScorerModel(),
                    artifacts={
                        "model": str(model_folder),
                        "snapshot": str(snapshot_folder),
                        "thresholds": str(thresholds_copy),
                    },
                    signature=pyfunc_signature(),
                    pip_requirements=requirements,
                    code_paths=[str(package_folder())],
                    model_config=None if threads is None else {"threads": threads},
                )
            finally:
                pyfunc_log.setLevel(level)
    return f"runs:/{run_id}/{name}"


@dataclass(frozen=True)
class ScorerDigests:
    """What a scorer version's tags name of its export and model: the selectivity file's bytes
    (``thresholds_sha256``), the file's own digest of its content (``content_sha256``, when the
    file carries one) and the booster's (``booster_sha256``)."""

    thresholds_sha256: str
    booster_sha256: str
    content_sha256: str | None = None


def register_scorer(
    config: Config,
    run_id: str,
    scorer_uri: str,
    digests: ScorerDigests,
    *,
    point_challenger: bool = True,
    expected_version: str | None = None,
) -> str:
    """Register the run's scorer pyfunc as a new version of `tracking.registered_model`, point
    `challenger` at it (unless `point_challenger` is false: `export` moves it last, with
    `move_challenger`), and describe it; returns the version. The version's tags name its
    export twice (`digests`: the file's bytes and the file's own digest) and its booster. With
    `expected_version` (the number the export wrote into its `model.version`, `next_version`),
    a registry that gave another number is refused before any alias moves."""
    thresholds_sha256, content_sha256 = digests.thresholds_sha256, digests.content_sha256
    name = config.tracking.registered_model
    client = MlflowClient()
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(
            name,
            description=(
                f"Deployable customs targeting scorer of config {config.name!r}: declarations in, "
                "score, probability, channel and reason codes out. `challenger` is the last "
                "export; `champion` is what a reviewer approved (`targeting approve`)."
            ),
        )
    # register_model resolves runs:/<run>/scorer to the logged model (MLflow 3 keeps logged
    # models apart from the run's artefacts)
    version = mlflow.register_model(
        scorer_uri,
        name,
        await_registration_for=0,
        tags={
            "component": SCORER_COMPONENT,
            "thresholds_sha256": thresholds_sha256,
            "booster_sha256": digests.booster_sha256,
            "git_commit": client.get_run(run_id).data.tags.get("git_commit", "unknown"),
            **({"content_sha256": content_sha256} if content_sha256 else {}),
        },
    )
    number = str(version.version)
    if expected_version is not None and number != str(expected_version):
        raise ValueError(
            f"{name}: the registry gave the scorer v{number}, but its export names "
            f"v{expected_version} (another export registered meanwhile, or a version was "
            "deleted); no alias moved: run `targeting export` again"
        )
    client.update_model_version(
        name,
        number,
        description=(
            f"Scorer of run {run_id}: model, calibration, feature snapshot and selectivity "
            f"thresholds (sha256 {thresholds_sha256[:12]}), with the pipeline package bundled. "
            "Not approved yet."
        ),
    )
    if point_challenger:
        client.set_registered_model_alias(name, CHALLENGER, number)
    set_tags(run_id, {"registered_model": name, "model_version": number})
    return number


def next_version(tracking: TrackingConfig) -> str:
    """The number the registry gives the next version of `tracking.registered_model`: one
    above the highest it holds ("1" for a new model). `export` writes it into the document it
    registers, and `register_scorer` checks the registry gave that number."""
    name = tracking.registered_model
    try:
        latest = list(
            MlflowClient().search_model_versions(
                f"name = '{name}'", max_results=1, order_by=["version_number DESC"]
            )
        )
    except MlflowException:  # no such registered model yet
        latest = []
    return str(int(latest[0].version) + 1) if latest else "1"


def move_challenger(tracking: TrackingConfig, version: str) -> None:
    """Point `challenger` of `tracking.registered_model` at `version`."""
    MlflowClient().set_registered_model_alias(tracking.registered_model, CHALLENGER, version)


def scorer_versions(tracking: TrackingConfig, run_id: str) -> list[int]:
    """The versions of `tracking.registered_model` that `export` registered from `run_id`."""
    name = tracking.registered_model
    return [
        int(v.version)
        for v in MlflowClient().search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
        if v.tags.get("component") == SCORER_COMPONENT
    ]


def model_version(tracking: TrackingConfig, version: str) -> ModelVersion | None:
    """A version of `tracking.registered_model`; None when the registry does not hold it."""
    try:
        return MlflowClient().get_model_version(tracking.registered_model, version)
    except MlflowException:
        return None


def alias_version(tracking: TrackingConfig, alias: str) -> ModelVersion | None:
    """The version of `tracking.registered_model` an alias (`champion`, `challenger`) points
    at; None when the model or the alias does not exist."""
    try:
        return MlflowClient().get_model_version_by_alias(tracking.registered_model, alias)
    except MlflowException:
        return None


@dataclass(frozen=True)
class Approval:
    """A reviewer's approval of a registered scorer version."""

    name: str
    version: str
    run_id: str
    reviewer: str
    approved_at: str
    reason: str
    previous: str | None


def approve_version(
    tracking: TrackingConfig,
    version: str,
    reviewer: str,
    reason: str,
    approved_at: str,
    verdict: Mapping[str, str] | None = None,
) -> Approval:
    """Move `champion` to `version` and record who, when and why on the version (tags and
    description) and on the registered model (its last approval); `verdict` holds the report's
    verdict, its criteria and any override, recorded as tags beside them."""
    name = tracking.registered_model
    client = MlflowClient()
    entry = client.get_model_version(name, version)
    champion = alias_version(tracking, CHAMPION)
    previous = str(champion.version) if champion is not None else None
    record = {
        "approved_by": reviewer,
        "approved_at": approved_at,
        "approval_reason": reason,
        "replaced_champion": previous or "",
        **(verdict or {}),
    }
    for key, value in record.items():
        client.set_model_version_tag(name, version, key, value)
    described = (entry.description or "").replace(" Not approved yet.", "")
    judged = f" (the report's verdict: {record['verdict']}" if record.get("verdict") else ""
    if judged and record.get("verdict_override"):
        judged += f"; set aside because: {record['verdict_override']}"
    client.update_model_version(
        name,
        version,
        description=(
            f"{described} Approved as {CHAMPION} by {reviewer} at {approved_at}: {reason}"
            + (f"{judged})" if judged else "")
        ),
    )
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_registered_model_tag(
        name, "last_approval", json.dumps({"version": version, **record}, sort_keys=True)
    )
    return Approval(
        name=name,
        version=version,
        run_id=str(entry.run_id),
        reviewer=reviewer,
        approved_at=approved_at,
        reason=reason,
        previous=previous,
    )
