"""The feedback loop replayed: selection policies over time, retrained on what they revealed.

`run_backtest` replays a declaration stream in steps (weekly by default) after a warm-up:

1. **Warm-up.** The first `warmup_days` carry the historical policy's recorded outcomes; the
   initial model is trained on them with the same code as `targeting train`
   (`features.build.build_feature_set`, then `train.fit.fit` with fixed parameters: no tuning).
2. **Each step, each policy.** The step's declarations are scored by the policy's current model
   and selected within each office's daily capacity (`capacity_rate` of its flow that day,
   stochastically rounded with one seeded draw shared by every policy), in this order: the random
   share (a keyed-hash draw with a known probability, never cut), the risk criteria when the
   policy applies them, the model's highest scores, and the exploration share (declarations drawn
   with weight p(1-p), where the model is least sure).
3. **Reveal.** Only the selected declarations get an outcome. A declaration the historical policy
   controlled reveals its recorded outcome (hit, fraud type, revenue, delay); any other reveals
   what a control would have found according to the ground truth: a hit when it is fraudulent and
   the control detects it (probability `detection_rate`), the recoverable revenue, a result after
   an exponential delay. Detection and delay draws are keyed hashes of the declaration id, so
   two policies that control the same declaration see the same result (common random numbers).
   On data whose every row carries a label (KCS), the recorded label is revealed.
4. **Features and retraining.** Every `refresh_every_steps` the policy's feature set is rebuilt
   from the declarations and the outcomes it has revealed so far, through the step after the next
   rebuild; profiles are point-in-time, so a declaration sees an outcome only after its result
   date. Every `retrain_every_steps` (per policy) the model is refitted on that feature set with
   labels known before the retraining day. Between two rebuilds a declaration misses the outcomes
   of controls made after the last rebuild (the price of rebuilding monthly, not daily).

Policies (`config.backtest.policies`): `historical` replays the recorded controls (rules, officers
and the historical random draw); `rules` applies the risk criteria only; `model` ranks by the
model with optional random and exploration shares and its own retraining frequency.

Speed (bench/backtest.py, 500,000 declarations, 52 weekly steps, monthly retraining, one model
policy, 2 cores): 66 s on a quiet machine (210 s with the two cores shared, load ~5): training
~55-60 % (13 fits with early stopping and a revenue model, on the labels a policy reveals: their
number follows the capacity, not the stream), feature builds ~20-30 % (13 point-in-time passes
over the stream so far), scoring ~5 %, selection < 1 %. Each further model policy adds about
the same. XGBoost runs one thread per fit (`backtest.n_jobs`): two threads competing on a loaded
machine were ~18x slower.

Per step and policy the KPI table records controls against capacity, hits, hit rate, revenue
recovered, true recall (all frauds of the step, from the ground truth), the emerging scheme's
recall, the random stratum, and the fraud types whose first hit became known in the step.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Config, PolicyConfig, RuleConfig, SplitConfig
from pipeline.evaluate.monitor import proportion_interval
from pipeline.features.build import build_feature_set
from pipeline.features.featureset import FeatureSet
from pipeline.ingest.columns import SELECTION_REASONS
from pipeline.serve.model import TargetingModel
from pipeline.serve.ranking import rank
from pipeline.serve.thresholds import random_draw, random_hash, rule_matches
from pipeline.train.fit import fit
from pipeline.train.split import make_windows

EMERGING_PREFIX = "emerging"
NO_FRAUD = "none"
RANDOM, RULE, MODEL, EXPLORE, HISTORICAL = "random", "rule", "model", "explore", "historical"
PHASES = ("features_s", "training_s", "scoring_s", "selection_s")


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


def unit_uniform(declaration_ids: pd.Series, key: str) -> np.ndarray:
    """A uniform draw in [0, 1) per declaration id: the keyed hash of the serving random draw."""
    return (random_hash(declaration_ids, key) >> np.uint64(11)).astype(np.float64) / 2.0**53


def make_stream(
    declarations: pd.DataFrame,
    outcomes: pd.DataFrame,
    ground_truth: pd.DataFrame | None,
    *,
    detection_rate: float,
    result_delay_days: float,
    key: str,
) -> Stream:
    """Align declarations, recorded outcomes and ground truth; draw the counterfactual results.

    Without ground truth every declaration must carry a recorded outcome (KCS), else the
    backtest cannot say what a control of an unselected declaration would have found.
    """
    decl = declarations.sort_values(["lodged_at", "declaration_id"], kind="stable")
    decl = decl.reset_index(drop=True)
    ids = decl["declaration_id"].astype("string")
    n = len(decl)
    out = outcomes.drop_duplicates("declaration_id", keep="last")
    pos = pd.Index(ids).get_indexer(out["declaration_id"].astype("string"))
    out = out.loc[pos >= 0]
    pos = pos[pos >= 0]
    recorded = np.zeros(n, dtype=bool)
    recorded[pos] = True
    rec_hit = np.zeros(n, dtype=bool)
    rec_hit[pos] = out["hit"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    rec_type = np.full(n, NO_FRAUD, dtype=object)
    if "fraud_type" in out.columns:
        rec_type[pos] = out["fraud_type"].astype("string").fillna(NO_FRAUD).to_numpy(dtype=object)
    rec_type[recorded & ~rec_hit] = NO_FRAUD
    # NaN where the data records no revenue (KCS): a revenue model must not learn from zeros
    rec_revenue = np.full(n, np.nan)
    if "revenue_recovered" in out.columns:
        rec_revenue[pos] = out["revenue_recovered"].astype(float).to_numpy()
    lodged = decl["lodged_at"].to_numpy(dtype="datetime64[ns]")
    rec_selected = np.full(n, np.timedelta64("NaT"), dtype="timedelta64[ns]")
    rec_result = np.full(n, np.timedelta64("NaT"), dtype="timedelta64[ns]")
    rec_selected[pos] = pd.to_datetime(out["selected_at"]).to_numpy("datetime64[ns]") - lodged[pos]
    if "result_at" in out.columns:
        rec_result[pos] = pd.to_datetime(out["result_at"]).to_numpy("datetime64[ns]") - lodged[pos]
    rec_reason = np.full(n, None, dtype=object)
    rec_reason[pos] = out["selection_reason"].astype("string").to_numpy(dtype=object)

    if ground_truth is None:
        if not recorded.all():
            missing = ids[~recorded].head(5).tolist()
            raise BacktestError(
                f"no ground truth and {int((~recorded).sum())} declarations without an outcome "
                f"(e.g. {missing}): the backtest cannot reveal what their control would find"
            )
        fraud = rec_hit.copy()
        fraud_type = np.where(rec_hit, rec_type, NO_FRAUD).astype(object)
        recoverable = rec_revenue.copy()
        return Stream(
            decl, outcomes, rec_hit, rec_type, rec_revenue, rec_selected, rec_result, fraud,
            fraud_type, recoverable, recorded, rec_reason,
        )  # fmt: skip

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
    detected = unit_uniform(ids, f"{key}:detect") < detection_rate
    sim_hit = fraud & detected
    delay_u = unit_uniform(ids, f"{key}:delay")
    delay_days = -max(result_delay_days, 0.01) * np.log1p(-delay_u) + 0.1
    sim_selected = np.full(n, np.timedelta64(3600, "s"), dtype="timedelta64[ns]")
    sim_result = sim_selected + (delay_days * 86_400e9).astype("timedelta64[ns]")
    hit = np.where(recorded, rec_hit, sim_hit)
    found = np.where(recorded, rec_type, np.where(sim_hit, fraud_type, NO_FRAUD)).astype(object)
    revenue = np.where(recorded, rec_revenue, np.where(sim_hit, recoverable, 0.0))
    selected_after = np.where(recorded, rec_selected, sim_selected)
    result_after = np.where(recorded, rec_result, sim_result)
    return Stream(
        decl, outcomes, hit, found, revenue, selected_after, result_after, fraud, fraud_type,
        recoverable, recorded, rec_reason,
    )  # fmt: skip


# --- capacity and selection --------------------------------------------------------------------


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


def rank_within(groups: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """Rank of each row in its group (0 = first), highest priority first, ties by position."""
    n = len(groups)
    p = np.where(np.isnan(priority), -np.inf, priority)
    order = np.lexsort((np.arange(n), -p, groups))
    sorted_groups = groups[order]
    start = np.searchsorted(sorted_groups, sorted_groups, side="left")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - start
    return rank


def take_top(
    groups: np.ndarray, priority: np.ndarray, eligible: np.ndarray, slots: np.ndarray
) -> np.ndarray:
    """The eligible rows of highest priority in each group, at most `slots[group]` of them."""
    p = np.where(eligible, priority, -np.inf)
    p = np.where(np.isnan(p), -np.inf, p)
    rank = rank_within(groups, np.where(eligible, p, -np.inf))
    return eligible & np.isfinite(p) & (rank < slots[groups])


def weighted_keys(weight: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Efraimidis-Spirakis keys: the top k keys are a weighted sample without replacement."""
    u = rng.random(len(weight))
    with np.errstate(divide="ignore"):
        return np.where(weight > 0, np.log(u) / np.where(weight > 0, weight, 1.0), -np.inf)


