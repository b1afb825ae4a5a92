"""Run only the jobs whose artefacts a config still lacks: notebooks start from any state.

`ensure(config, "export")` looks at what `config.paths` and the tracking store hold and runs, in
order, the jobs that are missing: simulate (simulated data only), features, train, export. A stage
that runs makes every later stage run too, so nothing is built on stale inputs. What exists is
reused as it is: delete the output folder (or change `output_dir`) to start afresh.
"""

from __future__ import annotations

from typing import Literal

from pipeline.config import Config
from pipeline.jobs import JobResult

Stage = Literal["data", "features", "model", "export"]
STAGES: tuple[Stage, ...] = ("data", "features", "model", "export")


def _has_data(config: Config) -> bool:
    if config.data.source != "simulate":
        return True  # files are read where the config points; nothing to create
    paths = config.paths
    return paths.declarations.is_file() and paths.outcomes.is_file()


def _has_features(config: Config) -> bool:
    paths = config.paths
    return paths.features.is_file() and paths.manifest.is_file() and paths.snapshot.is_dir()


def last_run_id(config: Config) -> str | None:
    """The last training run of this config if it is in this config's tracking store, else None.

    `last_run.json` names the store it was written for; a run from another store (another
    `tracking.uri`) or one deleted since does not count.
    """
    from pipeline.train import tracking

    if not config.paths.last_run.is_file():
        return None
    last = tracking.read_last_run(config)
    if last.get("tracking_uri") != tracking.tracking_uri(config):
        return None
    tracking.configure(config)
    return str(last["run_id"]) if tracking.run_is_live(str(last["run_id"])) else None


def _has_export(config: Config) -> bool:
    import json

    path = config.paths.thresholds
    if not path.is_file():
        return False
    document = json.loads(path.read_text(encoding="utf-8"))
    run_id = last_run_id(config)
    return run_id is not None and document.get("model", {}).get("run_id") == run_id


def missing_stages(config: Config, upto: Stage = "export") -> list[Stage]:
    """The stages up to `upto` that `ensure` would run now, in order."""
    checks = {
        "data": _has_data,
        "features": _has_features,
        "model": lambda c: last_run_id(c) is not None,
        "export": _has_export,
    }
    wanted = STAGES[: STAGES.index(upto) + 1]
    for position, stage in enumerate(wanted):
        if not checks[stage](config):
            return list(wanted[position:])
    return []


def ensure(config: Config, upto: Stage = "export") -> list[JobResult]:
    """Run the jobs that the stages up to `upto` lack; the results of those that ran.

    data: `simulate` (simulated configs only); features: `features`; model: `train` (tuning
    first when tune.n_trials > 0); export: `export` of the last trained run.
    """
    results: list[JobResult] = []
    for stage in missing_stages(config, upto):
        if stage == "data":
            if config.data.source == "simulate":
                from pipeline.jobs.simulate import simulate

                results.append(simulate(config))
        elif stage == "features":
            from pipeline.jobs.features import features

            results.append(features(config))
        elif stage == "model":
            from pipeline.jobs.train import train

            results.append(train(config))
        else:
            from pipeline.jobs.export import export

            results.append(export(config))
    return results
