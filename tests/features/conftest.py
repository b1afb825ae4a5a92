"""Fixtures of the feature tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.config import Config, load
from pipeline.jobs.simulate import simulate


@pytest.fixture
def simulated_project(tmp_path: Path) -> Callable[..., Config]:
    """Makes a project in tmp_path with a simulated stream written: the simulator's settings as
    keywords (`rows=2000, days=90`), any other `key=value` settings after; returns its config."""

    def make(*settings: str, **simulated: int) -> Config:
        sizes = [f"simulate.{name}={value}" for name, value in simulated.items()]
        config = load(None, [f"output_dir={tmp_path}", *sizes, *settings])
        simulate(config)
        return config

    return make
