"""Reading a file's bytes as text in one dialect, shared by the readers of every format
(`ingest.readers`, `ingest.kcs`): UTF-8 only (a BOM dropped), one line ending, NUL bytes marked
so that a damaged cell is quarantined by name, never cut."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from pipeline.ingest.schema import ROW_PROBLEM, DataError

logger = logging.getLogger(__name__)


def _first_undecodable_line(path: Path) -> tuple[int, str]:
    """Line number (1-based) and byte of the first line that is not UTF-8 (after a failure)."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return number, f"0x{raw[exc.start]:02x}"
    return 0, "?"


def not_utf8_error(path: Path) -> DataError:
    """The error for a file that is not UTF-8, naming its first bad line and byte."""
    line, byte = _first_undecodable_line(path)
    return DataError(
        f"{path}: not UTF-8 text (byte {byte} on line {line}); save the file as UTF-8 "
        "(for example from Excel: 'CSV UTF-8')"
    )


MAGIC_BYTES = (
    (b"PAR1", "a Parquet file, not CSV: name it .parquet"),
    (b"PK\x03\x04", "a ZIP archive (an Excel workbook?), not CSV: save it as 'CSV UTF-8'"),
    (b"\x1f\x8b", "gzip-compressed: decompress it first"),
    (b"\xff\xfe", "UTF-16 text: save it as UTF-8"),
    (b"\xfe\xff", "UTF-16 text: save it as UTF-8"),
)
NUL_MARK = "\uffff"  # stands for a NUL byte while pandas parses (its C parser cuts at NUL)


def csv_text(path: Path) -> str:
    """The file as text in one dialect: UTF-8 (BOM dropped), lines ending in \\n (CR-only
    'CSV (Macintosh)' and CRLF files alike), NUL bytes marked for `nul_problems`. Empty,
    binary and non-UTF-8 files are refused."""
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: the file is empty (no header line)")
    for magic, what in MAGIC_BYTES:
        if raw.startswith(magic):
            raise DataError(f"{path}: is {what}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise not_utf8_error(path) from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\0", NUL_MARK) if "\0" in text else text


def nul_problems(path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """Rows with a NUL byte in a cell go to quarantine naming the column (never cut at the
    NUL: 'IMP\\0 08756' is not 'IMP'); the byte is shown as \\0."""
    problem = pd.Series(None, index=frame.index, dtype=object)
    changed: dict[str, pd.Series] = {}
    for name in frame.columns:
        column = frame[name]
        if column.dtype != object:
            continue
        marked = column.map(lambda v: isinstance(v, str) and NUL_MARK in v).astype(bool)
        if not marked.any():
            continue
        shown = column[marked].str.replace(NUL_MARK, "\\0", regex=False)
        reason = f"{name}: a NUL byte in the value, the file is damaged ('" + shown + "')"
        problem = problem.where(problem.notna() | ~marked, reason)
        changed[str(name)] = column.where(~marked, shown)
    if not changed:
        return frame
    logger.warning("%s: %d row(s) hold NUL bytes; quarantined", path, int(problem.notna().sum()))
    return frame.assign(**changed, **{ROW_PROBLEM: problem})
