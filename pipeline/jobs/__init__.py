"""One importable function per CLI verb: `pipeline.jobs.<verb>.<verb>(config, ...)`.

Jobs are the wiring: they read inputs through `ingest`, call the pure stages, write artefacts under
`config.paths`, and hand tracking to `train.tracking`. Stages never do I/O; `cli.py` only parses
arguments and prints a job's result. Notebooks call the same functions.
"""

from __future__ import annotations

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
