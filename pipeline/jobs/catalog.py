"""The run catalog: what the jobs after `features` load, resolved in one place.

- The validated inputs: `validated_inputs` reads and validates the declarations and outcomes once
  per run and saves them (Parquet, with the quarantine reports) under `<output_dir>/validated`,
  keyed by a digest of the raw files, the `data` section of the config and the code that
  validates; every later job reads that copy. A changed file, setting or validation rule is
  validated afresh, never silently reused.
- The run: its id (given, or the last `train` run of `last_run.json`), the tracking store and the
  model (`load_run`); `last_run_id` says whether the recorded run is in this config's store.
- The FeatureSet (`feature_set`), the serving snapshot (`snapshot_folder`) and the selectivity
  export (`selectivity_file`).
- The reference learners the evaluate job fitted (`reference_cache`), under the validated inputs'
  folder and keyed by the rows and settings that decide them, so a rerun with another model
  setting does not fit them again.

A missing artefact raises FileNotFoundError naming the file (or run) and the job that makes it,
as the artefact table (`pipeline.artefacts`) records it: "run `targeting <verb>` first".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pandas as pd

from pipeline.artefacts import made_by, missing
from pipeline.config import Config
from pipeline.ingest import columns, kcs, readers, schema
from pipeline.ingest.readers import Inputs, load_inputs, raw_input_files, warn_quarantined

if TYPE_CHECKING:
    from pipeline.evaluate.reference import ReferenceCache, ReferenceScores
    from pipeline.features.featureset import FeatureSet
    from pipeline.serve.model import TargetingModel

Role = Literal["deployed", "evaluated"]
logger = logging.getLogger(__name__)

CATALOG_FOLDER = "validated"
CATALOG_FILE = "catalog.json"  # written last: its digest says what the folder holds
REPORTS_FILE = "reports.pickle"  # quarantined rows keep their original values, of any type
# The code whose rules decide what validation keeps: a change to it invalidates the catalog.
VALIDATING_MODULES = (columns, kcs, readers, schema)


# --- the validated inputs, saved once per run ----------------------------------------------------


def catalog_folder(config: Config) -> Path:
    """Where the run's validated inputs are saved."""
    return config.paths.root / CATALOG_FOLDER


def _file_state(path: Path) -> str:
    """SHA-256 of a raw file's bytes, or why there are none (`load_inputs` then names the
    problem with its own error)."""
    if not path.is_file():
        return "absent"
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return "unreadable"
    return digest.hexdigest()


def inputs_digest(config: Config) -> str:
    """SHA-256 of what validation depends on: each raw file's path and bytes (or its absence),
    the config's `data` section and the source of the validating modules."""
    digest = hashlib.sha256(config.data.model_dump_json().encode())
    for path in raw_input_files(config.data, config.paths):
        digest.update(f"{path}\0{_file_state(path)}\0".encode())
    for module in VALIDATING_MODULES:
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()


