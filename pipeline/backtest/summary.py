"""What each policy achieved: per-step KPIs, when each fraud type first became known, and one
summary row per policy (totals, the emerging scheme, the random stratum against the truth)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.backtest.selection import EXPLORE, HISTORICAL, MODEL, RULE, Selection
from pipeline.backtest.stream import EMERGING_PREFIX, NO_FRAUD, Plan, Stream
from pipeline.config import MonitorConfig
from pipeline.evaluate.monitor import proportion_interval
from pipeline.ingest.columns import RANDOM


def step_kpis(
    stream: Stream, rows: np.ndarray, selection: Selection, capacity: int
) -> dict[str, float]:
    """Controls, hits, revenue and true recall of one step under one policy."""
    sel = selection.selected
    at = rows[sel]
    hits = stream.hit[at]
    reason = selection.reason[sel]
    emerging = stream.emerging[rows]
    frauds = stream.fraud[rows]
    random_rows = reason == RANDOM
    found_emerging = np.char.startswith(stream.found_type[at].astype(str), EMERGING_PREFIX)
    controls = int(sel.sum())
    recoverable = float(np.nansum(stream.recoverable[rows]))
    recovered = float(np.nansum(stream.revenue[at]))
    return {
        "declarations": len(rows),
        "capacity": capacity,
        "controls": controls,
        "controls_random": int(random_rows.sum()),
        "controls_rule": int((reason == RULE).sum()),
        "controls_model": int((reason == MODEL).sum()),
        "controls_explore": int((reason == EXPLORE).sum()),
        "controls_historical": int((reason == HISTORICAL).sum()),
        "hits": int(hits.sum()),
        "hit_rate": float(hits.mean()) if controls else float("nan"),
        "revenue_recovered": recovered,
        "revenue_recoverable": recoverable,
        "revenue_share": recovered / recoverable if recoverable else float("nan"),
        "frauds": int(frauds.sum()),
        "recall": float(hits.sum() / frauds.sum()) if frauds.any() else float("nan"),
        "frauds_emerging": int(emerging.sum()),
        "hits_emerging": int(found_emerging.sum()),
        "recall_emerging": float(found_emerging.sum() / emerging.sum())
        if emerging.any()
        else float("nan"),
        "random_hits": int(hits[random_rows].sum()),
        "truth_hit_rate": float(stream.hit[rows].mean()) if len(rows) else float("nan"),
    }


def first_detections(
    outcomes: pd.DataFrame,
    stream: Stream,
    plan: Plan,
    policy: str,
    missing_result_delay_days: float,
) -> pd.DataFrame:
    """When each fraud type's first hit became known, per policy (after the warm-up).

    A type already known from a warm-up hit is marked `known_before_backtest`.
    """
    hits = outcomes.loc[outcomes["hit"].astype("boolean").fillna(False).to_numpy(dtype=bool)]
    ids = pd.Index(stream.declarations["declaration_id"].astype("string"))
    at = ids.get_indexer(hits["declaration_id"].astype("string"))
    lodged = stream.lodged_at.to_numpy(dtype="datetime64[ns]")
    result = pd.to_datetime(hits["result_at"]) if "result_at" in hits else None
    fallback = pd.Series(lodged[at]) + pd.Timedelta(days=missing_result_delay_days)
    known = fallback if result is None else result.reset_index(drop=True).fillna(fallback)
    frame = pd.DataFrame(
        {"fraud_type": hits["fraud_type"].astype("string").to_numpy(), "known_at": known}
    )
    first_known = frame.groupby("fraud_type", observed=True)["known_at"].min()
    appears = pd.Series(lodged[stream.fraud]).groupby(stream.fraud_type[stream.fraud]).min()
    rows = []
    for scheme in sorted(set(appears.index) | set(first_known.index)):
        if scheme == NO_FRAUD:
            continue
        known_at = first_known.get(scheme, pd.NaT)
        appeared = appears.get(scheme, pd.NaT)
        step = (
            int((known_at - plan.warm_end) // plan.step)
            if pd.notna(known_at) and known_at >= plan.warm_end
            else None
        )
        rows.append(
            {
                "policy": policy,
                "fraud_type": scheme,
                "appeared_at": appeared,
                "first_known_at": known_at,
                "first_known_step": step,
                "known_before_backtest": bool(pd.notna(known_at) and known_at < plan.warm_end),
                "days_to_detect": (known_at - appeared) / pd.Timedelta(days=1)
                if pd.notna(known_at) and pd.notna(appeared)
                else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def summarise(
    kpis: pd.DataFrame, schemes: pd.DataFrame, monitor: MonitorConfig, drift: pd.Timestamp | None
) -> pd.DataFrame:
    """One row per policy: totals over the period, the emerging scheme, the random stratum (its
    interval as `monitor` sets it)."""
    rows = []
    for policy, part in kpis.groupby("policy", sort=False):
        after = part if drift is None else part.loc[part["end"] > drift]
        random_controls = int(part["controls_random"].sum())
        random_hits = int(part["random_hits"].sum())
        low, high = proportion_interval(
            random_hits, random_controls, monitor.confidence, monitor.interval
        )
        truth = float(
            (part["truth_hit_rate"] * part["declarations"]).sum() / part["declarations"].sum()
        )
        emerging = schemes.loc[
            (schemes["policy"] == policy) & schemes["fraud_type"].str.startswith(EMERGING_PREFIX)
        ]
        first = emerging["first_known_at"].min() if len(emerging) else pd.NaT
        days = emerging["days_to_detect"].min() if len(emerging) else float("nan")
        rows.append(
            {
                "policy": policy,
                "steps": len(part),
                "controls": int(part["controls"].sum()),
                "capacity": int(part["capacity"].sum()),
                "hits": int(part["hits"].sum()),
                "hit_rate": part["hits"].sum() / max(part["controls"].sum(), 1),
                "revenue_recovered": float(part["revenue_recovered"].sum()),
                "revenue_share": float(
                    part["revenue_recovered"].sum() / part["revenue_recoverable"].sum()
                )
                if part["revenue_recoverable"].sum()
                else float("nan"),
                "recall": part["hits"].sum() / max(part["frauds"].sum(), 1),
                "recall_after_drift": after["hits"].sum() / max(after["frauds"].sum(), 1),
                "hits_emerging": int(part["hits_emerging"].sum()),
                "recall_emerging": part["hits_emerging"].sum()
                / max(part["frauds_emerging"].sum(), 1),
                "emerging_first_known_at": first,
                "emerging_days_to_detect": days,
                "random_controls": random_controls,
                "random_hit_rate": random_hits / random_controls
                if random_controls
                else float("nan"),
                "random_low": low,
                "random_high": high,
                "truth_hit_rate": truth,
                "truth_in_interval": bool(low <= truth <= high) if random_controls else None,
                "retrains": int(part["retrained"].sum()),
            }
        )
    return pd.DataFrame(rows)
