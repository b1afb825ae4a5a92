"""The issue-16 shortcuts of the feature build agree with the general code they bypass."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.features.build import _rows_in_order, _rows_of
from pipeline.features.history import _first_rows


def _declarations(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"declaration_id": pd.Series(ids, dtype=object)})


def test_outcomes_find_their_rows_by_position_as_by_hashing() -> None:
    ids = [f"D{i:05d}" for i in range(0, 2000, 3)]
    wanted = pd.Series(["D00003", "D99999", "D01998", "D00000", "D00004", "D01998"])
    ordered = _rows_in_order(_declarations(ids)["declaration_id"], wanted)
    assert ordered is not None
    assert ordered.tolist() == [1, -1, 666, 0, -1, 666]
    shuffled = ids[::-1]  # not ascending: the hashing path, rows counted from the end
    assert _rows_in_order(_declarations(shuffled)["declaration_id"], wanted) is None
    hashed = _rows_of(_declarations(shuffled), wanted)
    assert hashed.tolist() == [len(ids) - 1 - r if r >= 0 else -1 for r in ordered]


def test_a_repeated_ascending_id_with_an_outcome_is_named() -> None:
    declarations = _declarations(["D1", "D2", "D2", "D3"])
    with pytest.raises(ValueError, match=r"declaration_id repeats values \['D2'\]"):
        _rows_of(declarations, pd.Series(["D3", "D2"]))
    # A repeated id no outcome refers to is left alone.
    assert _rows_of(declarations, pd.Series(["D3", "D1"])).tolist() == [3, 0]


def test_first_rows_equal_the_grouped_minimum_of_ascending_times() -> None:
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 40, 500)
    times = np.sort(rng.integers(0, 10_000, 500))
    grouped = pd.Series(times).groupby(codes).transform("min").to_numpy()
    assert np.array_equal(times[_first_rows(codes)], grouped)
