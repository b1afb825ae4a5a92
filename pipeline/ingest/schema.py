"""The canonical schema in force: type coercion, checks, and quarantine of bad rows.

`validate_declarations` and `validate_outcomes` turn any frame that carries the contract's columns
(pipeline/ingest/columns.py) into the canonical dtypes:

- declaration_id: object of str; hs_code: object of str (digits only, leading zeros kept);
- timestamps: datetime64[ns], tz-naive (tz-aware input is converted to UTC first);
- entity and category columns: pandas ``category`` of str (fast groupbys downstream);
- floats: float64; aeo / inspected / hit: bool; hs2 / hs4 / hs6 (category) derived from hs_code.

A problem with the whole table (a required column missing, everything in one column) raises
`DataError`. A problem with a row sends the row to quarantine with one reason naming the column
(``"net_mass_kg: negative (-3.0)"``); the other rows go on. Variable parts of a reason always sit
in its final parentheses, so reasons can be counted by kind. Every check is vectorised: text
columns are factorized once and checked on their distinct values only.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from pipeline.config import DEFAULT_MAX_VALUES
from pipeline.ingest.columns import (
    DECLARATION_COLUMNS,
    HS_LEVELS,
    OUTCOME_COLUMNS,
    SELECTION_REASONS,
    Column,
)

FRAME_SOURCE = "<frame>"
HS_MIN_DIGITS = 6
HS_MAX_DIGITS = 10
TRUE_TEXTS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_TEXTS = frozenset({"false", "f", "no", "n", "0"})
OTHER_DELIMITERS = (";", "\t", "|")
# A reader that finds a problem with one row (a NUL byte in a cell, a short KCS row, a repeated
# KCS id) names it in this column; validation quarantines the row with that reason first.
ROW_PROBLEM = "_row_problem"
# A rate column whose values mostly exceed 1 (100 %) is written in percent (8 meaning 8 %):
# every row is refused, since a few plausible-looking values would be read 100 times too high.
PERCENT_COLUMNS = ("duty_rate",)
PERCENT_SHARE = 0.5


@dataclass(frozen=True)
class Contract:
    """What a plausible value is, beyond its type (config keys under `data`).

    `date_format`: strptime format of every text timestamp (None: ISO 8601, or one unambiguous
    format per column); `earliest_date`: timestamps before it are refused; `future_days`: a
    timestamp later than now plus this many days is refused; `max_values`: column -> largest
    plausible value. `now` pins the present (tests); None: the clock.
    """

    date_format: str | None = None
    earliest_date: dt.date = dt.date(1990, 1, 1)
    future_days: float = 1.0
    max_values: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MAX_VALUES))
    now: pd.Timestamp | None = None

    def latest(self) -> np.datetime64:
        """The latest plausible timestamp."""
        now = self.now if self.now is not None else pd.Timestamp.now("UTC").tz_localize(None)
        return np.datetime64(now + pd.Timedelta(days=self.future_days), "ns")


DEFAULT_CONTRACT = Contract()


class DataError(ValueError):
    """A problem with a whole file or table; the message names the file and the column(s)."""


@dataclass
class ValidationReport:
    """What validation kept and quarantined for one table.

    `quarantined` holds the bad rows' original values, `row` (1-based data-row number in the
    source) and `reason`. `kept_rows` gives the source row number of each kept row, in the order
    of the validated frame (which is sorted by time), so callers can map results back.
    """

    table: str
    source: str
    rows_in: int
    rows_kept: int
    quarantined: pd.DataFrame
    kept_rows: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), repr=False)

    @property
    def rows_quarantined(self) -> int:
        """Rows sent to quarantine."""
        return len(self.quarantined)

    def reason_counts(self) -> pd.Series:
        """Quarantined rows per kind of reason (the reason without its final parentheses)."""
        if self.quarantined.empty:
            return pd.Series(dtype="int64", name="rows")
        kinds = (
            self.quarantined["reason"].astype(str).str.replace(r"\s*\([^()]*\)$", "", regex=True)
        )
        return kinds.value_counts().rename("rows")

    def summary(self) -> str:
        """One line of counts, then one line per kind of reason."""
        lines = [
            f"{self.table} ({self.source}): {self.rows_in:,} rows in, {self.rows_kept:,} kept, "
            f"{self.rows_quarantined:,} quarantined"
        ]
        lines.extend(f"  {count:>9,}  {kind}" for kind, count in self.reason_counts().items())
        return "\n".join(lines)


@dataclass
class ValidatedTables:
    """Validated declarations and outcomes, and the report of each table."""

    declarations: pd.DataFrame
    outcomes: pd.DataFrame
    reports: list[ValidationReport]

    def summary(self) -> str:
        """The reports' summaries, one after the other."""
        return "\n".join(report.summary() for report in self.reports)


class _Verdicts:
    """First reason per row: a later check never overwrites an earlier one."""

    def __init__(self, n: int) -> None:
        self.reason = np.full(n, None, dtype=object)
        self.bad = np.zeros(n, dtype=bool)

    def flag(self, mask: np.ndarray, message: str | Callable[[np.ndarray], np.ndarray]) -> None:
        """Give rows in `mask` (not yet bad) a reason: a text, or a function of their positions."""
        new = np.flatnonzero(mask & ~self.bad)
        if len(new) == 0:
            return
        self.reason[new] = message if isinstance(message, str) else message(new)
        self.bad[new] = True


def _quoted(values: pd.Series | np.ndarray) -> np.ndarray:
    """Values as they appear in a reason: text in quotes, numbers as they are."""
    series = pd.Series(np.asarray(values, dtype=object))
    texts = series.astype(str)
    is_text = series.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)  # few bad rows only
    return np.where(is_text, "'" + texts + "'", texts).astype(object)


def _reasons(prefix: str, shown: np.ndarray, suffix: str = "") -> np.ndarray:
    """`prefix (shown suffix)` for each shown value."""
    return (prefix + " (" + pd.Series(shown, dtype=object).astype(str) + suffix + ")").to_numpy(
        dtype=object
    )


