"""Outputs never alias inputs: every job that writes checks its outputs against what it reads
before writing anything, through links and relative paths alike."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


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
