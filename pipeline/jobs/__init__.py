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

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


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


def headless_plots() -> None:
    """Draw the jobs' figures off screen (Agg), unless a notebook's inline backend draws them
    already: switching it away would stop the notebook showing its later figures."""
    import matplotlib

    if "inline" not in matplotlib.get_backend():
        matplotlib.use("Agg")


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


HEARTBEAT_S = 30.0  # without a terminal, a stage says something at least this often


@dataclass
class _Said:
    """The last step a stage announced, and when something was last printed."""

    text: str
    at: float


@contextmanager
def progress_shown(console: Console, name: str, heartbeat_s: float = HEARTBEAT_S) -> Iterator[None]:
    """Show what stage `name` is doing while the block runs. On a terminal, a spinner with its
    latest `step`; without one (a log file, CI), one line per step with the time since the
    stage began, and, when a stage is quiet for `heartbeat_s`, a line saying what is still
    running, so a log never goes silent for longer than that."""
    if console.is_terminal:
        with (
            console.status(f"[bold]{name}[/bold] ...", spinner="dots") as status,
            steps_shown_by(lambda text: status.update(f"[bold]{name}[/bold]: {text} ...")),
        ):
            yield
        return
    started = time.monotonic()
    lock = threading.Lock()
    latest = _Said("starting", started)

    def say(text: str, still: bool = False) -> None:
        with lock:
            latest.at = time.monotonic()
            if not still:
                latest.text = text
            elapsed = latest.at - started
        console.print(f"  {name}: {text} [{elapsed:.0f} s]", highlight=False, markup=False)

    def beat(stop: threading.Event) -> None:
        while not stop.wait(min(1.0, heartbeat_s / 4)):
            with lock:
                quiet, text = time.monotonic() - latest.at, latest.text
            if quiet >= heartbeat_s:
                say(f"still {text}", still=True)

    stop = threading.Event()
    heart = threading.Thread(target=beat, args=(stop,), name=f"{name}-progress", daemon=True)
    heart.start()
    try:
        with steps_shown_by(say):
            yield
    finally:
        stop.set()
        heart.join()