def _at(values: np.ndarray, codes: np.ndarray, missing: object = None) -> np.ndarray:
    """`values[codes]`, with `missing` where the code is -1 (null)."""
    has = codes >= 0
    if values.dtype == object:
        out = np.full(len(codes), missing, dtype=object)
    else:  # numbers keep their dtype; booleans are False where missing
        out = np.full(len(codes), 0 if missing is None else missing, dtype=values.dtype)
    out[has] = values[codes[has]]
    return out


def _nulled(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """An object copy of `values` with None where `mask` is true."""
    out = np.asarray(values, dtype=object).copy()
    out[mask] = None
    return out


INTEGRAL_FLOAT_TEXT = r"^(\d+)\.0$"
FEW_VALUES = 64  # distinct values checked one by one rather than through pandas' string methods


def _as_text(uniques: pd.Index | np.ndarray) -> np.ndarray:
    """Distinct values as stripped text; integral floats lose their '.0' (30.0 -> '30')."""
    index = pd.Index(uniques)
    if len(index) == 0:
        return np.empty(0, dtype=object)
    if pd.api.types.is_float_dtype(index.dtype):
        values = index.to_numpy(dtype=float)
        integral = np.isfinite(values) & (np.floor(values) == values) & (np.abs(values) < 2.0**63)
        texts = index.astype(str).to_numpy(dtype=object)
        if integral.any():
            texts[integral] = values[integral].astype(np.int64).astype(str).astype(object)
        return texts
    if index.dtype == object and index.inferred_type not in ("string", "empty"):
        # Mixed Python objects (e.g. 71080.0 next to '870323'): distinct values one by one.
        return np.array([_one_text(v) for v in index], dtype=object)
    if index.dtype == object and len(index) <= FEW_VALUES:
        # A few texts (a request of one declaration): one by one, the same strip and regex as
        # below without pandas' fixed cost per string method (a millisecond a column).
        return np.array([_one_text(v) for v in index], dtype=object)
    texts = pd.Series(index.astype(str), dtype=object).str.strip()
    # a code a spreadsheet wrote as a float ('30.0') reads as its number does (30 -> '30'); the
    # substitution only where it can match (a text ending in '.0'): on every value it cost 75 ms
    # for the 20,000 distinct ids of a served batch
    floating = texts.str.endswith(".0").to_numpy(dtype=bool)
    if floating.any():
        texts[floating] = texts[floating].str.replace(INTEGRAL_FLOAT_TEXT, r"\1", regex=True)
    return texts.to_numpy(dtype=object)


def _one_text(value: object) -> str:
    """Text of one distinct value; an integral float loses its '.0'."""
    if isinstance(value, float) and np.isfinite(value) and value == int(value):
        return str(int(value))
    return re.sub(INTEGRAL_FLOAT_TEXT, r"\1", str(value).strip())


def _text_codes(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Codes (-1 for null or blank) into distinct stripped texts of a column."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy().astype(np.int64)
        raw = series.cat.categories
    else:
        factor_codes, raw = pd.factorize(series, use_na_sentinel=True)
        codes = factor_codes.astype(np.int64)
    texts = _as_text(raw)
    blank = texts == ""
    if raw.dtype == object and not blank.any() and (texts == np.asarray(raw, dtype=object)).all():
        return codes, texts  # already clean, distinct text (the usual case): no second pass
    texts_or_null = _nulled(texts, blank)
    remap, uniques = pd.factorize(pd.Series(texts_or_null, dtype=object), use_na_sentinel=True)
    new_codes = _at(remap.astype(np.int64), codes, -1)
    return new_codes, np.asarray(uniques, dtype=object)


def _sorted_categorical(codes: np.ndarray, uniques: np.ndarray) -> pd.Categorical:
    """A categorical with sorted string levels (stable levels whatever the row order)."""
    order = np.argsort(uniques.astype(str), kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    sorted_codes = _at(rank, codes, -1)
    categories = pd.Index(uniques[order], dtype=object)
    return pd.Categorical.from_codes(sorted_codes, categories=categories)


def _flag_nul(codes: np.ndarray, uniques: np.ndarray, column: str, verdicts: _Verdicts) -> None:
    """A text value holding a NUL byte (a Parquet string, a REST body) is damaged, not an id:
    its row is quarantined, as a CSV file's would be (`readers.nul_problems`)."""
    if len(uniques) == 0:
        return
    if len(uniques) <= FEW_VALUES and not any(isinstance(v, str) and "\0" in v for v in uniques):
        return  # a few clean texts (a one-declaration request): no pandas string method
    damaged = pd.Series(uniques, dtype=object).str.contains("\0", regex=False).fillna(False)
    if not damaged.any():
        return
    shown = pd.Series(uniques, dtype=object).str.replace("\0", "\\0", regex=False).to_numpy()
    verdicts.flag(
        _at(damaged.to_numpy(dtype=bool), codes),
        lambda idx: _reasons(
            f"{column}: a NUL byte in the value, the file is damaged", _quoted(shown[codes[idx]])
        ),
    )


def _coerce_id(series: pd.Series, column: str, verdicts: _Verdicts) -> np.ndarray:
    codes, uniques = _text_codes(series)
    _flag_nul(codes, uniques, column, verdicts)
    verdicts.flag(codes < 0, f"{column}: missing")
    return _at(uniques, codes)


def _coerce_category(series: pd.Series, col: Column, verdicts: _Verdicts) -> pd.Categorical:
    codes, uniques = _text_codes(series)
    _flag_nul(codes, uniques, col.name, verdicts)
    if not col.nullable:
        verdicts.flag(codes < 0, f"{col.name}: missing")
    return _sorted_categorical(codes, uniques)


def _coerce_selection_reason(series: pd.Series, verdicts: _Verdicts) -> pd.Categorical:
    """Selection reasons, case-insensitive, to the fixed levels of SELECTION_REASONS."""
    codes, uniques = _text_codes(series)
    lowered = pd.Series(uniques, dtype=object).str.lower().to_numpy(dtype=object)
    known = np.isin(lowered, list(SELECTION_REASONS))
    verdicts.flag(codes < 0, "selection_reason: missing")
    allowed = ", ".join(SELECTION_REASONS)
    unknown = (codes >= 0) & ~_at(known, codes)
    verdicts.flag(
        unknown,
        lambda idx: _reasons(
            "selection_reason: unknown value", _quoted(uniques[codes[idx]]), f"; expected {allowed}"
        ),
    )
    values = _at(_nulled(lowered, ~known), codes)
    return pd.Categorical(values, categories=pd.Index(SELECTION_REASONS, dtype=object))


FLOAT_TEXT = r"^\s*(\d{5,10})\.0\s*$"  # one trailing '.0': a number written as a float


def _coerce_hs(series: pd.Series, verdicts: _Verdicts) -> np.ndarray:
    """HS codes: a float's trailing '.0' dropped (62082200.0 -> 62082200); separators '.' and
    ' ' dropped (6208.22.00); odd lengths 5/7/9 lost a leading zero."""
    codes, uniques = _text_codes(series)
    _flag_nul(codes, uniques, "hs_code", verdicts)
    verdicts.flag(codes < 0, "hs_code: missing")
    # A spreadsheet writes the number 62082200 as '62082200.0': its text form is the code.
    texts = pd.Series(uniques, dtype=object).str.replace(FLOAT_TEXT, r"\1", regex=True)
    cleaned = texts.str.replace(r"[.\s]", "", regex=True)
    lengths = cleaned.str.len().to_numpy(dtype=np.int64) if len(cleaned) else np.zeros(0, int)
    digits = cleaned.str.fullmatch(r"\d+").fillna(False).to_numpy(dtype=bool)
    padded = np.where(digits & np.isin(lengths, (5, 7, 9)), "0" + cleaned, cleaned).astype(object)
    lengths = np.where(digits & np.isin(lengths, (5, 7, 9)), lengths + 1, lengths)
    problem = np.full(len(uniques), None, dtype=object)
    problem[~digits] = "hs_code: not digits"
    problem[digits & (lengths < HS_MIN_DIGITS)] = "hs_code: too short, expected 6-10 digits"
    problem[digits & (lengths > HS_MAX_DIGITS)] = "hs_code: too long, expected 6-10 digits"
    chapter_zero = digits & (lengths >= HS_MIN_DIGITS) & (lengths <= HS_MAX_DIGITS)
    chapter_zero &= pd.Series(padded, dtype=object).str.startswith("00").to_numpy(dtype=bool)
    problem[chapter_zero] = "hs_code: chapter 00 does not exist"
    bad_unique = pd.notna(problem)
    verdicts.flag(
        _at(bad_unique, codes),
        lambda idx: (problem[codes[idx]] + " (" + _quoted(uniques[codes[idx]]) + ")").astype(
            object
        ),
    )
    return _at(_nulled(padded, bad_unique), codes)


NUMERIC_DATE = re.compile(r"^\s*(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})(?=$|[\sT])(.*)$")


def _numeric_dates(
    texts: pd.Series, column: str, source: str, date_format: str | None
) -> pd.Series:
    """Dates written `a/b/yyyy` (or with '.' / '-'), read day-first or month-first as the whole
    column says: a value with a first number above 12 makes it day-first, a second number above
    12 month-first. A column with both, or with neither (every value ambiguous, such as
    01/12/2024) and no `data.date_format`, is refused: reading it one way would be a guess."""
    parts = texts.str.extract(NUMERIC_DATE.pattern)
    matched = parts[0].notna().to_numpy()
    if not matched.any():
        return pd.Series(pd.NaT, index=texts.index, dtype="datetime64[ns, UTC]")
    first = pd.to_numeric(parts[0], errors="coerce").to_numpy()
    second = pd.to_numeric(parts[2], errors="coerce").to_numpy()
    day_first = bool((first[matched] > 12).any())
    month_first = bool((second[matched] > 12).any())
    examples = ", ".join(repr(v) for v in texts[matched].drop_duplicates().head(3))
    if day_first and month_first:
        shown_day = texts[matched & (first > 12)].iloc[0]
        shown_month = texts[matched & (second > 12)].iloc[0]
        raise DataError(
            f"{source}: column {column} mixes day-first ({shown_day!r}) and month-first "
            f"({shown_month!r}) dates; it cannot be read in one format. Write ISO dates "
            "(2024-12-01 10:00) or one format throughout and set data.date_format"
        )
    if not (day_first or month_first):
        raise DataError(
            f"{source}: column {column} holds dates such as {examples} that read day-first or "
            "month-first alike; set data.date_format (e.g. '%d/%m/%Y %H:%M') or write ISO "
            "dates (2024-12-01 10:00)"
        )
    day, month = (parts[0], parts[2]) if day_first else (parts[2], parts[0])
    year = parts[3].where(parts[3].str.len() == 4, "20" + parts[3])
    rest = parts[4].fillna("").str.strip()
    iso = year + "-" + month.str.zfill(2) + "-" + day.str.zfill(2) + " " + rest
    return _iso_utc(iso.str.strip())


OFFSET_AT_END = r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)\s*$"
ZONE_WORD = r"(?<=\d)\s*([A-Za-z]{2,5})\s*$"
# Zone names read as UTC; every other abbreviation is refused: CST is China, Cuba or US Central.
UTC_WORDS = frozenset({"UTC", "GMT", "UT"})
NOT_ZONES = frozenset({"AM", "PM"})


# The two regexes below search every position of every value (20 ms each on 20,000 timestamps);
# the tails first, in one pass of plain string methods (pandas' would be the same Python loop),
# say which values could match at all: none, in the usual ISO column.
def _tails(text: pd.Series) -> list[str]:
    """Each text's last six characters before its trailing blanks ('' for a missing value)."""
    return [v.rstrip()[-6:] if isinstance(v, str) else "" for v in text.to_numpy(dtype=object)]


def _ends_like_offset(text: pd.Series) -> np.ndarray:
    """Which texts could match OFFSET_AT_END: a 'z' last, or a sign among the last six
    characters (+09, +0900, +09:00), once trailing blanks are off."""
    return np.array([t[-1:] in ("z", "Z") or "+" in t or "-" in t for t in _tails(text)], bool)


def _ends_like_word(text: pd.Series) -> np.ndarray:
    """Which texts could match ZONE_WORD: an ASCII letter last, once trailing blanks are off."""
    return np.array([t[-1:].isascii() and t[-1:].isalpha() for t in _tails(text)], dtype=bool)


def _iso_utc(text: pd.Series) -> pd.Series:
    """ISO 8601 text as UTC timestamps (NaT where it is not). Values with an offset and naive
    ones (UTC) are read apart: in one call pandas gives a naive value the offset of the value
    before it, so the reading would depend on row order."""
    strings = text.astype("string")
    with_offset = np.zeros(len(text), dtype=bool)
    if _ends_like_offset(strings).any():  # else no value can match: the search is skipped
        with_offset = strings.str.contains(OFFSET_AT_END).fillna(False).to_numpy(bool)
    parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    for group in (with_offset, ~with_offset):
        if group.any():
            parsed[group] = pd.to_datetime(text[group], errors="coerce", format="ISO8601", utc=True)
    return parsed


def _flag_zone_words(series: pd.Series, column: str, verdicts: _Verdicts) -> pd.Series:
    """Text timestamps ending in a zone abbreviation: UTC and GMT read as +00:00; any other
    (PST, KST, CET...) flagged, since pandas would drop it and read the time as UTC."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return series
    text = series.astype("string")
    if not _ends_like_word(text).any():  # no value can end in a zone word: no search
        return series
    words = text.str.extract(ZONE_WORD)[0].str.upper()
    utc = words.isin(UTC_WORDS).fillna(False).to_numpy(bool)
    refused = (words.notna() & ~words.isin(UTC_WORDS | NOT_ZONES)).fillna(False).to_numpy(bool)
    if not (utc.any() or refused.any()):
        return series
    shown = series.to_numpy(dtype=object)
    verdicts.flag(
        refused,
        lambda idx: _reasons(
            f"{column}: a time zone abbreviation is ambiguous; write the offset "
            "(2024-12-01 06:21:07-08:00)",
            _quoted(shown[idx]),
        ),
    )
    out = series.astype(object).copy()
    out[utc] = text[utc].str.replace(ZONE_WORD, "", regex=True).to_numpy(dtype=object)
    out[utc] = out[utc].astype(str) + "+00:00"
    out[refused] = None
    return out


def _first_pass(
    text: pd.Series, contract: Contract, present: np.ndarray
) -> tuple[pd.Series, np.ndarray]:
    """Every value in `contract.date_format` exactly (nothing left to retry), or ISO 8601 (fast);
    returns the parsed dates and the present values that failed."""
    if contract.date_format is not None:
        parsed = pd.to_datetime(
            text.astype("string").str.strip(),
            errors="coerce",
            format=contract.date_format,
            utc=True,
        )
        return parsed, np.zeros(len(text), dtype=bool)
    parsed = _iso_utc(text)
    return parsed, parsed.isna().to_numpy() & present


class _DateColumn(NamedTuple):
    """A date column being read: its name, the file it comes from and the contract's format."""

    name: str
    source: str
    contract: Contract


def _numeric_pass(
    text: pd.Series,
    parsed: pd.Series,
    failed: np.ndarray,
    present: np.ndarray,
    where: _DateColumn,
) -> tuple[pd.Series, np.ndarray]:
    """The failed values read as numeric dates (`_numeric_dates`); those in the numeric shape that
    still do not parse are bad dates, not another format, so they leave the retries."""
    column, source, contract = where
    numeric = _numeric_dates(text[failed].astype(str), column, source, contract.date_format)
    parsed = parsed.copy()
    parsed[failed] = numeric
    still = parsed.isna().to_numpy() & present
    shaped = np.zeros(len(text), dtype=bool)
    shaped[np.flatnonzero(failed)] = (
        text[failed].astype(str).str.match(NUMERIC_DATE.pattern).to_numpy(dtype=bool)
    )
    return parsed, still & ~shaped


def _fallback_passes(
    text: pd.Series, parsed: pd.Series, failed: np.ndarray, present: np.ndarray
) -> pd.Series:
    """The format of the first remaining value applied to all of them (fast), then each remaining
    value on its own ('mixed', slow, only where both failed)."""
    for fallback in ("infer", "mixed"):
        if not failed.any():
            break
        with warnings.catch_warnings():  # pandas' format-guessing notes are not for users
            warnings.simplefilter("ignore", UserWarning)
            retry = pd.to_datetime(
                text[failed],
                errors="coerce",
                utc=True,
                **({"format": "mixed"} if fallback == "mixed" else {}),
            )
        parsed = parsed.copy()
        parsed[failed] = retry
        failed = parsed.isna().to_numpy() & present
    return parsed


def _parse_text_dates(
    series: pd.Series, column: str, contract: Contract, source: str
) -> tuple[pd.Series, np.ndarray]:
    """Dates written as text, in UTC without a zone, and which present values are no date."""
    text = series if series.dtype == object else series.astype("string")
    present = text.notna().to_numpy() & (text.astype(str).str.strip() != "").to_numpy()
    parsed, failed = _first_pass(text, contract, present)
    if failed.any():
        where = _DateColumn(column, source, contract)
        parsed, failed = _numeric_pass(text, parsed, failed, present, where)
    parsed = _fallback_passes(text, parsed, failed, present).dt.tz_localize(None)
    return parsed, parsed.isna().to_numpy() & present


def _parse_timestamps(
    series: pd.Series, column: str, contract: Contract, source: str
) -> tuple[pd.Series, np.ndarray]:
    """Datetimes as naive UTC datetime64[ns], and which present values are no date."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        parsed = series.dt.tz_convert("UTC").dt.tz_localize(None)
        unparseable = np.zeros(len(series), dtype=bool)
    elif pd.api.types.is_datetime64_dtype(series.dtype):
        parsed = series
        unparseable = np.zeros(len(series), dtype=bool)
    else:
        parsed, unparseable = _parse_text_dates(series, column, contract, source)
    return parsed.astype("datetime64[ns]"), unparseable


def _flag_timestamps(
    series: pd.Series,
    parsed: pd.Series,
    unparseable: np.ndarray,
    col: Column,
    verdicts: _Verdicts,
    contract: Contract,
) -> None:
    """Flag values that are no date, missing required ones, and dates before
    `data.earliest_date` or in the future."""
    what = (
        f"not a date in data.date_format {contract.date_format!r}"
        if (
            contract.date_format is not None
            and not pd.api.types.is_datetime64_any_dtype(series.dtype)
        )
        else "not a date"
    )
    verdicts.flag(
        unparseable,
        lambda idx: _reasons(f"{col.name}: {what}", _quoted(series.to_numpy()[idx])),
    )
    if not col.nullable:
        verdicts.flag(parsed.isna().to_numpy(), f"{col.name}: missing")
    stamps = parsed.to_numpy(dtype="datetime64[ns]")
    earliest = np.datetime64(pd.Timestamp(contract.earliest_date), "ns")
    verdicts.flag(
        stamps < earliest,
        lambda idx: _reasons(
            f"{col.name}: before data.earliest_date",
            pd.Series(stamps[idx]).astype(str),
            f" < {contract.earliest_date}",
        ),
    )
    latest = contract.latest()
    verdicts.flag(
        stamps > latest,
        lambda idx: _reasons(
            f"{col.name}: in the future", pd.Series(stamps[idx]).astype(str), " > now"
        ),
    )


def _coerce_timestamp(
    series: pd.Series,
    col: Column,
    verdicts: _Verdicts,
    contract: Contract,
    source: str,
) -> pd.Series:
    """With `contract.date_format`, every value in that format exactly. Without: ISO 8601 first
    (fast); numeric dates (01/12/2024) in the one day/month order the column admits
    (`_numeric_dates`); then the format of the first remaining value, applied to all of them;
    then each remaining value on its own ('mixed', slow, only where both failed). Values that
    are no date, missing, too early or in the future are flagged. A text column that repeats
    values is read once per distinct value (`_distinct_texts`)."""
    distinct = _distinct_texts(series)
    if distinct is not None:
        codes, texts = distinct
        # Every step reads a value on its own or the column's values in order of first
        # appearance (the day/month order, the format guessed from the first failure), so the
        # distinct texts give each row the dates and the first reason its own value gets.
        own = _Verdicts(len(texts))
        parsed = _read_timestamps(texts, col, own, contract, source)
        verdicts.flag(own.bad[codes], lambda idx: own.reason[codes[idx]])
        return pd.Series(parsed.to_numpy(dtype="datetime64[ns]")[codes])
    return _read_timestamps(series, col, verdicts, contract, source)


def _distinct_texts(series: pd.Series) -> tuple[np.ndarray, pd.Series] | None:
    """Codes of a text column's rows into its distinct values (a missing value is one of them),
    when it repeats some (the timestamps of a batch lodged within the same seconds); None when
    every value is distinct or the column holds more than text (1 and 1.0 hash alike)."""
    if series.dtype != object or pd.api.types.infer_dtype(series, skipna=True) != "string":
        return None
    codes, uniques = pd.factorize(series, use_na_sentinel=False)
    if len(uniques) == len(series):
        return None
    return codes.astype(np.int64), pd.Series(np.asarray(uniques, dtype=object), dtype=object)


def _read_timestamps(
    series: pd.Series,
    col: Column,
    verdicts: _Verdicts,
    contract: Contract,
    source: str,
) -> pd.Series:
    """`_coerce_timestamp` of every row as it is."""
    series = _flag_zone_words(series, col.name, verdicts)
    parsed, unparseable = _parse_timestamps(series, col.name, contract, source)
    _flag_timestamps(series, parsed, unparseable, col, verdicts, contract)
    return parsed.reset_index(drop=True)


def _coerce_float(
    series: pd.Series, col: Column, verdicts: _Verdicts, contract: Contract
) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        unparseable = np.zeros(len(values), dtype=bool)
    else:
        numbers = pd.to_numeric(series, errors="coerce")
        present = series.notna().to_numpy()
        failed = numbers.isna().to_numpy() & present
        if failed.any():  # retry the failures without surrounding blanks
            stripped = series[failed].astype(str).str.strip()
            numbers = numbers.astype("float64").copy()
            numbers[failed] = pd.to_numeric(stripped.replace("", np.nan), errors="coerce")
            present[np.flatnonzero(failed)[stripped.eq("").to_numpy()]] = False
        values = numbers.to_numpy(dtype="float64", na_value=np.nan)
        unparseable = np.isnan(values) & present
    original = series.to_numpy()
    verdicts.flag(
        unparseable, lambda idx: _reasons(f"{col.name}: not a number", _quoted(original[idx]))
    )
    verdicts.flag(
        np.isinf(values), lambda idx: _reasons(f"{col.name}: not finite", values[idx].astype(str))
    )
    if not col.nullable:
        verdicts.flag(np.isnan(values), f"{col.name}: missing")
    if col.minimum is not None:
        below = values < col.minimum
        word = "negative" if col.minimum == 0 else f"below {col.minimum:g}"
        verdicts.flag(below, lambda idx: _reasons(f"{col.name}: {word}", values[idx].astype(str)))
    if col.name in PERCENT_COLUMNS:
        _flag_percent(values, col.name, verdicts)
    limit = contract.max_values.get(col.name)
    if limit is not None:
        verdicts.flag(
            values > limit,
            lambda idx: _reasons(
                f"{col.name}: implausibly large", values[idx].astype(str), f" > {limit:g}"
            ),
        )
    return values


def _flag_percent(values: np.ndarray, column: str, verdicts: _Verdicts) -> None:
    """Refuse every row of a rate column written in percent: most of its values above 1."""
    present = np.isfinite(values)
    above = int((present & (values > 1.0)).sum())
    if above == 0 or above <= PERCENT_SHARE * int(present.sum()):
        return
    share = f"{above:,} of {int(present.sum()):,} values above 1"
    verdicts.flag(
        present,
        lambda idx: _reasons(
            f"{column}: the column is written in percent, expected a fraction (0.08 for 8 %)",
            values[idx].astype(str),
            f"; {share}",
        ),
    )


def _flag_percent_rows(coerced: dict[str, object], verdicts: _Verdicts) -> None:
    """A duty rate above 1 (100 %) that the row's own declared duty shows to be in percent: the
    duty lies within a factor 2 of value x rate / 100 and closer to it than to value x rate
    (8 meaning 8 %, in a batch too small for the column-wide check of `_flag_percent`)."""
    rate = np.asarray(coerced["duty_rate"], dtype=float)
    value = np.asarray(coerced["declared_value"], dtype=float)
    duty = np.asarray(coerced["declared_duty"], dtype=float)
    as_percent = value * rate / 100
    with np.errstate(invalid="ignore", divide="ignore"):
        near = (duty >= 0.5 * as_percent) & (duty <= 2.0 * as_percent)
        percent = (rate > 1.0) & near & (np.abs(duty - as_percent) < np.abs(duty - value * rate))
    verdicts.flag(
        percent & (value > 0),
        lambda idx: _reasons(
            "duty_rate: written in percent, expected a fraction (0.08 for 8 %)",
            rate[idx].astype(str),
            "; declared_duty is that percentage of declared_value",
        ),
    )


def _coerce_bool(series: pd.Series, col: Column, verdicts: _Verdicts) -> np.ndarray:
    """Booleans from bool, 0/1 or text (true/false, yes/no, t/f, y/n, 1/0, any case)."""
    if pd.api.types.is_bool_dtype(series.dtype) and not series.isna().any():
        return series.to_numpy(dtype=bool)
    codes, uniques = _text_codes(series)
    lowered = pd.Series(uniques, dtype=object).str.lower()
    truth = lowered.isin(TRUE_TEXTS).to_numpy(dtype=bool)
    falsity = lowered.isin(FALSE_TEXTS).to_numpy(dtype=bool)
    has = codes >= 0
    verdicts.flag(
        has & ~_at(truth | falsity, codes),
        lambda idx: _reasons(f"{col.name}: not true/false", _quoted(uniques[codes[idx]])),
    )
    values = _at(truth, codes)
    verdicts.flag(~has, f"{col.name}: missing")
    return values


def _empty_column(col: Column, n: int) -> pd.Series | pd.Categorical | np.ndarray:
    """An all-null column of the canonical dtype (optional columns absent from the input)."""
    if col.kind == "timestamp":
        return pd.Series(pd.NaT, index=pd.RangeIndex(n), dtype="datetime64[ns]")
    if col.kind == "float":
        return np.full(n, np.nan)
    if col.kind == "bool":
        return np.zeros(n, dtype=bool)
    if col.kind == "category":
        levels = list(SELECTION_REASONS) if col.name == "selection_reason" else []
        return pd.Categorical([None] * n, categories=pd.Index(levels, dtype=object))
    return np.full(n, None, dtype=object)


def _require(frame: pd.DataFrame, columns: tuple[Column, ...], table: str, source: str) -> None:
    """Raise DataError when required columns are missing (and say why, when we can tell)."""
    missing = [c.name for c in columns if c.required and c.name not in frame.columns]
    if not missing:
        return
    if len(frame.columns) == 1:
        header = str(frame.columns[0])
        found = [d for d in OTHER_DELIMITERS if d in header]
        if found:
            raise DataError(
                f"{source}: everything is in one column ({header[:80]!r}); the file looks "
                f"delimited by {found[0]!r}, not ','. Save it comma-separated."
            )
    shown = ", ".join(map(str, frame.columns[:30]))
    lowered = {str(c).strip().lower(): str(c) for c in frame.columns}
    near = [f"{lowered[m]!r} for {m!r}" for m in missing if m in lowered]
    hint = f" Names that differ only in case or blanks: {', '.join(near)}." if near else ""
    raise DataError(
        f"{source}: {table} required column(s) missing: {', '.join(missing)} "
        f"(found: {shown}). Map your own names with data.column_mapping.{hint}"
    )


def _coerce_all(
    frame: pd.DataFrame,
    columns: tuple[Column, ...],
    verdicts: _Verdicts,
    contract: Contract,
    source: str,
) -> dict[str, object]:
    """Every contract column in its canonical dtype (absent optional columns all-null)."""
    out: dict[str, object] = {}
    n = len(frame)
    for col in columns:
        if col.name not in frame.columns:
            out[col.name] = _empty_column(col, n)
            continue
        series = frame[col.name].reset_index(drop=True)
        if col.kind == "id":
            out[col.name] = _coerce_id(series, col.name, verdicts)
        elif col.kind == "hs":
            out[col.name] = _coerce_hs(series, verdicts)
        elif col.kind == "timestamp":
            out[col.name] = _coerce_timestamp(series, col, verdicts, contract, source)
        elif col.kind == "float":
            out[col.name] = _coerce_float(series, col, verdicts, contract)
        elif col.kind == "bool":
            out[col.name] = _coerce_bool(series, col, verdicts)
        elif col.name == "selection_reason":
            out[col.name] = _coerce_selection_reason(series, verdicts)
        else:
            out[col.name] = _coerce_category(series, col, verdicts)
    return out


def _flag_row_problems(frame: pd.DataFrame, verdicts: _Verdicts) -> pd.DataFrame:
    """Quarantine the rows a reader named in `ROW_PROBLEM`; the frame without that column."""
    if ROW_PROBLEM not in frame.columns:
        return frame
    problems = frame[ROW_PROBLEM].to_numpy(dtype=object)
    named = pd.notna(problems)
    verdicts.flag(named, lambda idx: problems[idx].astype(str).astype(object))
    return frame.drop(columns=ROW_PROBLEM)


def _flag_duplicates(ids: np.ndarray, verdicts: _Verdicts, what: str) -> None:
    """Quarantine every row whose id repeats an earlier, otherwise valid row's id."""
    eligible = np.flatnonzero(~verdicts.bad)
    if len(eligible) == 0:
        return
    codes, _ = pd.factorize(pd.Series(ids[eligible], dtype=object))
    _, first_index = np.unique(codes, return_index=True)
    first_position = eligible[first_index][codes]
    repeat = np.zeros(len(ids), dtype=bool)
    repeat[eligible] = first_position != eligible
    first_row = np.zeros(len(ids), dtype=np.int64)
    first_row[eligible] = first_position + 1

    def message(idx: np.ndarray) -> np.ndarray:
        shown = _quoted(ids[idx]) + ", first at row " + first_row[idx].astype(str)
        return _reasons(f"declaration_id: {what}", shown)

    verdicts.flag(repeat, message)


def _time_then_id_order(times: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Positions sorting by (time, id). Sorting strings is the slow part, so ids are ranked
    only where times tie (written here because pandas ranks every id of a multi-key sort)."""
    order = np.argsort(times.view(np.int64), kind="stable")
    ordered = times.view(np.int64)[order]
    same = ordered[1:] == ordered[:-1]
    if not same.any():
        return order
    tied = np.zeros(len(order), dtype=bool)
    tied[1:] |= same
    tied[:-1] |= same
    slots = np.flatnonzero(tied)
    rows = order[slots]
    ranks, _ = pd.factorize(pd.Series(ids[rows], dtype=object), sort=True)
    order[slots] = rows[np.lexsort((ranks, ordered[slots]))]
    return order


class _Layout(NamedTuple):
    """A canonical table: its name, its columns, the two columns it is sorted by (time, then
    id) and the columns derived from others (recomputed, never carried over)."""

    table: str
    columns: tuple[Column, ...]
    sort_by: list[str]
    derived: tuple[str, ...] = ()


def _finish(
    frame: pd.DataFrame,
    layout: _Layout,
    coerced: dict[str, object],
    verdicts: _Verdicts,
    source: str,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Kept rows in canonical dtypes, sorted, fresh index; the report with the quarantine."""
    table, columns, sort_by, derived = layout
    keep = np.flatnonzero(~verdicts.bad)
    times = pd.Series(coerced[sort_by[0]]).to_numpy(dtype="datetime64[ns]")[keep]
    ids = np.asarray(coerced[sort_by[1]], dtype=object)[keep]
    take = keep[_time_then_id_order(times, ids)]
    data: dict[str, object] = {}
    for col in columns:
        values = coerced[col.name]
        if isinstance(values, pd.Categorical):
            data[col.name] = values.take(take)
        elif isinstance(values, pd.Series):
            data[col.name] = values.to_numpy()[take]
        else:
            data[col.name] = np.asarray(values)[take]
    contract = {c.name for c in columns} | set(derived)  # derived columns are recomputed
    for name in frame.columns:
        if name not in contract:
            data[name] = frame[name].iloc[take].to_numpy()
    result = pd.DataFrame(data, index=pd.RangeIndex(len(take)))
    bad = np.flatnonzero(verdicts.bad)
    quarantined = frame.iloc[bad].reset_index(drop=True)
    quarantined.insert(0, "reason", verdicts.reason[bad].astype(str))
    quarantined.insert(0, "row", bad + 1)
    report = ValidationReport(
        table=table,
        source=source,
        rows_in=len(frame),
        rows_kept=len(result),
        quarantined=quarantined,
        kept_rows=take + 1,
    )
    return result, report


def add_hs_levels(frame: pd.DataFrame) -> pd.DataFrame:
    """A new frame with hs2/hs4/hs6 (category) cut from hs_code (computed on distinct codes)."""
    codes, uniques = pd.factorize(frame["hs_code"], use_na_sentinel=True)
    texts = pd.Series(np.asarray(uniques, dtype=object), dtype=object).astype(str)
    out = frame.copy(deep=False)
    for level in HS_LEVELS:
        digits = int(level[2:])
        cut = texts.str[:digits].to_numpy(dtype=object)
        level_codes, level_uniques = pd.factorize(pd.Series(cut, dtype=object))
        row_codes = _at(level_codes.astype(np.int64), codes.astype(np.int64), -1)
        out[level] = pd.Series(
            _sorted_categorical(
                row_codes.astype(np.int64), np.asarray(level_uniques, dtype=object)
            ),
            index=frame.index,
        )
    return out


def validate_declarations(
    frame: pd.DataFrame, source: str = FRAME_SOURCE, contract: Contract = DEFAULT_CONTRACT
) -> tuple[pd.DataFrame, ValidationReport]:
    """Canonical declarations (sorted by lodged_at, declaration_id) and the report."""
    _require(frame, DECLARATION_COLUMNS, "declarations", source)
    verdicts = _Verdicts(len(frame))
    frame = _flag_row_problems(frame, verdicts)
    coerced = _coerce_all(frame, DECLARATION_COLUMNS, verdicts, contract, source)
    _flag_percent_rows(coerced, verdicts)
    _flag_duplicates(np.asarray(coerced["declaration_id"]), verdicts, "duplicate")
    layout = _Layout(
        "declarations", DECLARATION_COLUMNS, ["lodged_at", "declaration_id"], derived=HS_LEVELS
    )
    clean, report = _finish(frame, layout, coerced, verdicts, source)
    with_levels = add_hs_levels(clean)
    ordered = [c.name for c in DECLARATION_COLUMNS] + list(HS_LEVELS)
    rest = [c for c in with_levels.columns if c not in ordered]
    return with_levels[ordered + rest], report


def _at_resolution_of(earlier: np.ndarray, later: np.ndarray) -> np.ndarray:
    """`earlier` cut to whole days when `later` holds dates only (every value at midnight):
    a selection recorded as a date is not before a declaration lodged that same morning."""
    known = later[~np.isnat(later)].view(np.int64)
    if len(known) and not (known % (86_400 * 10**9)).any():
        return earlier.astype("datetime64[D]").astype("datetime64[ns]")
    return earlier


def validate_outcomes(
    frame: pd.DataFrame,
    declarations: pd.DataFrame,
    source: str = FRAME_SOURCE,
    contract: Contract = DEFAULT_CONTRACT,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Canonical outcomes of validated `declarations` (sorted by selected_at) and the report."""
    _require(frame, OUTCOME_COLUMNS, "outcomes", source)
    verdicts = _Verdicts(len(frame))
    frame = _flag_row_problems(frame, verdicts)
    coerced = _coerce_all(frame, OUTCOME_COLUMNS, verdicts, contract, source)
    ids = np.asarray(coerced["declaration_id"])
    probability = np.asarray(coerced["selection_probability"], dtype=float)
    verdicts.flag(
        (probability <= 0) | (probability > 1),
        lambda idx: _reasons("selection_probability: outside (0, 1]", probability[idx].astype(str)),
    )
    inspected = np.asarray(coerced["inspected"], dtype=bool)
    hit = np.asarray(coerced["hit"], dtype=bool)
    verdicts.flag(hit & ~inspected, "hit: true but inspected is false")
    revenue = np.asarray(coerced["revenue_recovered"], dtype=float)
    verdicts.flag(
        (revenue > 0) & ~hit,
        lambda idx: _reasons(
            "revenue_recovered: positive but hit is false", revenue[idx].astype(str)
        ),
    )

    known = pd.Index(declarations["declaration_id"].astype(str).to_numpy(dtype=object))
    position = known.get_indexer(pd.Index(ids.astype(str)))
    verdicts.flag(
        position < 0,
        lambda idx: _reasons("declaration_id: no such declaration", _quoted(ids[idx])),
    )
    lodged = pd.Series(pd.to_datetime(declarations["lodged_at"]).to_numpy()).to_numpy()
    lodged_of = np.full(len(ids), np.datetime64("NaT"), dtype="datetime64[ns]")
    lodged_of[position >= 0] = lodged[position[position >= 0]]
    selected = pd.Series(coerced["selected_at"]).to_numpy(dtype="datetime64[ns]")
    result = pd.Series(coerced["result_at"]).to_numpy(dtype="datetime64[ns]")
    verdicts.flag(
        selected < _at_resolution_of(lodged_of, selected),
        lambda idx: _reasons(
            "selected_at: before the declaration was lodged",
            pd.Series(selected[idx]).astype(str) + " < " + pd.Series(lodged_of[idx]).astype(str),
        ),
    )
    verdicts.flag(
        result < _at_resolution_of(selected, result),
        lambda idx: _reasons(
            "result_at: before selected_at",
            pd.Series(result[idx]).astype(str) + " < " + pd.Series(selected[idx]).astype(str),
        ),
    )
    _flag_duplicates(ids, verdicts, "second outcome for the declaration")
    layout = _Layout("outcomes", OUTCOME_COLUMNS, ["selected_at", "declaration_id"])
    return _finish(frame, layout, coerced, verdicts, source)


def empty_outcomes() -> pd.DataFrame:
    """An outcomes table with no rows, in the canonical columns and dtypes."""
    columns: dict[str, object] = {c.name: _empty_column(c, 0) for c in OUTCOME_COLUMNS}
    return pd.DataFrame(columns, index=pd.RangeIndex(0))


def _explain_orphans(outcomes: ValidationReport, declarations: ValidationReport) -> None:
    """Say so when an outcome's declaration exists but was itself quarantined."""
    quarantined = outcomes.quarantined
    if quarantined.empty or declarations.quarantined.empty:
        return
    ids = quarantined["declaration_id"].astype(str).str.strip()
    bad_ids = declarations.quarantined["declaration_id"].astype(str).str.strip()
    orphan = quarantined["reason"].str.startswith("declaration_id: no such declaration") & ids.isin(
        bad_ids
    )
    if orphan.any():
        quarantined.loc[orphan, "reason"] = (
            "declaration_id: its declaration was quarantined (" + _quoted(ids[orphan]) + ")"
        )


def validate(
    declarations: pd.DataFrame,
    outcomes: pd.DataFrame | None = None,
    *,
    source_declarations: str = FRAME_SOURCE,
    source_outcomes: str = FRAME_SOURCE,
    contract: Contract = DEFAULT_CONTRACT,
) -> ValidatedTables:
    """Validate both tables: declarations first, then outcomes against the kept declarations."""
    clean_declarations, declaration_report = validate_declarations(
        declarations, source_declarations, contract
    )
    reports = [declaration_report]
    if outcomes is None:
        clean_outcomes = empty_outcomes()
    else:
        clean_outcomes, outcome_report = validate_outcomes(
            outcomes, clean_declarations, source_outcomes, contract
        )
        _explain_orphans(outcome_report, declaration_report)
        reports.append(outcome_report)
    return ValidatedTables(clean_declarations, clean_outcomes, reports)
