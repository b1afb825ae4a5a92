"""Experiment configuration: pydantic models of a YAML file, and `load(path, overrides)`.

A config is data. Every CLI verb takes `--config FILE` and repeated `--set section.key=value`;
values given with `--set` are parsed as YAML scalars (``--set tune.n_trials=0``,
``--set serve.channels.red=0.03``). Unknown keys are rejected, naming the key and the file.
Loading has no side effects: nothing is created until a stage writes.
"""

from __future__ import annotations

import datetime as dt
import difflib
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.artefacts import LAYOUT

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A config file or an override that cannot be used; the message names the file and key."""


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on set."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SimulateConfig(Section):
    """Parameters of the synthetic declaration stream (pipeline/simulate/)."""

    rows: int = Field(200_000, gt=0, description="declarations to generate")
    start: dt.date = Field(dt.date(2023, 1, 1), description="first lodging day")
    days: int = Field(730, gt=0, description="length of the period in days")
    importers: int = Field(8_000, gt=0, description="importers at the start of the period")
    new_importer_share: float = Field(
        0.25, ge=0, le=1, description="extra importers that appear during the period, as a share"
    )
    declarants: int = Field(300, gt=0, description="customs brokers")
    complicit_declarant_share: float = Field(0.03, ge=0, le=1)
    sellers: int = Field(6_000, gt=0, description="foreign sellers")
    offices: int = Field(12, gt=0, description="customs offices")
    aeo_share: float = Field(0.06, ge=0, le=1, description="AEO-certified share of importers")
    fraud_rate: float = Field(
        0.04, ge=0, le=1, description="target share of fraudulent declarations"
    )
    capacity_rate: float = Field(
        0.05,
        ge=0,
        le=1,
        description="each office's daily inspection capacity, as a share of its flow",
    )
    random_rate: float = Field(
        0.005, ge=0, le=1, description="probability of the historical policy's random draw"
    )
    detection_rate: float = Field(
        0.85, ge=0, le=1, description="probability that an inspection of a fraud finds it"
    )
    result_delay_days: float = Field(
        14.0, ge=0, description="mean delay between selection and a known result"
    )
    drift_start: float = Field(
        0.5, ge=0, le=1, description="point of the period where the emerging scheme starts"
    )
    emerging_share: float = Field(
        0.25,
        ge=0,
        le=1,
        description="share of the frauds after drift_start that belong to the emerging scheme "
        "(emerging_transshipment); fraud_rate stays the overall rate",
    )
    duty_error_rate: float = Field(
        0.01, ge=0, le=1, description="share of declarations with a clerical error in the duty"
    )


# Largest plausible value of each numeric canonical column; larger values are quarantined. The
# validation contract's default too (`ingest.schema.Contract`), so both read one table.
DEFAULT_MAX_VALUES: dict[str, float] = {
    "quantity": 1e12,
    "net_mass_kg": 1e9,
    "declared_value": 1e15,
    "duty_rate": 10.0,
    "declared_duty": 1e15,
    "revenue_recovered": 1e15,
}


STRFTIME_DIRECTIVES = frozenset("aAwdbBmyYHIpMSfzZjUWcxXGuV%")


class DataConfig(Section):
    """Where declarations and outcomes come from, and in which format."""

    source: Literal["simulate", "files"] = "simulate"
    format: Literal["canonical", "kcs"] = "canonical"
    declarations: Path | None = Field(None, description="canonical declarations (CSV/Parquet)")
    outcomes: Path | None = Field(None, description="canonical outcomes (CSV/Parquet)")
    kcs_dir: Path = Field(
        PROJECT_ROOT.parent / "shared" / "data" / "external" / "Customs-Declaration-Datasets",
        description="folder holding the KCS files",
    )
    kcs_files: list[str] = Field(
        default_factory=lambda: ["df_syn_train_eng.csv", "df_syn_valid_eng.csv"]
    )
    column_mapping: dict[str, str] = Field(
        default_factory=dict, description="your column name -> canonical column name"
    )
    date_format: str | None = Field(
        None,
        description="strptime format of every text timestamp (e.g. '%d/%m/%Y %H:%M'); None: "
        "ISO 8601, or one unambiguous format per column (01/12/2024 alone is refused)",
    )
    earliest_date: dt.date = Field(
        dt.date(1990, 1, 1), description="timestamps before this day are quarantined"
    )
    future_days: float = Field(
        1.0,
        ge=0,
        le=36_500,
        allow_inf_nan=False,
        description="timestamps later than now plus these days are quarantined",
    )
    max_values: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_MAX_VALUES),
        description="column -> largest plausible value (a positive, finite number); larger "
        "values are quarantined",
    )

    @field_validator("max_values")
    @classmethod
    def _positive_bounds(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [f"{k}={v!r}" for k, v in value.items() if not (math.isfinite(v) and v > 0)]
        if bad:
            raise ValueError(f"each bound must be a positive, finite number: {', '.join(bad)}")
        return value

    @field_validator("date_format")
    @classmethod
    def _known_directives(cls, value: str | None) -> str | None:
        if value is None:
            return value
        unknown = sorted(set(re.findall(r"%(.)", value)) - STRFTIME_DIRECTIVES)
        if unknown or "%" not in value:
            shown = ", ".join(f"%{d}" for d in unknown) or "no % directive"
            raise ValueError(f"not a strptime format ({shown}); e.g. '%d/%m/%Y %H:%M'")
        return value


FeatureStage = Literal["raw", "profiles", "valuation", "history", "calendar"]
FEATURE_STAGES: tuple[FeatureStage, ...] = ("raw", "profiles", "valuation", "history", "calendar")


class FeaturesConfig(Section):
    """Point-in-time feature stages (pipeline/features/)."""

    stages: list[FeatureStage] = Field(
        default_factory=lambda: list(FEATURE_STAGES),
        description="stages in the order their columns appear in X",
    )
    reporting_delay_days: float = Field(
        0.0, ge=0, description="days added to result_at before an outcome counts as known"
    )
    missing_result_delay_days: float = Field(
        30.0, ge=0, description="when result_at is absent (KCS): lodged_at plus this delay"
    )
    profile_keys: list[str] = Field(
        default_factory=lambda: [
            "importer",
            "declarant",
            "seller",
            "hs6",
            "hs4",
            "hs2",
            "origin_country",
            "departure_country",
            "office",
            "transport_mode",
        ]
    )
    cross_keys: list[list[str]] = Field(
        default_factory=lambda: [
            ["importer", "hs6"],
            ["origin_country", "hs6"],
            ["office", "hs6"],
            ["declarant", "importer"],
            ["departure_country", "origin_country", "transport_mode"],
        ]
    )
    target_stat_keys: list[list[str]] = Field(
        default_factory=lambda: [["importer", "hs4"], ["declarant", "office"]],
        description="further keys (single columns or pairs) whose as-of statistics (declarations, "
        "controls, hits, smoothed hit rate, recency) form the family `target_stats`: the "
        "time-ordered counterpart of CatBoost's target statistics, measured by the family "
        "selection against the native categories",
    )
    prior_strength: float = Field(
        10.0, gt=0, description="pseudo-controls of the parent rate in the smoothed hit rate"
    )
    shrinkage: Literal["flat", "hierarchical"] = Field(
        "flat",
        description="flat: a key's hit rate is shrunk towards its HS parent (single HS keys) or "
        "the global rate; hierarchical: towards its nearest computed ancestor (importer x hs6 -> "
        "importer x hs4 -> importer x hs2 -> importer -> global; hs6 -> hs4 -> hs2 -> global)",
    )
    history_depth: bool = Field(
        False,
        description="family `depth`: days since the first declaration of the data known at "
        "lodging (`history_depth_days`) and since the first declaration of each single profile "
        "key (`<key>_days_known`): how much history lies behind the profiles (cold start)",
    )
    profile_half_lives: list[int] = Field(
        default_factory=list,
        description="half-lives in days of exponentially decayed profiles (decayed controls, hits "
        "and smoothed hit rate of every single and cross key); each half-life is a family "
        "`decayed_<days>` of its own, so that the family selection searches among them",
    )
    random_stratum_only: bool = Field(
        False, description="profile rates from the random stratum only, inverse-propensity weighted"
    )
    valuation_min_support: int = Field(
        20, gt=0, description="past declarations needed before a reference price is trusted"
    )
    history_windows_days: list[int] = Field(default_factory=lambda: [30, 90])
    raw_categories: list[str] = Field(
        default_factory=lambda: [
            "office",
            "transport_mode",
            "origin_country",
            "departure_country",
            "hs2",
            "hs4",
            "hs6",
            "seller",
        ],
        description="declaration columns that enter X as categories, any cardinality (extra "
        "columns of your data too); a column the data lacks is left out",
    )
    raw_ids: list[str] = Field(
        default_factory=lambda: ["importer", "declarant"],
        description="trader id columns that enter X as categories (family `ids` of the ablation)",
    )
    chunk_months: int = Field(
        0,
        ge=0,
        description="0: build the features in memory; n: over chunks of n calendar months "
        "carrying the state from one to the next (the same features, less memory)",
    )

    @field_validator("profile_half_lives")
    @classmethod
    def _half_lives_positive_and_distinct(cls, days: list[int]) -> list[int]:
        if any(d <= 0 for d in days) or len(set(days)) != len(days):
            raise ValueError(f"half-lives must be distinct positive days, got {days}")
        return days


class SplitConfig(Section):
    """Time windows: train / calibration / validation / test, with a label-latency gap."""

    train_start: dt.date | None = Field(None, description="None: the first lodging day")
    train_end: dt.date | None = Field(
        None,
        description="end-exclusive; given: windows laid out forwards from it; None: "
        "laid out backwards from the end of the data (or from test_end)",
    )
    test_start: dt.date | None = Field(None, description="pin the test window's start")
    test_end: dt.date | None = Field(None, description="pin the test window's end (exclusive)")
    calibration_days: int = Field(30, ge=0)
    valid_days: int = Field(60, gt=0)
    test_days: int = Field(60, gt=0)
    gap_days: float = Field(14.0, ge=0, description="gap between windows = label delay")
    reference_days: int = Field(
        30,
        ge=0,
        description="laid out backwards: days kept between the test window's end and the end of "
        "the usable data, for the thresholds' reference window (plan.lay_reference): "
        "the cut-offs and expected channel KPIs are never set on the test window's rows; with "
        "nothing after the test window (0, or a pinned test_end at the end of the data), the "
        "stretch just before it",
    )
    folds: int = Field(2, ge=1, description="rolling (prequential) folds for tuning")
    min_fold_hits: int = Field(
        0,
        ge=0,
        description="fewest labelled hits in each tuning fold's validation block: a block "
        "reaches back, a day at a time, past valid_days until it holds them (0: calendar "
        "blocks of valid_days); a fold with few hits cannot tell trials apart",
    )
    burn_in_days: int = Field(
        0,
        ge=0,
        description="the first days of the data only feed the profiles and histories: their "
        "declarations, whose profiles are still empty (cold start), enter no training window",
    )


class TuneConfig(Section):
    """Optuna study over XGBoost parameters (pipeline/train/tune.py)."""

    n_trials: int = Field(20, ge=0, description="0: train with train.params as they are")
    timeout_s: float | None = Field(None, gt=0)
    objective: Literal["average_precision", "precision_at", "revenue_at"] = "average_precision"
    at_rate: float = Field(0.05, gt=0, le=1, description="n % for precision_at / revenue_at")
    storage: str | None = Field(
        None,
        description="None: the journal file optuna.journal in output_dir; a path ending .journal; "
        "a SQLite URL (one worker); any RDB URL",
    )
    study_name: str | None = None
    pruning: bool = True
    workers: int | None = Field(
        None,
        ge=1,
        description="parallel trial processes sharing the study; None: one per 2 threads of "
        "compute.threads (one on a SQLite storage)",
    )
    tune_imbalance: bool = Field(False, description="treat train.imbalance as a hyperparameter")
    tune_category_order: bool = Field(
        False,
        description="treat train.category_order as a hyperparameter: the conventional parameters "
        "are enqueued with each order (trials 0 and 1), and the other order replaces the "
        "configured one only by beating it by more than the validation noise",
    )


class TrainConfig(Section):
    """Final fit (pipeline/train/fit.py)."""

    params: dict[str, Any] = Field(
        default_factory=lambda: {
            "learning_rate": 0.1,
            "max_depth": 6,
            "min_child_weight": 1.0,
            "subsample": 0.9,
            "colsample_bytree": 0.9,
        }
    )
    num_boost_round: int = Field(
        3000, gt=0, description="cap on trees; early stopping ends sooner (a warning near the cap)"
    )
    early_stopping_rounds: int = Field(50, gt=0)
    min_category_count: int = Field(
        5,
        ge=1,
        description="category levels met fewer times in the training window reach the trees "
        "as missing, like unseen ones (1: every level)",
    )
    category_order: Literal["native", "hit_rate"] = Field(
        "native",
        description="native: XGBoost's partition splits over each category's levels; hit_rate: "
        "each category reaches the trees as its level's position when the training window's "
        "levels are sorted by their hit rate, shrunk towards the window's rate by "
        "category_prior rows (LightGBM's smoothed level sort, done once per fit)",
    )
    category_prior: float = Field(
        50.0,
        ge=0,
        description="prior strength, in declarations, of the hit-rate order's shrinkage "
        "(LightGBM's cat_smooth of 10 in Hessian units is about 50 declarations at a 25 % hit "
        "rate)",
    )
    select_families: bool = Field(
        True,
        description="choose the feature families on the tuning folds (leave one family out; "
        "the report shows each family's effect)",
    )
    refit: bool = Field(
        True,
        description="deploy the chosen configuration refit on every label known at the end of "
        "the data (the evaluated model stays in the run as the evidence)",
    )
    imbalance: Literal[
        "none", "scale_pos_weight", "undersample", "smotenc", "inverse_propensity"
    ] = "none"
    calibration: Literal["isotonic", "platt", "none"] = Field(
        "isotonic",
        description="isotonic (falls back to platt below isotonic_min_hits effective hits in "
        "the calibration window), platt or none",
    )
    isotonic_min_hits: float = Field(
        100.0,
        ge=0,
        description="fewest effective hits (Kish's effective rows x the weighted hit rate) in "
        "the calibration window for isotonic calibration; below it Platt's two parameters are "
        "fitted instead: an isotonic map on a thin window is a staircase of few steps, most "
        "declarations sharing one probability",
    )
    min_calibration_hits: int = Field(
        100,
        ge=1,
        description="the deployed refit's calibration window (split.calibration_days before the "
        "latest known label) reaches back until it holds this many hits: the latest days hold few "
        "known outcomes (label delay), and the inverse-selection weights leave a few effective "
        "hits of many (on the simulator at 200,000 declarations, 30 hits gave 2-9 effective ones "
        "and a red channel expected at 12 % against a true 27 %; 100 gave 10-12)",
    )
    selection_correction: Literal["none", "calibration", "ipw"] = Field(
        "calibration",
        description="weigh inspected declarations by their self-normalised inverse selection "
        "probability (recorded selection_probability where known, else a selection model "
        "fitted on the validation window): calibration: in the calibration only; ipw: in early "
        "stopping too (on the simulator it costs ranking quality: a few heavy random-stratum "
        "rows then pick the number of trees); none: neither. imbalance=inverse_propensity "
        "weighs the training rows the same way",
    )
    anchor_to_random: bool = Field(
        True,
        description="shift the calibrated log-odds so that the mean probability over every "
        "declaration of the last anchor_days equals the hit rate of the random stratum "
        "(recorded selection probability) over the same days: officers' picks depend on what the "
        "features do not show, which no weighting by the features can undo",
    )
    anchor_days: int = Field(
        365,
        gt=0,
        description="the anchor matches the random stratum's hit rate and the mean probability "
        "over the same last anchor_days before the calibration window's end, reaching further "
        "back when they hold fewer than min_random_hits: a longer span holds more random hits (a "
        "narrower level), a shorter one follows the fraud rate's drift (on the simulator, a year "
        "covered the incoming days' truth in 16 of 18 channel-seeds, two years in 13: "
        "bench/honest.py)",
    )
    min_random_hits: int = Field(
        10, ge=1, description="fewest random-stratum hits to anchor on (else no anchoring)"
    )
    propensity_floor: float = Field(
        0.005,
        gt=0,
        le=1,
        description="selection probabilities are clipped at this floor (weights at 1/floor)",
    )
    revenue_model: bool = Field(True, description="rank by P(hit) x E[revenue | hit] if revenue")
    device: Literal["cpu", "cuda"] = "cpu"
    engine: Literal["memory", "dask"] = Field(
        "memory",
        description="memory: xgboost.train in this process; dask: xgboost.dask.train on a "
        "dask.distributed cluster (dask_scheduler, else a LocalCluster of dask_workers), the "
        "training window split into partitions over the workers (needs the `scale` extra)",
    )
    dask_scheduler: str | None = Field(
        None,
        description="address of a running dask scheduler (tcp://host:8786) for engine dask; "
        "None: a LocalCluster on this machine for the fit",
    )
    dask_workers: int = Field(
        2, ge=1, description="LocalCluster worker processes for engine dask (one thread each)"
    )
    dask_partitions_per_worker: int = Field(
        1, ge=1, description="partitions of the training window per dask worker"
    )


def available_cores() -> int:
    """The cores this process may use: its CPU affinity (a container's or `taskset`'s share),
    not the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class ComputeConfig(Section):
    """One thread budget for every library a job runs (pipeline/compute.py applies it)."""

    threads: int = Field(
        default_factory=available_cores,
        ge=1,
        description="threads of XGBoost, LightGBM, CatBoost and OpenMP at any one time, split "
        "between tuning workers; default: the cores this process may use (os.sched_getaffinity)",
    )
    yield_to_load: bool = Field(
        True,
        description="each XGBoost fit takes fewer threads while other processes keep the machine "
        "busy (the cores they leave idle plus one): the same trees, sooner on a shared server",
    )


