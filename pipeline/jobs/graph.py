"""Which job makes and which job needs each artefact of a run: the one graph behind
`targeting run` (every job, in this order) and the notebooks' `ensure` (only the jobs whose
artefacts are missing).

The artefacts, their makers and what those need are the artefact table's (`pipeline.artefacts`):
data (the simulated declarations and outcomes; a user's or the KCS files are read where they are),
features (the feature set, its manifest and the serving snapshot), model (the training run and
`last_run.json`), report, explanations, export (selectivity.json and the registered scorer),
incoming (the held-out last days and their snapshot) and scored; the graph is the table's rows
that `targeting run` makes, in the table's order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pipeline.artefacts import ARTEFACTS, ArtefactName
from pipeline.config import Config

Artefact = ArtefactName


@dataclass(frozen=True)
class Job:
    """A job of the chain: `pipeline.jobs.<verb>.<verb>` (or `run`'s own step `incoming`)."""

    verb: str
    needs: tuple[Artefact, ...]
    makes: Artefact


GRAPH: tuple[Job, ...] = tuple(
    Job(artefact.made_by, needs=artefact.needs, makes=artefact.name)
    for artefact in ARTEFACTS
    if artefact.in_run
)


def given(config: Config) -> frozenset[Artefact]:
    """Artefacts no job makes for this config: the data, unless it is simulated."""
    return frozenset() if config.data.source == "simulate" else frozenset({"data"})


def jobs_of(config: Config) -> list[Job]:
    """Every job `targeting run` runs for this config, in order."""
    return [job for job in GRAPH if job.makes not in given(config)]


def prerequisites(config: Config, target: Artefact) -> list[Job]:
    """The jobs that make `target` and, transitively, what it needs, in run order."""
    makers = {job.makes: job for job in jobs_of(config)}
    wanted: set[Artefact] = set()
    todo = [target]
    while todo:
        artefact = todo.pop()
        if artefact in wanted or artefact not in makers:
            continue
        wanted.add(artefact)
        todo.extend(makers[artefact].needs)
    return [job for job in jobs_of(config) if job.makes in wanted]


def stale(jobs: Iterable[Job], present: Callable[[Artefact], bool]) -> list[Job]:
    """The jobs (given in run order) to run: those whose artefact is missing, and those that
    need an artefact remade before them, so nothing is built on stale inputs."""
    remade: set[Artefact] = set()
    chosen: list[Job] = []
    for job in jobs:
        if remade.intersection(job.needs) or not present(job.makes):
            remade.add(job.makes)
            chosen.append(job)
    return chosen