@dataclass(frozen=True)
class Selection:
    """Which rows a policy controls in a step, why, and with which known probability."""

    selected: np.ndarray
    reason: np.ndarray  # random | rule | model | explore | historical | None
    probability: np.ndarray  # known selection probability (random draw), else NaN


def select(
    groups: np.ndarray,
    capacity: np.ndarray,
    *,
    drawn: np.ndarray,
    random_rate: float,
    rule_hit: np.ndarray,
    score: np.ndarray | None,
    probability: np.ndarray | None,
    explore_share: float,
    rng: np.random.Generator,
) -> Selection:
    """Fill each office-day's capacity: random draw, rules, model, exploration.

    `groups`: office-day code per row (0..G-1); `capacity`: controls per group. Random draws are
    taken first and count inside the capacity: where an office-day drew more than it can
    control, a random subset of its draws is kept, and each kept draw records its probability
    ``random_rate x kept / drawn`` of that office-day (no more controls than the capacity, and
    the probability stays known). Rule matches come next (in a random order when they exceed
    capacity), then the model's highest scores, then the exploration quota: ``explore_share``
    of the capacity (stochastically rounded) drawn among the rest with weight p(1-p).
    """
    n = len(groups)
    reason = np.full(n, None, dtype=object)
    prob = np.full(n, np.nan)
    drawn_per = np.bincount(groups[drawn], minlength=len(capacity))
    kept = take_top(groups, rng.random(n), drawn, capacity)
    kept_per = np.bincount(groups[kept], minlength=len(capacity))
    thinned = np.where(drawn_per > 0, kept_per / np.maximum(drawn_per, 1), 1.0)
    reason[kept] = RANDOM
    prob[kept] = random_rate * thinned[groups[kept]]
    left = capacity - kept_per
    taken = kept.copy()

    ruled = take_top(groups, rng.random(n), rule_hit & ~taken, left)
    reason[ruled] = RULE
    prob[ruled] = 1.0
    taken |= ruled
    left = left - np.bincount(groups[ruled], minlength=len(capacity))

    if score is not None:
        explore_slots = np.zeros_like(left)
        if explore_share > 0:
            wanted = np.floor(explore_share * capacity + rng.random(len(capacity))).astype(np.int64)
            explore_slots = np.minimum(wanted, left)
        modelled = take_top(groups, score, ~taken, left - explore_slots)
        reason[modelled] = MODEL
        taken |= modelled
        if explore_share > 0 and probability is not None:
            p = np.clip(np.nan_to_num(probability, nan=0.0), 0.0, 1.0)
            # A tiny floor keeps every row drawable: isotonic calibration sets whole plateaus to
            # p = 0, and an exploration slot must not stay empty when the uncertain rows run out.
            keys = weighted_keys(p * (1.0 - p) + 1e-12, rng)
            explored = take_top(groups, keys, ~taken, explore_slots)
            reason[explored] = EXPLORE
            taken |= explored
    return Selection(taken, reason, prob)


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