class TrackingConfig(Section):
    """MLflow: the only place the tracking URI is decided (pipeline/tracking.py applies it)."""

    uri: str | None = Field(
        None, description="None: MLFLOW_TRACKING_URI, else sqlite:///<project>/mlflow.db"
    )
    experiment: str = Field(
        "customs-targeting-{name}",
        description="MLflow experiment of the runs; {name} is the config's name, as for the model",
    )
    registered_model: str = Field(
        "customs-targeting-{name}",
        description="registry name of the model; {name} is the config's name, so runs of "
        "different configs (default, kcs) never move each other's aliases",
    )


class RuleConfig(Section):
    """A risk criterion: declarations matching every condition go red (or are flagged)."""

    name: str
    column: str
    values: list[str] = Field(default_factory=list, description="match when the column is one of")
    prefix: list[str] = Field(default_factory=list, description="match when it starts with one of")


ReferenceLearner = Literal["xgboost", "lightgbm", "catboost"]
REFERENCE_LEARNERS: tuple[ReferenceLearner, ...] = ("xgboost", "lightgbm", "catboost")


class AcceptanceConfig(Section):
    """The decision page's acceptance criteria (pipeline/evaluate/decision.py)."""

    metric: Literal["precision", "recall", "revenue"] = Field(
        "precision", description="what the model must beat its comparators on"
    )
    rate: float | None = Field(
        None, gt=0, le=1, description="control rate judged; None: the historical policy's share"
    )
    baselines: list[str] = Field(
        default_factory=lambda: ["best reference learner", "rules"],
        description="comparators by name ('best reference learner': the strongest of "
        "evaluate.reference_learners); the best must be beaten",
    )
    historical_policy: bool = Field(True, description="the model must beat the historical policy")
    max_calibration_error: float = Field(0.02, gt=0, description="mean |predicted - observed|")
    max_psi: float = Field(0.25, gt=0, description="PSI at or above which a feature has drifted")


