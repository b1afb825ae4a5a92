"""The issue-16 shortcuts of the feature build agree with the general code they bypass."""

from __future__ import annotations

import numpy as np
import pandas as pd
from helpers.features import tiny_tables

from pipeline.features.build import sorted_declarations
from pipeline.features.history import _first_rows


def test_first_rows_equal_the_grouped_minimum_of_ascending_times() -> None:
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 40, 500)
    times = np.sort(rng.integers(0, 10_000, 500))
    grouped = pd.Series(times).groupby(codes).transform("min").to_numpy()
    assert np.array_equal(times[_first_rows(codes)], grouped)


def test_declarations_already_in_order_are_copied_not_shared() -> None:
    declarations, _ = tiny_tables(200, seed=2, ties=False)
    ordered = declarations.sort_values("lodged_at").reset_index(drop=True)
    out = sorted_declarations(ordered)
    assert out["declaration_id"].tolist() == ordered["declaration_id"].tolist()
    assert isinstance(out.index, pd.RangeIndex)
    values = out["net_mass_kg"].to_numpy()
    assert not np.shares_memory(values, ordered["net_mass_kg"].to_numpy())
    shuffled = sorted_declarations(ordered.sample(frac=1.0, random_state=1))
    assert shuffled["declaration_id"].tolist() == out["declaration_id"].tolist()