# --- the replay --------------------------------------------------------------------------------


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


def make_plan(stream: Stream, config: Config) -> Plan:
    """Steps of `step_days` after the warm-up, as many as `weeks` allow and the data holds."""
    bt = config.backtest
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
    rate = bt.capacity_rate or config.simulate.capacity_rate
    capacity = daily_capacity(groups, rate, config.seed)
    return Plan(warm_end, starts, step, groups, capacity, bounds)


def retrain_windows(fs: FeatureSet, at: pd.Timestamp, horizon: pd.Timestamp, config: Config) -> Any:
    """Train | valid | calibration windows ending at `at`; test: the following step."""
    bt = config.backtest
    split = SplitConfig(
        valid_days=bt.valid_days,
        calibration_days=bt.calibration_days,
        gap_days=bt.gap_days,
        test_days=max(1, bt.step_days),
        test_start=at.date(),
        test_end=horizon.date(),
        folds=1,
    )
    return make_windows(fs.lodged_at, split)


@dataclass
class PolicyState:
    """What a policy carries from step to step."""

    model: TargetingModel | None
    revealed: list[pd.DataFrame]
    features: FeatureSet | None = None
    positions: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    trained_at: pd.Timestamp | None = None
    labels: int = 0


@dataclass
class BacktestResult:
    """Per-step KPIs, first detections, per-policy summary, timings and fit logs."""

    kpis: pd.DataFrame
    schemes: pd.DataFrame
    summary: pd.DataFrame
    timings: dict[str, dict[str, float]]
    fits: list[dict[str, Any]]
    warm_end: pd.Timestamp
    drift_start: pd.Timestamp | None


