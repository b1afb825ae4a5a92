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


def test_ties_in_time_are_ordered_by_id_whether_or_not_they_come_ordered() -> None:
    declarations, _ = tiny_tables(300, seed=5, hours=20)  # 300 rows in 20 instants
    expected = declarations.sort_values(["lodged_at", "declaration_id"], kind="stable")
    by_time = declarations.sort_values("lodged_at", kind="stable")  # ids out of order in ties
    for given in (expected, by_time, declarations):
        out = sorted_declarations(given.reset_index(drop=True))
        assert out["declaration_id"].tolist() == expected["declaration_id"].tolist()
