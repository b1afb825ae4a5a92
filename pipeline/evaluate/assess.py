"""The review's figures, computed: a model on its test window against every comparator.

`build_window` cuts the model's test window out of the feature set once (the declarations, their
recorded outcomes, the simulator's ground truth where there is one, the model's ranking of them)
as a frozen `TestWindow`. Small evaluators each read it and return one typed part of the review:
the comparators (champion, reference learners, rules, both rankings), the metrics of each
population, the curves and breakdowns, the explanations, drift and leakage, the warnings and the
decision. `assess` combines them into the `Assessment` that `report.render_report` renders and
the evaluate job writes. Nothing here draws HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.config import AcceptanceConfig, Config, EvaluateConfig, MonitorConfig, ServeConfig
from pipeline.evaluate import explain as ex
from pipeline.evaluate import families as fam
from pipeline.evaluate import metrics as mx
from pipeline.evaluate import selections as sel
from pipeline.evaluate.decision import EVERY_ROW_INSPECTED, Against, Decision, Evidence, decide
from pipeline.evaluate.estimators import Stratum
from pipeline.evaluate.explain import Explanations
from pipeline.evaluate.headline import primary_population
from pipeline.evaluate.keys import (
    AT_CONFIGURED_CAPACITY,
    AT_OFFICE_CAPACITY,
    COLUMNS,
    HISTORICAL,
    MODEL,
    RANDOM_BASELINE,
    Kind,
    Population,
    difference_name,
)
from pipeline.evaluate.reference import ReferenceCache, ReferenceScores
from pipeline.evaluate.walkforward import WalkForward, detection_rate
from pipeline.features.featureset import FeatureSet
from pipeline.plan import RankingPolicy, Role, RunPlan
from pipeline.serve.model import ModelInfo, TargetingModel, plan_of
from pipeline.serve.ranking import Ranking, rank
from pipeline.timeaxis import Window
from pipeline.train.engine import cap_warning

NamedWindows = dict[str, Window]

ENTITY_COLUMNS = ("importer", "declarant", "seller")
RANKING_NAMES = {
    "probability": "probability of a hit",
    "expected_revenue": "expected revenue",
    "blend": "blend of probability and expected revenue",
}
ESTIMATOR_POPULATIONS = {"ipw": Population.IPW, "dr": Population.DR}


@dataclass
class ReportData:
    """Everything the report shows; frames are tidy, figures are PNG bytes."""

    title: str
    run_id: str
    model_summary: dict[str, str]
    windows: pd.DataFrame  # window, start, end, declarations, labelled, hits
    metrics: pd.DataFrame  # population, model, kind, rate, metric, value, low, high (keys.py)
    calibration: pd.DataFrame  # predicted, observed
    gain: pd.DataFrame  # share, gain, oracle_gain, lift[, revenue_gain]
    breakdowns: dict[str, pd.DataFrame] = field(default_factory=dict)  # dimension -> frame
    proportionality: dict[str, pd.DataFrame] = field(default_factory=dict)
    explanations: Explanations | None = None
    local_figures: dict[str, bytes] = field(default_factory=dict)
    manifest: pd.DataFrame = field(default_factory=pd.DataFrame)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    drift: pd.DataFrame = field(default_factory=pd.DataFrame)  # feature, psi
    feature_auc: pd.DataFrame = field(default_factory=pd.DataFrame)  # feature, auc
    model_card: dict[str, str] = field(default_factory=dict)
    headline_rate: float = 0.05
    references: pd.DataFrame = field(default_factory=pd.DataFrame)  # name, trees, seconds...
    # each family's effect on the test window, refitted without / with it (out of sample)
    families: pd.DataFrame = field(default_factory=pd.DataFrame)  # population, family, ...
    # the selection's own figures on the folds that chose the families: a diagnostic only
    families_in_sample: pd.DataFrame = field(default_factory=pd.DataFrame)
    decision: Decision | None = None  # the decision page (pipeline/evaluate/decision.py)
    calibration_population: str = ""  # the population `calibration` is measured on
    calibration_inspected: pd.DataFrame = field(default_factory=pd.DataFrame)  # a diagnostic
    walk_forward: WalkForward | None = None  # the deployment procedure replayed
    tradeoff: pd.DataFrame = field(default_factory=pd.DataFrame)  # revenue_weight, rate, ...
    tradeoff_population: str = ""


@dataclass
class Assessment:
    """The report's content and the tidy metrics table behind it."""

    metrics: pd.DataFrame
    report: ReportData
    explanations: Explanations | None


@dataclass(frozen=True)
class ReviewSettings:
    """What the review reads of the config, unpacked once (`of`): its own section, the seed its
    resamples and samples draw from, the serving settings the ranking is judged under (channels,
    office capacity, rank_by for the waterfalls), the drift limits (`monitor`), the chance a
    control of a fraud finds it (`walkforward.detection_rate`), the training's cap on boosting
    rounds and the experiment's name. The reference learners and the family ablation run the
    training's own code and keep the config."""

    evaluate: EvaluateConfig
    seed: int
    serve: ServeConfig
    monitor: MonitorConfig
    detection_rate: float
    num_boost_round: int
    name: str

    @classmethod
    def of(cls, config: Config) -> ReviewSettings:
        """The settings of `config`."""
        return cls(
            evaluate=config.evaluate,
            seed=int(config.seed),
            serve=config.serve,
            monitor=config.monitor,
            detection_rate=detection_rate(config.data, config.simulate),
            num_boost_round=config.train.num_boost_round,
            name=config.name,
        )


