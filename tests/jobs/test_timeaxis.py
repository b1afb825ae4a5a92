"""The one time axis: where the data ends (`after_last`, `data_end`) and windows built on it."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.timeaxis import Window, after_last, data_end

START = pd.Timestamp("2024-01-01")
lodging_seconds = st.lists(st.integers(0, 200 * 86_400), min_size=1, max_size=60)


def _lodged(seconds: list[int]) -> pd.Series:
    """Lodging times recorded to the second, as the ingestion writes them."""
    return pd.Series(START + pd.to_timedelta(seconds, unit="s"))


@given(seconds=lodging_seconds)
def test_every_declaration_is_before_after_last_and_nothing_lies_between(seconds: list[int]):
    lodged = _lodged(seconds)
    end = after_last(lodged)
    assert (lodged < end).all()
    # the first instant after the last declaration, to the second: an open-ended window
    # ending there holds every declaration
    assert end - lodged.max() == pd.Timedelta(seconds=1)
    assert Window("all", lodged.min(), end).contains(lodged).all()


@given(seconds=lodging_seconds, holdout=st.integers(0, 40))
def test_windows_ending_at_data_end_hold_no_held_out_row(seconds: list[int], holdout: int):
    lodged = _lodged(seconds)
    end = data_end(lodged, holdout)
    assert end == end.normalize()  # a day boundary
    # held out: the declarations of the last `holdout` lodging days (calendar days)
    last_day = lodged.max().normalize()
    held_out = (lodged.dt.normalize() > last_day - pd.Timedelta(days=holdout)).to_numpy()
    usable = Window("usable", START - pd.Timedelta(days=60), end).contains(lodged)
    assert not (usable & held_out).any()
    assert (usable | held_out).all()  # and nothing else is lost
    assert data_end(lodged) >= after_last(lodged)  # nothing held out: every declaration usable


def test_no_date_no_end():
    empty = pd.Series(pd.to_datetime([None, None]))
    with pytest.raises(ValueError, match="no dates"):
        after_last(empty)
    with pytest.raises(ValueError, match="no dates"):
        data_end(empty)


def test_datetimes_keep_a_datetime_column_as_it_is_and_convert_the_rest() -> None:
    """A datetime column is not converted again (pandas' to_datetime builds Timestamp objects of
    its first rows even then); other inputs go through to_datetime, with the same instants."""
    from pipeline.timeaxis import datetimes, instants

    lodged = _lodged([0, 59, 86_400, 90_000]).astype("datetime64[us]")
    assert datetimes(lodged) is lodged
    index = pd.Index(lodged)
    assert datetimes(index) is index
    text = lodged.dt.strftime("%Y-%m-%d %H:%M:%S")
    assert datetimes(text).equals(pd.to_datetime(text))
    assert (instants(text) == instants(lodged)).all()
    aware = lodged.dt.tz_localize("UTC")
    assert datetimes(aware).equals(pd.to_datetime(aware))
