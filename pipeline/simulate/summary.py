"""Headline figures of a simulation: true fraud, the historical policy's controls, hits, revenue."""

from __future__ import annotations

import pandas as pd

from pipeline.ingest.columns import random_stratum
from pipeline.simulate.fraud import EMERGING
from pipeline.simulate.tables import SimulatedData


def summary(data: SimulatedData) -> dict[str, float]:
    """Headline figures: true fraud, the historical policy's controls, hits and revenue."""
    declarations, outcomes, truth = data.declarations, data.outcomes, data.ground_truth
    rows = len(declarations)
    inspected = outcomes["inspected"].to_numpy()
    hits = outcomes["hit"].to_numpy()
    random_draw = random_stratum(outcomes["selection_reason"], outcomes["selection_probability"])
    fraud = truth["fraud"].to_numpy()
    aeo = declarations["aeo"].to_numpy()
    emerging = (truth["fraud_type"] == EMERGING).to_numpy()
    lodged = declarations["lodged_at"]
    recoverable = float(truth["revenue_recoverable"].sum())
    recovered = float(outcomes["revenue_recovered"].sum())
    first_emerging = lodged[emerging].min() if emerging.any() else pd.NaT
    return {
        "rows": float(rows),
        "days": float((lodged.max() - lodged.min()) / pd.Timedelta(days=1)) if rows else 0.0,
        "fraud_rate": float(fraud.mean()) if rows else 0.0,
        "fraud_rate_aeo": float(fraud[aeo].mean()) if aeo.any() else float("nan"),
        "fraud_rate_non_aeo": float(fraud[~aeo].mean()) if (~aeo).any() else float("nan"),
        "critical_rate": float(truth["critical"].mean()) if rows else 0.0,
        "emerging_rate": float(emerging.mean()) if rows else 0.0,
        "emerging_first_day": float((first_emerging - lodged.min()) / pd.Timedelta(days=1))
        if emerging.any()
        else float("nan"),
        "inspection_rate": float(inspected.sum() / rows) if rows else 0.0,
        "hit_rate": float(hits[inspected].mean()) if inspected.any() else float("nan"),
        "hit_rate_random": float(hits[random_draw].mean()) if random_draw.any() else float("nan"),
        "random_stratum_rate": float(random_draw.sum() / rows) if rows else 0.0,
        "recall": float(hits.sum() / fraud.sum()) if fraud.any() else float("nan"),
        "emerging_share_of_frauds_after_start": float(
            emerging.sum() / fraud[(lodged >= first_emerging).to_numpy()].sum()
        )
        if emerging.any()
        else float("nan"),
        "recall_emerging": float((outcomes["fraud_type"] == EMERGING).sum() / emerging.sum())
        if emerging.any()
        else float("nan"),
        "revenue_recoverable": recoverable,
        "revenue_recovered": recovered,
        "revenue_recovered_share": recovered / recoverable if recoverable > 0 else float("nan"),
    }
