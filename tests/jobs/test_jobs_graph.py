"""The job graph: `targeting run`'s order and `ensure`'s choice of jobs both follow it."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from pipeline.config import Config, load
from pipeline.jobs.ensure import PRESENT, missing_stages
from pipeline.jobs.graph import GRAPH, Artefact, given, jobs_of, prerequisites, stale


def _configs(tmp_path: Path) -> list[Config]:
    return [
        load(None, [f"output_dir={tmp_path / 'sim'}"]),
        load("configs/kcs.yaml", [f"output_dir={tmp_path / 'kcs'}"]),
    ]


def test_every_artefact_a_job_needs_is_made_before_it_in_run_order(tmp_path: Path) -> None:
    for config in _configs(tmp_path):
        available = set(given(config))
        for job in jobs_of(config):
            assert set(job.needs) <= available, (job, available)
            assert job.makes not in available, f"{job.makes} made twice"
            available.add(job.makes)


def test_run_makes_every_artefact_and_simulates_only_simulated_data(tmp_path: Path) -> None:
    simulated, files = _configs(tmp_path)
    assert [job.verb for job in jobs_of(simulated)] == [job.verb for job in GRAPH]
    assert [job.verb for job in jobs_of(files)] == [job.verb for job in GRAPH][1:]
    assert {job.makes for job in GRAPH} == {
        "data", "features", "model", "report", "explanations", "export", "incoming", "scored"
    }  # fmt: skip


def test_prerequisites_are_the_closure_of_needs_in_run_order(tmp_path: Path) -> None:
    simulated, files = _configs(tmp_path)
    verbs = [job.verb for job in prerequisites(simulated, "export")]
    assert verbs == ["simulate", "features", "train", "export"]  # no report or explanations
    assert [job.verb for job in prerequisites(files, "export")] == verbs[1:]
    assert [job.verb for job in prerequisites(simulated, "scored")] == [
        "simulate", "features", "train", "export", "incoming", "score"
    ]  # fmt: skip


STAGES: tuple[Artefact, ...] = ("data", "features", "model", "export")


@pytest.mark.parametrize("present", list(itertools.product([True, False], repeat=len(STAGES))))
def test_ensure_makes_exactly_the_missing_prerequisites_and_what_follows(
    tmp_path: Path, present: tuple[bool, ...]
) -> None:
    """The first missing artefact of the chain and every later one that needs it, no other."""
    config = _configs(tmp_path)[0]
    there = dict(zip(STAGES, present, strict=True))
    chosen = [job.makes for job in stale(prerequisites(config, "export"), there.__getitem__)]
    first_missing = next((i for i, p in enumerate(present) if not p), len(STAGES))
    assert chosen == list(STAGES[first_missing:])


def test_ensure_judges_what_a_fresh_config_lacks_through_the_graph(tmp_path: Path) -> None:
    simulated, files = _configs(tmp_path)
    assert set(PRESENT) == {*STAGES, "report"}  # the report: an artefact beside the chain
    assert missing_stages(simulated) == list(STAGES)
    assert missing_stages(simulated, "report") == ["data", "features", "model", "report"]
    assert missing_stages(simulated, "model") == ["data", "features", "model"]
    assert missing_stages(files, "features") == ["features"]