# --- windows and the model's ranking ------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TestWindow:
    """The declarations of the model's test window and what is known of them, built once.

    Row-aligned arrays: `labelled` (an outcome is recorded), `y` and `revenue` (the recorded
    outcome and revenue recovered, NaN where unknown), `stratum` (the random stratum with a
    recorded selection probability), `score` / `probability` (the model's tie-free control
    priority under `rank_by` and its calibrated probability, from `ranking`). `declarations` and
    `truth` are the canonical declarations and the simulator's ground truth lined up with the
    rows, when given. `plan` and `role`: the run plan the window was cut by and the role of the
    model under review (its windows and ranking policy are read from them).
    """

    __test__ = False  # a customs window, not a pytest class

    plan: RunPlan
    role: Role
    rows: np.ndarray  # mask of the test window over the whole feature set
    test: FeatureSet
    train: FeatureSet | None
    declarations: pd.DataFrame | None
    truth: pd.DataFrame | None
    labelled: np.ndarray
    y: np.ndarray
    revenue: np.ndarray
    has_revenue: bool
    stratum: np.ndarray
    rank_by: str
    ranked_by: str
    score: np.ndarray
    probability: np.ndarray
    ranking: Ranking
    notes: tuple[str, ...] = ()

    @property
    def windows(self) -> NamedWindows:
        """The model's own windows by name, the test window last (`RunPlan.named_windows`)."""
        return self.plan.named_windows(self.role)

    @property
    def policy(self) -> RankingPolicy:
        """The run plan's ranking policy, which `ranking` followed."""
        return self.plan.ranking

    @property
    def has_truth(self) -> bool:
        """Whether the simulator's ground truth labels at least one test declaration."""
        return self.truth is not None and bool(self.truth["fraud"].notna().any())


def _aligned(frame: pd.DataFrame | None, ids: np.ndarray) -> pd.DataFrame | None:
    """`frame`'s rows in the order of `ids` (one per declaration; missing ids: empty rows)."""
    if frame is None:
        return None
    return frame.drop_duplicates("declaration_id").set_index("declaration_id").reindex(ids)


IN_SAMPLE = (
    "The deployed refit learned from every label known at the end of the data, this test "
    "window's included: its figures here are in sample."
)


def build_window(
    model: TargetingModel,
    features: FeatureSet,
    plan: RunPlan,
    declarations: pd.DataFrame | None = None,
    ground_truth: pd.DataFrame | None = None,
) -> TestWindow:
    """The run plan's test window of `features` (among the model's own windows by name,
    `RunPlan.named_windows`), ranked by the model under the plan's ranking."""
    windows = plan.named_windows(model.info.role)
    notes = [IN_SAMPLE] if model.info.role == "deployed" else []
    rows = windows["test"].contains(features.lodged_at)
    test = features.subset(rows)
    if len(test) == 0:
        raise ValueError(
            f"test window {windows['test'].start} .. {windows['test'].end} holds no declaration "
            f"of the feature set"
        )
    train = (
        features.subset(windows["train"].contains(features.lodged_at))
        if "train" in windows
        else None
    )
    ids = test.declaration_id.astype(str).to_numpy()
    decl = _aligned(declarations, ids)
    labelled = test.labelled.to_numpy()
    revenue = test.revenue_recovered.to_numpy(dtype=float)
    stratum = test.stratum & labelled
    # Every selection is ranked by the same target (serve.rank_by) under its plain name, and by
    # probability and by expected revenue under "<name> by ...": the comparison is like for like.
    ranked = rank(model, test.X, plan.ranking)
    return TestWindow(
        plan=plan,
        role=model.info.role,
        rows=rows,
        test=test,
        train=train,
        declarations=None if decl is None else decl.reset_index(),
        truth=_aligned(ground_truth, ids),
        labelled=labelled,
        y=test.y.to_numpy(dtype=float),
        revenue=revenue,
        has_revenue=bool(np.isfinite(revenue[labelled]).any()),
        stratum=stratum,
        rank_by=ranked.rank_by,
        ranked_by=RANKING_NAMES[ranked.rank_by],
        score=ranked.priority,
        probability=ranked.probability,
        ranking=ranked,
        notes=tuple(notes),
    )


# --- comparators: champion, reference learners, rules, both rankings ---------------------------


@dataclass(frozen=True, eq=False)
class Comparators:
    """Every ranking the model is compared with on the test window, like for like.

    `scores`: name -> tie-free control priority (the model, the champion and the reference
    learners under the configured ranking and under each ranking by name, the rules);
    `probabilities`: name -> calibrated probability (Brier score); `compare`: (challenger,
    reference) pairs given a paired-bootstrap difference.
    """

    model: sel.LearnerScores
    scores: dict[str, np.ndarray]
    probabilities: dict[str, np.ndarray]
    compare: list[tuple[str, str]]
    references: ReferenceScores
    best_reference: str | None
    notes: list[str]
    champion_refused: str | None = None  # why the champion was not compared, when it was not


def _reference_learners(
    window: TestWindow, features: FeatureSet, config: Config, references: ReferenceScores
) -> dict[str, sel.LearnerScores]:
    """The reference learners' scores, with a revenue part fitted on the model's own labels."""
    from pipeline.evaluate import reference

    own = sel.training_labels(features, window.windows)
    revenue_if_hit = None
    if references.scores and own is not None and own.y.sum() > 0:
        raw = reference.raw_columns(features, config.features)
        own_raw = sel.WindowRows(own.X[raw], own.y, own.weight, own.revenue)
        revenue_if_hit = sel.raw_revenue_if_hit(own_raw, window.test.X, config)
    return sel.reference_learners(references.scores, revenue_if_hit)


