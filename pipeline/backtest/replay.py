"""The replay loop: it only schedules. Each step, for each policy, it refreshes the features and
retrains when due, scores the step's declarations, asks the policy's shares for the selection
and reveals what the selected controls find (see the package's docstring for the rules)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from pipeline.backtest.policies import policy_shares
from pipeline.backtest.retrain import Fitter, features_at
from pipeline.backtest.selection import Candidates, PastControls, candidates, select
from pipeline.backtest.settings import ReplaySettings
from pipeline.backtest.stream import (
    BacktestError,
    Draws,
    Plan,
    Stream,
    canonical_outcomes,
    make_plan,
    make_stream,
    reveal,
)
from pipeline.backtest.summary import first_detections, step_kpis, summarise
from pipeline.config import BacktestConfig, Config, PolicyConfig
from pipeline.features.featureset import FeatureSet
from pipeline.plan import RankingPolicy
from pipeline.serve.model import TargetingModel
from pipeline.serve.ranking import rank


@dataclass(frozen=True)
class InitialModel:
    """The model trained on the warm-up, its feature set, the set's stream positions, labels."""

    model: TargetingModel
    features: FeatureSet
    positions: np.ndarray
    labels: int


@dataclass(frozen=True)
class WarmUp:
    """What every policy starts from: the warm-up's recorded outcomes and the model trained on
    them (None when no policy ranks with a model)."""

    outcomes: pd.DataFrame
    initial: InitialModel | None


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


@dataclass(frozen=True)
class Schedule:
    """When a policy rebuilds its features (`refresh`) and retrains (`every`, 0: never)."""

    refresh: int
    every: int

    def retrains(self, step: int) -> bool:
        """A refit is due at `step`."""
        return self.every > 0 and step % self.every == 0

    def rebuilds(self, step: int) -> bool:
        """The features are rebuilt at `step` (every refit rebuilds them)."""
        return step % self.refresh == 0 or self.retrains(step)

    def horizon(self, plan: Plan, step: int) -> pd.Timestamp:
        """End of the features rebuilt at `step`: the start of the step after the next rebuild."""
        following = [s for s in range(step + 1, plan.steps + 1) if self.rebuilds(s)]
        return plan.starts[step] + plan.step * ((following[0] if following else plan.steps) - step)


def schedule(policy: PolicyConfig, bt: BacktestConfig) -> Schedule:
    """The policy's retraining frequency (its own or the backtest's) and the feature refresh."""
    every = policy.retrain_every_steps
    return Schedule(
        refresh=bt.refresh_every_steps or bt.retrain_every_steps,
        every=bt.retrain_every_steps if every is None else every,
    )


def refresh(
    k: int,
    stream: Stream,
    plan: Plan,
    when: Schedule,
    fitter: Fitter,
    state: PolicyState,
) -> tuple[dict[str, Any] | None, bool]:
    """Rebuild the features and refit when due at step `k`: the fit's log (or its error), and
    whether the model was replaced."""
    if k == 0 or not when.rebuilds(k):
        return None, False
    start = plan.starts[k]
    state.features, state.positions = features_at(
        stream, fitter, state.revealed, when.horizon(plan, k)
    )
    if not when.retrains(k):
        return None, False
    try:
        model, log = fitter.fit(state.features, start, start + plan.step)
    except ValueError as exc:  # too few labels in a window: keep the old model
        return {"step": k, "error": str(exc)}, False
    state.model, state.trained_at = model, start
    state.labels = int(log["rows"]["train"]["labelled"])
    return {"step": k, **log}, True


def model_scores(
    stream: Stream, rows: np.ndarray, state: PolicyState, ranking: RankingPolicy
) -> tuple[np.ndarray | None, np.ndarray | None, bool]:
    """Control priority and probability of the step's rows (NaN outside the feature set), and
    whether the model, having no revenue part, ranked by probability instead of `ranking`'s."""
    if state.model is None or state.features is None:
        return None, None, False
    where = np.full(len(stream.declarations), -1, dtype=np.int64)
    where[state.positions[state.positions >= 0]] = np.flatnonzero(state.positions >= 0)
    fs_rows = where[rows]
    present = fs_rows >= 0
    score = np.full(len(rows), np.nan)
    proba = np.full(len(rows), np.nan)
    fell_back = False
    if present.any():
        X = state.features.X.iloc[fs_rows[present]]
        # a retraining on few revenue hits has no revenue part: it ranks by probability, and
        # the replay records it in the fit log
        ranked = rank(state.model, X, ranking, fallback_to_probability=True)
        score[present], proba[present] = ranked.priority, ranked.probability
        fell_back = ranked.fell_back
    return score, proba, fell_back


