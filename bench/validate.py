"""Benchmark: validate_declarations on a made-up canonical frame (default 1,000,000 rows).

Prints rows/s for two inputs, as a reader would hand them over: typed (Parquet-like: categories,
datetimes, floats) and text (CSV-like: object strings), and writes bench/results/validate.json.
Run: .venv/bin/python bench/validate.py [rows]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.ingest.schema import validate_declarations

RESULTS = Path(__file__).resolve().parent / "results" / "validate.json"


def make_declarations(rows: int, seed: int = 0) -> pd.DataFrame:
    """A canonical declarations frame with realistic cardinalities and 0.1 % bad rows."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2023-01-01T00:00:00", "s")
    lodged = start + rng.integers(0, 730 * 86_400, rows).astype("timedelta64[s]")

    def ids(prefix: str, count: int) -> np.ndarray:
        pool = np.array([f"{prefix}{i:06d}" for i in range(count)], dtype=object)
        return pool[rng.zipf(1.3, rows) % count]

    hs_pool = np.array(
        [f"{rng.integers(1, 98):02d}{rng.integers(0, 10**8):08d}" for _ in range(5000)]
    )
    frame = pd.DataFrame(
        {
            "declaration_id": np.char.add("D", np.arange(rows).astype(str)).astype(object),
            "lodged_at": lodged.astype("datetime64[ns]"),
            "office": ids("O", 12),
            "importer": ids("I", 10_000),
            "declarant": ids("B", 300),
            "seller": ids("S", 6_000),
            "hs_code": hs_pool[rng.integers(0, len(hs_pool), rows)].astype(object),
            "origin_country": ids("C", 120),
            "departure_country": ids("C", 120),
            "transport_mode": ids("M", 5),
            "quantity": rng.gamma(2.0, 50.0, rows),
            "net_mass_kg": rng.gamma(2.0, 300.0, rows),
            "declared_value": rng.lognormal(8.0, 1.5, rows),
            "duty_rate": rng.choice([0.0, 0.05, 0.08, 0.12], rows),
            "declared_duty": rng.lognormal(5.0, 1.5, rows),
            "aeo": rng.random(rows) < 0.06,
        }
    )
    bad = rng.choice(rows, max(1, rows // 1000), replace=False)
    frame.loc[bad, "net_mass_kg"] = -1.0
    return frame


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """The same frame as a CSV reader would give it (dates and text as strings)."""
    return frame.assign(lodged_at=frame["lodged_at"].dt.strftime("%Y-%m-%d %H:%M:%S"))


def time_it(frame: pd.DataFrame) -> tuple[float, int]:
    started = time.perf_counter()
    _clean, report = validate_declarations(frame, "bench")
    seconds = time.perf_counter() - started
    assert report.rows_kept + report.rows_quarantined == len(frame)
    return seconds, report.rows_quarantined


def main(rows: int = 1_000_000) -> dict[str, float]:
    frame = make_declarations(rows)
    typed = frame.astype({c: "category" for c in ("office", "importer", "declarant", "seller")})
    figures: dict[str, float] = {"rows": rows}
    for name, data in (
        ("object_text", frame),
        ("typed_categories", typed),
        ("text_dates", as_text(frame)),
    ):
        seconds, quarantined = time_it(data)
        figures[f"{name}_seconds"] = round(seconds, 2)
        figures[f"{name}_rows_per_s"] = round(rows / seconds)
        print(
            f"{name:>18}: {rows:,} rows in {seconds:.2f} s = {rows / seconds:,.0f} rows/s "
            f"({quarantined:,} quarantined)"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
