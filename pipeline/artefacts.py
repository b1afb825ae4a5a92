"""The run's artefacts, described once: their name, their files under `output_dir`, the job that
makes them and what it needs, the functions that load and save them, and how `ensure` judges
whether one is present. `config.Paths` places its files from this table, the job graph
(`jobs.graph`) orders its jobs by it, `jobs.catalog` names a missing artefact's maker from it and
`jobs.ensure` checks presence by it.

It sits beside the config (it imports nothing of the pipeline), so every layer may read it; the
loaders and savers above it are named, not imported (`load` and `save`: ``module:function``,
which a test resolves).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

ArtefactName = Literal[
    "data",
    "features",
    "model",
    "report",
    "explanations",
    "export",
    "incoming",
    "scored",
    "study",
    "backtest",
    "monitor",
]


class Presence(Enum):
    """How `ensure` judges that an artefact is there (`jobs.ensure.present`)."""

    FILES = "every file of the artefact exists (`Artefact.files`, not `optional`)"
    LAST_RUN = "the last trained run is in this config's tracking store"
    RUN_REPORT = "the last trained run's report names that run"
    RUN_EXPORT = "the selectivity export names the last trained run"
    NOT_JUDGED = "ensure does not make it"


@dataclass(frozen=True)
class Artefact:
    """One artefact: where it lies, who makes it from what, how it is read and written."""

    name: ArtefactName
    made_by: str  # the job's verb: `pipeline.jobs.<verb>` (`incoming`: `targeting run`'s step)
    needs: tuple[ArtefactName, ...]  # what that job reads
    files: dict[str, str] = field(default_factory=dict)  # `Paths` attribute -> under output_dir
    optional: dict[str, str] = field(default_factory=dict)  # files it may lack, placed the same
    load: str = ""  # ``module:function`` that reads it for a later job
    save: str = ""  # ``module:function`` that writes it
    present: Presence = Presence.NOT_JUDGED
    in_run: bool = True  # one of `targeting run`'s jobs makes it (the job graph)


ARTEFACTS: tuple[Artefact, ...] = (
    Artefact(
        "data",
        made_by="simulate",
        needs=(),
        files={"declarations": "data/declarations.parquet", "outcomes": "data/outcomes.parquet"},
        optional={
            "ground_truth": "data/ground_truth.parquet",  # simulated data only
            "quarantine": "data/quarantine.csv",  # when validation set rows aside
        },
        load="pipeline.jobs.catalog:validated_inputs",
        save="pipeline.jobs.simulate:write",
        present=Presence.FILES,
    ),
    Artefact(
        "features",
        made_by="features",
        needs=("data",),
        files={
            "features": "features/feature_set.parquet",
            "manifest": "features/manifest.csv",
            "snapshot": "features/snapshot",
        },
        load="pipeline.jobs.catalog:feature_set",
        save="pipeline.jobs.features:features",
        present=Presence.FILES,
    ),
    Artefact(
        "model",
        made_by="train",
        needs=("features",),
        files={"last_run": "last_run.json"},
        load="pipeline.jobs.catalog:load_run",
        save="pipeline.tracking:log_training",
        present=Presence.LAST_RUN,
    ),
    Artefact(
        "report",
        made_by="evaluate",
        needs=("data", "features", "model"),
        files={"runs": "runs"},
        load="pipeline.config:Paths.run_report",
        save="pipeline.jobs.evaluate:write_report",
        present=Presence.RUN_REPORT,
    ),
    Artefact(
        "explanations",
        made_by="explain",
        needs=("features", "model"),
        files={"explanations": "explain"},
        save="pipeline.jobs.explain:write_explanations",
    ),
    Artefact(
        "export",
        made_by="export",
        needs=("data", "features", "model"),
        files={"thresholds": "selectivity.json"},
        load="pipeline.jobs.catalog:selectivity_file",
        save="pipeline.jobs.export:export",
        present=Presence.RUN_EXPORT,
    ),
    Artefact(
        "incoming",
        made_by="incoming",
        needs=("data",),
        files={
            "incoming": "data/incoming.parquet",
            "incoming_snapshot": "features/snapshot_incoming",
        },
        save="pipeline.jobs.run:incoming_declarations",
    ),
    Artefact(
        "scored",
        made_by="score",
        needs=("export", "incoming"),
        files={"scored": "scored.parquet"},
        save="pipeline.jobs.score:score",
    ),
    Artefact(
        "study",
        made_by="tune",
        needs=("features",),
        files={"study": "optuna.journal"},
        load="pipeline.train.tune:latest_study",
        save="pipeline.train.tune:run_study",
        in_run=False,
    ),
    Artefact(
        "backtest",
        made_by="backtest",
        needs=("data",),
        files={"backtest": "backtest"},
        save="pipeline.jobs.backtest:backtest",
        in_run=False,
    ),
    Artefact(
        "monitor",
        made_by="monitor",
        needs=("data", "features", "model"),
        files={"monitor": "monitor"},
        save="pipeline.jobs.monitor:monitor",
        in_run=False,
    ),
)

BY_NAME: dict[ArtefactName, Artefact] = {a.name: a for a in ARTEFACTS}

# Every file of the layout: `Paths` attribute -> place under output_dir.
LAYOUT: dict[str, str] = {
    attribute: place for a in ARTEFACTS for attribute, place in {**a.files, **a.optional}.items()
}


def made_by(name: ArtefactName) -> str:
    """The command that makes an artefact: `targeting <verb>` (`targeting run` for the incoming
    declarations, its own step)."""
    verb = BY_NAME[name].made_by
    return "targeting run" if verb == "incoming" else f"targeting {verb}"


def missing(name: ArtefactName, what: object) -> FileNotFoundError:
    """The error of a missing artefact: what is missing and the command that makes it."""
    return FileNotFoundError(f"{what} not found: run `{made_by(name)}` first")
