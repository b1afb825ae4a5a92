"""The artefact table (`pipeline.artefacts`) is the one description of the run's artefacts: the
paths, the job graph, the catalog's errors and ensure's checks all read it."""

from __future__ import annotations

import importlib
import typing
from pathlib import Path

import pytest

from pipeline.artefacts import ARTEFACTS, LAYOUT, Presence, made_by, missing
from pipeline.config import Config, Paths, load
from pipeline.jobs.ensure import PRESENT, present
from pipeline.jobs.graph import GRAPH


def _resolve(name: str) -> object:
    """`module:function` (or `module:Class.method`) -> the object it names."""
    module, _, attribute = name.partition(":")
    found: object = importlib.import_module(module)
    for part in attribute.split("."):
        found = getattr(found, part)
    return found


@pytest.mark.parametrize("name", [n for a in ARTEFACTS for n in (a.load, a.save) if n])
def test_every_loader_and_saver_the_table_names_exists(name: str) -> None:
    assert callable(_resolve(name)), name


def test_paths_places_exactly_the_table_s_files(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    declared = {k for k, v in typing.get_type_hints(Paths).items() if v is Path}
    assert declared == set(LAYOUT), "Paths' attributes and the table's files differ"
    assert {k: getattr(paths, k) for k in LAYOUT} == {k: tmp_path / v for k, v in LAYOUT.items()}
    assert len(set(LAYOUT.values())) == len(LAYOUT), "two artefacts share a place"


def test_the_job_graph_is_the_table_s_run_rows_in_order() -> None:
    rows = [a for a in ARTEFACTS if a.in_run]
    expected = [(a.made_by, a.needs, a.name) for a in rows]
    assert [(j.verb, j.needs, j.makes) for j in GRAPH] == expected
    names = {a.name for a in ARTEFACTS}
    assert all(set(a.needs) <= names for a in ARTEFACTS)


def test_ensure_judges_what_the_table_says_it_judges(tmp_path: Path) -> None:
    judged = {a.name for a in ARTEFACTS if a.present is not Presence.NOT_JUDGED}
    assert set(PRESENT) == judged
    config: Config = load(None, [f"output_dir={tmp_path}"])
    assert not present(config, "data") and not present(config, "scored")
    for attribute in ("declarations", "outcomes"):  # the data's files; the optional ones absent
        getattr(config.paths, attribute).parent.mkdir(parents=True, exist_ok=True)
        getattr(config.paths, attribute).write_bytes(b"")
    assert present(config, "data")


def test_a_missing_artefact_names_the_command_that_makes_it() -> None:
    assert str(missing("features", "x.parquet")) == (
        "x.parquet not found: run `targeting features` first"
    )
    assert made_by("incoming") == "targeting run"
    assert made_by("model") == "targeting train"
