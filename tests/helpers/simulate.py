"""Small simulations shared by the simulator's tests (cached: the simulator is pure)."""

from __future__ import annotations

from functools import cache

from pipeline.config import SimulateConfig
from pipeline.simulate import SimulatedData, simulate

ROWS = 20_000


def small_config(**changes: object) -> SimulateConfig:
    """A 20k-row, one-year stream with fewer entities (statistics still meaningful)."""
    settings: dict[str, object] = {
        "rows": ROWS,
        "days": 365,
        "importers": 1_500,
        "sellers": 1_200,
        "declarants": 120,
        "offices": 6,
    }
    settings.update(changes)
    return SimulateConfig.model_validate(settings)


@cache
def small_stream(seed: int = 7, **changes: object) -> SimulatedData:
    """The simulation of `small_config(**changes)` with `seed` (do not mutate the frames)."""
    return simulate(small_config(**changes), seed)