def champion_overlap(info: ModelInfo, test: Window) -> str | None:
    """Why a champion cannot be judged against a challenger on its `test` window: a window its
    served model learned from (any but a test window) overlaps it, or it records none; None
    when the comparison is fair."""
    learned = {name: span for name, span in info.windows_dict().items() if name != "test"}
    if not learned:
        return (
            "its served model records no windows, so nothing shows that it never learned from "
            "this model's test window"
        )
    for name, span in learned.items():
        start, end = pd.Timestamp(span["start"]), pd.Timestamp(span["end"])
        if start < test.end and test.start < end:
            return (
                f"its served model's {name} window {start.date()} .. {end.date()} overlaps this "
                f"model's test window {test.start.date()} .. {test.end.date()}: it learned from "
                "the declarations it would be judged on, so the comparison would favour it"
            )
    return None


def comparators(
    window: TestWindow,
    model: TargetingModel,
    features: FeatureSet,
    config: Config,
    champion: tuple[str, TargetingModel] | None = None,
    reference_cache: ReferenceCache | None = None,
) -> Comparators:
    """The model against the champion, the reference learners (fitted once per data and
    settings with a ``reference_cache``) and the rules (with notes)."""
    from pipeline.evaluate import reference

    notes: list[str] = []
    X = window.test.X
    learners = {"model": sel.ranked_scores(window.ranking)}
    probabilities = {"model": window.probability}
    compare: list[tuple[str, str]] = []
    refused = None
    if champion is not None:
        name, champ = champion
        missing = sorted(set(champ.feature_names) - set(X.columns))
        refused = champion_overlap(champ.info, window.windows["test"])
        if missing:
            notes.append(f"Champion {name} skipped: it needs features absent here ({missing[:5]}).")
        elif refused is not None:
            notes.append(f"Champion {name} not compared: {refused}.")
        else:
            learners[name] = sel.learner_scores(champ, X)
            probabilities[name] = learners[name].probability
            compare.append(("model", name))
    references = reference.for_model(
        window.plan, window.role, features, window.rows, config, reference_cache
    )
    notes += references.notes
    learners |= _reference_learners(window, features, config, references)
    probabilities |= references.scores
    best = reference.best_reference(references, window.y)
    scores = sel.both_rankings(learners, window.rank_by, config.serve.revenue_weight)
    # Every healthy reference gets a paired difference: the model must beat each (the decision
    # page judges them all, on its population, metric and ranking), not only the one chosen.
    for name in [best, *(n for n in references.healthy if n != best)] if best else []:
        compare.append(("model", name))
        for words in sel.RANKINGS.values():
            if f"{name} {words}" in scores and f"model {words}" in scores:
                compare.append((f"model {words}", f"{name} {words}"))
    if config.evaluate.rules and window.declarations is not None:
        scores["rules"] = mx.rules_score(
            window.declarations, config.evaluate.rules, int(config.seed)
        )
    elif not config.evaluate.rules:
        notes.append("Rules baseline skipped: no risk criteria in evaluate.rules.")
    return Comparators(
        learners["model"], scores, probabilities, compare, references, best, notes, refused
    )


# --- population metrics ---------------------------------------------------------------------------


def _with_population(
    frame: pd.DataFrame, population: Population, differences: Sequence[tuple[str, str]] = ()
) -> pd.DataFrame:
    """The frame keyed (`keys.COLUMNS`): its population, and each row's kind (a policy where
    the frame says so, a paired difference where the model is one of `differences`)."""
    paired = [difference_name(a, b) for a, b in differences]
    kind = frame["kind"] if "kind" in frame else pd.Series(Kind.VALUE, index=frame.index)
    kind = kind.where(~frame["model"].isin(paired), Kind.DIFFERENCE)
    return frame.assign(population=population, kind=kind)[COLUMNS]


def _selection_rows(frame: pd.DataFrame, model: str) -> pd.DataFrame:
    share = float(frame.loc[frame["metric"] == "control_share", "value"].iloc[0])
    return frame.assign(model=model, rate=share, kind=Kind.POLICY)


def inspected_metrics(
    window: TestWindow, compared: Comparators, evaluate: EvaluateConfig, seed: int
) -> list[pd.DataFrame]:
    """Every ranking and the random baseline on the declarations with a recorded outcome, at
    `evaluate.rates` with `evaluate.bootstrap` replicates drawn with `seed`."""
    labelled = window.labelled
    if labelled.sum() == 0:
        return []
    rates = [float(r) for r in evaluate.rates]
    y = window.y[labelled]
    rev = window.revenue[labelled] if window.has_revenue else None
    table = mx.metrics_table(
        y,
        {k: v[labelled] for k, v in compared.scores.items()},
        rates,
        revenue=rev,
        probabilities={k: v[labelled] for k, v in compared.probabilities.items()},
        resampling=mx.Resampling(
            replicates=evaluate.bootstrap, seed=seed, compare=compared.compare
        ),
    )
    return [
        _with_population(table, Population.INSPECTED, compared.compare),
        _with_population(mx.random_baseline(y, rates, rev), Population.INSPECTED),
    ]


def truth_notes(window: TestWindow) -> list[str]:
    """A note when some test declarations have no ground truth (left out of the true figures)."""
    if window.truth is None or not window.truth["fraud"].isna().any():
        return []
    return [
        f"{int(window.truth['fraud'].isna().sum())} test declarations have no ground truth and "
        "are left out of the true figures."
    ]