class Fitter:
    """Feature building and fitting with fixed parameters, timed per phase."""

    def __init__(self, config: Config) -> None:
        train = config.train.model_copy(update={"n_jobs": config.backtest.n_jobs})
        self.config = config.model_copy(update={"train": train})
        self.params = dict(config.backtest.params or config.train.params)
        self.seconds = dict.fromkeys(PHASES, 0.0)

    def features(self, declarations: pd.DataFrame, outcomes: pd.DataFrame) -> FeatureSet:
        """The same point-in-time feature build as `targeting features`."""
        tick = time.perf_counter()
        fs = build_feature_set(declarations, outcomes, self.config.features)
        self.seconds["features_s"] += time.perf_counter() - tick
        return fs

    def fit(
        self, fs: FeatureSet, at: pd.Timestamp, horizon: pd.Timestamp
    ) -> tuple[TargetingModel, dict[str, Any]]:
        """The same fit as `targeting train`, on labels known before `at`."""
        tick = time.perf_counter()
        try:
            windows = retrain_windows(fs, at, horizon, self.config)
            result = fit(fs, windows, self.params, self.config)
        finally:
            self.seconds["training_s"] += time.perf_counter() - tick
        return result.model, result.log


def _features_at(
    stream: Stream, fitter: Fitter, outcomes: list[pd.DataFrame], horizon: pd.Timestamp
) -> tuple[FeatureSet, np.ndarray]:
    """Feature set of every declaration lodged before `horizon`, and its rows' stream positions."""
    upto = int(np.searchsorted(stream.lodged_at.to_numpy(dtype="datetime64[ns]"), horizon.asm8))
    fs = fitter.features(stream.declarations.iloc[:upto], canonical_outcomes(outcomes))
    ids = pd.Index(stream.declarations["declaration_id"].iloc[:upto].astype("string"))
    positions = ids.get_indexer(fs.declaration_id.astype("string"))
    return fs, positions


def _rank_by(policy: PolicyConfig, config: Config) -> str:
    if policy.rank_by is not None:
        return policy.rank_by
    return config.serve.rank_by


def _retrain_every(policy: PolicyConfig, config: Config) -> int:
    every = policy.retrain_every_steps
    return config.backtest.retrain_every_steps if every is None else every


def _rules(config: Config) -> list[RuleConfig]:
    rules = config.backtest.rules
    return list(config.evaluate.rules if rules is None else rules)


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


