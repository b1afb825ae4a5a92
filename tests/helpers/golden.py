"""Golden outputs: what a run wrote, reduced to comparable digests, recorded once and compared.

A refactor that claims "outputs unchanged" proves it here: the digests of the simulated data, the
feature set, the report's metrics, the thresholds (timestamps and run ids aside), the scored
declarations and the backtest's tables are recorded before the change and compared exactly after
it. Each table is digested column by column, so a failure names the file and the column.

Re-record (only after checking the change is meant to alter outputs):
``TARGETING_RECORD_GOLDEN=1 .venv/bin/python -m pytest tests/project/test_golden_outputs.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"
RECORD = os.environ.get("TARGETING_RECORD_GOLDEN") == "1"

# Fields that change from one run to the next whatever the code: ids, clocks, file locations.
VOLATILE = {
    "approve_command",
    "created_at",
    "content_sha256",
    "run_id",
    "uri",
    "version",
    "seconds",
    "tracking_uri",
}


def _column_digest(values: pd.Series) -> str:
    try:
        hashed = pd.util.hash_pandas_object(values, index=False).to_numpy().tobytes()
    except TypeError:  # lists or arrays in cells (reason codes): digest their text
        hashed = json.dumps([repr(v) for v in values], default=str).encode()
    return hashlib.sha256(str(values.dtype).encode() + hashed).hexdigest()[:16]


def table_digest(frame: pd.DataFrame) -> dict[str, Any]:
    """Rows, then one digest per column (its dtype and values in row order)."""
    frame = frame.reset_index(drop=True)
    return {"rows": len(frame), **{str(c): _column_digest(frame[c]) for c in frame.columns}}


def strip_volatile(value: Any) -> Any:
    """The document without the fields that change from run to run (ids, clocks, paths)."""
    if isinstance(value, dict):
        return {k: strip_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip_volatile(v) for v in value]
    return value


def run_digests(paths: dict[str, Path]) -> dict[str, Any]:
    """Digests of the named output files (Parquet and CSV tables, JSON documents)."""
    digests: dict[str, Any] = {}
    for name, path in sorted(paths.items()):
        if path.suffix == ".parquet":
            digests[name] = table_digest(pd.read_parquet(path))
        elif path.suffix == ".csv":
            digests[name] = table_digest(pd.read_csv(path))
        else:
            digests[name] = strip_volatile(json.loads(path.read_text()))
    return digests


def check_golden(name: str, digests: dict[str, Any]) -> None:
    """Compare with `golden/<name>.json` (or record it); name every file and column that differ."""
    path = GOLDEN_DIR / f"{name}.json"
    normalised = json.loads(json.dumps(digests, default=str))
    if RECORD or not path.exists():
        path.write_text(json.dumps(normalised, indent=1, sort_keys=True) + "\n")
        if not RECORD:
            raise AssertionError(f"{path} did not exist: recorded now, run the test again")
        return
    recorded = json.loads(path.read_text())
    differences = [
        f"{output}: {key}"
        for output in sorted(set(recorded) | set(normalised))
        for key in _differing(recorded.get(output), normalised.get(output))
    ]
    assert not differences, f"outputs differ from {path.name}:\n" + "\n".join(differences)


def _differing(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            item
            for key in sorted(set(old) | set(new))
            for item in _differing(old.get(key), new.get(key), f"{prefix}{key}.")
        ]
    return [] if old == new else [f"{prefix.rstrip('.') or '(value)'}: {old!r} -> {new!r}"]