class EvaluateConfig(Section):
    """Metrics, baselines and explanations for the reviewer (pipeline/evaluate/)."""

    rates: list[float] = Field(default_factory=lambda: [0.01, 0.02, 0.05, 0.10])
    bootstrap: int = Field(200, ge=0)
    shap_sample: int = Field(2_000, gt=0)
    top_dependence: int = Field(4, ge=0)
    red_waterfalls: int = Field(3, ge=0)
    min_stratum_rows: int = Field(
        30,
        ge=1,
        description="fewest random-stratum rows inside a controlled top n % for an IPW or "
        "doubly-robust estimate; fewer: 'too few to judge'",
    )
    rules: list[RuleConfig] = Field(default_factory=list, description="baseline risk criteria")
    reference_learners: list[ReferenceLearner] = Field(
        default_factory=lambda: list(REFERENCE_LEARNERS),
        description="learners the model must beat on its own windows: a plain XGBoost, "
        "LightGBM and CatBoost on the raw columns (LightGBM and CatBoost: `reference` extra)",
    )
    reference_rounds: int = Field(
        3000, gt=0, description="cap on the reference learners' trees (early stopping ends sooner)"
    )
    reference_min_trees: int = Field(
        50,
        gt=0,
        description="fewest trees a reference learner keeps (early stopping on the validation "
        "log-loss counts from here); a reference with fewer is flagged and never the best",
    )
    reference_min_distinct_scores: int = Field(
        20,
        gt=0,
        description="fewest distinct scores a reference learner gives the test rows; fewer "
        "(a near-constant ranking) is flagged and never the best",
    )
    tune_references: bool = Field(
        False,
        description="also fit each reference learner tuned with the model's budget ('plain "
        "XGBoost (tuned)', 'LightGBM (tuned)', 'CatBoost (tuned)'): tune.n_trials trials on the "
        "model's rolling folds and objective, its conventional parameters as the first trial, "
        "kept unless beaten by more than their noise (tune.chosen_trial); judged beside the "
        "untuned ones, and the best reference may be a tuned one (bench/quality.py turns it on)",
    )
    family_ablation: bool = Field(
        True,
        description="measure each feature family's effect out of sample: the frozen choice "
        "refitted without each kept family and with each dropped one (the model's parameters "
        "and trees, its training window), scored on the test window; one refit per family",
    )
    walk_forward_cutoffs: int = Field(
        3,
        ge=0,
        description="past cut-offs of the walk-forward evaluation (0: none): at each, the "
        "deployment procedure (refit, calibration, anchor, cut-offs) is run on what was known "
        "then and the following walk_forward_days are scored with it; the last stretch ends where "
        "the usable data ends",
    )
    walk_forward_days: int = Field(
        30, gt=0, description="days between cut-offs: each cut-off's refit serves this stretch"
    )
    acceptance: AcceptanceConfig = Field(default_factory=AcceptanceConfig)

    @model_validator(mode="after")
    def _reference_cap_above_its_floor(self) -> EvaluateConfig:
        if self.reference_rounds < self.reference_min_trees:
            raise ValueError(
                f"evaluate.reference_rounds ({self.reference_rounds}) is below "
                f"evaluate.reference_min_trees ({self.reference_min_trees}): every reference "
                "learner would stop short of the minimum and be flagged as a failed fit; raise "
                "the cap or lower the floor"
            )
        return self


