"""The column contract of the canonical tables, in customs words.

Every adapter (CSV/Parquet readers, the KCS adapter, the simulator) produces these columns with
these dtypes; every later stage relies on nothing else. `schema.validate()` enforces them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

Kind = Literal["id", "category", "timestamp", "float", "bool", "hs"]


@dataclass(frozen=True)
class Column:
    """One canonical column: its kind, whether it must be present, and what it means."""

    name: str
    kind: Kind
    required: bool
    description: str
    nullable: bool = False
    minimum: float | None = None


DECLARATION_COLUMNS: tuple[Column, ...] = (
    Column("declaration_id", "id", True, "unique identifier of the declaration"),
    Column("lodged_at", "timestamp", True, "when the declaration was lodged"),
    Column("office", "category", True, "customs office of clearance"),
    Column("importer", "category", True, "importer (consignee) identifier"),
    Column("declarant", "category", True, "declarant or customs broker identifier"),
    Column("seller", "category", True, "foreign seller identifier", nullable=True),
    Column("hs_code", "hs", True, "declared commodity code, leading zeros kept (6-10 digits)"),
    Column("origin_country", "category", True, "declared country of origin"),
    Column("departure_country", "category", True, "country of departure (export)"),
    Column("transport_mode", "category", True, "mode of transport"),
    Column("quantity", "float", True, "quantity in supplementary units", True, 0.0),
    Column("net_mass_kg", "float", True, "net mass in kilograms", False, 0.0),
    Column("declared_value", "float", True, "declared customs value", False, 0.0),
    Column("duty_rate", "float", True, "ad valorem duty rate, a fraction (0.08 = 8 %)", False, 0.0),
    Column("declared_duty", "float", True, "duty declared by the trader", True, 0.0),
    Column("aeo", "bool", True, "importer is an Authorised Economic Operator"),
)

OUTCOME_COLUMNS: tuple[Column, ...] = (
    Column("declaration_id", "id", True, "declaration the outcome belongs to"),
    Column("selected_at", "timestamp", True, "when the declaration was selected for control"),
    Column("selection_reason", "category", True, "rule | model | random | intelligence | unknown"),
    Column(
        "selection_probability",
        "float",
        False,
        "probability of selection, known for random draws",
        True,
        0.0,
    ),
    Column("inspected", "bool", True, "the control took place"),
    Column("hit", "bool", True, "the control found an irregularity"),
    Column("fraud_type", "category", False, "kind of irregularity found", True),
    Column("revenue_recovered", "float", False, "additional duties and taxes recovered", True, 0.0),
    Column("result_at", "timestamp", False, "when the outcome became known", True),
)

GROUND_TRUTH_COLUMNS: tuple[Column, ...] = (
    Column("declaration_id", "id", True, "declaration"),
    Column("fraud", "bool", True, "the declaration is truly fraudulent"),
    Column("fraud_type", "category", True, "scheme, or 'none'"),
    Column("revenue_recoverable", "float", True, "duty that a perfect control would recover"),
    Column("critical", "bool", True, "prohibited or restricted goods (little revenue, critical)"),
)

SELECTION_REASONS: tuple[str, ...] = ("rule", "model", "random", "intelligence", "unknown")
RANDOM = "random"  # the selection reason of the random draw


def random_stratum(reason: Any, probability: Any) -> np.ndarray:
    """The random stratum, the one definition every stage reads: declarations selected by the
    random draw (`RANDOM`) with a recorded selection probability in (0, 1]. The probability is
    what makes them evidence: a draw whose probability is unknown cannot be weighted."""
    drawn = pd.Series(np.asarray(reason, dtype=object)).astype("string").eq(RANDOM)
    p = np.asarray(pd.to_numeric(pd.Series(np.asarray(probability)), errors="coerce"), dtype=float)
    return drawn.fillna(False).to_numpy(dtype=bool) & (p > 0) & (p <= 1)


# Derived from hs_code by schema.add_hs_levels(); stages may rely on them after validation.
HS_LEVELS: tuple[str, ...] = ("hs2", "hs4", "hs6")


def names(columns: tuple[Column, ...], *, required_only: bool = False) -> list[str]:
    """Column names of a table contract."""
    return [c.name for c in columns if c.required or not required_only]
