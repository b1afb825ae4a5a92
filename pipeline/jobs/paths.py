"""Outputs never alias inputs: every job that writes checks its outputs against what it reads
before writing anything, through links and relative paths alike. And `runs/latest` names the
newest run's folder (`point_latest`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pipeline.config import LATEST, LATEST_POINTER, Paths


def _same_file(output: Path, input: Path) -> bool:
    """Whether writing `output` would write `input`: the same path once resolved (links,
    '..', relative to here) or the same file under two names (hard links)."""
    if output.expanduser().resolve() == input.expanduser().resolve():
        return True
    try:
        return output.exists() and input.exists() and os.path.samefile(output, input)
    except OSError:
        return False


def refuse_aliases(
    verb: str, outputs: Mapping[str, Path | None], inputs: Mapping[str, Path | None]
) -> None:
    """Raise ValueError when an output of `verb` resolves to one of its inputs (named by option
    or role, e.g. {"--out": ...}, {"--input": ...}); None entries are skipped."""
    for out_name, output in outputs.items():
        for in_name, input in inputs.items():
            if output is None or input is None or not _same_file(Path(output), Path(input)):
                continue
            raise ValueError(
                f"{out_name} {output} is the same file as {in_name} {input}: {verb} would "
                f"overwrite what it reads; write {out_name} elsewhere"
            )


def point_latest(paths: Paths, run_id: str) -> None:
    """Make `runs/latest` name the folder of `run_id`: a relative link, swapped in at once (a
    reader never finds it missing); where links cannot be made (Windows without the privilege),
    `runs/latest.txt` holding the run id, which `Paths.latest` reads instead."""
    paths.runs.mkdir(parents=True, exist_ok=True)
    link, pointer = paths.runs / LATEST, paths.runs / LATEST_POINTER
    staged = paths.runs / f".{LATEST}.{os.getpid()}"
    try:
        staged.unlink(missing_ok=True)
        staged.symlink_to(run_id, target_is_directory=True)
        os.replace(staged, link)
    except OSError:
        staged.unlink(missing_ok=True)
        pointer.write_text(f"{run_id}\n", encoding="utf-8")
        if link.is_symlink():  # an older run's link would hide the pointer
            link.unlink()
        return
    pointer.unlink(missing_ok=True)