class ServeConfig(Section):
    """Channels, capacities and policies of the selectivity export (pipeline/serve/)."""

    channels: dict[str, float] = Field(
        default_factory=lambda: {"red": 0.02, "yellow": 0.06},
        description="channel -> target share of declarations; the rest is green",
    )
    per_office: bool = Field(False, description="cut-offs per office from daily capacities")
    office_capacity: dict[str, float] = Field(
        default_factory=dict, description="office -> red controls per day (with per_office)"
    )
    aeo_factor: float = Field(0.5, ge=0, description="multiplier on AEO traders' selection rate")
    random_rate: float = Field(0.005, ge=0, le=1)
    random_key_env: str = Field(
        "TARGETING_RANDOM_KEY",
        description="environment variable holding the random draw's secret key (never in a "
        "config, a log or the export, which holds its fingerprint); <name>_FILE may name a file",
    )
    random_key_file: Path | None = Field(
        None, description="secret file holding the key when the environment variable is unset"
    )
    rules: list[RuleConfig] = Field(default_factory=list)
    reference_days: int = Field(60, gt=0, description="recent window the cut-offs are set on")
    reasons: int = Field(3, ge=0, description="reason codes returned for red and yellow rows")
    invalid_channel: str = "manual"
    score_last_days: int = Field(30, gt=0, description="`run` scores this last stretch of data")
    random_channel: str = Field("red", description="channel of the random draw's declarations")

    @model_validator(mode="after")
    def _random_draw_within_its_channel(self) -> ServeConfig:
        target = self.channels.get(self.random_channel)
        if target is not None and self.random_rate > target:
            logging.getLogger(__name__).warning(
                "serve.random_rate %.4g is above serve.channels.%s %.4g: the random draw alone "
                "fills the channel beyond its target share",
                self.random_rate,
                self.random_channel,
                target,
            )
        return self

    rank_by: Literal["auto", "probability", "expected_revenue", "blend"] = Field(
        "auto",
        description="score to rank by: probability (the calibrated P(hit); ranks exactly as the "
        "booster's margin), expected_revenue (P x E[revenue | hit]), blend (P x E[revenue | "
        "hit] ** revenue_weight); auto: expected revenue when the model has a revenue part. Ties "
        "are broken by the margin everywhere (pipeline/serve/ranking.py)",
    )
    revenue_weight: float = Field(
        1.0,
        ge=0,
        le=1,
        description="rank_by=blend: weight w of E[revenue | hit] in P x E[revenue | hit] ** w "
        "(0: the probability ranking, 1: the expected-revenue ranking)",
    )
    reason_method: Literal["treeshap_red", "treeshap", "approximate"] = Field(
        "treeshap_red",
        description="reason codes: exact TreeSHAP (pred_contribs) for the most severe channel "
        "and Saabas path attribution (approx_contribs, ~100x faster on CPU) for the others; "
        "treeshap: exact for every controlled row; approximate: Saabas for every one",
    )