def step_candidates(
    stream: Stream, plan: Plan, rows: np.ndarray, state: PolicyState, ranking: RankingPolicy
) -> tuple[Candidates, bool]:
    """The step's declarations with their office-day, its capacity, and the model's scores under
    the policy's `ranking` (and whether the model fell back to ranking by probability)."""
    groups, local = pd.factorize(plan.groups[rows])
    score, proba, fell_back = model_scores(stream, rows, state, ranking)
    step = candidates(
        stream.declarations.iloc[rows],
        groups,
        plan.capacity[np.asarray(local, dtype=np.int64)],
        score=score,
        probability=proba,
        recorded=PastControls(stream.recorded[rows], stream.recorded_reason[rows]),
    )
    return step, fell_back


def policy_ranking(policy: PolicyConfig, serving: RankingPolicy) -> RankingPolicy:
    """How the policy's model ranks: its own `rank_by`, else serving's, with serving's weight."""
    return serving if policy.rank_by is None else replace(serving, rank_by=policy.rank_by)


def record_fallback(
    fits: list[dict[str, Any]],
    policy: PolicyConfig,
    ranking: RankingPolicy,
    k: int,
    retrained: bool,
) -> None:
    """Note, once per model, that it ranked by probability for want of a revenue part: in the
    log of the retraining that made it, or as an entry of its own for the initial model."""
    note = f"ranked by probability: rank_by={ranking.rank_by}, no revenue part"
    if retrained:
        fits[-1]["fallback"] = note
    elif k == 0:
        fits.append({"policy": policy.name, "step": k, "fallback": note})


def policy_outcomes(
    stream: Stream, plan: Plan, policy: PolicyConfig, state: PolicyState
) -> pd.DataFrame:
    """Every outcome the policy knows at the end: the warm-up's and what its controls revealed
    (the historical policy: the recorded outcomes of the replayed period)."""
    if policy.kind != "historical":
        return canonical_outcomes(state.revealed)
    replayed = np.zeros(len(stream.declarations), dtype=bool)
    replayed[plan.bounds[0] : plan.bounds[-1]] = True
    after = stream.recorded & replayed
    history = stream.outcomes.loc[
        stream.outcomes["declaration_id"]
        .astype("string")
        .isin(stream.declarations["declaration_id"].astype("string")[after])
    ]
    return canonical_outcomes([state.revealed[0], history])


def replay_policy(
    stream: Stream,
    plan: Plan,
    policy: PolicyConfig,
    fitter: Fitter,
    settings: ReplaySettings,
    warm: WarmUp,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float], list[dict[str, Any]]]:
    """Replay one policy over every step, refitting with the policy's own `fitter`: its KPI
    rows, revealed outcomes, timings, fit logs."""
    if policy.kind == "rules" and not settings.rules:
        raise BacktestError(
            f"policy {policy.name!r} applies rules, but backtest.rules and evaluate.rules are empty"
        )
    when, shares = schedule(policy, settings.backtest), policy_shares(policy, settings)
    ranking = policy_ranking(policy, settings.ranking)
    rng = np.random.default_rng([settings.seed, sum(map(ord, policy.name))])
    state = PolicyState(model=None, revealed=[warm.outcomes])
    initial = warm.initial
    if policy.kind == "model":
        if initial is None:
            raise BacktestError("a model policy needs the initial model")
        state.model, state.features = initial.model, initial.features
        state.positions, state.labels = initial.positions, initial.labels
        state.trained_at = plan.warm_end
    fits: list[dict[str, Any]] = []
    rows_out: list[dict[str, Any]] = []
    for k in range(plan.steps):
        log, retrained = (
            refresh(k, stream, plan, when, fitter, state)
            if policy.kind == "model"
            else (None, False)
        )
        if log is not None:
            fits.append({"policy": policy.name, **log})
        tick = time.perf_counter()
        rows = plan.rows(k)
        step, fell_back = step_candidates(stream, plan, rows, state, ranking)
        if fell_back:
            record_fallback(fits, policy, ranking, k, retrained)
        fitter.seconds["scoring_s"] += time.perf_counter() - tick
        tick = time.perf_counter()
        selection = select(step, shares, rng)
        if policy.kind != "historical":
            state.revealed.append(reveal(stream, rows, selection))
        fitter.seconds["selection_s"] += time.perf_counter() - tick
        rows_out.append(
            {
                "policy": policy.name,
                "step": k,
                "start": plan.starts[k],
                "end": plan.starts[k] + plan.step,
                **step_kpis(stream, rows, selection, int(step.capacity.sum())),
                "retrained": retrained,
                "model_trained_at": state.trained_at,
                "train_labels": state.labels,
            }
        )
    outcomes = policy_outcomes(stream, plan, policy, state)
    return pd.DataFrame(rows_out), outcomes, fitter.seconds, fits