def _saved_digest(folder: Path) -> str | None:
    try:
        return str(json.loads((folder / CATALOG_FILE).read_text(encoding="utf-8"))["digest"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_inputs(inputs: Inputs, folder: Path, digest: str) -> None:
    """Write the validated tables and reports to `folder`, replacing it whole (built beside it,
    then renamed, so a reader never sees half a catalog under a valid digest)."""
    staging = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    tables = {"declarations": inputs.declarations, "outcomes": inputs.outcomes}
    if inputs.ground_truth is not None:
        tables["ground_truth"] = inputs.ground_truth
    for name, frame in tables.items():
        frame.to_parquet(staging / f"{name}.parquet")
    (staging / REPORTS_FILE).write_bytes(pickle.dumps(inputs.reports))
    (staging / CATALOG_FILE).write_text(
        json.dumps({"digest": digest, "tables": sorted(tables)}, indent=2), encoding="utf-8"
    )
    shutil.rmtree(folder, ignore_errors=True)
    try:
        os.replace(staging, folder)
    except OSError:  # another job saved the catalog meanwhile: the next read checks its digest
        shutil.rmtree(staging, ignore_errors=True)


def read_inputs(folder: Path) -> Inputs:
    """The validated inputs saved by `save_inputs`."""
    ground_truth = folder / "ground_truth.parquet"
    reports: list[schema.ValidationReport] = pickle.loads((folder / REPORTS_FILE).read_bytes())
    return Inputs(
        pd.read_parquet(folder / "declarations.parquet"),
        pd.read_parquet(folder / "outcomes.parquet"),
        pd.read_parquet(ground_truth) if ground_truth.is_file() else None,
        reports,
    )


def validated_inputs(config: Config) -> Inputs:
    """The validated declarations, outcomes and ground truth of this config: read from the run
    catalog when it holds them for the same raw files, data settings and validation code, else
    read and validated (`load_inputs`, with its errors) and saved there for the jobs that follow.
    """
    folder = catalog_folder(config)
    digest = inputs_digest(config)
    if _saved_digest(folder) == digest:
        inputs = read_inputs(folder)
        warn_quarantined(inputs.reports)
        return inputs
    inputs = load_inputs(config)
    save_inputs(inputs, folder, digest)
    return inputs


# --- the reference learners, fitted once per data and settings ----------------------------------

REFERENCES_FOLDER = "references"


def reference_cache(config: Config) -> ReferenceCache:
    """The evaluate job's store of fitted reference learners (`evaluate.reference`), one file
    per `reference.cache_key` under the catalog: a rerun on the same rows with the same
    reference settings, whatever the model's, reads them instead of fitting them again."""
    folder = catalog_folder(config) / REFERENCES_FOLDER

    def cached(key: str, fit: Callable[[], ReferenceScores]) -> ReferenceScores:
        path = folder / f"{key}.pickle"
        if path.is_file():
            try:
                scores: ReferenceScores = pickle.loads(path.read_bytes())
            except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
                logger.warning("reference learners: unreadable cache entry %s, fitting", path)
            else:
                logger.info("reference learners read from the run catalog (%s)", path.name)
                return scores
        scores = fit()
        folder.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        staging.write_bytes(pickle.dumps(scores))
        os.replace(staging, path)  # a reader never sees half an entry
        logger.info("reference learners fitted and saved in the run catalog (%s)", path.name)
        return scores

    return cached


# --- the run, its model and the artefacts of `features` --------------------------------------


@dataclass(frozen=True)
class LoadedRun:
    """A training run resolved for a later job: its id, the tracking store and its model."""

    run_id: str
    tracking_uri: str
    model: TargetingModel


def resolve_run_id(config: Config, run_id: str | None = None) -> str:
    """`run_id`, or the last `train` run of this config (`last_run.json`); tracking configured."""
    from pipeline import tracking

    tracking.configure(config)
    if run_id is not None:
        return run_id
    return str(tracking.read_last_run(config)["run_id"])


def load_run(config: Config, run_id: str | None, role: Role) -> LoadedRun:
    """The run (default: the last `train` run) and its `deployed` or `evaluated` model."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from pipeline import tracking

    resolved = resolve_run_id(config, run_id)
    uri = tracking.tracking_uri(config.tracking)
    try:
        MlflowClient().get_run(resolved)
    except MlflowException:
        raise FileNotFoundError(
            f"run {resolved} not found in the tracking store {uri}: run `{made_by('model')}` "
            "first (or pass the --run-id of a run of this store)"
        ) from None
    return LoadedRun(resolved, uri, tracking.load_model(resolved, role))


def last_run_id(config: Config) -> str | None:
    """The last training run of this config if it is in this config's tracking store, else None.

    `last_run.json` names the store it was written for; a run from another store (another
    `tracking.uri`) or one deleted since does not count.
    """
    from pipeline import tracking

    if not config.paths.last_run.is_file():
        return None
    last = tracking.read_last_run(config)
    if last.get("tracking_uri") != tracking.tracking_uri(config.tracking):
        return None
    tracking.configure(config)
    return str(last["run_id"]) if tracking.run_is_live(str(last["run_id"])) else None


def require_features(config: Config) -> None:
    """A clear error when the features job has not written the feature set and its manifest."""
    for path in (config.paths.features, config.paths.manifest):
        if not path.exists():
            raise missing("features", path)


def feature_set(config: Config) -> FeatureSet:
    """The FeatureSet of this config, or a clear error when the features job has not run."""
    from pipeline.features.featureset import FeatureSet

    require_features(config)
    return FeatureSet.read_parquet(config.paths.features, config.paths.manifest)


def snapshot_folder(config: Config) -> Path:
    """The serving snapshot of this config, or a clear error when the features job has not run."""
    folder = config.paths.snapshot
    if not folder.exists():
        raise missing("features", f"feature snapshot {folder}")
    return folder


def selectivity_file(config: Config, given: Path | None = None) -> Path:
    """The selectivity export to score with: `given`, else this config's, which `export` writes."""
    if given is not None:
        return Path(given)
    path = config.paths.thresholds
    if not path.exists():
        raise missing("export", f"selectivity file {path}")
    return path