class PolicyConfig(Section):
    """One selection policy replayed by the backtest."""

    name: str
    kind: Literal["historical", "rules", "model"] = Field(
        "model",
        description="historical: the recorded controls replayed; rules: the risk criteria only; "
        "model: the model's ranking",
    )
    random_share: float = Field(
        0.0, ge=0, le=1, description="share of each office's capacity drawn at random first"
    )
    explore_share: float = Field(
        0.0, ge=0, le=1, description="share of capacity spent on uncertainty-driven exploration"
    )
    explore: Literal["uncertainty"] = Field(
        "uncertainty", description="exploration draws declarations with weight p(1-p)"
    )
    rules: bool = Field(False, description="apply the risk criteria before the model")
    retrain_every_steps: int | None = Field(
        None, ge=0, description="None: backtest.retrain_every_steps; 0: never retrain"
    )
    rank_by: Literal["probability", "expected_revenue", "blend"] | None = Field(
        None, description="None: serve.rank_by (auto: expected revenue when the model has one)"
    )


def _default_policies() -> list[PolicyConfig]:
    return [
        PolicyConfig(name="historical", kind="historical"),
        PolicyConfig(name="exploit", kind="model"),
        PolicyConfig(name="random_5", kind="model", random_share=0.05),
        PolicyConfig(name="random_10", kind="model", random_share=0.10),
        PolicyConfig(name="uncertainty_10", kind="model", explore_share=0.10),
        PolicyConfig(
            name="random_10_quarterly", kind="model", random_share=0.10, retrain_every_steps=13
        ),
    ]


