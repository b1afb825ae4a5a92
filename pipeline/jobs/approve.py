"""`targeting approve`: a reviewer designates a registered scorer version as what is served.

Approval refuses a version that is not a scorer registered by `export`, whose run holds no
reviewer's report (`targeting evaluate`) or no selectivity export, or whose bundled export is not
the one logged with the run. It respects the report's decision page: a version whose verdict is
not "ready to approve" is refused unless the reviewer gives `--override "why"`. It then moves the
`champion` alias and records who, when and why on the version and on the registered model, with
the verdict, its criteria and any override as tags of the version.
`mlflow models serve -m models:/<name>@champion` serves exactly what was approved.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import Config
from pipeline.evaluate.decision import READY
from pipeline.jobs import JobResult

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

REVIEWER_ENV = "TARGETING_REVIEWER"
REPORT_FILE = "report/report.html"
DECISION_FILE = "report/metrics.json"  # `evaluate` writes the decision page's figures there
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
    override: str | None = None,
) -> JobResult:
    """Approve a registered scorer version as the `champion`: `version`, else the last scorer
    registered from `run_id` (the run the report reviewed), else the `challenger`. A version
    whose report's verdict is not "ready to approve" needs `override`: why it is set aside."""
    from pipeline import tracking

    if not reason.strip():
        raise ApprovalError("an approval needs a reason (--reason): what the review concluded")
    who = reviewer_name(reviewer)
    tracking.configure(config)
    name = config.tracking.registered_model
    if version is None and run_id is not None:
        version = _last_scorer_of(config, run_id)
    entry = _scorer_version(config, version)
    number = str(entry.version)
    run_id = str(entry.run_id)
    logged = _checked_evidence(name, number, run_id, entry.tags.get("thresholds_sha256"))
    verdict = verdict_tags(_decision_of(run_id), override, f"{name} v{number}")
    approved_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    approval = tracking.approve_version(
        config.tracking, number, who, reason.strip(), approved_at, verdict=verdict
    )
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
            "verdict": verdict["verdict"],
            "override": verdict.get("verdict_override"),
        },
        lines=[
            f"{name} v{number} is now @{tracking.CHAMPION}{replaced}",
            f"approved by {who} at {approved_at}: {approval.reason}",
            f"the report's verdict: {verdict['verdict']}"
            + (
                f", set aside: {verdict['verdict_override']}"
                if "verdict_override" in verdict
                else ""
            ),
            f"serve it: make serve (mlflow models serve -m {uri})",
        ],
    )


def _last_scorer_of(config: Config, run_id: str) -> str:
    """The last scorer version `export` registered from `run_id` (the run a report reviewed)."""
    from pipeline import tracking

    scorers = tracking.scorer_versions(config.tracking, run_id)
    if not scorers:
        raise ApprovalError(
            f"run {run_id} has no scorer registered in {config.tracking.registered_model!r}: "
            f"run `targeting export --run-id {run_id}` first"
        )
    return str(max(scorers))


def _scorer_version(config: Config, version: str | None) -> ModelVersion:
    """The registry entry to approve: `version`, else the `challenger`; refused unless it is a
    scorer registered by `export` from a run."""
    from pipeline import tracking

    name = config.tracking.registered_model
    entry = (
        tracking.model_version(config.tracking, str(version))
        if version is not None
        else tracking.alias_version(config.tracking, tracking.CHALLENGER)
    )
    if entry is None:
        wanted = f"version {version}" if version is not None else f"a @{tracking.CHALLENGER}"
        raise ApprovalError(
            f"registered model {name!r} has no {wanted}: run `targeting export` to register one"
        )
    if entry.tags.get("component") != tracking.SCORER_COMPONENT or not entry.run_id:
        raise ApprovalError(
            f"{name} v{entry.version} is not a scorer registered by `targeting export`: "
            "approve a version that is"
        )
    return entry


def _checked_evidence(name: str, number: str, run_id: str, registered_sha256: str | None) -> str:
    """The evidence a reviewer approves on: the run's report, its logged export and the export
    bundled in the scorer, the two exports identical and the one the version names. Returns the
    export's sha256; ApprovalError says which `targeting` command makes what is missing."""
    from pipeline import tracking

    exports = [p for p in tracking.artifact_paths(run_id, EXPORT_FOLDER) if p.endswith(".json")]
    with tempfile.TemporaryDirectory() as scratch:
        files = {}
        for label, artefact, verb in (
            ("report", REPORT_FILE, "evaluate"),
            ("export", exports[0] if exports else f"{EXPORT_FOLDER}/*.json", "export"),
            ("bundled export", BUNDLED_EXPORT, "export"),
        ):
            try:
                files[label] = tracking.download_artifact(run_id, artefact, Path(scratch) / label)
            except OSError:  # the run does not hold it (tracking raises FileNotFoundError)
                raise ApprovalError(
                    f"{name} v{number}: its run {run_id} has no {label} ({artefact}): "
                    f"run `targeting {verb} --run-id {run_id}` and review it first"
                ) from None
        logged = _sha256(files["export"])
        bundled = _sha256(files["bundled export"])
        if not bundled == logged == registered_sha256:
            raise ApprovalError(
                f"{name} v{number}: the export inside the scorer is not the export logged with "
                f"run {run_id} (re-exported since?): run `targeting export --run-id {run_id}` and "
                "approve the version it registers"
            )
    return logged


def _decision_of(run_id: str) -> dict[str, Any] | None:
    """The decision page's figures of the run's report (verdict and criteria); None when the
    report was written without one."""
    from pipeline import tracking

    with tempfile.TemporaryDirectory() as scratch:
        try:
            path = tracking.download_artifact(run_id, DECISION_FILE, Path(scratch) / "metrics")
        except OSError:  # a report from before the decision page: no figures to judge on
            return None
        decision = json.loads(path.read_text(encoding="utf-8")).get("decision")
    return decision if isinstance(decision, dict) else None


def verdict_tags(
    decision: dict[str, Any] | None, override: str | None, what: str
) -> dict[str, str]:
    """The tags that record the report's verdict on the approved version: ``verdict``,
    ``verdict_criteria`` (JSON: each criterion's name, status and figure) and, when given,
    ``verdict_override``. ApprovalError unless the verdict is "ready to approve" or an override
    says why it is set aside; the message names the criteria that stand in the way."""
    verdict = str(decision["verdict"]) if decision else "none (the report has no decision page)"
    criteria = list(decision.get("criteria", [])) if decision else []
    why = (override or "").strip()
    if verdict != READY and not why:
        standing = [f"{c['name']}: {c['status']}" for c in criteria if c.get("status") != "pass"]
        raise ApprovalError(
            f"{what}: the report's verdict is {verdict!r}, not {READY!r}"
            + (f" ({'; '.join(standing)})" if standing else "")
            + ': read the decision page, or approve with --override "why the verdict is set '
            'aside" (recorded on the version)'
        )
    tags = {
        "verdict": verdict,
        "verdict_criteria": json.dumps(
            [{k: c.get(k) for k in ("name", "status", "figure", "requirement")} for c in criteria],
            ensure_ascii=False,
        ),
    }
    if why:
        tags["verdict_override"] = why
    return tags
