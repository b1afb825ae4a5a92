"""Walk-forward evaluation of what deploys: the deployment procedure replayed at past cut-offs.

The test window judges the *evaluated* model; a selectivity system runs the *refit*, with its own
calibration, anchor and cut-offs. This module validates the refit the way it is built. At each
cut-off c (the last `evaluate.walk_forward_cutoffs` steps of `evaluate.walk_forward_days` before
the end of the usable data, none before the evaluated model's calibration window ends), on what
was known at c only:

1. the refit (`train.fit.refit`) on every label known before c, its calibration window reaching
   back for hits and anchored on the random stratum, as `targeting train` makes it;
2. its cut-offs and expected channel KPIs on the declarations of the reference days before c, as
   `targeting export` sets them (the same length of reference window);
3. the declarations of [c, c + days) attached to a feature snapshot built as of c, as
   `targeting score` sees them, ranked and given a channel.

Then what happened: each channel's realised hit rate against its expected rate, 95 % interval
and range, and precision, recall and revenue at the configured control rates of the deployed
procedure and of the evaluated model on the same declarations, with paired bootstrap intervals.
Ranks are taken within each stretch (a top n % is each stretch's own) before pooling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.config import Config, DataConfig, EvaluateConfig, FeaturesConfig, SimulateConfig
from pipeline.evaluate import metrics as mx
from pipeline.evaluate.keys import Population
from pipeline.features.build import attach, build_snapshot
from pipeline.features.featureset import FeatureSet
from pipeline.ingest.columns import RANDOM, random_stratum
from pipeline.plan import RankingPolicy, RefitRule, RunPlan, lay_refit
from pipeline.serve.channels import assign_channels
from pipeline.serve.cutoffs import reference_cutoffs
from pipeline.serve.model import TargetingModel
from pipeline.serve.ranking import Ranking, rank
from pipeline.serve.thresholds import Thresholds
from pipeline.timeaxis import Window
from pipeline.train.fit import RefitBasis, refit

DEPLOYED = "deployed procedure"
EVALUATED = "evaluated model"
TRUTH = Population.TRUTH.label
EVERY_ROW = "all declarations (every one inspected)"
INSPECTED = "inspected declarations (diagnostic)"


def detection_rate(data: DataConfig, simulate: SimulateConfig) -> float:
    """The chance a control of a fraud finds it: the simulator's, 1 for any other data (a
    recorded outcome is what a control found)."""
    return simulate.detection_rate if data.source == "simulate" else 1.0


@dataclass(frozen=True)
class WalkInputs:
    """What the replay reads besides the feature set: the canonical declarations and outcomes
    (for the snapshots), the simulator's ground truth when there is one, and its detection rate
    (the chance a control of a fraud finds it: a true hit rate is fraud rate x detection)."""

    declarations: pd.DataFrame
    outcomes: pd.DataFrame
    ground_truth: pd.DataFrame | None = None
    detection_rate: float = 1.0


@dataclass(frozen=True)
class WalkForward:
    """The replay's tables: one row per stretch, per channel and stretch, and tidy metrics."""

    stretches: pd.DataFrame  # cutoff, start, end, declarations, refit facts
    channels: pd.DataFrame  # cutoff, channel, expected and realised hit rate, inside_range
    metrics: pd.DataFrame  # model, rate, metric, value, low, high (pooled over stretches)
    population: str  # what the realised figures and metrics are measured on
    notes: list[str] = field(default_factory=list)

    def coverage(self) -> tuple[int, int]:
        """(channel x cut-off cells whose realised hit rate lies in the export's 95 % range,
        cells judged)."""
        judged = self.channels["inside_range"].dropna() if len(self.channels) else pd.Series()
        return int(judged.astype(bool).sum()), len(judged)


def cutoffs(plan: RunPlan, evaluate: EvaluateConfig) -> list:
    """The cut-offs, oldest first: steps of `walk_forward_days` back from the end of the usable
    data, none before the evaluated model's calibration window ends (its configuration was chosen
    on what precedes it)."""
    end = plan.usable_end
    step = pd.Timedelta(days=evaluate.walk_forward_days)
    found = [end - k * step for k in range(evaluate.walk_forward_cutoffs, 0, -1)]
    return [c for c in found if c >= plan.evaluated.calibration.end]