class BacktestConfig(Section):
    """Policy replays over time (pipeline/backtest/)."""

    step_days: int = Field(7, gt=0)
    retrain_every_steps: int = Field(4, gt=0)
    refresh_every_steps: int | None = Field(
        None, gt=0, description="rebuild the features (new labels) every n steps; None: as retrain"
    )
    weeks: int = Field(52, gt=0)
    warmup_days: int = Field(180, gt=0)
    policies: list[PolicyConfig] = Field(default_factory=_default_policies)
    capacity_rate: float | None = Field(
        None, gt=0, le=1, description="controls per office-day, share of its flow; None: simulate's"
    )
    detection_rate: float | None = Field(
        None, ge=0, le=1, description="P(a control finds a fraud); None: simulate.detection_rate"
    )
    result_delay_days: float | None = Field(
        None, ge=0, description="mean delay to a result; None: simulate.result_delay_days"
    )
    valid_days: int = Field(28, gt=0, description="early-stopping window before each retrain")
    calibration_days: int = Field(28, ge=0, description="calibration window before each retrain")
    gap_days: float = Field(0.0, ge=0, description="gap between the retraining windows")
    params: dict[str, Any] | None = Field(None, description="booster params; None: train.params")
    rules: list[RuleConfig] | None = Field(None, description="None: evaluate.rules")
    random_key: str = Field("backtest", description="key of the random draw and detection draws")
    n_jobs: int = Field(
        1,
        ge=1,
        description="XGBoost threads per fit in the backtest, at most compute.threads (on a busy "
        "machine one thread is far faster than two competing ones)",
    )


