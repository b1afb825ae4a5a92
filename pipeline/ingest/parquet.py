"""Parquet files read into the same frames as CSV files: one logical column whatever its
physical type, before validation.

- binary columns (``binary``, ``large_binary``, ``fixed_size_binary``) are UTF-8 text: read as
  text (never as ``"b'OFF011'"``); a cell that is not UTF-8 sends its row to quarantine;
- dictionary-encoded columns are read as their values, decimals as floats;
- nested columns (struct, list, map) cannot hold one value per cell: the file is refused,
  naming them;
- timestamps in seconds, milli- or microseconds and dates reach pandas in nanoseconds; a value
  outside what nanoseconds hold (years 1678-2261) sends its row to quarantine naming the column,
  instead of refusing the whole file.

Row problems are named in `ROW_PROBLEM` (validation quarantines those rows first).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.ingest.schema import ROW_PROBLEM, DataError

NS_PER_UNIT = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
INT64_MAX = 2**63 - 1


def _is_nested(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_struct(kind)
        or pa.types.is_list(kind)
        or pa.types.is_large_list(kind)
        or pa.types.is_fixed_size_list(kind)
        or pa.types.is_map(kind)
        or pa.types.is_union(kind)
    )


def _is_binary(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_fixed_size_binary(kind)
    )


def _refuse_nested(path: Path, schema: pa.Schema) -> None:
    nested = [
        f"{field.name} ({field.type})"
        for field in schema
        if _is_nested(field.type)
        or (pa.types.is_dictionary(field.type) and _is_nested(field.type.value_type))
    ]
    if nested:
        raise DataError(
            f"{path}: column(s) hold nested values, not one value per cell: "
            f"{', '.join(nested)}; flatten them into plain columns or drop them"
        )


def _text_of_binary(name: str, column: pa.ChunkedArray, problems: np.ndarray) -> pa.ChunkedArray:
    """Binary cells decoded as UTF-8; undecodable ones null, their rows named in `problems`."""
    values = column.to_pylist()
    texts: list[str | None] = []
    for row, value in enumerate(values):
        if value is None:
            texts.append(None)
            continue
        try:
            texts.append(bytes(value).decode("utf-8"))
        except UnicodeDecodeError:
            texts.append(None)
            if problems[row] is None:
                problems[row] = f"{name}: not UTF-8 text ({bytes(value)[:40]!r})"
    return pa.chunked_array([pa.array(texts, type=pa.string())])


def _nanosecond_stamps(name: str, column: pa.ChunkedArray, problems: np.ndarray) -> pa.ChunkedArray:
    """Timestamps in nanoseconds (zone kept); values nanoseconds cannot hold become null, their
    rows named in `problems`."""
    kind = column.type
    factor = NS_PER_UNIT[kind.unit]
    if factor == 1:
        return column
    counts = pc.fill_null(column.cast(pa.int64()), 0).to_numpy()
    outside = (counts > INT64_MAX // factor) | (counts < -(INT64_MAX // factor))
    if outside.any():
        shown = column.cast(pa.int64()).to_numpy(zero_copy_only=False)
        for row in np.flatnonzero(outside):
            if problems[row] is None:
                stamp = np.datetime64(int(shown[row]), kind.unit)
                problems[row] = (
                    f"{name}: outside the years 1678-2261 that a timestamp can hold ({stamp})"
                )
        mask = pa.array(outside)
        column = pc.if_else(mask, pa.scalar(None, type=kind), column.combine_chunks())
    return pa.chunked_array([column]).cast(pa.timestamp("ns", tz=kind.tz))


def _logical(name: str, column: pa.ChunkedArray, problems: np.ndarray) -> pa.ChunkedArray:
    """One column in the physical type pandas reads as the CSV reader's would be."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if _is_binary(column.type):
        return _text_of_binary(name, column, problems)
    if pa.types.is_decimal(column.type):
        return column.cast(pa.float64())
    if pa.types.is_date(column.type):  # days (date32) or milliseconds (date64) since 1970
        column = column.cast(pa.timestamp("ms"))
    if pa.types.is_timestamp(column.type):
        return _nanosecond_stamps(name, column, problems)
    return column


def read_parquet(path: Path) -> pd.DataFrame:
    """One Parquet file as a frame, its physical types normalised (see the module docstring)."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise DataError(f"{path}: cannot be read as Parquet: {exc}") from None
    _refuse_nested(path, table.schema)
    index = [name for name in table.column_names if name.startswith("__index_level_")]
    table = table.drop_columns(index) if index else table
    problems = np.full(table.num_rows, None, dtype=object)
    columns = [
        _logical(name, table.column(i), problems) for i, name in enumerate(table.column_names)
    ]
    normalised = pa.Table.from_arrays(columns, names=table.column_names)
    try:
        frame = normalised.to_pandas()
    except (pa.ArrowException, ValueError, OverflowError) as exc:
        raise DataError(f"{path}: cannot be read as Parquet: {exc}") from None
    if pd.notna(problems).any():
        frame[ROW_PROBLEM] = problems
    return frame
