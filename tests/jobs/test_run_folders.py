"""A folder per run: a run with other settings writes its report beside, not over, the others',
and `runs/latest` names the newest (a link, or a pointer file where links cannot be made)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Paths
from pipeline.jobs.paths import point_latest


def _report(paths: Paths, run_id: str, text: str) -> Path:
    """A report written into the run's own folder, as `targeting evaluate` writes it."""
    report = paths.run_report(run_id)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text, encoding="utf-8")
    return report


def test_each_run_keeps_its_report_and_latest_names_the_newest(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "out")
    first = _report(paths, "run-a", "200,000 declarations")
    point_latest(paths, "run-a")
    assert paths.report.read_text(encoding="utf-8") == "200,000 declarations"
    second = _report(paths, "run-b", "50,000 declarations")
    point_latest(paths, "run-b")
    assert first != second and first.parent.parent == paths.runs / "run-a"
    assert first.read_text(encoding="utf-8") == "200,000 declarations"  # beside, not over
    assert paths.report.read_text(encoding="utf-8") == "50,000 declarations"
    assert paths.latest.is_symlink() and paths.latest.resolve() == (paths.runs / "run-b").resolve()
    assert not (paths.runs / "latest.txt").exists()
    assert [p.name for p in paths.runs.iterdir() if p.name.startswith(".")] == []  # no leftovers


def test_without_links_a_pointer_file_names_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where links cannot be made (Windows without the privilege), `runs/latest.txt` holds the
    newest run's id and every reader follows it; links again, and the file goes."""
    paths = Paths(tmp_path / "out")
    _report(paths, "run-a", "a")
    point_latest(paths, "run-a")

    def refuse(self: Path, target: object, target_is_directory: bool = False) -> None:
        raise OSError("symbolic links are not available")

    with monkeypatch.context() as patched:
        patched.setattr(Path, "symlink_to", refuse)
        _report(paths, "run-b", "b")
        point_latest(paths, "run-b")
        assert (paths.runs / "latest.txt").read_text(encoding="utf-8").strip() == "run-b"
        assert paths.latest == paths.runs / "run-b"
        assert paths.report.read_text(encoding="utf-8") == "b"
    _report(paths, "run-c", "c")
    point_latest(paths, "run-c")
    assert not (paths.runs / "latest.txt").exists()
    assert paths.report.read_text(encoding="utf-8") == "c"


def test_before_any_report_latest_names_nothing(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "out")
    assert not paths.report.exists()
    assert paths.report == tmp_path / "out" / "runs" / "latest" / "report" / "report.html"