class MonitorConfig(Section):
    """Drift alarms (pipeline/evaluate/monitor.py)."""

    recent_days: int = Field(30, gt=0)
    recent_end: dt.date | None = Field(
        None, description="end (exclusive) of the recent window; None: after the last declaration"
    )
    metric: Literal["psi", "ks", "wasserstein"] = Field(
        "psi", description="statistic that sets a numeric feature's level (categories: PSI)"
    )
    bins: int = Field(10, ge=2, description="PSI: quantile bins of the reference window")
    max_levels: int = Field(
        20, ge=1, description="PSI of a category: its most frequent reference levels, rest 'other'"
    )
    psi_warn: float = Field(0.1, gt=0, description="PSI < 0.1 stable, 0.1-0.25 moderate shift")
    psi_alarm: float = Field(0.25, gt=0, description="PSI > 0.25 major shift")
    ks_warn: float = Field(0.1, gt=0)
    ks_alarm: float = Field(0.2, gt=0)
    wasserstein_warn: float = Field(0.1, gt=0, description="in reference standard deviations")
    wasserstein_alarm: float = Field(0.25, gt=0)
    reference_days: int | None = Field(
        90,
        gt=0,
        description="reference = the last n days of the model's training window (None: all of "
        "it); the start of a stream has cold profiles that nothing later resembles",
    )
    exclude_stages: list[str] = Field(
        default_factory=lambda: ["calendar", "profiles", "valuation", "history"],
        description="feature stages (manifest) reported but never raising a level: the calendar "
        "moves by construction; profiles are running statistics of past outcomes that move "
        "with every label and every change of the selection policy",
    )
    exclude_features: list[str] = Field(
        default_factory=lambda: [
            r"_declarations$",
            r"_controls$",
            r"_hits$",
            r"_tenure_days$",
            r"_distinct_",
            r"^reference_support",
        ],
        description="regular expressions of features reported but not judged: cumulative "
        "counts grow with the age of the stream",
    )
    min_rows: int = Field(100, gt=0, description="fewer rows in a window: reported, not judged")
    confidence: float = Field(0.95, gt=0, lt=1, description="of the random stratum's interval")
    interval: Literal["wilson", "clopper_pearson"] = "wilson"
    performance_level: Literal["warn", "alarm"] = Field(
        "alarm",
        description="level raised when the model's expected hit rate falls outside the "
        "random stratum's interval",
    )
    fail_on: Literal["warn", "alarm", "never"] = "alarm"


