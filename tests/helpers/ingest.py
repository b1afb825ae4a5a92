"""Small canonical tables for the ingest tests (plain functions; no conftest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PROJECT = Path(__file__).resolve().parents[2]
KCS_DIR = PROJECT.parent / "shared" / "data" / "external" / "Customs-Declaration-Datasets"


def declarations(rows: int = 12, seed: int = 0) -> pd.DataFrame:
    """Valid declarations as a user's export would carry them (text, in no particular order)."""
    rng = np.random.default_rng(seed)
    lodged = pd.Timestamp("2024-03-01") + pd.to_timedelta(rng.integers(0, 90 * 24, rows), "h")
    return pd.DataFrame(
        {
            "declaration_id": [f"D{i:04d}" for i in range(1, rows + 1)],
            "lodged_at": lodged.strftime("%Y-%m-%d %H:%M:%S"),
            "office": rng.choice(["KRPUS", "KRINC", "KRSEL"], rows),
            "importer": [f"IMP{i % 5}" for i in range(rows)],
            "declarant": [f"BRK{i % 3}" for i in range(rows)],
            "seller": [f"SEL{i % 4}" for i in range(rows)],
            "hs_code": rng.choice(["0710807000", "870323", "62082200", "85176200"], rows),
            "origin_country": rng.choice(["CN", "NA", "DE"], rows),  # NA: Namibia
            "departure_country": rng.choice(["CN", "HK"], rows),
            "transport_mode": rng.choice(["sea", "air"], rows),
            "quantity": rng.integers(1, 100, rows).astype(float),
            "net_mass_kg": rng.gamma(2.0, 50.0, rows).round(1),
            "declared_value": rng.gamma(2.0, 5_000.0, rows).round(2),
            "duty_rate": rng.choice([0.0, 0.08, 0.13], rows),
            "declared_duty": rng.gamma(2.0, 300.0, rows).round(2),
            "aeo": rng.random(rows) < 0.2,
            "procedure_code": [f"IM40{i % 2}0" for i in range(rows)],  # an extra column
        },
        index=pd.RangeIndex(100, 100 + rows),  # an odd index: validation must not rely on it
    )


def outcomes(decls: pd.DataFrame, every: int = 2) -> pd.DataFrame:
    """Valid outcomes for every `every`-th declaration, selected at lodging, known 10 days on."""
    picked = decls.iloc[::every]
    lodged = pd.to_datetime(picked["lodged_at"])
    n = len(picked)
    hit = np.arange(n) % 3 == 0
    return pd.DataFrame(
        {
            "declaration_id": picked["declaration_id"].to_numpy(),
            "selected_at": lodged.dt.strftime("%Y-%m-%d %H:%M:%S").to_numpy(),
            "selection_reason": np.resize(["rule", "model", "random"], n),
            "selection_probability": np.where(np.arange(n) % 3 == 2, 0.01, np.nan),
            "inspected": True,
            "hit": hit,
            "fraud_type": np.where(hit, "undervaluation", None),
            "revenue_recovered": np.where(hit, 120.0, 0.0),
            "result_at": (lodged + pd.Timedelta(days=10)).dt.strftime("%Y-%m-%d").to_numpy(),
        }
    )


def write_simulated_tables(
    paths: Any, decls: pd.DataFrame, fraud: Any = False, revenue_recoverable: float = 0.0
) -> None:
    """`decls`, their `outcomes` and a ground truth (`fraud`: one flag or one per declaration)
    written where a simulated run keeps them (`config.paths`)."""
    truth = pd.DataFrame(
        {
            "declaration_id": decls["declaration_id"],
            "fraud": fraud,
            "fraud_type": "none",
            "revenue_recoverable": revenue_recoverable,
            "critical": False,
        }
    )
    paths.data.mkdir(parents=True)
    decls.to_parquet(paths.declarations, index=False)
    outcomes(decls).to_parquet(paths.outcomes, index=False)
    truth.to_parquet(paths.ground_truth, index=False)
