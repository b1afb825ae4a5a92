"""Read declarations and outcomes from CSV or Parquet into canonical frames, and write tables.

`read_table` reads one file (CSV in UTF-8 with or without a BOM, or Parquet, by extension) and
renames the user's columns to canonical ones; whole-file problems raise `DataError` naming the
file. `load_inputs` reads what a config points at (simulated tables, the user's files or the KCS
files) and validates it; `raw_input_files` names what it reads (the run catalog keys its saved
copy on them, `pipeline.jobs.catalog.validated_inputs`). Writing the quarantine is left to jobs
(`write_quarantine`).
"""

from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.config import Config, DataConfig, Paths
from pipeline.ingest.columns import (
    DECLARATION_COLUMNS,
    GROUND_TRUTH_COLUMNS,
    OUTCOME_COLUMNS,
)
from pipeline.ingest.schema import (
    OTHER_DELIMITERS,
    Contract,
    DataError,
    ValidationReport,
    validate,
)
from pipeline.ingest.text import NUL_MARK, csv_text, nul_problems

logger = logging.getLogger(__name__)

CSV_SUFFIXES = (".csv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
# Text columns keep every spelling but the blank and explicit null markers; "NA" is not among
# them because it is Namibia's country code.
TEXT_NULLS = ("", "NULL", "null", "NaN", "nan", "None", "<NA>", "#N/A", "N/A", "n/a")
NUMBER_NULLS = (*TEXT_NULLS, "NA", "#NA", "-NaN", "-nan", "1.#IND", "1.#QNAN", "-1.#IND")
CONTRACT_NAMES = frozenset(c.name for c in (*DECLARATION_COLUMNS, *OUTCOME_COLUMNS))
TEXT_COLUMNS = frozenset(
    c.name
    for c in (*DECLARATION_COLUMNS, *OUTCOME_COLUMNS, *GROUND_TRUTH_COLUMNS)
    if c.kind in ("id", "category", "hs")
)


def contract_of(data: DataConfig) -> Contract:
    """The data contract's plausibility settings from the config's `data` section."""
    numeric = {c.name for c in (*DECLARATION_COLUMNS, *OUTCOME_COLUMNS) if c.kind == "float"}
    unknown = sorted(set(data.max_values) - numeric)
    if unknown:
        raise DataError(
            f"data.max_values names column(s) that are not numeric canonical columns: "
            f"{', '.join(unknown)} (numeric columns: {', '.join(sorted(numeric))})"
        )
    return Contract(
        date_format=data.date_format,
        earliest_date=data.earliest_date,
        future_days=data.future_days,
        max_values=dict(data.max_values),
    )


DATA_LIKE = r"[+-]?[\d.,:/ T-]+"  # a first line of numbers and dates is data, not a header


def _check_header(path: Path, header: list[str], mapping: dict[str, str]) -> None:
    """Refuse headers that name no column or name one twice, and data in place of a header."""
    names = [name.strip() for name in header]
    blank = [str(i + 1) for i, name in enumerate(names) if not name]
    if blank and len(blank) < len(names):
        raise DataError(f"{path}: column(s) {', '.join(blank)} of the header have no name")
    seen = pd.Series(names)
    repeated = sorted(set(seen[seen.duplicated()]))
    if repeated:
        raise DataError(
            f"{path}: the header names column(s) more than once: {', '.join(repeated)}; "
            "each column must have one name"
        )
    known = {mapping.get(name, name) for name in names} & (TEXT_COLUMNS | CONTRACT_NAMES)
    data_like = seen.str.fullmatch(DATA_LIKE).fillna(False)
    if not known and data_like.sum() >= max(1, len(names) // 4):
        raise DataError(
            f"{path}: the first line looks like data ({', '.join(names[:4])}...), not a header: "
            "the file needs a header line naming its columns"
        )


def _csv_header(path: Path, text: str) -> list[str]:
    """Column names from the first line; refuses wrong delimiters."""
    first = text.split("\n", 1)[0]
    header = next(csv.reader([first]))
    if len(header) == 1:
        found = [d for d in OTHER_DELIMITERS if d in first]
        if found:
            raise DataError(
                f"{path}: everything is in one column ({header[0][:80]!r}); the file looks "
                f"delimited by {found[0]!r}, not ','. Save it comma-separated."
            )
    if any(NUL_MARK in name for name in header):
        raise DataError(f"{path}: the header line holds a NUL byte; the file is damaged")
    return header


def _read_csv(path: Path, mapping: dict[str, str]) -> pd.DataFrame:
    text = csv_text(path)
    header = _csv_header(path, text)
    _check_header(path, header, mapping)
    canonical = {name: mapping.get(name, name) for name in header}
    textual = {name for name in header if canonical[name] in TEXT_COLUMNS}
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            dtype=dict.fromkeys(textual, str),
            keep_default_na=False,
            na_values={name: TEXT_NULLS if name in textual else NUMBER_NULLS for name in header},
            low_memory=False,
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, ValueError, csv.Error) as exc:
        raise DataError(f"{path}: cannot be read as CSV: {exc}") from None
    return nul_problems(path, frame) if NUL_MARK in text else frame


def read_table(
    path: Path, column_mapping: dict[str, str] | None = None, *, allow_empty: bool = False
) -> pd.DataFrame:
    """One CSV or Parquet file, its columns renamed by `column_mapping` (yours -> canonical).

    A header without data rows is an error unless `allow_empty` (outcomes: no controls yet).
    """
    path = Path(path)
    mapping = dict(column_mapping or {})
    if not path.exists():
        raise DataError(f"file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a CSV or Parquet file")
    if not path.is_file():
        raise DataError(
            f"{path}: not a regular file (a pipe or a device such as /dev/stdin); save the "
            "table to a .csv or .parquet file and name it"
        )
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        frame = _read_csv(path, mapping)
    elif suffix in PARQUET_SUFFIXES:
        from pipeline.ingest.parquet import read_parquet

        frame = read_parquet(path)
    else:
        raise DataError(f"{path}: unsupported file type {suffix!r}; expected .csv or .parquet")
    if len(frame.columns) == 0:
        raise DataError(f"{path}: the file is empty (no columns)")
    # Names with stray blanks (' lodged_at') are the contract's names all the same.
    frame = frame.rename(columns=lambda name: name.strip() if isinstance(name, str) else name)
    if len(frame) == 0 and not allow_empty:
        raise DataError(f"{path}: header only, no data rows (columns: {', '.join(frame.columns)})")
    present = {source: target for source, target in mapping.items() if source in frame.columns}
    clashes = [
        f"{source!r} -> {target!r}"
        for source, target in present.items()
        if target in frame.columns and target != source and target not in present
    ]
    if clashes:
        raise DataError(
            f"{path}: data.column_mapping renames onto columns the file already has: "
            + ", ".join(clashes)
        )
    return frame.rename(columns=present)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NUMBER_TEXT = r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?"


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as a formula (starting with = + - @, a tab or a
    carriage return, and not a plain number) prefixed with a single quote (OWASP's advice for
    CSV injection); every other cell as it is. A new frame when anything changes."""
    changed: dict[str, pd.Series] = {}
    for name in frame.columns:
        column = frame[name]
        if not (column.dtype == object or pd.api.types.is_string_dtype(column.dtype)):
            continue
        text = column.astype("string")
        risky = text.str.startswith(FORMULA_STARTS).fillna(False) & ~text.str.fullmatch(
            NUMBER_TEXT
        ).fillna(False)
        is_text = column.map(lambda v: isinstance(v, str)) if risky.any() else risky
        risky &= is_text.astype(bool)
        if risky.any():
            changed[str(name)] = column.where(~risky, "'" + text.astype(object))
    return frame.assign(**changed) if changed else frame


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write CSV or Parquet by extension, atomically (a temporary file, then a rename).

    CSV cells that a spreadsheet would run as formulas are escaped (`csv_safe`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise ValueError(f"{path}: unsupported file type {suffix!r}; expected .csv or .parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if suffix in CSV_SUFFIXES:
            csv_safe(frame).to_csv(temporary, index=False)
        else:
            frame.to_parquet(temporary, index=False)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_quarantine(
    reports: list[ValidationReport], path: Path, *, remove_stale: bool = True
) -> int:
    """Write every quarantined row (table, source, row, reason, values) as CSV; return the count.

    With nothing quarantined, no file is written, and with `remove_stale` a stale one from an
    earlier run is removed (never a file the user named).
    """
    path = Path(path)
    parts = [
        report.quarantined.assign(table=report.table, source=report.source)
        for report in reports
        if not report.quarantined.empty
    ]
    if not parts:
        if remove_stale:
            path.unlink(missing_ok=True)
        return 0
    rows = pd.concat(parts, ignore_index=True)
    first = ["table", "source", "row", "reason"]
    rows = rows[first + [c for c in rows.columns if c not in first]]
    write_table(rows, path)
    return len(rows)


@dataclass
class Inputs:
    """Validated declarations and outcomes, the ground truth (simulated data only), the reports."""

    declarations: pd.DataFrame
    outcomes: pd.DataFrame
    ground_truth: pd.DataFrame | None
    reports: list[ValidationReport]

    def summary(self) -> str:
        """The validation reports, and the ground truth's size when there is one."""
        lines = [report.summary() for report in self.reports]
        if self.ground_truth is not None:
            lines.append(f"ground truth: {len(self.ground_truth):,} rows")
        return "\n".join(lines)


def _simulated(paths: Paths) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    missing = [p for p in (paths.declarations, paths.outcomes) if not p.is_file()]
    if missing:
        raise DataError(
            f"simulated tables not found: {', '.join(map(str, missing))}. Run "
            "`targeting simulate --config <your config file>` first (it writes them there)."
        )
    ground_truth = read_table(paths.ground_truth) if paths.ground_truth.is_file() else None
    outcomes = read_table(paths.outcomes, allow_empty=True)  # a stream may have no controls
    return read_table(paths.declarations), outcomes, ground_truth


def _ground_truth(frame: pd.DataFrame, declarations: pd.DataFrame, source: str) -> pd.DataFrame:
    """Ground truth of the kept declarations, declaration_id as str (evaluation only)."""
    missing = [c.name for c in GROUND_TRUTH_COLUMNS if c.name not in frame.columns]
    if missing:
        raise DataError(f"{source}: ground truth column(s) missing: {', '.join(missing)}")
    out = frame.assign(declaration_id=frame["declaration_id"].astype(str))
    kept = out["declaration_id"].isin(declarations["declaration_id"])
    return out.loc[kept].reset_index(drop=True)


def load_inputs(config: Config) -> Inputs:
    """Read what `config.data` points at, validate it, and return the canonical tables."""
    data = config.data
    ground_truth: pd.DataFrame | None = None
    if data.source == "simulate":
        declarations, outcomes, ground_truth = _simulated(config.paths)
        sources = (str(config.paths.declarations), str(config.paths.outcomes))
    elif data.format == "kcs":
        from pipeline.ingest.kcs import read_kcs

        files = [data.kcs_dir / name for name in data.kcs_files]
        declarations, outcomes = read_kcs(files)
        names = "+".join(data.kcs_files)
        sources = (names, names)
    else:
        if data.declarations is None:
            raise DataError(
                "data.source is 'files' but data.declarations is not set: give the path of your "
                "declarations file (CSV or Parquet) in the config"
            )
        declarations = read_table(data.declarations, data.column_mapping)
        outcomes = (
            read_table(data.outcomes, data.column_mapping, allow_empty=True)
            if data.outcomes is not None
            else None
        )
        sources = (str(data.declarations), str(data.outcomes))
    tables = validate(
        declarations,
        outcomes,
        source_declarations=sources[0],
        source_outcomes=sources[1],
        contract=contract_of(data),
    )
    if ground_truth is not None:
        ground_truth = _ground_truth(
            ground_truth, tables.declarations, str(config.paths.ground_truth)
        )
    warn_quarantined(tables.reports)
    return Inputs(tables.declarations, tables.outcomes, ground_truth, tables.reports)


def warn_quarantined(reports: list[ValidationReport]) -> None:
    """Log the summary of every table that lost rows to quarantine (each time inputs are loaded,
    validated now or read back from the run catalog)."""
    for report in reports:
        if report.rows_quarantined:
            logger.warning(report.summary())


def raw_input_files(data: DataConfig, paths: Paths) -> list[Path]:
    """The files `load_inputs` reads for a config's `data` and `paths` (what the run catalog's
    digest covers)."""
    if data.source == "simulate":
        return [paths.declarations, paths.outcomes, paths.ground_truth]
    if data.format == "kcs":
        return [data.kcs_dir / name for name in data.kcs_files]
    return [Path(p) for p in (data.declarations, data.outcomes) if p is not None]
