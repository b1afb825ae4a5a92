"""The shortcuts of timestamp validation read as the general code they bypass. A timestamp
column that repeats values is read once per distinct value: each row gets the date and the first
reason that reading every row on its own gives it, and a column refused as a whole (day-first
next to month-first) is refused with the same message. The offset and zone-word searches are
skipped only where no value can match them."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline.ingest.columns import DECLARATION_COLUMNS
from pipeline.ingest.schema import (
    DEFAULT_CONTRACT,
    OFFSET_AT_END,
    ZONE_WORD,
    DataError,
    _coerce_timestamp,
    _ends_like_offset,
    _ends_like_word,
    _read_timestamps,
    _Verdicts,
    validate_declarations,
)

LODGED_AT = next(c for c in DECLARATION_COLUMNS if c.name == "lodged_at")
# Texts every step of the reading treats differently: ISO with and without an offset, zone
# words read as UTC or refused, numeric dates in either order, blanks, no date, too early, too
# late, missing values of two kinds.
STAMPS = st.sampled_from(
    [
        "2024-03-01T10:00:00",
        "2024-03-01 10:00:00.000",
        "2024-03-01T10:00:00+09:00",
        "2024-03-02 11:30 UTC",
        "2024-03-02 11:30 PST",
        "  2024-03-03 08:00  ",
        "25/12/2023 10:00",
        "12/25/2023",
        "03/04/2023",
        "Jan 5 2024 10:00 AM",
        "not a date",
        "",
        "1900-01-01",
        "2999-01-01",
        None,
        np.nan,
    ]
)


def _read(
    read: Callable[..., pd.Series], values: list[object]
) -> tuple[np.ndarray, np.ndarray] | str:
    """Dates and reasons of `values` read by `read`, or the message of the refusal."""
    series = pd.Series(values, dtype=object)
    verdicts = _Verdicts(len(series))
    try:
        parsed = read(series, LODGED_AT, verdicts, DEFAULT_CONTRACT, "test")
    except DataError as exc:
        return str(exc)
    return parsed.to_numpy(dtype="datetime64[ns]"), verdicts.reason


@settings(max_examples=60, deadline=None)
@given(values=st.lists(STAMPS, min_size=2, max_size=30))
def test_repeated_texts_read_as_every_row_on_its_own(values: list[object]) -> None:
    distinct, each = _read(_coerce_timestamp, values), _read(_read_timestamps, values)
    if isinstance(each, str) or isinstance(distinct, str):
        assert distinct == each
        return
    np.testing.assert_array_equal(distinct[0], each[0])
    assert distinct[1].tolist() == each[1].tolist()


def test_a_batch_lodged_in_the_same_seconds_names_each_bad_row() -> None:
    from helpers.ingest import declarations

    frame = declarations(rows=200, seed=5)
    stamps = np.where(np.arange(200) % 2 == 0, "2024-03-01T10:00:00", "2024-03-01 10:00 PST")
    frame["lodged_at"] = stamps.astype(object)
    clean, report = validate_declarations(frame)
    assert len(clean) == 100
    assert report.quarantined["row"].tolist() == list(range(2, 201, 2))
    assert report.quarantined["reason"].str.contains("time zone abbreviation").all()


@pytest.mark.parametrize(
    "values",
    [[pd.Timestamp("2024-03-01"), pd.Timestamp("2024-03-01")], [1, True], [True, 1]],
    ids=["datetimes", "number then flag", "flag then number"],
)
def test_columns_that_are_not_only_text_are_read_row_by_row(values: list[object]) -> None:
    # 1 and True hash alike: read as one value, the flag would take the number's date
    distinct, each = _read(_coerce_timestamp, values), _read(_read_timestamps, values)
    assert not isinstance(distinct, str) and not isinstance(each, str)
    np.testing.assert_array_equal(distinct[0], each[0])
    assert distinct[1].tolist() == each[1].tolist()


# The ends of timestamps: digits (ASCII and Arabic-Indic), signs, colons, zone letters, blanks
# of every kind (a newline, a no-break space, an em space).
ENDS = st.text(alphabet="0123456789\u0661+-:.zZ TtCcEeSsPpMmUuGg\n\u00a0\u2003", max_size=12)


@settings(max_examples=400, deadline=None)
@given(head=st.sampled_from(["2024-03-01 10:00", "2024-03-01T10:00:00", "", "x"]), end=ENDS)
@example(head="2024-03-01 10:00", end="+09:00\u2003")
@example(head="2024-03-01 10:00", end=" -0500\n")
@example(head="2024-03-01 10:00", end=" z ")
@example(head="2024-03-01 10:00", end=" PST\u00a0")
def test_a_search_is_skipped_only_where_it_cannot_match(head: str, end: str) -> None:
    text = pd.Series([head + end], dtype="string")
    if re.search(OFFSET_AT_END, head + end):
        assert _ends_like_offset(text).all()
    if re.search(ZONE_WORD, head + end):
        assert _ends_like_word(text).all()