def truth_metrics(
    window: TestWindow, compared: Comparators, settings: ReviewSettings
) -> list[pd.DataFrame]:
    """Every ranking, the random baseline and the historical policy on all declarations,
    labelled with the simulator's ground truth; the model at the policy's office capacity and at
    the configured one."""
    if window.truth is None or not window.has_truth:
        return []
    ev, seed = settings.evaluate, settings.seed
    known = window.truth["fraud"].notna().to_numpy()
    y_true = window.truth["fraud"].to_numpy()[known].astype(float)
    money = window.truth["revenue_recoverable"].to_numpy(dtype=float)[known]
    controlled = window.labelled[known]
    policy_share = float(controlled.mean())
    rates = [float(r) for r in ev.rates]
    truth_rates = sorted(set(rates) | ({policy_share} if policy_share > 0 else set()))
    table = mx.metrics_table(
        y_true,
        {k: v[known] for k, v in compared.scores.items()},
        truth_rates,
        revenue=money,
        resampling=mx.Resampling(replicates=ev.bootstrap, seed=seed, compare=compared.compare),
    )
    parts = [table, mx.random_baseline(y_true, truth_rates, money)]
    score = window.score[known]
    offices = window.test.office.astype("string").to_numpy()[known]

    def selected(mask: np.ndarray, name: str) -> pd.DataFrame:
        chosen = mx.selection_metrics(
            y_true, mask, revenue=money, replicates=ev.bootstrap, seed=seed
        )
        return _selection_rows(chosen, name)

    if controlled.any():
        parts.append(selected(controlled, HISTORICAL))
        capacity = pd.Series(controlled).groupby(offices).sum().astype(float)
        quota = mx.quota_mask(score, offices, capacity.to_dict())
        parts.append(selected(quota, AT_OFFICE_CAPACITY))
    if settings.serve.office_capacity:
        # serve.office_capacity is red controls per office and day: over the test window
        days = window.windows["test"].days
        per_window = {o: max(c * days, 1.0) for o, c in settings.serve.office_capacity.items()}
        quota = mx.quota_mask(score, offices, per_window)
        parts.append(selected(quota, AT_CONFIGURED_CAPACITY))
    return [_with_population(part, Population.TRUTH, compared.compare) for part in parts]


def stratum_estimates(
    priority: np.ndarray,
    stratum: Stratum,
    probability: np.ndarray,
    rates: Sequence[float],
    min_rows: int,
    notes: list[str],
) -> list[pd.DataFrame]:
    """The model's precision and recall on all declarations estimated from the random stratum
    (`evaluate.estimators`: self-normalised IPW with Clopper-Pearson intervals, doubly robust),
    and the flow's hit rate as the random selection's precision; a note per thin cell."""
    from pipeline.evaluate.estimators import estimate_at_rates

    table = estimate_at_rates(
        priority,
        stratum,
        [*rates, 1.0],
        probability=probability,
        min_rows=min_rows,
    )
    thin = table.loc[(table["verdict"] != "") & (table["rate"] < 1.0)]
    for r in thin.drop_duplicates("rate").itertuples():
        notes.append(f"Random-stratum estimate at {r.rate:.0%}: {r.verdict}.")
    out = []
    for estimator, population in ESTIMATOR_POPULATIONS.items():
        part = table.loc[table["estimator"] == estimator]
        model = part.loc[part["rate"] < 1.0].assign(model=MODEL)
        flow = part.loc[(part["rate"] == 1.0) & (part["metric"] == "precision")]
        random = pd.concat([flow.assign(rate=r) for r in rates]).assign(model=RANDOM_BASELINE)
        out.append(_with_population(pd.concat([model, random]), population))
    return out


@dataclass(frozen=True)
class PopulationMetrics:
    """The tidy metrics of every population, and the notes on what is left out."""

    metrics: pd.DataFrame  # population, model, kind, rate, metric, value, low, high (keys.py)
    notes: list[str]


def population_metrics(
    window: TestWindow, compared: Comparators, settings: ReviewSettings
) -> PopulationMetrics:
    """Inspected declarations, ground truth (when known) and the random stratum's estimates."""
    notes = truth_notes(window)
    ev = settings.evaluate
    parts = inspected_metrics(window, compared, ev, settings.seed)
    parts += truth_metrics(window, compared, settings)
    if window.stratum.sum() > 0:
        weight = window.test.sample_weight.to_numpy(dtype=float)
        parts += stratum_estimates(
            window.score,
            Stratum(window.stratum, window.y, 1.0 / weight),
            window.probability,
            [float(r) for r in ev.rates],
            ev.min_stratum_rows,
            notes,
        )
    metrics = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return PopulationMetrics(metrics, notes)


# --- curves and breakdowns ----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MainRows:
    """The most honest labels available: ground truth where known, else recorded outcomes."""

    keep: np.ndarray  # mask over the test window
    y: np.ndarray
    money: np.ndarray | None
    population: str


def main_rows(window: TestWindow) -> MainRows:
    """The rows and labels the curves and breakdowns are drawn on."""
    if window.truth is not None and window.has_truth:
        keep = window.truth["fraud"].notna().to_numpy()
        y = window.truth["fraud"].to_numpy()[keep].astype(float)
        money = window.truth["revenue_recoverable"].to_numpy(dtype=float)[keep]
        return MainRows(keep, y, money, Population.TRUTH.label)
    keep = window.labelled
    money_obs = window.revenue[keep] if window.has_revenue else None
    return MainRows(keep, window.y[keep], money_obs, Population.INSPECTED.label)


@dataclass(frozen=True)
class Curves:
    """Calibration, gain and lift, and precision against revenue share as the ranking moves."""

    calibration: pd.DataFrame  # predicted, observed[, low, high, rows]: the claimed population
    gain: pd.DataFrame  # share, gain, oracle_gain, lift[, revenue_gain]
    tradeoff: pd.DataFrame  # revenue_weight, rate, precision, recall, revenue
    tradeoff_population: str
    calibration_population: str = ""
    calibration_inspected: pd.DataFrame = field(default_factory=pd.DataFrame)  # a diagnostic


