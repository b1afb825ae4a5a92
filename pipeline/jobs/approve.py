"""`targeting approve`: a reviewer designates a registered scorer version as what is served.

Approval refuses a version that is not a scorer registered by `export`, whose run holds no
reviewer's report (`targeting evaluate`) or no selectivity export, or whose bundled export is not
the one logged with the run. It then moves the `champion` alias and records who, when and why on
the version and on the registered model. `mlflow models serve -m models:/<name>@champion` serves
exactly what was approved.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import os
import tempfile
from pathlib import Path

from pipeline.config import Config
from pipeline.jobs import JobResult

REVIEWER_ENV = "TARGETING_REVIEWER"
REPORT_FILE = "report/report.html"
EXPORT_FOLDER = "selectivity"  # `export` logs its file there
BUNDLED_EXPORT = "scorer/artifacts/selectivity.json"


class ApprovalError(ValueError):
    """A version that cannot be approved; the message says what is missing and how to get it."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reviewer_name(reviewer: str | None = None) -> str:
    """Who approves: the given name, else $TARGETING_REVIEWER, else the login name."""
    name = reviewer or os.environ.get(REVIEWER_ENV) or getpass.getuser()
    if not name.strip():
        raise ApprovalError(f"no reviewer name: pass --reviewer or set {REVIEWER_ENV}")
    return name.strip()


def approve(
    config: Config,
    version: str | None = None,
    reason: str = "",
    reviewer: str | None = None,
    run_id: str | None = None,
) -> JobResult:
    """Approve a registered scorer version as the `champion`: `version`, else the last scorer
    registered from `run_id` (the run the report reviewed), else the `challenger`."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from pipeline.train import tracking

    if not reason.strip():
        raise ApprovalError("an approval needs a reason (--reason): what the review concluded")
    who = reviewer_name(reviewer)
    tracking.configure(config)
    client = mlflow.MlflowClient()
    name = config.tracking.registered_model
    if version is None and run_id is not None:
        scorers = [
            int(v.version)
            for v in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
            if v.tags.get("component") == tracking.SCORER_COMPONENT
        ]
        if not scorers:
            raise ApprovalError(
                f"run {run_id} has no scorer registered in {name!r}: "
                f"run `targeting export --run-id {run_id}` first"
            )
        version = str(max(scorers))
    try:
        entry = (
            client.get_model_version(name, str(version))
            if version is not None
            else client.get_model_version_by_alias(name, tracking.CHALLENGER)
        )
    except MlflowException:
        wanted = f"version {version}" if version is not None else f"a @{tracking.CHALLENGER}"
        raise ApprovalError(
            f"registered model {name!r} has no {wanted}: run `targeting export` to register one"
        ) from None
    number = str(entry.version)
    if entry.tags.get("component") != tracking.SCORER_COMPONENT or not entry.run_id:
        raise ApprovalError(
            f"{name} v{number} is not a scorer registered by `targeting export`: "
            "approve a version that is"
        )
    run_id = str(entry.run_id)
    exports = [
        a.path for a in client.list_artifacts(run_id, EXPORT_FOLDER) if a.path.endswith(".json")
    ]
    with tempfile.TemporaryDirectory() as scratch:
        files = {}
        for label, artefact, verb in (
            ("report", REPORT_FILE, "evaluate"),
            ("export", exports[0] if exports else f"{EXPORT_FOLDER}/*.json", "export"),
            ("bundled export", BUNDLED_EXPORT, "export"),
        ):
            try:
                local = mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=artefact, dst_path=str(Path(scratch) / label)
                )
            except (MlflowException, OSError):
                raise ApprovalError(
                    f"{name} v{number}: its run {run_id} has no {label} ({artefact}): "
                    f"run `targeting {verb} --run-id {run_id}` and review it first"
                ) from None
            files[label] = Path(local)
        logged = _sha256(files["export"])
        bundled = _sha256(files["bundled export"])
        if not bundled == logged == entry.tags.get("thresholds_sha256"):
            raise ApprovalError(
                f"{name} v{number}: the export inside the scorer is not the export logged with "
                f"run {run_id} (re-exported since?): run `targeting export --run-id {run_id}` and "
                "approve the version it registers"
            )
    approved_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    approval = tracking.approve_version(config, number, who, reason.strip(), approved_at)
    replaced = f" (was v{approval.previous})" if approval.previous else ""
    uri = f"models:/{name}@{tracking.CHAMPION}"
    return JobResult(
        stage="approve",
        figures={
            "name": name,
            "version": number,
            "run_id": run_id,
            "reviewer": who,
            "approved_at": approved_at,
            "reason": approval.reason,
            "previous": approval.previous,
            "thresholds_sha256": logged,
            "model_uri": uri,
        },
        lines=[
            f"{name} v{number} is now @{tracking.CHAMPION}{replaced}",
            f"approved by {who} at {approved_at}: {approval.reason}",
            f"serve it: make serve (mlflow models serve -m {uri})",
        ],
    )
