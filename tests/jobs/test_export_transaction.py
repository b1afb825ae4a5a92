"""An export is whole or absent: the export's files and the registry's alias are published as
one transaction (`pipeline.jobs.publish`). A child process publishes a new export over an old
one and is killed (SIGKILL, nothing runs after) at each step in turn; the test then reads the
folder as the next reader would and checks that it holds the previous export intact or the
new one complete, with the alias pointing at the version of the files in place."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.jobs.publish import JOURNAL, STAGING_PREFIX, finish_pending, publish

STEPS = [
    "staged",
    "registered",
    "committed",
    "moved selectivity.json",
    "moved selectivity_offices.csv",
    "alias",
]
CHILD = """
import json, os, signal, sys
from pathlib import Path
import pipeline.jobs.publish as publish
folder, stop = Path(sys.argv[1]), sys.argv[2]
registry = folder.parent / "registry.json"

def after(step):
    if step == stop:
        os.kill(os.getpid(), signal.SIGKILL)

def write(text):
    return lambda path: path.write_text(text)

def register(staged):
    state = json.loads(registry.read_text())
    state["versions"].append(staged[folder / "selectivity.json"].read_text())
    registry.write_text(json.dumps(state))
    return str(len(state["versions"]))

def move_alias(version):
    state = json.loads(registry.read_text())
    state["challenger"] = version
    registry.write_text(json.dumps(state))

publish.after_step = after
files = {
    folder / "selectivity.json": write("new json"),
    folder / "selectivity_offices.csv": write("new csv"),
}
publish.publish(
    files,
    register,
    move_alias,
)
"""


def _old_export(tmp_path: Path) -> Path:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "selectivity.json").write_text("old json")
    (folder / "selectivity_offices.csv").write_text("old csv")
    (tmp_path / "registry.json").write_text(
        json.dumps({"versions": ["old json"], "challenger": "1"})
    )
    return folder


def _state(folder: Path) -> tuple[str, str, str]:
    registry = json.loads((folder.parent / "registry.json").read_text())
    alias_points_at = registry["versions"][int(registry["challenger"]) - 1]
    return (
        (folder / "selectivity.json").read_text(),
        (folder / "selectivity_offices.csv").read_text(),
        alias_points_at,
    )


@pytest.mark.parametrize("stop", STEPS)
def test_an_export_killed_at_each_step_leaves_the_old_one_or_the_new_one_whole(
    tmp_path: Path, stop: str
):
    folder = _old_export(tmp_path)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), stop], capture_output=True, timeout=120
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    committed = STEPS.index(stop) >= STEPS.index("committed")
    assert (folder / JOURNAL).exists() == committed  # the alias step dies before its cleanup

    # what the next reader sees (`targeting score` completes the files, never the alias)
    finish_pending(folder, None)
    json_text, csv_text, _ = _state(folder)
    assert (json_text, csv_text) == (
        ("new json", "new csv") if committed else ("old json", "old csv")
    )

    # the next export completes what was committed, alias included, and then publishes its own
    registry = folder.parent / "registry.json"

    def move_alias(version: str) -> None:
        state = json.loads(registry.read_text())
        state["challenger"] = version
        registry.write_text(json.dumps(state))

    finish_pending(folder, move_alias)
    expected = "new" if committed else "old"
    assert _state(folder) == (f"{expected} json", f"{expected} csv", f"{expected} json")
    assert not (folder / JOURNAL).exists()
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(STAGING_PREFIX)]
    assert leftovers == [] or not committed

    def register(staged: dict[Path, Path]) -> str:
        state = json.loads(registry.read_text())
        state["versions"].append(staged[folder / "selectivity.json"].read_text())
        registry.write_text(json.dumps(state))
        return str(len(state["versions"]))

    publish(
        {
            folder / "selectivity.json": lambda p: p.write_text("third json"),
            folder / "selectivity_offices.csv": lambda p: p.write_text("third csv"),
        },
        register,
        move_alias,
    )
    assert _state(folder) == ("third json", "third csv", "third json")
    assert sorted(p.name for p in folder.iterdir()) == [
        "selectivity.json",
        "selectivity_offices.csv",
    ]


def test_a_full_disk_while_staging_leaves_the_previous_export_and_alias(tmp_path: Path):
    folder = _old_export(tmp_path)
    registry = tmp_path / "registry.json"
    calls: list[str] = []

    def full_disk(path: Path) -> None:
        raise OSError(28, "No space left on device", str(path))

    with pytest.raises(OSError, match="No space left"):
        publish(
            {
                folder / "selectivity.json": lambda p: p.write_text("new json"),
                folder / "selectivity_offices.csv": full_disk,
            },
            lambda staged: calls.append("register") or "2",
            lambda version: calls.append("alias"),
        )
    assert calls == []  # neither registered nor aliased
    assert _state(folder) == ("old json", "old csv", "old json")
    assert sorted(p.name for p in folder.iterdir()) == [
        "selectivity.json",
        "selectivity_offices.csv",
    ]
    assert json.loads(registry.read_text())["challenger"] == "1"


def test_a_failed_registration_moves_no_file_and_no_alias(tmp_path: Path):
    folder = _old_export(tmp_path)

    def unreachable(staged: object) -> str:
        raise ConnectionError("tracking server unreachable")

    moved: list[str] = []
    with pytest.raises(ConnectionError):
        publish(
            {
                folder / "selectivity.json": lambda p: p.write_text("new json"),
                folder / "selectivity_offices.csv": lambda p: p.write_text("new csv"),
            },
            unreachable,
            moved.append,
        )
    assert moved == []
    assert _state(folder) == ("old json", "old csv", "old json")


def test_a_damaged_journal_is_named(tmp_path: Path):
    folder = _old_export(tmp_path)
    (folder / JOURNAL).write_text("{not json")
    with pytest.raises(ValueError, match="journal of an interrupted export is damaged"):
        finish_pending(folder, None)
    assert os.path.exists(folder / "selectivity.json")


def test_a_staging_folder_of_a_running_export_is_left_alone(tmp_path: Path):
    folder = _old_export(tmp_path)
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        beside = folder / f"{STAGING_PREFIX}{running.pid}-abc"
        beside.mkdir()
        dead = folder / f"{STAGING_PREFIX}999999999-def"
        dead.mkdir()
        publish(
            {
                folder / "selectivity.json": lambda p: p.write_text("new json"),
                folder / "selectivity_offices.csv": lambda p: p.write_text("new csv"),
            },
            lambda staged: "2",
            lambda version: None,
        )
        assert beside.is_dir() and not dead.exists()
    finally:
        running.kill()
        running.wait(timeout=20)