def claimed_calibration(window: TestWindow, settings: ReviewSettings) -> tuple[pd.DataFrame, str]:
    """The reliability table on the population the probability speaks of, every declaration:
    the simulator's truth (fraud x detection rate: the chance a control finds something), every
    recorded outcome where every declaration was inspected (KCS), else the random stratum with
    its weights (too few to judge below `evaluate.min_stratum_rows` rows a bin)."""
    detection = settings.detection_rate
    if window.truth is not None and window.has_truth:
        keep = window.truth["fraud"].notna().to_numpy()
        target = window.truth["fraud"].to_numpy(dtype=float)[keep] * detection
        table = mx.calibration_table(target, window.probability[keep], bins=10, hard=False)
        return table, Population.TRUTH.label
    if window.labelled.mean() > 0.99:
        labelled = window.labelled
        table = mx.calibration_table(window.y[labelled], window.probability[labelled])
        return table, f"all declarations ({EVERY_ROW_INSPECTED})"
    stratum = window.stratum
    weight = window.test.sample_weight.to_numpy(dtype=float)[stratum]
    table = mx.weighted_calibration_table(
        window.y[stratum],
        window.probability[stratum],
        weight,
        settings.evaluate.min_stratum_rows,
    )
    return table, Population.IPW.label


def curves(window: TestWindow, compared: Comparators, settings: ReviewSettings) -> Curves:
    """The reliability table on the claimed population (`claimed_calibration`; the inspected
    rows' table kept as a diagnostic), gain and the two rankings' trade-off."""
    main = main_rows(window)
    keep, labelled = main.keep, window.labelled
    calibration, claimed = claimed_calibration(window, settings)
    inspected = (
        mx.calibration_table(window.y[labelled], window.probability[labelled])
        if labelled.sum() > 1
        else pd.DataFrame(columns=["predicted", "observed"])
    )
    gain = mx.gain_curve(main.y, window.score[keep], main.money) if keep.sum() else pd.DataFrame()
    tradeoff = pd.DataFrame()
    if keep.sum():
        mine = compared.model
        kept = sel.LearnerScores(
            mine.margin[keep],
            mine.probability[keep],
            None if mine.revenue_if_hit is None else mine.revenue_if_hit[keep],
        )
        rates = [float(r) for r in settings.evaluate.rates]
        tradeoff = sel.tradeoff_table(main.y, main.money, kept, rates)
    return Curves(calibration, gain, tradeoff, main.population, claimed, inspected)


@dataclass(frozen=True)
class Breakdowns:
    """What the top of the ranking catches per office, HS chapter and month, and who it
    selects (proportionality by office, AEO status and origin)."""

    catches: dict[str, pd.DataFrame]
    proportionality: dict[str, pd.DataFrame]


def breakdowns(window: TestWindow, rate: float) -> Breakdowns:
    """Each group's figures at the control `rate` (`metrics.breakdown`)."""
    test, decl, main = window.test, window.declarations, main_rows(window)
    groups: dict[str, pd.Series] = {"office": test.office}
    if "hs2" in test.X.columns:
        groups["HS chapter"] = test.X["hs2"]
    elif decl is not None and "hs_code" in decl:
        groups["HS chapter"] = decl["hs_code"].astype("string").str[:2]
    groups["month"] = pd.to_datetime(test.lodged_at).dt.strftime("%Y-%m")
    catches = {}
    if main.keep.sum():
        for name, group in groups.items():
            frame = mx.breakdown(
                main.y,
                window.score[main.keep],
                group.reset_index(drop=True)[main.keep],
                [rate],
                main.money,
            )
            frame = frame.drop(columns="rate")
            if name != "month":  # largest groups first; months stay in time order
                frame = frame.sort_values("declarations", ascending=False, kind="stable")
            catches[name] = frame
    prop_groups: dict[str, pd.Series] = {"office": test.office}
    if decl is not None:
        for column, label in (("aeo", "AEO status"), ("origin_country", "origin")):
            if column in decl:
                prop_groups[label] = decl[column]
    proportionality = {
        label: mx.breakdown(
            np.nan_to_num(window.y), window.score, group.reset_index(drop=True), [rate]
        )
        for label, group in prop_groups.items()
    }
    return Breakdowns(catches, proportionality)


# --- explanations, drift and leakage --------------------------------------------------------------


@dataclass(frozen=True)
class ExplanationSummary:
    """Global SHAP views, waterfalls of chosen declarations, and entity dominance of SHAP mass."""

    explanations: Explanations
    local_figures: dict[str, bytes]
    dominance: pd.DataFrame


def _entity_frame(window: TestWindow, sample_ids: pd.Series) -> pd.DataFrame:
    """The entities (importer, declarant, seller, category features) of the explained rows."""
    test, decl = window.test, window.declarations
    position = pd.Series(np.arange(len(test)), index=test.declaration_id.astype(str).to_numpy())
    rows = position.reindex(sample_ids.astype(str).to_numpy()).to_numpy()
    entity_frame = pd.DataFrame(index=range(len(rows)))
    for column in ENTITY_COLUMNS:
        if decl is not None and column in decl:
            entity_frame[column] = decl[column].to_numpy()[rows]
    for column in test.X.columns:
        if isinstance(test.X[column].dtype, pd.CategoricalDtype):
            entity_frame[column] = test.X[column].to_numpy()[rows]
    return entity_frame


def explanation_summary(
    window: TestWindow,
    model: TargetingModel,
    settings: ReviewSettings,
    local_ids: Sequence[str] = (),
) -> ExplanationSummary:
    """SHAP on a seeded sample, waterfalls of a red-channel sample and of `local_ids`."""
    ev, seed, test, serve = settings.evaluate, settings.seed, window.test, settings.serve
    views = ex.GlobalViews.of(ev, seed)
    explanations = ex.window_explanations(model, test, window.policy, views, serve.channels)
    red_share = serve.channels.get("red", 0.02)
    chosen_rows = list(ex.red_sample(window.score, red_share, ev.red_waterfalls, seed))
    if local_ids:
        ids = test.declaration_id.astype(str)
        chosen_rows += list(np.flatnonzero(ids.isin([str(i) for i in local_ids]).to_numpy()))
    _, local_figures = ex.waterfalls(
        model,
        test.X.iloc[chosen_rows],
        test.declaration_id.iloc[chosen_rows],
        window.policy,
    )
    entities = _entity_frame(window, explanations.values["declaration_id"])
    dominance = ex.dominance(explanations.values, entities, model.feature_names)
    return ExplanationSummary(explanations, local_figures, dominance)