def _aligned_truth(truth: pd.DataFrame | None, ids: pd.Series) -> pd.DataFrame | None:
    """The ground truth (fraud, revenue_recoverable) in the order of `ids`, None without one."""
    if truth is None:
        return None
    frame = truth.drop_duplicates("declaration_id").set_index("declaration_id")
    found = frame.reindex(ids.astype(str).to_numpy())
    return found if found["fraud"].notna().any() else None


@dataclass(frozen=True)
class Deployment:
    """What the procedure deployed at a cut-off: the refit, its thresholds and expected KPIs,
    and the ranking policy it was placed and serves under (the config's setting: with ``auto``,
    each refit's own revenue part decides)."""

    model: TargetingModel
    thresholds: Thresholds
    kpis: dict
    facts: dict
    ranking: RankingPolicy


def deploy_at(
    cutoff: pd.Timestamp,
    basis: RefitBasis,
    features: FeatureSet,
    declarations: pd.DataFrame,
    config: Config,
    plan: RunPlan,
) -> Deployment:
    """The refit on what was known at `cutoff`, its cut-offs and expected KPIs set on the
    reference window before it, as `targeting train` and `targeting export` make them: the
    refit's windows laid by the run plan's rule (`plan.lay_refit`) at the cut-off."""
    spans = lay_refit(features, plan.evaluated.train.start, cutoff, RefitRule.of(config))
    deployed = refit(features, spans, basis, config)
    model = deployed.model
    reference = plan.reference_at(cutoff)
    # the config's setting (auto: each refit's own revenue part decides), as one policy
    setting = RankingPolicy(config.serve.rank_by, config.serve.revenue_weight)
    placed = reference_cutoffs(model, features, declarations, reference, config.serve, setting)
    log = deployed.log
    facts = {
        "refit train end": str(spans.train.end.date()),
        "calibration": f"{spans.calibration.start.date()} .. {spans.calibration.end.date()}",
        "calibration hits": log.rows["calibration"].hits,
        "trees": log.trees,
        "calibration method": log.calibration,
        "anchored": model.calibration.anchored,
    }
    return Deployment(model, placed.thresholds, placed.kpis, facts, setting)


@dataclass(frozen=True)
class Served:
    """A stretch's declarations as the scorer sees them (snapshot as of the cut-off), their
    channels under the deployment, both models' rankings and what is known of their outcome."""

    declarations: pd.DataFrame
    channel: np.ndarray
    drawn: np.ndarray  # selected by the random draw (its own KPI entry)
    deployed: Ranking
    evaluated: Ranking
    y: np.ndarray  # the population's label (NaN where unknown)
    revenue: np.ndarray
    true_rate: np.ndarray  # the chance a control finds something (NaN where unknown)


def serve_stretch(
    stretch: Window,
    deployment: Deployment,
    basis: RefitBasis,
    inputs: WalkInputs,
    features: FeaturesConfig,
) -> Served:
    """The stretch's declarations attached to a snapshot built as of its start (by the
    `features` settings), ranked by the deployed refit and by the evaluated model under the
    deployment's ranking policy, given the deployment's channels."""
    decl = inputs.declarations
    lodged = decl["lodged_at"]
    past = decl.loc[lodged < stretch.end]  # the snapshot reads only what precedes stretch.start
    snapshot = build_snapshot(past, inputs.outcomes, features, stretch.start)
    given = decl.loc[stretch.contains(lodged)]
    served = attach(given, snapshot, features)  # rows in (lodged_at, id) order
    missing = sorted(set(basis.model.feature_names) - set(served.X.columns))
    if missing:
        raise ValueError(
            f"the serving snapshot does not rebuild the model's features {missing[:5]}: the "
            "feature set was not built by `targeting features` with this config; rebuild it, or "
            "set evaluate.walk_forward_cutoffs=0"
        )
    order = pd.Index(given["declaration_id"].astype(str)).get_indexer(
        served.declaration_id.astype(str).to_numpy()
    )
    arriving = given.iloc[order].reset_index(drop=True)
    mine = rank(deployment.model, served.X, deployment.ranking)
    theirs = rank(basis.model, served.X, deployment.ranking)
    channels = assign_channels(deployment.thresholds, arriving, mine.score, mine.margin)
    truth = _aligned_truth(inputs.ground_truth, arriving["declaration_id"])
    if truth is not None:
        fraud = truth["fraud"].astype(float).to_numpy()
        y, revenue = fraud, truth["revenue_recoverable"].to_numpy(dtype=float)
        true_rate = fraud * inputs.detection_rate
    else:
        y, revenue, random = _recorded(arriving, inputs.outcomes)
        # Every declaration inspected (KCS): its outcome is the truth. Else only the random
        # stratum's outcomes say what a channel holds (the others were picked).
        every = bool(np.isfinite(y).mean() > 0.99) if len(y) else False
        true_rate = y if every else np.where(random, y, np.nan)
    drawn = channels["selection_reason"].astype("string").eq(RANDOM).fillna(False).to_numpy()
    return Served(
        arriving, channels["channel"].to_numpy(), drawn, mine, theirs, y, revenue, true_rate
    )


