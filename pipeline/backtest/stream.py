"""The replayed stream: declarations in lodging order, what a control of each would reveal, the
calendar of steps with each office-day's capacity, and the outcomes a selection reveals."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.backtest.selection import EXPLORE, MODEL, RULE, Selection
from pipeline.config import BacktestConfig
from pipeline.ingest.columns import RANDOM, SELECTION_REASONS
from pipeline.serve.draw import random_hash

EMERGING_PREFIX = "emerging"
NO_FRAUD = "none"


class BacktestError(ValueError):
    """A backtest that cannot run as configured (too little data, no label source...)."""


# --- the stream and what a control would reveal ------------------------------------------------


@dataclass(frozen=True)
class Stream:
    """Declarations in lodging order with, row-aligned, what a control of each would reveal.

    `hit`, `found_type`, `revenue`: the outcome a control reveals; `selected_after` and
    `result_after`: delays from lodging; `fraud`, `fraud_type`, `recoverable`: the truth, for
    recall; `recorded`: the historical policy controlled the row (its outcome is in `outcomes`).
    """

    declarations: pd.DataFrame
    outcomes: pd.DataFrame
    hit: np.ndarray
    found_type: np.ndarray
    revenue: np.ndarray
    selected_after: np.ndarray  # timedelta64[ns]
    result_after: np.ndarray  # timedelta64[ns], NaT when the data has no result dates
    fraud: np.ndarray
    fraud_type: np.ndarray
    recoverable: np.ndarray
    recorded: np.ndarray
    recorded_reason: np.ndarray

    @property
    def lodged_at(self) -> pd.Series:
        """Lodging times (sorted)."""
        return self.declarations["lodged_at"]

    @property
    def emerging(self) -> np.ndarray:
        """Rows of an emerging scheme (fraud type named ``emerging_*``)."""
        return np.char.startswith(self.fraud_type.astype(str), EMERGING_PREFIX)


@dataclass(frozen=True)
class Recorded:
    """The historical policy's controls, row-aligned with the sorted declarations."""

    controlled: np.ndarray
    hit: np.ndarray
    fraud_type: np.ndarray
    revenue: np.ndarray  # NaN where the data records no revenue (KCS)
    selected_after: np.ndarray  # timedelta64[ns]
    result_after: np.ndarray  # timedelta64[ns]
    reason: np.ndarray


@dataclass(frozen=True)
class Truth:
    """The ground truth of every declaration, row-aligned with the sorted declarations."""

    fraud: np.ndarray
    fraud_type: np.ndarray
    recoverable: np.ndarray


def unit_uniform(declaration_ids: pd.Series, key: str) -> np.ndarray:
    """A uniform draw in [0, 1) per declaration id: the keyed hash of the serving random draw."""
    return (random_hash(declaration_ids, key) >> np.uint64(11)).astype(np.float64) / 2.0**53


