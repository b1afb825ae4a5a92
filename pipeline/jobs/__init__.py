"""One importable function per CLI verb: `pipeline.jobs.<verb>.<verb>(config, ...)`.

Jobs are the wiring: they read inputs through `ingest`, call the pure stages, write artefacts under
`config.paths`, and hand tracking to `tracking`. Stages compute on frames: they read and write
nothing but through the artefacts' own save and load methods (FeatureSet, Snapshot, the export)
that jobs call, except the chunked feature build, which writes each chunk as it is built to bound
memory. `cli.py` only parses arguments and prints a job's result. Notebooks call the same
functions. `catalog` loads what an earlier job made (the validated inputs, the run and its model,
the FeatureSet, the snapshot, the export); `graph` says which job makes and needs which artefact,
for `run` and `ensure`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class JobResult:
    """What a job produced: artefact paths, headline figures and a short human summary."""

    stage: str
    outputs: dict[str, Path] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    exit_code: int = 0


# --- progress: what a long job is doing now, for whoever shows it (the CLI's spinner) ----------

_listeners: list[Callable[[str], None]] = []


def step(text: str) -> None:
    """Say which step of a job is running (shown beside the CLI's spinner; silent otherwise)."""
    for listener in _listeners:
        listener(text)


@contextmanager
def steps_shown_by(listener: Callable[[str], None]) -> Iterator[None]:
    """Send the jobs' `step` messages to `listener` for the duration of the block."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)
