"""Small canonical frames for the feature tests (no conftest: imported explicitly)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from pipeline.config import PROJECT_ROOT, FeaturesConfig, SimulateConfig
from pipeline.simulate import simulate

CATEGORY_COLUMNS = (
    "office",
    "importer",
    "declarant",
    "seller",
    "origin_country",
    "departure_country",
    "transport_mode",
)


def tiny_tables(
    n: int = 400, seed: int = 0, *, hours: int = 24 * 120, ties: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Canonical declarations and outcomes with few entities, ties in time and odd indexes.

    Times fall on whole hours when ``ties`` (many declarations share an instant); outcomes have
    result dates a few days later, some missing, some not inspected, a random stratum.
    """
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01")
    step = pd.Timedelta(hours=1) if ties else pd.Timedelta(seconds=1)
    span = hours if ties else hours * 3600
    lodged = start + step * rng.integers(0, span, n)
    hs_codes = np.array(["0101210000", "0101290000", "0102100000", "8471300000", "8471410000"])
    declarations = pd.DataFrame(
        {
            "declaration_id": [f"D{i:06d}" for i in rng.permutation(n)],
            "lodged_at": lodged,
            "office": rng.choice(["O1", "O2", "O3"], n),
            "importer": rng.choice([f"I{i}" for i in range(25)], n),
            "declarant": rng.choice([f"B{i}" for i in range(6)], n),
            "seller": rng.choice([f"S{i}" for i in range(15)] + [None], n),
            "hs_code": rng.choice(hs_codes, n),
            "origin_country": rng.choice(["CN", "VN", "DE"], n),
            "departure_country": rng.choice(["CN", "SG", "DE"], n),
            "transport_mode": rng.choice(["sea", "air"], n),
            "quantity": np.where(rng.random(n) < 0.1, np.nan, rng.integers(1, 500, n)),
            "net_mass_kg": rng.lognormal(4, 1, n),
            "declared_value": rng.lognormal(8, 1, n),
            "duty_rate": rng.choice([0.0, 0.05, 0.08, 0.12], n),
            "declared_duty": rng.lognormal(5, 1, n),
            "aeo": rng.random(n) < 0.1,
        }
    )
    for column in CATEGORY_COLUMNS:
        declarations[column] = declarations[column].astype("category")
    for level, digits in (("hs2", 2), ("hs4", 4), ("hs6", 6)):
        declarations[level] = declarations["hs_code"].str[:digits].astype("category")
    declarations.index = pd.RangeIndex(1000, 1000 + 3 * n, 3)  # odd index on purpose

    chosen = rng.random(n) < 0.4
    m = int(chosen.sum())
    random = rng.random(m) < 0.3
    selected = declarations.loc[chosen, "lodged_at"].to_numpy() + pd.to_timedelta(
        rng.integers(0, 48, m), unit="h"
    )
    result = selected + pd.to_timedelta(rng.integers(1, 20 * 24, m), unit="h")
    result = np.where(rng.random(m) < 0.15, np.datetime64("NaT"), result)
    hit = rng.random(m) < 0.25
    outcomes = pd.DataFrame(
        {
            "declaration_id": declarations.loc[chosen, "declaration_id"].to_numpy(),
            "selected_at": selected,
            "selection_reason": pd.Categorical(
                np.where(random, "random", "rule"), categories=["rule", "random"]
            ),
            "selection_probability": np.where(random, 0.05, np.nan),
            "inspected": rng.random(m) < 0.95,
            "hit": hit,
            "fraud_type": pd.Categorical(np.where(hit, "undervaluation", "none")),
            "revenue_recovered": np.where(hit, rng.lognormal(6, 1, m), 0.0),
            "result_at": pd.to_datetime(result),
        }
    ).sample(frac=1.0, random_state=seed)
    outcomes.index = pd.RangeIndex(7, 7 + 2 * m, 2)
    return declarations, outcomes


def small_config(**changes: object) -> FeaturesConfig:
    """The default feature config with a short reporting delay and low valuation support."""
    settings: dict[str, object] = {
        "reporting_delay_days": 1.0,
        "valuation_min_support": 5,
        "prior_strength": 5.0,
    }
    settings.update(changes)
    return FeaturesConfig.model_validate(settings)


@lru_cache(maxsize=2)
def simulated(rows: int = 6_000, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small simulated stream (cached; callers must not mutate it)."""
    config = SimulateConfig(rows=rows, importers=400, sellers=300, declarants=40, days=240)
    data = simulate(config, seed)
    return data.declarations, data.outcomes


def same_values(left: pd.DataFrame, right: pd.DataFrame) -> bool:
    """Equal values column by column, NaN equal to NaN, categories compared as text."""
    if list(left.columns) != list(right.columns) or len(left) != len(right):
        return False
    for column in left.columns:
        a, b = left[column], right[column]
        if isinstance(a.dtype, pd.CategoricalDtype) or isinstance(b.dtype, pd.CategoricalDtype):
            a, b = a.astype(object), b.astype(object)
            if not a.reset_index(drop=True).equals(b.reset_index(drop=True)):
                return False
        elif not np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True):
            return False
    return True


KCS_FILES = PROJECT_ROOT.parent / "shared" / "data" / "external" / "Customs-Declaration-Datasets"


def kcs_sample(rows: int = 4000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first `rows` validated declarations of the KCS 2021 Q1 file, and the outcomes."""
    from pipeline.ingest.kcs import read_kcs
    from pipeline.ingest.schema import validate

    raw_declarations, raw_outcomes = read_kcs([KCS_FILES / "df_syn_valid_eng.csv"])
    tables = validate(raw_declarations, raw_outcomes)
    return tables.declarations.head(rows), tables.outcomes