def recorded_controls(decl: pd.DataFrame, outcomes: pd.DataFrame) -> Recorded:
    """The recorded outcome of each sorted declaration the historical policy controlled."""
    ids = decl["declaration_id"].astype("string")
    n = len(decl)
    out = outcomes.drop_duplicates("declaration_id", keep="last")
    pos = pd.Index(ids).get_indexer(out["declaration_id"].astype("string"))
    out = out.loc[pos >= 0]
    pos = pos[pos >= 0]
    controlled = np.zeros(n, dtype=bool)
    controlled[pos] = True
    hit = np.zeros(n, dtype=bool)
    hit[pos] = out["hit"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    fraud_type = np.full(n, NO_FRAUD, dtype=object)
    if "fraud_type" in out.columns:
        fraud_type[pos] = out["fraud_type"].astype("string").fillna(NO_FRAUD).to_numpy(dtype=object)
    fraud_type[controlled & ~hit] = NO_FRAUD
    # NaN where the data records no revenue (KCS): a revenue model must not learn from zeros
    revenue = np.full(n, np.nan)
    if "revenue_recovered" in out.columns:
        revenue[pos] = out["revenue_recovered"].astype(float).to_numpy()
    lodged = decl["lodged_at"].to_numpy(dtype="datetime64[ns]")
    selected = np.full(n, np.timedelta64("NaT"), dtype="timedelta64[ns]")
    result = np.full(n, np.timedelta64("NaT"), dtype="timedelta64[ns]")
    selected[pos] = pd.to_datetime(out["selected_at"]).to_numpy("datetime64[ns]") - lodged[pos]
    if "result_at" in out.columns:
        result[pos] = pd.to_datetime(out["result_at"]).to_numpy("datetime64[ns]") - lodged[pos]
    reason = np.full(n, None, dtype=object)
    reason[pos] = out["selection_reason"].astype("string").to_numpy(dtype=object)
    return Recorded(controlled, hit, fraud_type, revenue, selected, result, reason)


def recorded_truth(ids: pd.Series, rec: Recorded) -> Truth:
    """Without ground truth the records are the truth: every declaration needs one (KCS)."""
    if not rec.controlled.all():
        missing = ids[~rec.controlled].head(5).tolist()
        raise BacktestError(
            f"no ground truth and {int((~rec.controlled).sum())} declarations without an outcome "
            f"(e.g. {missing}): the backtest cannot reveal what their control would find"
        )
    fraud_type = np.where(rec.hit, rec.fraud_type, NO_FRAUD).astype(object)
    return Truth(rec.hit.copy(), fraud_type, rec.revenue.copy())


def aligned_truth(ids: pd.Series, ground_truth: pd.DataFrame) -> Truth:
    """The ground truth of each sorted declaration; every one must have a row."""
    truth = ground_truth.drop_duplicates("declaration_id").set_index(
        ground_truth["declaration_id"].drop_duplicates().astype("string")
    )
    tpos = truth.index.get_indexer(ids)
    if (tpos < 0).any():
        raise BacktestError(
            f"ground truth lacks {int((tpos < 0).sum())} declarations "
            f"(e.g. {ids[tpos < 0].head(5).tolist()})"
        )
    fraud = truth["fraud"].astype("boolean").fillna(False).to_numpy(dtype=bool)[tpos]
    fraud_type = truth["fraud_type"].astype("string").fillna(NO_FRAUD).to_numpy(dtype=object)[tpos]
    recoverable = truth["revenue_recoverable"].astype(float).fillna(0.0).to_numpy()[tpos]
    return Truth(fraud, fraud_type, recoverable)


@dataclass(frozen=True)
class Draws:
    """How a control the historical policy did not make is drawn: the chance it finds a fraud,
    the mean days until its result, and the key of the draws' hashes."""

    detection_rate: float
    result_delay_days: float
    key: str


def counterfactual_stream(
    decl: pd.DataFrame, outcomes: pd.DataFrame, rec: Recorded, truth: Truth, draws: Draws
) -> Stream:
    """Recorded outcomes where the historical policy controlled, drawn ones elsewhere.

    The detection and delay draws are keyed hashes of the declaration id, so two policies that
    control the same declaration see the same result (common random numbers).
    """
    detection_rate, result_delay_days, key = (
        draws.detection_rate,
        draws.result_delay_days,
        draws.key,
    )
    ids = decl["declaration_id"].astype("string")
    n = len(decl)
    detected = unit_uniform(ids, f"{key}:detect") < detection_rate
    sim_hit = truth.fraud & detected
    delay_u = unit_uniform(ids, f"{key}:delay")
    delay_days = -max(result_delay_days, 0.01) * np.log1p(-delay_u) + 0.1
    sim_selected = np.full(n, np.timedelta64(3600, "s"), dtype="timedelta64[ns]")
    sim_result = sim_selected + (delay_days * 86_400e9).astype("timedelta64[ns]")
    recorded = rec.controlled
    hit = np.where(recorded, rec.hit, sim_hit)
    found = np.where(
        recorded, rec.fraud_type, np.where(sim_hit, truth.fraud_type, NO_FRAUD)
    ).astype(object)
    revenue = np.where(recorded, rec.revenue, np.where(sim_hit, truth.recoverable, 0.0))
    selected_after = np.where(recorded, rec.selected_after, sim_selected)
    result_after = np.where(recorded, rec.result_after, sim_result)
    return Stream(
        decl, outcomes, hit, found, revenue, selected_after, result_after, truth.fraud,
        truth.fraud_type, truth.recoverable, recorded, rec.reason,
    )  # fmt: skip


def make_stream(
    declarations: pd.DataFrame,
    outcomes: pd.DataFrame,
    ground_truth: pd.DataFrame | None,
    draws: Draws,
) -> Stream:
    """Align declarations, recorded outcomes and ground truth; draw the counterfactual results.

    Without ground truth every declaration must carry a recorded outcome (KCS), else the
    backtest cannot say what a control of an unselected declaration would have found.
    """
    decl = declarations.sort_values(["lodged_at", "declaration_id"], kind="stable")
    decl = decl.reset_index(drop=True)
    ids = decl["declaration_id"].astype("string")
    rec = recorded_controls(decl, outcomes)
    if ground_truth is None:
        truth = recorded_truth(ids, rec)
        return Stream(
            decl, outcomes, rec.hit, rec.fraud_type, rec.revenue, rec.selected_after,
            rec.result_after, truth.fraud, truth.fraud_type, truth.recoverable, rec.controlled,
            rec.reason,
        )  # fmt: skip
    return counterfactual_stream(decl, outcomes, rec, aligned_truth(ids, ground_truth), draws)


# --- the calendar and the capacity -------------------------------------------------------------


def office_days(declarations: pd.DataFrame) -> np.ndarray:
    """Integer code of each declaration's (office, lodging day)."""
    day = declarations["lodged_at"].dt.normalize()
    office = declarations["office"].astype("string").fillna("<missing>")
    codes, _ = pd.factorize(pd.MultiIndex.from_arrays([office, day]))
    return np.asarray(codes, dtype=np.int64)


def daily_capacity(groups: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """Controls per office-day: `rate` x its flow, stochastically rounded (one seeded draw).

    Stochastic rounding keeps small offices at the right rate on average (a floor would give an
    office with 10 declarations a day no control at all at 5 %).
    """
    flow = np.bincount(groups)
    rng = np.random.default_rng(seed)
    return np.floor(rate * flow + rng.random(len(flow))).astype(np.int64)


@dataclass(frozen=True)
class Plan:
    """The replay's calendar: warm-up end, step starts, and the shared capacity."""

    warm_end: pd.Timestamp
    starts: list[pd.Timestamp]
    step: pd.Timedelta
    groups: np.ndarray  # office-day code per stream row
    capacity: np.ndarray  # controls per office-day
    bounds: np.ndarray  # stream row where each step starts, and the end

    @property
    def steps(self) -> int:
        """Number of steps."""
        return len(self.starts)

    def rows(self, step: int) -> np.ndarray:
        """Stream positions of the step's declarations."""
        return np.arange(self.bounds[step], self.bounds[step + 1])


def make_plan(stream: Stream, bt: BacktestConfig, capacity_rate: float, seed: int) -> Plan:
    """Steps of `step_days` after the warm-up, as many as `weeks` allow and the data holds, and
    each office-day's capacity at `capacity_rate` (drawn with `seed`)."""
    lodged = stream.lodged_at
    if lodged.empty:
        raise BacktestError("the stream holds no declarations")
    first = lodged.min().normalize()
    warm_end = first + pd.Timedelta(days=bt.warmup_days)
    step = pd.Timedelta(days=bt.step_days)
    wanted = math.ceil(bt.weeks * 7 / bt.step_days)
    last = lodged.max()
    starts = [warm_end + k * step for k in range(wanted) if warm_end + k * step <= last]
    if not starts:
        raise BacktestError(
            f"the data ends {last:%Y-%m-%d}, before the warm-up ends {warm_end:%Y-%m-%d}: "
            "shorten backtest.warmup_days"
        )
    edges = [*starts, starts[-1] + step]
    bounds = np.searchsorted(
        lodged.to_numpy(dtype="datetime64[ns]"), np.array(edges, dtype="datetime64[ns]")
    )
    groups = office_days(stream.declarations)
    capacity = daily_capacity(groups, capacity_rate, seed)
    return Plan(warm_end, starts, step, groups, capacity, bounds)


# --- revealing outcomes ------------------------------------------------------------------------


OUTCOME_REASON = {RANDOM: "random", RULE: "rule", MODEL: "model", EXPLORE: "model"}


def reveal(stream: Stream, rows: np.ndarray, selection: Selection) -> pd.DataFrame:
    """Canonical outcomes of the selected rows (`rows`: stream positions of the step's rows)."""
    chosen = np.flatnonzero(selection.selected)
    at = rows[chosen]
    lodged = stream.lodged_at.to_numpy(dtype="datetime64[ns]")[at]
    reasons = [OUTCOME_REASON.get(str(r), "unknown") for r in selection.reason[chosen]]
    return pd.DataFrame(
        {
            "declaration_id": stream.declarations["declaration_id"].to_numpy()[at],
            "selected_at": lodged + stream.selected_after[at],
            "selection_reason": pd.Categorical(reasons, categories=list(SELECTION_REASONS)),
            "selection_probability": selection.probability[chosen],
            "inspected": np.ones(len(at), dtype=bool),
            "hit": stream.hit[at],
            "fraud_type": stream.found_type[at].astype(str),
            "revenue_recovered": stream.revenue[at],
            "result_at": lodged + stream.result_after[at],
        }
    )


def canonical_outcomes(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One outcome table from recorded and revealed parts (categories made consistent)."""
    parts = []
    for frame in frames:
        if frame.empty:
            continue
        part = frame.copy()
        part["selection_reason"] = part["selection_reason"].astype("string")
        part["fraud_type"] = part["fraud_type"].astype("string")
        parts.append(part)
    table = pd.concat(parts, ignore_index=True) if parts else frames[0].iloc[:0].copy()
    table["selection_reason"] = pd.Categorical(
        table["selection_reason"], categories=list(SELECTION_REASONS)
    )
    table["fraud_type"] = table["fraud_type"].astype("category")
    return table
