"""The REST input check: a request is one frame of declarations, one row per row sent, or it is
refused with HTTP 400 naming the problem.

The scorer pyfunc is logged without an input schema (`scorer.pyfunc_signature`): MLflow's schema
enforcement would drop every column it does not list (a KCS model's ``kcs_*`` columns, a column
in another case) and reshape what it cannot read, handing the scorer an empty or a one-row frame.
Instead, `request_frame` checks what arrived, before the scorer sees it:

- a frame, not columnar ``inputs`` / ``instances`` (MLflow reads those as one row);
- named columns (``dataframe_split`` without ``columns`` gives 0, 1, 2...), each named once;
- the contract's names as written (``LODGED_AT`` is refused naming ``lodged_at``);
- at least one column the scorer reads, and no KCS column (``kcs_*``) for a model that never
  saw KCS data.

One bad cell costs its row only: the scorer validates row by row (`nested_cells` marks a cell
holding a list or an object, which no column takes).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from pipeline.ingest.columns import DECLARATION_COLUMNS
from pipeline.ingest.schema import ROW_PROBLEM

SENT_AS = (
    "send declarations as {'dataframe_split': {'columns': [...], 'data': [[...], ...]}} or "
    "{'dataframe_records': [{column: value, ...}, ...]}"
)


class RequestRefused(MlflowException):
    """A request the scorer cannot answer row for row: HTTP 400 with this message only (the
    scoring server would otherwise prefix the whole request body to it)."""

    def __init__(self, message: str) -> None:
        self._refusal = f"request refused: {message}"
        super().__init__(self._refusal, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        """The refusal as written (never rewritten by the server)."""
        return self._refusal

    @message.setter
    def message(self, value: str) -> None:
        """Ignored: the refusal names the problem, not the request body."""


def _shown(names: Iterable[Any], limit: int = 8) -> str:
    names = list(names)
    text = ", ".join(repr(n) for n in names[:limit])
    return text + (f" and {len(names) - limit} more" if len(names) > limit else "")


def request_frame(model_input: Any, model_columns: Iterable[str] = ()) -> pd.DataFrame:
    """`model_input` as the frame of declarations it must be, or RequestRefused naming why
    (see the module docstring); `model_columns`: the extra columns a model reads (``kcs_*``)."""
    if not isinstance(model_input, pd.DataFrame):
        kind = type(model_input).__name__
        raise RequestRefused(
            f"the body holds a {kind}, not a table of declarations (columnar 'inputs' or "
            f"'instances' would be read as one row); {SENT_AS}"
        )
    # names with stray blanks are the contract's names, as in a file (`readers.read_table`)
    model_input = model_input.rename(columns=lambda c: c.strip() if isinstance(c, str) else c)
    columns = list(model_input.columns)
    if model_input.shape[1] and not any(isinstance(c, str) for c in columns):
        raise RequestRefused(
            f"the columns have no names (dataframe_split without 'columns'); {SENT_AS}"
        )
    repeated = sorted({str(c) for c in pd.Index(columns)[pd.Index(columns).duplicated()]})
    if repeated:
        raise RequestRefused(f"column(s) sent more than once: {_shown(repeated)}")
    known = [c.name for c in DECLARATION_COLUMNS] + [
        c for c in model_columns if c.startswith("kcs_")
    ]
    by_folded = {name.lower(): name for name in known}
    sent = [str(c) for c in columns]
    miscased = [
        f"{c!r} for {by_folded[c.strip().lower()]!r}"
        for c in sent
        if c not in known
        and c.strip().lower() in by_folded
        and by_folded[c.strip().lower()] not in sent
    ]
    if miscased:
        raise RequestRefused(
            "column names must be written as the contract writes them: "
            + ", ".join(miscased[:6])
            + (f" and {len(miscased) - 6} more" if len(miscased) > 6 else "")
        )
    foreign = [c for c in sent if c.startswith("kcs_") and c not in known]
    if foreign and not any(c.startswith("kcs_") for c in known):
        raise RequestRefused(
            f"KCS declarations ({_shown(foreign, 3)}), but this model was trained on other data "
            "(it reads no kcs_* column): send them to the scorer of a KCS run"
        )
    if model_input.shape[1] and not set(sent) & set(known):
        raise RequestRefused(
            f"none of the columns is a declaration column ({_shown(sent)}); expected "
            f"{_shown(known[:6])}..."
        )
    return model_input


PLAIN_KINDS = frozenset(
    {"string", "empty", "floating", "integer", "mixed-integer-float", "boolean", "datetime", "date"}
)


def _cell_problem(name: str, value: Any) -> str | None:
    """Why one cell can be no column's value: a list or an object, or bytes that are not UTF-8."""
    if isinstance(value, dict | list | tuple | set | np.ndarray):
        return f"{name}: a nested value, expected one value ({str(value)[:60]})"
    if isinstance(value, bytes | bytearray):
        try:
            bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return f"{name}: not UTF-8 text ({bytes(value)[:40]!r})"
    return None


def _plain(value: Any) -> Any:
    """Bytes (a Parquet body's binary column) as UTF-8 text; a value with a problem as None."""
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None if isinstance(value, dict | list | tuple | set | np.ndarray) else value


def nested_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells holding a list or an object (a JSON body can send one anywhere) replaced by None,
    their rows named in `ROW_PROBLEM` so that validation quarantines them alone; bytes read as
    UTF-8 text (never as "b'OFF011'"). Columns of plain values are not walked."""
    problems = np.full(len(frame), None, dtype=object)
    changed: dict[str, pd.Series] = {}
    for name in frame.columns:
        column = frame[name]
        if column.dtype != object or pd.api.types.infer_dtype(column) in PLAIN_KINDS:
            continue
        found = column.map(lambda v, n=name: _cell_problem(str(n), v)).to_numpy(dtype=object)
        problems = np.where(pd.isna(problems), found, problems)
        changed[str(name)] = column.map(_plain)
    if not changed:
        return frame
    earlier = frame[ROW_PROBLEM].to_numpy(dtype=object) if ROW_PROBLEM in frame else problems
    merged = np.where(pd.notna(earlier), earlier, problems)
    return frame.assign(**changed, **{ROW_PROBLEM: merged})