@dataclass(frozen=True)
class DriftAndLeakage:
    """Each feature's drift verdict (train vs test) and how well it alone ranks the labels."""

    drift: pd.DataFrame  # evaluate.drift.COLUMNS
    feature_auc: pd.DataFrame  # feature, auc


def drift_and_leakage(
    window: TestWindow, model: TargetingModel, importance: pd.DataFrame, monitor: MonitorConfig
) -> DriftAndLeakage:
    """Drift judged where it matters (at `monitor`'s PSI limits) and single-feature AUC, against
    the training window."""
    feature_auc = pd.DataFrame(columns=["feature", "auc"])
    drift = pd.DataFrame(columns=["feature", "psi"])
    train, test, labelled = window.train, window.test, window.labelled
    if train is None or not len(train):
        return DriftAndLeakage(drift, feature_auc)
    from pipeline.evaluate.drift import DriftLimits, judge_drift

    # Drift judged where it matters: features carrying the model (SHAP share), against the
    # drift they already showed inside the training window; every feature has a verdict.
    names = model.feature_names
    drift = judge_drift(
        train.X[names],
        train.lodged_at,
        test.X[names],
        importance,
        DriftLimits(psi_warn=monitor.psi_warn, psi_alarm=monitor.psi_alarm),
    )
    tl = train.labelled.to_numpy()
    if tl.sum() and labelled.sum():
        feature_auc = mx.single_feature_auc(
            train.X.loc[tl, names],
            train.y[tl].to_numpy(dtype=float),
            test.X.loc[labelled, names],
            window.y[labelled],
        )
    return DriftAndLeakage(drift, feature_auc)


# --- warnings and the decision ------------------------------------------------------------------


@dataclass(frozen=True)
class LeakageLimits:
    """When a feature looks leaked or owned by one entity: more than `mass_limit` of the SHAP
    mass, or a test AUC alone above `auc_limit`; dominated when one entity carries more than
    `dominance_limit` of the feature's SHAP mass and `dominance_ratio` times its share of the
    declarations, for features carrying at least `min_feature_share` of the mass."""

    auc_limit: float = 0.95
    mass_limit: float = 0.6
    dominance_limit: float = 0.5
    dominance_ratio: float = 3.0
    min_feature_share: float = 0.05


def review_warnings(
    importance: pd.DataFrame | None,
    dominance: pd.DataFrame | None,
    feature_auc: pd.DataFrame | None,
    limits: LeakageLimits | None = None,
) -> list[str]:
    """What a reviewer must look at before approving: leakage and entity dominance (drift has
    its own warnings, `drift.drift_warnings`, on the features that carry the model)."""
    limits = limits or LeakageLimits()
    auc_limit, mass_limit = limits.auc_limit, limits.mass_limit
    dominance_limit, dominance_ratio = limits.dominance_limit, limits.dominance_ratio
    min_feature_share = limits.min_feature_share
    out: list[str] = []
    if importance is not None and len(importance):
        heavy = importance.loc[importance["share"] > mass_limit]
        out += [
            f"Possible leakage: {r.feature} carries {r.share:.0%} of all SHAP mass "
            f"(limit {mass_limit:.0%})."
            for r in heavy.itertuples()
        ]
    if feature_auc is not None and len(feature_auc):
        strong = feature_auc.loc[feature_auc["auc"] > auc_limit]
        out += [
            f"Possible leakage: {r.feature} alone ranks the test labels with AUC {r.auc:.3f} "
            f"(limit {auc_limit})."
            for r in strong.itertuples()
        ]
    if dominance is not None and len(dominance) and importance is not None and len(importance):
        relevant = set(importance.loc[importance["share"] >= min_feature_share, "feature"])
        dominated = dominance.loc[
            dominance["feature"].isin(relevant)
            & (dominance["share"] > dominance_limit)
            & (dominance["share"] >= dominance_ratio * dominance["row_share"])
        ].drop_duplicates("feature")
        out += [
            f"Feature {r.feature} is dominated by one entity: {r.entity_column} = {r.entity} "
            f"carries {r.share:.0%} of its SHAP mass with {r.row_share:.1%} of the declarations."
            for r in dominated.itertuples()
        ]
    return out


def assessment_warnings(
    model: TargetingModel,
    explained: ExplanationSummary,
    found: DriftAndLeakage,
    num_boost_round: int,
) -> list[str]:
    """Leakage and dominance, drift of features that carry the model, a boosting capped at
    `num_boost_round` (the training's cap)."""
    importance = explained.explanations.importance
    warnings = review_warnings(importance, explained.dominance, found.feature_auc)
    if "verdict" in found.drift:
        from pipeline.evaluate.drift import drift_warnings

        warnings += drift_warnings(found.drift)
    capped = cap_warning(model.info.best_iteration or 0, num_boost_round, "Evaluated model")
    return warnings + ([capped] if capped else [])


def judged_features(drift: pd.DataFrame) -> pd.DataFrame:
    """The rows of the drift table that are judged (`evaluate.drift`): stable or drifting, not
    those set aside."""
    if "judged" not in drift:
        return drift
    return drift.loc[drift["judged"].astype(bool)]


@dataclass(frozen=True)
class Judged:
    """What the decision compares the model with besides its metrics: the champion, every
    healthy reference learner and the walk-forward replay of the deployment, at the run plan's
    headline rate."""

    champion: tuple[str, TargetingModel] | None
    references: list[str]
    walk_forward: WalkForward | None
    headline_rate: float


