"""The one time axis: stretches of lodging time, start-inclusive and end-exclusive.

`Window` is every stretch the project names (a training window, a reference window, a monitor's
recent days; `pipeline.plan` lays them by role). Where the data ends has two rules, each written
once: `after_last` (the first instant after the last declaration: a snapshot's as-of, the end of
an open-ended window) and `data_end` (the day boundary that ends the usable data, before the
held-out days). Pure pandas: `serve` may import it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def datetimes(values: pd.Series) -> pd.Series:
    """``values`` as datetimes: a Series or Index already of a (naive) datetime64 dtype as it is,
    anything else through `pd.to_datetime`. pandas' to_datetime turns the first rows of even a
    datetime column into Timestamp objects to decide whether to cache its conversion: 40 ms a
    call on 60,000 declarations, and a train job made 27 such calls."""
    if isinstance(values, pd.Series | pd.Index) and pd.api.types.is_datetime64_dtype(values.dtype):
        return values
    return pd.to_datetime(values)


def instants(lodged_at: pd.Series) -> np.ndarray:
    """Lodging times as a numpy datetime64[ns] array (comparisons on it are vectorised and fast)."""
    return np.asarray(datetimes(lodged_at).to_numpy(dtype="datetime64[ns]"))


# Lodging times are recorded to the second: one second after the last lodging is after every
# declaration, and no declaration can fall between the last one and it.
AFTER_LAST = pd.Timedelta(seconds=1)


def after_last(lodged_at: pd.Series) -> pd.Timestamp:
    """The first instant after the last declaration: the as-of of a snapshot of all the data and
    the end of a window open to the latest declaration."""
    last = datetimes(lodged_at).max()
    if pd.isna(last):
        raise ValueError("lodged_at has no dates: the data has no end")
    return pd.Timestamp(last) + AFTER_LAST


def data_end(lodged_at: pd.Series, holdout_days: int = 0) -> pd.Timestamp:
    """The day boundary that ends the usable data: midnight after the last lodging day, moved
    back by the `holdout_days` held out for scoring (the declarations `run` scores)."""
    last = datetimes(lodged_at).max()
    if pd.isna(last):
        raise ValueError("lodged_at has no dates: the data has no end")
    return pd.Timestamp(last).normalize() + pd.Timedelta(days=1) - pd.Timedelta(days=holdout_days)


@dataclass(frozen=True)
class Window:
    """A stretch of lodging time: `start <= lodged_at < end`."""

    name: str
    start: pd.Timestamp
    end: pd.Timestamp

    def contains(self, lodged_at: pd.Series) -> np.ndarray:
        """Boolean mask of the declarations lodged in the window."""
        times = instants(lodged_at)
        return (times >= self.start.to_datetime64()) & (times < self.end.to_datetime64())

    @property
    def days(self) -> float:
        """Length of the window in days."""
        return (self.end - self.start) / pd.Timedelta(days=1)

    def as_dict(self) -> dict[str, str]:
        """ISO start and end, for logs and the export file."""
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}

    def __str__(self) -> str:
        return f"{self.name} [{self.start:%Y-%m-%d %H:%M}, {self.end:%Y-%m-%d %H:%M})"