def replay_policy(
    stream: Stream,
    plan: Plan,
    policy: PolicyConfig,
    config: Config,
    initial: tuple[TargetingModel, FeatureSet, np.ndarray, int] | None,
    warm_outcomes: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float], list[dict[str, Any]]]:
    """Replay one policy over every step: its KPI rows, revealed outcomes, timings, fit logs."""
    fitter = Fitter(config)
    rules = _rules(config)
    if policy.kind == "rules" and not rules:
        raise BacktestError(
            f"policy {policy.name!r} applies rules, but backtest.rules and evaluate.rules are empty"
        )
    rank_by = _rank_by(policy, config)
    every = _retrain_every(policy, config)
    refresh = config.backtest.refresh_every_steps or config.backtest.retrain_every_steps
    rng = np.random.default_rng([config.seed, sum(map(ord, policy.name))])
    random_rate = policy.random_share * (
        config.backtest.capacity_rate or config.simulate.capacity_rate
    )
    ids = stream.declarations["declaration_id"]
    state = PolicyState(model=None, revealed=[warm_outcomes])
    fits: list[dict[str, Any]] = []
    if policy.kind == "model":
        if initial is None:
            raise BacktestError("a model policy needs the initial model")
        state.model, state.features, state.positions, state.labels = initial
        state.trained_at = plan.warm_end
    rows_out: list[dict[str, Any]] = []
    for k in range(plan.steps):
        start = plan.starts[k]
        rows = plan.rows(k)
        retrained = False
        if policy.kind == "model" and k > 0:
            due_retrain = every > 0 and k % every == 0
            if k % refresh == 0 or due_retrain:
                following = [
                    s
                    for s in range(k + 1, plan.steps + 1)
                    if s % refresh == 0 or (every > 0 and s % every == 0)
                ]
                horizon = start + plan.step * ((following[0] if following else plan.steps) - k)
                state.features, state.positions = _features_at(
                    stream, fitter, state.revealed, horizon
                )
                if due_retrain:
                    try:
                        model, log = fitter.fit(state.features, start, start + plan.step)
                    except ValueError as exc:  # too few labels in a window: keep the old model
                        fits.append({"policy": policy.name, "step": k, "error": str(exc)})
                    else:
                        state.model, state.trained_at, retrained = model, start, True
                        state.labels = int(log["rows"]["train"]["labelled"])
                        fits.append({"policy": policy.name, "step": k, **log})
        tick = time.perf_counter()
        groups_raw = plan.groups[rows]
        groups, local = pd.factorize(groups_raw)
        capacity = plan.capacity[np.asarray(local, dtype=np.int64)]
        score = proba = None
        if policy.kind == "model" and state.model is not None and state.features is not None:
            where = np.full(len(stream.declarations), -1, dtype=np.int64)
            where[state.positions[state.positions >= 0]] = np.flatnonzero(state.positions >= 0)
            fs_rows = where[rows]
            present = fs_rows >= 0
            score = np.full(len(rows), np.nan)
            proba = np.full(len(rows), np.nan)
            if present.any():
                X = state.features.X.iloc[fs_rows[present]]
                ranked = rank(
                    state.model,
                    X,
                    rank_by,
                    config.serve.revenue_weight,
                    fallback_to_probability=True,  # a retraining on few revenue hits has none
                )
                score[present], proba[present] = ranked.priority, ranked.probability
                if ranked.fell_back and (retrained or k == 0):  # once per model, in its fit log
                    note = f"ranked by probability: rank_by={rank_by}, no revenue part"
                    if retrained:
                        fits[-1]["fallback"] = note
                    else:
                        fits.append({"policy": policy.name, "step": k, "fallback": note})
        fitter.seconds["scoring_s"] += time.perf_counter() - tick
        tick = time.perf_counter()
        if policy.kind == "historical":
            chosen = stream.recorded[rows]
            reason = np.full(len(rows), None, dtype=object)
            reason[chosen] = HISTORICAL
            recorded_random = stream.recorded_reason[rows] == RANDOM
            reason[chosen & recorded_random] = RANDOM
            prob = np.where(chosen & recorded_random, config.simulate.random_rate, np.nan)
            selection = Selection(chosen, reason, prob)
            revealed = pd.DataFrame()
        else:
            step_ids = ids.iloc[rows]
            drawn = (
                random_draw(step_ids, f"{config.backtest.random_key}:random", random_rate)
                if random_rate > 0
                else np.zeros(len(rows), dtype=bool)
            )
            rule_hit = (
                rule_matches(stream.declarations.iloc[rows], rules).notna().to_numpy(dtype=bool)
                if (policy.rules or policy.kind == "rules") and rules
                else np.zeros(len(rows), dtype=bool)
            )
            selection = select(
                groups,
                capacity,
                drawn=drawn,
                random_rate=random_rate,
                rule_hit=rule_hit,
                score=score,
                probability=proba,
                explore_share=policy.explore_share,
                rng=rng,
            )
            revealed = reveal(stream, rows, selection)
            state.revealed.append(revealed)
        fitter.seconds["selection_s"] += time.perf_counter() - tick
        rows_out.append(
            {
                "policy": policy.name,
                "step": k,
                "start": start,
                "end": start + plan.step,
                **step_kpis(stream, rows, selection, int(capacity.sum())),
                "retrained": retrained,
                "model_trained_at": state.trained_at,
                "train_labels": state.labels,
            }
        )
    if policy.kind == "historical":
        replayed = np.zeros(len(stream.declarations), dtype=bool)
        replayed[plan.bounds[0] : plan.bounds[-1]] = True
        after = stream.recorded & replayed
        history = stream.outcomes.loc[
            stream.outcomes["declaration_id"]
            .astype("string")
            .isin(stream.declarations["declaration_id"].astype("string")[after])
        ]
        outcomes = canonical_outcomes([warm_outcomes, history])
    else:
        outcomes = canonical_outcomes(state.revealed)
    return pd.DataFrame(rows_out), outcomes, fitter.seconds, fits


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
    kpis: pd.DataFrame, schemes: pd.DataFrame, config: Config, drift: pd.Timestamp | None
) -> pd.DataFrame:
    """One row per policy: totals over the period, the emerging scheme, the random stratum."""
    rows = []
    for policy, part in kpis.groupby("policy", sort=False):
        after = part if drift is None else part.loc[part["end"] > drift]
        random_controls = int(part["controls_random"].sum())
        random_hits = int(part["random_hits"].sum())
        low, high = proportion_interval(
            random_hits, random_controls, config.monitor.confidence, config.monitor.interval
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


def run_backtest(
    declarations: pd.DataFrame,
    outcomes: pd.DataFrame,
    ground_truth: pd.DataFrame | None,
    config: Config,
    *,
    progress: Callable[[str], None] | None = None,
) -> BacktestResult:
    """Replay every policy of `config.backtest.policies` over the stream (see module doc)."""
    bt = config.backtest
    if not bt.policies:
        raise BacktestError("backtest.policies is empty")
    names = [p.name for p in bt.policies]
    if len(set(names)) != len(names):
        raise BacktestError(f"backtest.policies: duplicate names in {names}")
    say = progress or (lambda _: None)
    stream = make_stream(
        declarations,
        outcomes,
        ground_truth,
        detection_rate=config.simulate.detection_rate
        if bt.detection_rate is None
        else bt.detection_rate,
        result_delay_days=config.simulate.result_delay_days
        if bt.result_delay_days is None
        else bt.result_delay_days,
        key=f"{bt.random_key}:{config.seed}",
    )
    plan = make_plan(stream, config)
    warm_ids = stream.declarations["declaration_id"].astype("string")[
        (stream.lodged_at < plan.warm_end).to_numpy()
    ]
    warm_outcomes = stream.outcomes.loc[
        stream.outcomes["declaration_id"].astype("string").isin(warm_ids)
    ]
    timings: dict[str, dict[str, float]] = {}
    initial = None
    if any(p.kind == "model" for p in bt.policies):
        fitter = Fitter(config)
        refresh = bt.refresh_every_steps or bt.retrain_every_steps
        horizon = plan.warm_end + plan.step * min(refresh, plan.steps)
        say(f"initial model on the warm-up (to {plan.warm_end:%Y-%m-%d})")
        fs, positions = _features_at(stream, fitter, [warm_outcomes], horizon)
        try:
            model, log = fitter.fit(fs, plan.warm_end, plan.warm_end + plan.step)
        except ValueError as exc:
            raise BacktestError(f"cannot train the initial model on the warm-up: {exc}") from exc
        initial = (model, fs, positions, int(log["rows"]["train"]["labelled"]))
        timings["initial"] = dict(fitter.seconds)
    kpis, schemes, fits = [], [], []
    for policy in bt.policies:
        say(f"policy {policy.name}")
        tick = time.perf_counter()
        table, revealed, seconds, logs = replay_policy(
            stream, plan, policy, config, initial, warm_outcomes
        )
        seconds["total_s"] = time.perf_counter() - tick
        timings[policy.name] = seconds
        kpis.append(table)
        fits.extend(logs)
        schemes.append(
            first_detections(
                revealed, stream, plan, policy.name, config.features.missing_result_delay_days
            )
        )
    with warnings.catch_warnings():  # a policy without a model has all-NaT model columns
        warnings.simplefilter("ignore", FutureWarning)
        kpi_table = pd.concat(kpis, ignore_index=True)
        scheme_table = pd.concat(schemes, ignore_index=True)
    emerging_rows = stream.emerging
    drift = stream.lodged_at[emerging_rows].min() if emerging_rows.any() else None
    summary = summarise(kpi_table, scheme_table, config, drift)
    return BacktestResult(kpi_table, scheme_table, summary, timings, fits, plan.warm_end, drift)