def decision(
    metrics: pd.DataFrame,
    drawn: Curves,
    drift: pd.DataFrame,
    acceptance: AcceptanceConfig,
    run_id: str,
    judged: Judged,
) -> Decision:
    """The `acceptance` criteria judged on the most honest population (`evaluate.decision`)."""
    champion = judged.champion
    evidence = Evidence(
        metrics,
        primary_population(metrics),
        drawn.calibration,
        drawn.calibration_population,
        judged_features(drift),
        judged.headline_rate,
    )
    against = Against(
        champion[0] if champion is not None else None, judged.references, judged.walk_forward
    )
    return decide(evidence, acceptance, run_id, against)


# --- the model's description --------------------------------------------------------------------


def deployed_summary(info: ModelInfo) -> str:
    """What is deployed: the refit (its windows and trees) or this very model."""
    refit = info.refit
    if refit is None:
        return "this model (no refit: train.refit is off)"
    train, calibration = refit.as_dict()["train"], refit.as_dict()["calibration"]
    return (
        f"the same configuration refit on every label known by "
        f"{refit.labels_known_by.isoformat()[:10]}"
        f" (train {train['start'][:10]} .. {train['end'][:10]}, calibration "
        f"{calibration['start'][:10]} .. {calibration['end'][:10]}, {info.refit_trees} trees); "
        "these test figures are the evaluated model's"
    )


def family_effects(info: ModelInfo) -> pd.DataFrame:
    """The in-sample figures of the family selection a model records: what each family adds to
    the validation AP of the very folds that chose it (kept exactly when above 0). A diagnostic,
    without intervals; the evidence is `family_ablation`."""
    families = info.families
    if families is None or not families.effects:
        return pd.DataFrame()
    frame = pd.DataFrame(list(families.effects)).drop(columns=["low", "high"], errors="ignore")
    frame["kept"] = ~frame.pop("dropped").astype(bool)
    return frame.rename(
        columns={
            "ap_with": "fold AP with it (in sample)",
            "ap_without": "fold AP without it (in sample)",
            "effect": "fold AP it adds (in sample)",
        }
    )


def family_ablation(
    window: TestWindow, model: TargetingModel, features: FeatureSet, config: Config
) -> fam.FamilyAblation:
    """Each family's out-of-sample effect on the test window (`evaluate.families`): on the
    inspected declarations and, on the simulator, on every one against the ground truth."""
    populations = {Population.INSPECTED.label: (window.labelled, window.y[window.labelled])}
    if window.has_truth and window.truth is not None:
        known = window.truth["fraud"].notna().to_numpy()
        fraud = window.truth["fraud"].to_numpy()[known].astype(float)
        populations[Population.TRUTH.label] = (known, fraud)
    return fam.family_ablation(model, features, window.windows, window.rows, populations, config)


def family_table(ablation: fam.FamilyAblation) -> pd.DataFrame:
    """The ablation as the report shows it (`families.COLUMNS`, in words)."""
    if ablation.effects.empty:
        return pd.DataFrame()
    kept = ablation.effects["kept"].map({True: "yes", False: "no"})
    return ablation.effects.assign(kept=kept).rename(
        columns={
            "kept": "in the model",
            "ap_with": "test AP with it",
            "ap_without": "test AP without it",
            "effect": "test AP it adds",
            "low": "low (95 %)",
            "high": "high (95 %)",
        }
    )


def windows_table(features: FeatureSet, windows: NamedWindows) -> pd.DataFrame:
    """Each window's span, declarations, recorded outcomes and hits."""
    rows = []
    for name, window in windows.items():
        inside = window.contains(features.lodged_at)
        y = features.y.to_numpy(dtype=float)[inside]
        rows.append(
            {
                "window": name,
                "start": str(window.start.date()),
                "end (exclusive)": str(window.end.date()),
                "declarations": int(inside.sum()),
                "with outcome": int(np.isfinite(y).sum()),
                "hits": int(np.nansum(y)),
            }
        )
    return pd.DataFrame(rows)


def probability_meaning(info: ModelInfo, anchored: bool) -> str:
    """What the model's calibrated probability is the chance of, from its fit log."""
    meaning = info.probability_means or (
        "not recorded by this model (fitted before the selection correction): read it as "
        "P(hit | controlled by the historical policy), which overstates the chance of a hit "
        "of a declaration the policy would not have picked"
    )
    details = [d for d in (info.selection_correction, info.anchoring) if d]
    if info.anchoring is not None and not anchored:
        details.append(
            "without the anchor, the probability can still overstate the chance of a hit where "
            "the historical controls were picked on what the features do not show"
        )
    return (
        meaning
        + (". " + "; ".join(details) if details else "")
        + (
            ". The ranking uses the booster's margin: ties in the calibrated probability never "
            "decide."
        )
    )


def model_card(
    name: str,
    test: FeatureSet,
    labelled: np.ndarray,
    has_revenue: bool,
    has_truth: bool,
    windows: NamedWindows,
) -> dict[str, str]:
    """Intended use, data and limitations of experiment `name`, in a reviewer's words."""
    span = ", ".join(f"{k} {v.start.date()}..{v.end.date()}" for k, v in windows.items())
    return {
        "Intended use": "Rank import declarations by risk so that a customs selectivity system "
        "sends the top of the ranking to documentary or physical control within each office's "
        "capacity. A decision aid for risk analysts, not an automatic sanction: every control "
        "is carried out and judged by an officer.",
        "Data": f"Experiment {name!r}; windows {span}. Labels are inspection outcomes "
        f"({int(labelled.sum()):,} known in the test window)"
        + ("; revenue recovered is recorded" if has_revenue else "; no revenue in the data")
        + ("; the simulator's ground truth gives true figures." if has_truth else "."),
        "Limitations": "Labels exist only for controlled declarations: metrics on inspected "
        "declarations overstate what the model finds in the whole flow, and the model learns "
        "the past policy's blind spots. Only the random stratum (and, on simulated data, the "
        "ground truth) measures true rates. Fraud patterns drift; retrain and monitor. Scores "
        "are calibrated on a past window and may be dishonest after drift. Label delay is assumed "
        "independent of the outcome: a window's labels count only once known, and if hits took "
        "longer to establish than clean results, the latest windows (the refit's calibration) "
        "would under-count hits.",
        "Proportionality": "Selection rates by AEO status, origin and office below: a group "
        "selected far above the overall rate must be justified by its risk, not by its "
        "identity alone. Keep a random stratum so compliance is measured on everyone.",
    }


