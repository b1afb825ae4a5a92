"""Run only the jobs whose artefacts a config still lacks: notebooks start from any state.

`ensure(config, "export")` looks at what `config.paths` and the tracking store hold and runs, in
`targeting run`'s order, the jobs of the job graph (`jobs.graph`) that make the missing
prerequisites of the export: simulate (simulated data only), features, train, export. A job that
runs makes every later job that needs its artefact run too, so nothing is built on stale inputs.
What exists is reused as it is: delete the output folder (or change `output_dir`) to start afresh.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Literal

from pipeline.artefacts import ARTEFACTS, Artefact, ArtefactName, Presence
from pipeline.config import Config
from pipeline.jobs import JobResult
from pipeline.jobs.catalog import last_run_id
from pipeline.jobs.graph import Job, prerequisites, stale

# The artefacts whose presence `ensure` can judge: a notebook asks for one of them.
Stage = Literal["data", "features", "model", "report", "export"]


def _has_files(config: Config, artefact: Artefact) -> bool:
    """Every file the artefact table lists for it (`Artefact.files`) exists."""
    return all(getattr(config.paths, attribute).exists() for attribute in artefact.files)


def _has_last_run(config: Config, artefact: Artefact) -> bool:
    return last_run_id(config) is not None


def _has_export(config: Config, artefact: Artefact) -> bool:
    path = config.paths.thresholds
    if not path.is_file():
        return False
    document = json.loads(path.read_text(encoding="utf-8"))
    run_id = last_run_id(config)
    return run_id is not None and document.get("model", {}).get("run_id") == run_id


def _has_report(config: Config, artefact: Artefact) -> bool:
    """The reviewer's report of the last trained run, in that run's folder (its metrics.json
    names the run)."""
    run_id = last_run_id(config)
    if run_id is None:
        return False
    path = config.paths.run_report(run_id)
    figures = path.parent / "metrics.json"
    if not (path.is_file() and figures.is_file()):
        return False
    return json.loads(figures.read_text(encoding="utf-8")).get("run_id") == run_id


CHECKS: dict[Presence, Callable[[Config, Artefact], bool]] = {
    Presence.FILES: _has_files,
    Presence.LAST_RUN: _has_last_run,
    Presence.RUN_REPORT: _has_report,
    Presence.RUN_EXPORT: _has_export,
}
# The artefacts `ensure` judges, each by its row's `present` (`pipeline.artefacts`).
PRESENT: dict[ArtefactName, Artefact] = {
    artefact.name: artefact for artefact in ARTEFACTS if artefact.present in CHECKS
}


def present(config: Config, name: ArtefactName) -> bool:
    """Whether `ensure` finds the artefact made (False for one it does not judge)."""
    artefact = PRESENT.get(name)
    return artefact is not None and CHECKS[artefact.present](config, artefact)


def _to_run(config: Config, upto: Stage) -> list[Job]:
    def there(name: ArtefactName) -> bool:
        return present(config, name)

    return stale(prerequisites(config, upto), there)


def missing_stages(config: Config, upto: Stage = "export") -> list[ArtefactName]:
    """The artefacts up to `upto` that `ensure` would make now, in order."""
    return [job.makes for job in _to_run(config, upto)]


def ensure(config: Config, upto: Stage = "export") -> list[JobResult]:
    """Run the jobs that make what `upto` lacks; the results of those that ran.

    data: `simulate` (simulated configs only); features: `features`; model: `train` (tuning
    first when tune.n_trials > 0); report: `evaluate` of the last trained run; export: `export`
    of the last trained run.
    """
    results: list[JobResult] = []
    for job in _to_run(config, upto):
        module = importlib.import_module(f"pipeline.jobs.{job.verb}")
        results.append(getattr(module, job.verb)(config))
    return results