def _recorded(
    arriving: pd.DataFrame, outcomes: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The recorded outcome (1 hit, 0 none, NaN not inspected), revenue and random-stratum mask
    of each declaration."""
    found = outcomes.drop_duplicates("declaration_id").set_index("declaration_id")
    rows = found.reindex(arriving["declaration_id"].astype(str).to_numpy())
    inspected = rows["inspected"].fillna(False).astype(bool).to_numpy()
    hit = rows["hit"].fillna(False).astype(float).to_numpy()
    revenue = (
        rows["revenue_recovered"].to_numpy(dtype=float)
        if "revenue_recovered" in rows
        else np.full(len(rows), np.nan)
    )
    random = random_stratum(rows["selection_reason"], rows["selection_probability"])
    return np.where(inspected, hit, np.nan), revenue, random & inspected


def population_of(served: list[Served], inputs: WalkInputs) -> str:
    """What the realised figures rest on: the simulator's truth, every declaration's recorded
    outcome (all inspected, as on KCS), else only the inspected ones (a diagnostic)."""
    if (
        inputs.ground_truth is not None
        and served
        and all(
            _aligned_truth(inputs.ground_truth, s.declarations["declaration_id"]) is not None
            for s in served
        )
    ):
        return TRUTH
    known = np.concatenate([np.isfinite(s.y) for s in served]) if served else np.zeros(0, bool)
    return EVERY_ROW if len(known) and known.mean() > 0.99 else INSPECTED


def channel_rows(
    cutoff: pd.Timestamp, served: Served, kpis: dict, min_rows: int
) -> list[dict[str, object]]:
    """Each channel's expected hit rate (interval, range) against what its declarations held."""
    rows: list[dict[str, object]] = []
    # The channels' KPIs leave the random draw out (its own entry, `kpis.random`): so does
    # what each channel is judged against.
    channel = np.where(served.drawn, RANDOM, served.channel)
    frame = pd.DataFrame({"channel": channel, "rate": served.true_rate})
    entries = {**kpis["channels"], **({RANDOM: kpis["random"]} if "random" in kpis else {})}
    for name, entry in entries.items():
        rates = frame.loc[frame["channel"] == name, "rate"].dropna()
        spread = entry.get("hit_rate_range")
        interval = entry.get("expected_hit_rate_interval")
        realised = float(rates.mean()) if len(rates) >= min_rows else None
        rows.append(
            {
                "cutoff": str(cutoff.date()),
                "channel": name,
                "declarations": int((frame["channel"] == name).sum()),
                "with outcome": len(rates),
                "expected hit rate": entry.get("expected_hit_rate"),
                "interval low": None if interval is None else interval[0],
                "interval high": None if interval is None else interval[1],
                "range low": None if spread is None else spread[0],
                "range high": None if spread is None else spread[1],
                "realised hit rate": realised,
                "inside_range": None
                if realised is None or spread is None
                else bool(spread[0] - 1e-12 <= realised <= spread[1] + 1e-12),
            }
        )
    return rows


def _stretch_ranks(priority: np.ndarray, stretch: np.ndarray) -> np.ndarray:
    """Each row's priority as its share of its own stretch ranked below it (0..1): a top n %
    of the pooled rows is then the top n % of each stretch."""
    frame = pd.DataFrame({"p": priority, "s": stretch})
    return frame.groupby("s")["p"].rank(method="first", pct=True).to_numpy()


def pooled_metrics(served: list[Served], evaluate: EvaluateConfig, seed: int) -> pd.DataFrame:
    """Precision, recall and revenue at the `evaluate.rates` of the deployed procedure and the
    evaluated model over every stretch (ranks within each), with their paired difference
    (`evaluate.bootstrap` replicates drawn with `seed`)."""
    keep = [np.isfinite(s.y) for s in served]
    y = np.concatenate([s.y[k] for s, k in zip(served, keep, strict=True)])
    if len(y) == 0 or y.sum() == 0:
        return pd.DataFrame()
    stretch = np.concatenate([np.full(int(k.sum()), i) for i, k in enumerate(keep)])
    scores = {
        name: _stretch_ranks(
            np.concatenate(
                [getattr(s, part).priority[k] for s, k in zip(served, keep, strict=True)]
            ),
            stretch,
        )
        for name, part in ((DEPLOYED, "deployed"), (EVALUATED, "evaluated"))
    }
    probabilities = {
        name: np.concatenate(
            [getattr(s, part).probability[k] for s, k in zip(served, keep, strict=True)]
        )
        for name, part in ((DEPLOYED, "deployed"), (EVALUATED, "evaluated"))
    }
    revenue = np.concatenate([s.revenue[k] for s, k in zip(served, keep, strict=True)])
    return mx.metrics_table(
        y,
        scores,
        [float(r) for r in evaluate.rates],
        revenue=revenue if np.isfinite(revenue).any() else None,
        probabilities=probabilities,
        resampling=mx.Resampling(
            replicates=evaluate.bootstrap,
            seed=seed,
            compare=[(DEPLOYED, EVALUATED)],
        ),
    )


def walk_forward(
    model: TargetingModel,
    features: FeatureSet,
    inputs: WalkInputs,
    config: Config,
    plan: RunPlan,
) -> WalkForward:
    """Replay the deployment procedure at each cut-off (`cutoffs`) and measure what followed.

    `model`: the evaluated model (its configuration); `plan`: the run's plan (its windows, the
    end of the usable data, the reference window's length and the refit's rule).
    """
    # The refit learns from the columns the evaluated model kept (its families), as in `train`.
    features = features.select([str(c) for c in model.feature_names])
    basis = RefitBasis.of_model(model, features, plan.evaluated)
    step = pd.Timedelta(days=config.evaluate.walk_forward_days)
    found = cutoffs(plan, config.evaluate)
    notes: list[str] = []
    if len(found) < config.evaluate.walk_forward_cutoffs:
        notes.append(
            f"{config.evaluate.walk_forward_cutoffs - len(found)} cut-offs fell before the "
            "evaluated model's calibration window ended and were left out"
        )
    stretches, served, deployments = [], [], []
    for cutoff in found:
        deployment = deploy_at(cutoff, basis, features, inputs.declarations, config, plan)
        window = Window("stretch", cutoff, cutoff + step)
        part = serve_stretch(window, deployment, basis, inputs, config.features)
        stretches.append(
            {
                "cutoff": str(cutoff.date()),
                "stretch": f"{window.start.date()} .. {window.end.date()}",
                "declarations": len(part.declarations),
                **deployment.facts,
            }
        )
        served.append(part)
        deployments.append(deployment)
    population = population_of(served, inputs)
    min_rows = 1 if population != INSPECTED else config.evaluate.min_stratum_rows
    channels = [
        row
        for cutoff, part, deployment in zip(found, served, deployments, strict=True)
        for row in channel_rows(cutoff, part, deployment.kpis, min_rows)
    ]
    return WalkForward(
        stretches=pd.DataFrame(stretches),
        channels=pd.DataFrame(channels),
        metrics=pooled_metrics(served, config.evaluate, int(config.seed))
        if served
        else pd.DataFrame(),
        population=population,
        notes=notes,
    )