def warm_up_outcomes(stream: Stream, plan: Plan) -> pd.DataFrame:
    """The recorded outcomes of the declarations lodged during the warm-up."""
    warm_ids = stream.declarations["declaration_id"].astype("string")[
        (stream.lodged_at < plan.warm_end).to_numpy()
    ]
    return stream.outcomes.loc[stream.outcomes["declaration_id"].astype("string").isin(warm_ids)]


def initial_model(
    stream: Stream, plan: Plan, warm_outcomes: pd.DataFrame, fitter: Fitter, bt: BacktestConfig
) -> tuple[InitialModel, dict[str, float]]:
    """The model every model policy starts from, trained on the warm-up by `fitter` (the refresh
    schedule of `bt` sets how far its features reach), and its timings."""
    horizon = plan.warm_end + plan.step * min(
        bt.refresh_every_steps or bt.retrain_every_steps, plan.steps
    )
    fs, positions = features_at(stream, fitter, [warm_outcomes], horizon)
    try:
        model, log = fitter.fit(fs, plan.warm_end, plan.warm_end + plan.step)
    except ValueError as exc:
        raise BacktestError(f"cannot train the initial model on the warm-up: {exc}") from exc
    labels = int(log["rows"]["train"]["labelled"])
    return InitialModel(model, fs, positions, labels), dict(fitter.seconds)


def backtest_stream(
    declarations: pd.DataFrame,
    outcomes: pd.DataFrame,
    ground_truth: pd.DataFrame | None,
    settings: ReplaySettings,
) -> Stream:
    """The stream with the backtest's detection rate and delay (else the simulator's)."""
    draws = Draws(
        detection_rate=settings.detection_rate,
        result_delay_days=settings.result_delay_days,
        key=f"{settings.backtest.random_key}:{settings.seed}",
    )
    return make_stream(declarations, outcomes, ground_truth, draws)


def run_backtest(
    declarations: pd.DataFrame,
    outcomes: pd.DataFrame,
    ground_truth: pd.DataFrame | None,
    config: Config,
    *,
    progress: Callable[[str], None] | None = None,
) -> BacktestResult:
    """Replay every policy of `config.backtest.policies` over the stream (see the package doc):
    the config is read here once (`ReplaySettings`); only the refits keep it (`Fitter`)."""
    settings = ReplaySettings.of(config)
    bt = settings.backtest
    if not bt.policies:
        raise BacktestError("backtest.policies is empty")
    names = [p.name for p in bt.policies]
    if len(set(names)) != len(names):
        raise BacktestError(f"backtest.policies: duplicate names in {names}")
    say = progress or (lambda _: None)
    stream = backtest_stream(declarations, outcomes, ground_truth, settings)
    plan = make_plan(stream, bt, settings.capacity_rate, settings.seed)
    warm_outcomes = warm_up_outcomes(stream, plan)
    timings: dict[str, dict[str, float]] = {}
    initial = None
    if any(p.kind == "model" for p in bt.policies):
        say(f"initial model on the warm-up (to {plan.warm_end:%Y-%m-%d})")
        initial, timings["initial"] = initial_model(stream, plan, warm_outcomes, Fitter(config), bt)
    kpis, schemes, fits = [], [], []
    for policy in bt.policies:
        say(f"policy {policy.name}")
        tick = time.perf_counter()
        table, revealed, seconds, logs = replay_policy(
            stream, plan, policy, Fitter(config), settings, WarmUp(warm_outcomes, initial)
        )
        seconds["total_s"] = time.perf_counter() - tick
        timings[policy.name] = seconds
        kpis.append(table)
        fits.extend(logs)
        schemes.append(
            first_detections(
                revealed, stream, plan, policy.name, settings.missing_result_delay_days
            )
        )
    with warnings.catch_warnings():  # a policy without a model has all-NaT model columns
        warnings.simplefilter("ignore", FutureWarning)
        kpi_table = pd.concat(kpis, ignore_index=True)
        scheme_table = pd.concat(schemes, ignore_index=True)
    emerging_rows = stream.emerging
    drift = stream.lodged_at[emerging_rows].min() if emerging_rows.any() else None
    summary = summarise(kpi_table, scheme_table, settings.monitor, drift)
    return BacktestResult(kpi_table, scheme_table, summary, timings, fits, plan.warm_end, drift)