class Config(Section):
    """One experiment."""

    name: str = "default"
    seed: int = 42
    output_dir: Path = Field(Path("outputs/default"), description="where every artefact goes")
    data: DataConfig = Field(default_factory=DataConfig)
    simulate: SimulateConfig = Field(default_factory=SimulateConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    # the `section.key=value` overrides `load` applied (run names say what differs)
    _overrides: list[str] = PrivateAttr(default_factory=list)

    @property
    def overrides(self) -> list[str]:
        """The `--set` overrides this config was loaded with, in order."""
        return list(self._overrides)

    def __eq__(self, other: object) -> bool:
        """Equal when every setting is, whichever overrides produced them."""
        if not isinstance(other, Config):
            return NotImplemented
        return self.__dict__ == other.__dict__

    @model_validator(mode="before")
    @classmethod
    def _n_jobs_is_compute_threads(cls, data: Any) -> Any:
        """`train.n_jobs` (deprecated) is read as `compute.threads`, with a warning; both given
        and different is an error."""
        train = data.get("train") if isinstance(data, dict) else None
        if not isinstance(train, dict) or "n_jobs" not in train:
            return data
        n_jobs = train["n_jobs"]
        compute = dict(data.get("compute") or {})
        if compute.get("threads", n_jobs) != n_jobs:
            raise ValueError(
                f"train.n_jobs ({n_jobs}) is the deprecated name of compute.threads "
                f"({compute['threads']}): give compute.threads only"
            )
        logging.getLogger(__name__).warning(
            "train.n_jobs is deprecated: it is read as compute.threads=%s (one thread count for "
            "every library); rename it in the config",
            n_jobs,
        )
        compute["threads"] = n_jobs
        rest = {k: v for k, v in train.items() if k != "n_jobs"}
        return {**data, "train": rest, "compute": compute}

    @field_validator("output_dir")
    @classmethod
    def _relative_to_project(cls, value: Path) -> Path:
        return value if value.is_absolute() else PROJECT_ROOT / value

    @model_validator(mode="after")
    def _name_the_registered_model(self) -> Config:
        if "{name}" in self.tracking.registered_model:
            self.tracking.registered_model = self.tracking.registered_model.replace(
                "{name}", self.name
            )
        if "{name}" in self.tracking.experiment:  # runs and model under the same name
            self.tracking.experiment = self.tracking.experiment.replace("{name}", self.name)
        return self

    @model_validator(mode="after")
    def _hit_rate_order_in_memory(self) -> Config:
        # The dask workers read their windows' categories from the feature file as they are:
        # only the memory engine sorts the levels by hit rate.
        if self.train.engine == "dask" and (
            self.train.category_order == "hit_rate" or self.tune.tune_category_order
        ):
            raise ValueError(
                "train.category_order hit_rate (or tune.tune_category_order) needs "
                "train.engine memory: the dask workers read the categories as the file has them"
            )
        return self

    @property
    def paths(self) -> Paths:
        """Where each artefact of this experiment lives (nothing is created here)."""
        return Paths(self.output_dir)


RUNS_FOLDER = LAYOUT["runs"]
LATEST = "latest"  # runs/latest: a link to the newest run's folder
LATEST_POINTER = "latest.txt"  # where links cannot be made: the newest run's id


class Paths:
    """The artefact layout under `output_dir`, in one place so every stage agrees.

    What one training run makes for review (its report) lives in its own folder,
    `runs/<run id>/`, so a run with other settings writes beside the others, not over them;
    `runs/latest` names the newest (`latest`, `report`), and every reader follows it.
    """

    # Each file's place under `root` is the artefact table's (`pipeline.artefacts.LAYOUT`); the
    # attributes are named here so that a reader's `paths.features` is checked by mypy, and a
    # test checks that they are the table's.
    declarations: Path
    outcomes: Path
    ground_truth: Path
    quarantine: Path
    features: Path
    manifest: Path
    snapshot: Path
    last_run: Path
    runs: Path
    explanations: Path
    thresholds: Path
    # `run` replays the held-out last days as incoming declarations, scored with what was
    # known when they began to arrive (not with the end-of-data snapshot)
    incoming: Path
    incoming_snapshot: Path
    scored: Path
    study: Path
    backtest: Path
    monitor: Path

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"  # the data's folder (`targeting simulate` writes its tables here)
        for attribute, place in LAYOUT.items():
            setattr(self, attribute, root / place)

    def run_folder(self, run_id: str) -> Path:
        """The folder of one training run's own artefacts."""
        return self.runs / run_id

    def run_report(self, run_id: str) -> Path:
        """The reviewer's report of one training run."""
        return self.run_folder(run_id) / "report" / "report.html"

    @property
    def latest(self) -> Path:
        """The newest run's folder: `runs/latest` (a link to it), or where links cannot be made,
        the folder `runs/latest.txt` names (`pipeline.jobs.paths.point_latest` writes both)."""
        link = self.runs / LATEST
        pointer = self.runs / LATEST_POINTER
        if not link.is_symlink() and pointer.is_file():
            return self.run_folder(pointer.read_text(encoding="utf-8").strip())
        return link

    @property
    def report(self) -> Path:
        """The newest run's report (through `latest`)."""
        return self.latest / "report" / "report.html"


def _parse_scalar(text: str) -> Any:
    """Parse an override's value the way YAML would (numbers, booleans, lists, null)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _apply_override(raw: dict[str, Any], override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"--set {override!r}: expected section.key=value")
    dotted, _, value = override.partition("=")
    keys = [k for k in dotted.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"--set {override!r}: empty key")
    node = raw
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {override!r}: {key!r} is not a section")
        node = child
    node[keys[-1]] = _parse_scalar(value)


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed beside the last part of a validation error's location."""
    model: Any = Config
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"])
        if item["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(item["loc"][-1]), _known_keys(item["loc"]), n=1)
            hint = ""
            if close:
                hint = f" (did you mean {'.'.join([*map(str, item['loc'][:-1]), close[0]])!r}?)"
            lines.append(f"  unknown key {key!r}{hint}")
        elif not item["loc"]:  # a rule across sections: its message names the keys
            lines.append(f"  {item['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"  {key}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


DEFAULT_CONFIG = Path("configs") / "default.yaml"


def config_path(path: str | Path | None = None) -> Path:
    """The config file a command means: `path` as given when it exists from the current folder,
    else the same relative path under the project root (default: ``configs/default.yaml``), so
    `targeting` finds the project's configs wherever it runs."""
    given = Path(path) if path is not None else DEFAULT_CONFIG
    if given.is_absolute() or given.is_file():
        return given
    under_root = PROJECT_ROOT / given
    return under_root if under_root.is_file() else given


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (the second block would
    silently replace the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(
                    f"the key {key!r} is given twice (lines {seen[key]} and "
                    f"{key_node.start_mark.line + 1}); keep one"
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config, apply `section.key=value` overrides, and validate.

    Relative data paths in the file are resolved against the project root, so a config works
    from any working directory.
    """
    raw: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        file = Path(path)
        source = str(file)
        if not file.is_file():
            raise ConfigError(f"config file not found: {file}")
        try:
            loaded = yaml.load(file.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {file} is not valid YAML: {exc}") from exc
        except ConfigError as exc:
            raise ConfigError(f"config file {file}: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {file}: expected a mapping at the top level")
        raw = loaded or {}
    for override in overrides or []:
        _apply_override(raw, override)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    config._overrides = list(overrides or [])
    data = config.data
    for name in ("declarations", "outcomes", "kcs_dir"):
        value = getattr(data, name)
        if value is not None and not value.is_absolute():
            setattr(data, name, PROJECT_ROOT / value)
    return config


def to_yaml(config: Config) -> str:
    """The fully resolved config as YAML (logged with every run)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def flatten(config: Config) -> dict[str, str]:
    """`section.key` -> value, for MLflow params."""
    out: dict[str, str] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        else:
            out[prefix] = str(node)

    walk("", config.model_dump(mode="json"))
    return out
