"""The labelled rows of one window as the boosters take them, shared by the fit and its engines
(`train.fit`, `train.dask_engine`), so that neither imports the other for them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class WindowRows:
    """Model inputs of one window's labelled declarations."""

    X: pd.DataFrame
    y: np.ndarray
    weight: np.ndarray
    revenue: np.ndarray

    def __len__(self) -> int:
        return len(self.y)