def model_summary(
    window: TestWindow, model: TargetingModel, evaluate: EvaluateConfig, seed: int
) -> dict[str, str]:
    """The summary box: the model, its ranking, the test window and what labels it."""
    start, end = window.windows["test"].start, window.windows["test"].end
    return {
        "model": f"XGBoost ({model.booster.num_boosted_rounds()} trees, "
        f"{len(model.feature_names)} features), calibration {model.calibration.method}",
        "ranked by": window.ranked_by,
        "test window": f"{start.date()} .. {end.date()} "
        f"({len(window.test):,} declarations, {int(window.labelled.sum()):,} with an outcome)",
        "ground truth": "yes (simulator)" if window.truth is not None else "no",
        "random stratum": f"{int(window.stratum.sum())} declarations",
        "bootstrap": f"{evaluate.bootstrap} replicates, seed {seed}",
        "deployed model": deployed_summary(model.info),
    }


# --- the combination ------------------------------------------------------------------------------


def window_card(window: TestWindow, model: TargetingModel, name: str) -> dict[str, str]:
    """The model card of the test window (experiment `name`), with what the model's probability
    means."""
    card = model_card(
        name,
        window.test,
        window.labelled,
        window.has_revenue,
        window.truth is not None,
        window.windows,
    )
    card["What the probability means"] = probability_meaning(model.info, model.calibration.anchored)
    return card


@dataclass(frozen=True)
class Review:
    """What a review reads besides the model, the feature set and the config; every part
    optional.

    Attributes:
        declarations: canonical declarations (rules, AEO, origin, HS code, entity ids).
        ground_truth: the simulator's truth (fraud, revenue_recoverable) when there is one.
        champion: (name, model) of the registered champion, compared with a paired bootstrap.
        local_ids: declarations to explain one by one (waterfalls), on top of a red sample.
        walk_forward: the deployment procedure replayed at past cut-offs (`walkforward`), shown
            first on the decision page.
        reference_cache: where the reference learners are kept between runs
            (`jobs.catalog.reference_cache`); None: fitted every time.
    """

    declarations: pd.DataFrame | None = None
    ground_truth: pd.DataFrame | None = None
    champion: tuple[str, TargetingModel] | None = None
    run_id: str = ""
    local_ids: Sequence[str] = ()
    walk_forward: WalkForward | None = None
    reference_cache: ReferenceCache | None = None


def assess(
    model: TargetingModel, features: FeatureSet, config: Config, review: Review | None = None
) -> Assessment:
    """Metrics against baselines, explanations and warnings of `model` (the TargetingModel
    under review) on its test window, cut from `features` (the FeatureSet of every
    declaration), with the config's evaluate, serve, train, monitor and split sections and
    what the `review` adds."""
    review = review or Review()
    declarations, ground_truth = review.declarations, review.ground_truth
    champion, run_id, local_ids = review.champion, review.run_id, review.local_ids
    walk_forward, reference_cache = review.walk_forward, review.reference_cache
    settings = ReviewSettings.of(config)
    plan = plan_of(model, config, features.lodged_at)
    window = build_window(model, features, plan, declarations, ground_truth)
    compared = comparators(window, model, features, config, champion, reference_cache)
    population = population_metrics(window, compared, settings)
    metrics = population.metrics
    drawn = curves(window, compared, settings)
    rate = plan.headline_rate
    groups = breakdowns(window, rate)
    explained = explanation_summary(window, model, settings, local_ids)
    found = drift_and_leakage(window, model, explained.explanations.importance, settings.monitor)
    card = window_card(window, model, settings.name)
    ablation = family_ablation(window, model, features, config)
    report = ReportData(
        title=f"Targeting model review: {settings.name}",
        run_id=run_id,
        model_summary=model_summary(window, model, settings.evaluate, settings.seed),
        windows=windows_table(features, window.windows),
        metrics=metrics,
        calibration=drawn.calibration,
        gain=drawn.gain,
        breakdowns=groups.catches,
        proportionality=groups.proportionality,
        explanations=explained.explanations,
        local_figures=explained.local_figures,
        manifest=features.manifest,
        warnings=assessment_warnings(model, explained, found, settings.num_boost_round),
        notes=[*window.notes, *compared.notes, *population.notes, *ablation.notes],
        drift=found.drift,
        feature_auc=found.feature_auc,
        model_card=card,
        headline_rate=rate,
        references=pd.DataFrame(compared.references.fitted),
        families=family_table(ablation),
        families_in_sample=family_effects(model.info),
        decision=decision(
            metrics,
            drawn,
            found.drift,
            settings.evaluate.acceptance,
            run_id,
            Judged(champion, compared.references.healthy, walk_forward, rate),
        ),
        tradeoff=drawn.tradeoff,
        tradeoff_population=drawn.tradeoff_population,
        calibration_population=drawn.calibration_population,
        calibration_inspected=drawn.calibration_inspected,
        walk_forward=walk_forward,
    )
    return Assessment(metrics=metrics, report=report, explanations=explained.explanations)
