"""An export is whole or absent: its files (selectivity.json and selectivity_offices.csv) and the
registry's `challenger` alias change as one transaction.

1. stage: every file is written into a staging folder beside the targets (one file system);
2. register: the scorer is logged and registered as a new version, no alias pointing at it yet;
3. commit: a journal naming each staged file with its SHA-256 and the version is put in place
   atomically (`os.replace`);
4. move: each staged file replaces its target (`os.replace`);
5. alias: `challenger` moves to the new version, last, once every file is in place;
6. the journal and the staging folder are removed.

Stopped before 3 (killed, a full disk), the previous export is untouched and the staging folder
is cleared by the next export. Stopped at 3 or later, `finish_pending` completes steps 4-6 from
the journal: the next export runs it first, and a reader of the export (`targeting score`)
completes the files (never the alias) before reading them, so no one reads half an export.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

JOURNAL = ".export-journal.json"
STAGING_PREFIX = ".export-staging-"


def _noop(step: str) -> None:
    """What happens after each step (a test stops the process there)."""


after_step: Callable[[str], None] = _noop


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def _clear_stale_staging(folder: Path) -> None:
    """Staging folders left by an export stopped before its commit; one whose process still
    runs (an export beside this one) is left to it."""
    for stale in folder.glob(f"{STAGING_PREFIX}*"):
        pid = stale.name.removeprefix(STAGING_PREFIX).partition("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        shutil.rmtree(stale, ignore_errors=True)


def finish_pending(folder: Path, move_alias: Callable[[str], None] | None) -> str | None:
    """Complete an export committed in `folder` but stopped before its end: move its staged
    files into place, then (with `move_alias`) move the alias and drop the journal. Returns the
    completed version, None when nothing was pending."""
    journal_path = Path(folder) / JOURNAL
    if not journal_path.is_file():
        return None
    try:
        journal = json.loads(journal_path.read_text(encoding="utf-8"))
        staging, files, version = journal["staging"], journal["files"], str(journal["version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{journal_path}: the journal of an interrupted export is damaged ({exc}); remove it "
            "and run `targeting export` again"
        ) from None
    for name, digest in files.items():
        staged, target = folder / staging / name, folder / name
        if staged.is_file():
            os.replace(staged, target)
            after_step(f"moved {name}")
        elif not (target.is_file() and _sha256(target) == digest):
            raise ValueError(
                f"{folder}: an interrupted export cannot be completed: {name} is neither staged "
                f"nor in place (journal {journal_path}); run `targeting export` again"
            )
    if move_alias is None:
        return version
    move_alias(version)
    after_step("alias")
    journal_path.unlink()
    shutil.rmtree(folder / staging, ignore_errors=True)
    return version


def publish(
    writers: Mapping[Path, Callable[[Path], None]],
    register: Callable[[Mapping[Path, Path]], str],
    move_alias: Callable[[str], None],
) -> str:
    """Write every target of `writers` (target -> function writing it to a given path), register
    them (`register` gets target -> staged file and returns the version) and move the alias, as
    one transaction (see the module docstring); returns the version."""
    folders = {Path(target).parent for target in writers}
    if len(folders) != 1:
        raise ValueError(f"an export's files must share one folder, got {sorted(folders)}")
    folder = folders.pop()
    folder.mkdir(parents=True, exist_ok=True)
    finish_pending(folder, move_alias)
    _clear_stale_staging(folder)
    staging = folder / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        staged = {Path(target): staging / Path(target).name for target in writers}
        for target, write in writers.items():
            write(staged[Path(target)])
        after_step("staged")
        version = register(staged)
        after_step("registered")
        journal = {
            "staging": staging.name,
            "files": {path.name: _sha256(path) for path in staged.values()},
            "version": version,
        }
        _write_atomically(folder / JOURNAL, json.dumps(journal, indent=1))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    after_step("committed")
    finish_pending(folder, move_alias)
    return version
