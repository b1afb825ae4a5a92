"""The final fit, as chained steps: the windows' rows, rebalance, boost (early stopping, the
booster sliced at its best iteration), calibrate, and an optional revenue model; and the
deployed refit, the same steps on the refit's windows.

Everything stateful is fitted inside its own window: the imbalance treatment (samplers, class
weights: `train.rebalance`) on the training window only, early stopping on the validation window,
the calibrator on the calibration window, anchored on the random stratum (`train.anchor`). The
boosting runs on an `Engine` (`train.engine`): in memory, or on a dask cluster
(`train.dask_engine`) whose workers may read the training window through a file adapter the job
passes in; this module reads no file. `fit` returns a `TargetingModel` and a `FitLog`; it never
talks to MLflow (`tracking` does, at the edge).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import xgboost as xgb
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss

from pipeline.config import Config, TrainConfig
from pipeline.features.featureset import FeatureSet
from pipeline.plan import RefitPlan, Windows
from pipeline.serve.model import Calibration, ModelInfo, TargetingModel
from pipeline.serve.ranking import control_priority
from pipeline.timeaxis import Window
from pipeline.train.anchor import CalibrationWindow, Lodged, anchor_calibration
from pipeline.train.dask_engine import WindowFile
from pipeline.train.engine import (
    Engine,
    Trees,
    cap_warning,
    category_order,
    dmatrix,
    engine_for,
    margin,
    split_params,
)
from pipeline.train.fitlog import FitLog, RefitCounts, RefitLog, Timings, WindowCounts
from pipeline.train.objectives import precision_at, revenue_at
from pipeline.train.propensity import effective_hits, effective_rows, weigh_by_selection
from pipeline.train.rebalance import Rebalanced, rebalance_step
from pipeline.train.revenue import RevenuePart, revenue_step
from pipeline.train.rows import LevelRule, WindowRows, window_rows, with_levels
from pipeline.train.split import rows_in

REPORT_RATES = (0.01, 0.02, 0.05, 0.10)


@dataclass
class FitResult:
    """The evaluated model and what happened while fitting it (params, metrics, counts, timings)."""

    model: TargetingModel
    log: FitLog


@dataclass
class RefitResult:
    """The deployed refit and its log."""

    model: TargetingModel
    log: RefitLog


def calibration_method(
    method: str, y: np.ndarray, weight: np.ndarray | None, isotonic_min_hits: float
) -> tuple[str, str]:
    """The method to fit and why: isotonic falls back to Platt on a window with fewer than
    `isotonic_min_hits` effective hits (a staircase of a few steps is no calibration)."""
    hits = effective_hits(y, weight)
    if method == "isotonic" and hits < isotonic_min_hits:
        return "platt", (
            f"platt (fallback: {hits:.0f} effective hits in {len(y):,} rows, isotonic needs "
            f"{isotonic_min_hits:g})"
        )
    return method, f"{method} ({hits:.0f} effective hits in {len(y):,} rows)"


def calibrate(
    margins: np.ndarray, y: np.ndarray, method: str, weight: np.ndarray | None = None
) -> Calibration:
    """Fit the calibration on a held-out window's margins and labels.

    `weight`: each row's self-normalised inverse selection probability (`ipw_weights`), so the
    calibrated probability is P(hit) over every declaration, not over the inspected ones.
    Isotonic values are kept within [1 / (n + 2), 1 - 1 / (n + 2)] of the n effective rows: a
    plateau without a hit is evidence of a low rate, not of a rate of exactly 0.
    """
    if method == "none":
        return Calibration(method="none")
    if len(np.unique(y)) < 2:
        raise ValueError(
            f"the calibration window needs hits and non-hits, it has {len(y)} rows, "
            f"{int(np.sum(y))} hits"
        )
    if method == "isotonic":
        raw = 1.0 / (1.0 + np.exp(-margins))
        bound = 1.0 / ((effective_rows(weight) if weight is not None else float(len(y))) + 2.0)
        iso = IsotonicRegression(y_min=bound, y_max=1.0 - bound, out_of_bounds="clip").fit(
            raw, y, sample_weight=weight
        )
        return Calibration(
            method="isotonic",
            knots_x=[float(v) for v in iso.X_thresholds_],
            knots_y=[float(v) for v in iso.y_thresholds_],
        )
    if method == "platt":
        logistic = LogisticRegression(C=1e6).fit(
            margins.reshape(-1, 1), y.astype(int), sample_weight=weight
        )
        return Calibration(
            method="platt",
            platt_a=float(logistic.coef_[0, 0]),
            platt_b=float(logistic.intercept_[0]),
        )
    raise ValueError(f"unknown calibration method {method!r}")


def window_metrics(
    rows: WindowRows,
    raw: np.ndarray,
    calibrated: np.ndarray,
    has_revenue: bool,
    margins: np.ndarray | None = None,
) -> dict[str, float]:
    """Ranking and calibration figures of one window's inspected (labelled) rows.

    The population is the inspected declarations of the window, ranked among themselves by the
    booster's margin (`serve.ranking.control_priority`: the order of the calibrated probability,
    with no tie), so these figures are not the report's, which rank every declaration.
    """
    y = rows.y
    out: dict[str, float] = {"labelled": float(len(y)), "hits": float(y.sum())}
    if len(y) == 0:
        return out
    order = control_priority(raw if margins is None else margins)
    if 0 < y.sum() < len(y):
        out["average_precision"] = float(average_precision_score(y, order))
    for rate in REPORT_RATES:
        out[f"precision_at_{round(rate * 100)}"] = precision_at(y, order, rate)
        if has_revenue:
            money = np.where(y == 1, rows.revenue, 0.0)
            out[f"revenue_at_{round(rate * 100)}"] = revenue_at(money, order, rate)
    out["brier_raw"] = float(brier_score_loss(y, raw))
    out["brier_calibrated"] = float(brier_score_loss(y, calibrated))
    out["mean_score"] = float(calibrated.mean())
    out["hit_rate"] = float(y.mean())
    return out


def refit_rounds(best_iteration: int, evaluated_rows: int, refit_rows: int) -> int:
    """Trees of the refit: the evaluated model's best count scaled to the grown training window
    (more rows support proportionally more trees at the same learning rate)."""
    scale = refit_rows / max(evaluated_rows, 1)
    return max(1, round((best_iteration + 1) * max(scale, 1.0)))


@dataclass(frozen=True)
class FitRows:
    """The windows' labelled rows, cast to the model's vocabulary (`levels`) and weighted by
    inverse selection probability when the selection is corrected (`selection_correction`)."""

    rows: dict[str, WindowRows]
    levels: dict[str, list[str]]
    selection_correction: str
    ordered: tuple[str, ...] = ()  # category columns taken as their level's position


def level_rule(min_count: int, order: str, config: Config) -> LevelRule:
    """The vocabulary rule of a fit: levels met `min_count` times, in hit-rate order (shrunk
    by train.category_prior) when `order` is hit_rate."""
    return LevelRule(min_count, order == "hit_rate", config.train.category_prior)


def fit_rows(
    fs: FeatureSet,
    masks: dict[str, np.ndarray],
    rule: LevelRule,
    imbalance: str,
    selection_window: Window,
    config: Config,
) -> FitRows:
    """The rows of each window (`masks`), the vocabulary (`rule`, on the training window), and
    each row's weight; the selection model learns on `selection_window`. The hit-rate order is
    taken on the weighted training rows, so it follows the weights the trees are fitted with."""
    rows = {name: window_rows(fs, mask) for name, mask in masks.items()}
    note = "none"
    if config.train.selection_correction != "none" or imbalance == "inverse_propensity":
        rows, note = weigh_by_selection(fs, masks, rows, selection_window, config)
    levels, ordered = rule.vocabulary(rows["train"])
    rows = {name: with_levels(part, levels, ordered) for name, part in rows.items()}
    return FitRows(rows=rows, levels=levels, selection_correction=note, ordered=ordered)


@dataclass(frozen=True)
class Boosted:
    """The booster sliced at its best iteration."""

    booster: xgb.Booster
    best_iteration: int
    seconds: float
    curve: dict[str, list[float]]  # `validation_curve`: the metric of every round boosted


def boost_step(
    engine: Engine,
    train: WindowRows,
    valid: WindowRows,
    params: dict[str, Any],
    settings: TrainConfig,
    weighted_valid: bool,
) -> Boosted:
    """Boosting with early stopping on the validation window, on the engine."""
    tick = time.perf_counter()
    booster, best, curve = engine.boost(train, valid, params, settings, weighted_valid)
    return Boosted(booster, best, time.perf_counter() - tick, curve)


@dataclass(frozen=True)
class Calibrated:
    """The calibration, anchored on the random stratum when it can be, and how."""

    calibration: Calibration
    anchoring: str
    seconds: float
    method: str  # the method fitted and why (`calibration_method`)
    margins: np.ndarray | None = None  # the booster's margins of the held-out window, once


def calibrate_step(
    trees: Trees,
    held: WindowRows,
    lodged: Lodged,
    window: CalibrationWindow,
    train: TrainConfig,
    weighted: bool,
) -> Calibrated:
    """Calibration on the held-out `window`'s margins (its rows `held`, weighted by inverse
    selection probability when ``weighted``), then the anchor on the random stratum
    (`anchor_calibration`) over the `lodged` declarations (dask workers read the training window:
    `fs` may hold only part)."""
    tick = time.perf_counter()
    weight = held.weight if weighted else None
    method, note = calibration_method(train.calibration, held.y, weight, train.isotonic_min_hits)
    margins = margin(trees.booster, held.X) if method != "none" else None
    calibration = (
        calibrate(margins, held.y, method, weight)
        if margins is not None
        else Calibration(method="none")
    )
    anchoring = "not anchored (train.anchor_to_random is false)"
    if train.anchor_to_random and calibration.method != "none":
        calibration, anchoring = anchor_calibration(calibration, trees, lodged, window, train)
    return Calibrated(calibration, anchoring, time.perf_counter() - tick, note, margins)


def held_out_metrics(
    booster: xgb.Booster,
    calibration: Calibration,
    rows: dict[str, WindowRows],
    with_revenue: bool,
    calibration_margins: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """`window_metrics` of the validation, calibration and test windows (the calibration
    window's margins as the calibration step computed them, when it did)."""
    metrics: dict[str, dict[str, float]] = {}
    for name in ("valid", "calibration", "test"):
        part = rows[name]
        if name == "calibration" and calibration_margins is not None:
            m = calibration_margins
        else:
            m = margin(booster, part.X) if len(part) else np.empty(0)
        raw = 1.0 / (1.0 + np.exp(-m))
        metrics[name] = window_metrics(part, raw, calibration.apply(m), with_revenue, m)
    return metrics


def probability_means(correct: bool, weigh_valid: bool) -> str:
    """What the calibrated probability is the chance of, given the selection correction."""
    if not correct:
        return (
            "P(hit | controlled by the historical policy): early stopping and calibration on "
            "the inspected declarations, unweighted"
        )
    return (
        "The chance that a control of the declaration finds an irregularity, for any "
        "declaration (not only the kind the historical policy picked): "
        + ("early stopping and calibration" if weigh_valid else "calibration")
        + " weighted by inverse selection probability"
    )


@dataclass(frozen=True)
class FitSteps:
    """The parts the fit's steps returned, in their order."""

    data: FitRows
    balanced: Rebalanced
    boosted: Boosted
    calibrated: Calibrated
    revenue: RevenuePart


def evaluated_info(
    config: Config, windows: Windows, imbalance: str, engine: Engine, steps: FitSteps
) -> ModelInfo:
    """What the evaluated model's bundle records of its fit, from the steps' parts."""
    data, balanced, boosted = steps.data, steps.balanced, steps.boosted
    calibrated, revenue = steps.calibrated, steps.revenue
    correct = config.train.selection_correction != "none"
    return ModelInfo(
        role="evaluated",
        windows=windows,
        best_iteration=boosted.best_iteration,
        params=balanced.params,
        imbalance=imbalance,
        objective=config.tune.objective,
        calibration=calibrated.method,
        selection_correction=data.selection_correction,
        anchoring=calibrated.anchoring,
        probability_means=probability_means(correct, config.train.selection_correction == "ipw"),
        revenue_model=revenue.note,
        registered_model=config.tracking.registered_model,
        seed=config.seed,
        engine=config.train.engine,
        boosted_from=engine.boosted_from,
    )


def _check_windows(
    windows: Windows, labels: dict[str, np.ndarray], calibration: WindowRows, train: TrainConfig
) -> None:
    """Clear errors when a window cannot fit, early-stop or calibrate."""
    for name, y in labels.items():
        if y.sum() == 0:
            window: Window = getattr(windows, name)
            raise ValueError(
                f"{window} has {len(y)} labelled declarations and no hit: "
                "cannot fit or early-stop; widen the window (split.*)"
            )
    if train.calibration != "none" and len(calibration) == 0:
        raise ValueError(
            f"{windows.calibration} has no labelled declaration: set split.calibration_days > 0 "
            "or train.calibration: none"
        )


def _window_counts(
    fs: FeatureSet,
    windows: Windows,
    rows: dict[str, WindowRows],
    engine: Engine,
    train_labels: np.ndarray,
    fitted: int,
) -> dict[str, WindowCounts]:
    """Lodged, labelled and fitted declarations of each window (the training window's as the
    engine sees it: `fs` may then hold only its hits)."""
    counts = {}
    for name, part in rows.items():
        window: Window = getattr(windows, name)
        counts[name] = (
            WindowCounts(engine.lodged(fs.lodged_at, window), len(train_labels), fitted)
            if name == "train"
            else WindowCounts(int(window.contains(fs.lodged_at).sum()), len(part), len(part))
        )
    return counts


def window_masks(fs: FeatureSet, windows: Windows) -> dict[str, np.ndarray]:
    """The labelled rows of each of the four windows whose labels were known by its end."""
    return {
        w.name: rows_in(fs, w, windows.labels_known_by(w))
        for w in (windows.train, windows.valid, windows.calibration, windows.test)
    }


def fit(
    fs: FeatureSet,
    windows: Windows,
    params: dict[str, Any],
    config: Config,
    feature_file: WindowFile | None = None,
) -> FitResult:
    """Rebalance, boost, calibrate, add a revenue model: the model to serve and its log.

    ``feature_file``: where `fs` was read from, an adapter the job passes in; on
    train.engine=dask the workers then read the training and validation windows from it rather
    than from `fs` (unless the imbalance treatment resamples rows, which happens here).
    """
    started = time.perf_counter()
    booster_params, imbalance = split_params(params, config)
    engine = engine_for(config.train, imbalance, windows, fs.X.dtypes, feature_file)
    masks = window_masks(fs, windows)
    # The selection model learns on the validation window: every engine holds it whole in
    # memory, and it precedes the calibration window.
    min_count = engine.category_min_count(config.train.min_category_count)
    rule = level_rule(min_count, category_order(params, config), config)
    data = fit_rows(fs, masks, rule, imbalance, windows.valid, config)
    rows = data.rows
    train_labels = engine.training_labels(rows["train"], windows.train)
    labels = {"train": train_labels, "valid": rows["valid"].y}
    _check_windows(windows, labels, rows["calibration"], config.train)
    balanced = rebalance_step(
        rows["train"], labels["train"], imbalance, booster_params, config.seed, engine.resamples()
    )
    prepare_s = time.perf_counter() - started

    correct = config.train.selection_correction != "none"
    weigh_valid = config.train.selection_correction == "ipw"
    boosted = boost_step(
        engine, balanced.rows, rows["valid"], balanced.params, config.train, weigh_valid
    )
    calibrated = calibrate_step(
        Trees(boosted.booster, data.levels, data.ordered),
        rows["calibration"],
        Lodged(fs, engine.memory_from()),
        CalibrationWindow.of_evaluated(windows),
        config.train,
        correct,
    )
    revenue = revenue_step(fs, rows["train"], rows["valid"], config)
    metrics = held_out_metrics(
        boosted.booster, calibrated.calibration, rows, revenue.in_data, calibrated.margins
    )
    seconds = (boosted.seconds, calibrated.seconds, revenue.seconds)
    timings = Timings(prepare_s, *seconds, total_s=time.perf_counter() - started)
    steps = FitSteps(data, balanced, boosted, calibrated, revenue)
    info = evaluated_info(config, windows, imbalance, engine, steps)
    model = TargetingModel(
        booster=boosted.booster,
        calibration=calibrated.calibration,
        feature_names=[str(c) for c in fs.X.columns],
        categories=data.levels,
        ordered=list(data.ordered),
        revenue_booster=revenue.booster,
        info=info,
    )
    cap = cap_warning(boosted.best_iteration, config.train.num_boost_round, "final fit")
    log = FitLog(
        params=balanced.params,
        imbalance=imbalance,
        category_order="hit_rate" if data.ordered else "native",
        best_iteration=boosted.best_iteration,
        windows=windows,
        rows=_window_counts(fs, windows, rows, engine, labels["train"], balanced.fitted),
        metrics=metrics,
        revenue_model=revenue.note,
        selection_correction=data.selection_correction,
        anchoring=calibrated.anchoring,
        boosted_from=engine.boosted_from,
        timings=timings,
        warnings=[cap] if cap else [],
        curve=boosted.curve,
    )
    return FitResult(model=model, log=log)


@dataclass(frozen=True)
class RefitBasis:
    """What a refit takes from the evaluated model: its bundle (features, info, revenue part),
    the parameters it boosted with, its imbalance treatment, its best iteration and the
    labelled training rows that count was found on."""

    model: TargetingModel
    params: dict[str, Any]
    imbalance: str
    best_iteration: int
    labelled_rows: int

    @classmethod
    def of_fit(cls, result: FitResult) -> RefitBasis:
        """The basis of a fit just made (`targeting train`)."""
        log = result.log
        return cls(
            result.model,
            dict(log.params),
            log.imbalance,
            log.best_iteration,
            log.rows["train"].labelled,
        )

    @classmethod
    def of_model(cls, model: TargetingModel, fs: FeatureSet, windows: Windows) -> RefitBasis:
        """The basis of an evaluated bundle read back (the walk-forward evaluation): its
        labelled training rows in its `windows` (the run plan's) counted again on `fs`, as `fit`
        counted them."""
        info = model.info
        if info.best_iteration is None:
            raise ValueError("the model records no best iteration: it cannot be refit")
        labelled = int(rows_in(fs, windows.train, windows.labels_known_by(windows.train)).sum())
        return cls(
            model, dict(info.params), info.imbalance or "none", info.best_iteration, labelled
        )


def deployed_model(
    basis: RefitBasis,
    refit_windows: RefitPlan,
    rounds: int,
    booster: xgb.Booster,
    steps: tuple[FitRows, Calibrated, RevenuePart],
) -> TargetingModel:
    """The refit's bundle: every fact of it its own (its calibration, selection correction and
    anchor were fitted on its windows, not the evaluated model's)."""
    data, calibrated, revenue = steps
    modelled = "selection model" in data.selection_correction
    info = replace(
        basis.model.info,
        role="deployed",
        refit=replace(refit_windows, selection=refit_windows.selection if modelled else None),
        refit_trees=rounds,
        revenue_model=revenue.note,
        calibration=calibrated.method,
        selection_correction=data.selection_correction,
        anchoring=calibrated.anchoring,
    )
    return TargetingModel(
        booster=booster,
        calibration=calibrated.calibration,
        feature_names=list(basis.model.feature_names),
        categories=data.levels,
        ordered=list(data.ordered),
        revenue_booster=revenue.booster,
        info=info,
    )


def refit(
    fs: FeatureSet,
    refit_windows: RefitPlan,
    evaluated: FitResult | RefitBasis,
    config: Config,
) -> RefitResult:
    """The deployed model: the evaluated model's configuration (parameters, features, imbalance
    treatment) boosted in memory on every label known at the end of the data, with the evaluated
    model's trees scaled to the grown window, calibrated on the latest labelled stretch: the
    fit's steps (rows, rebalance, calibrate, revenue) on the refit's windows.

    No early stopping: no later labelled window exists to stop on; the evaluated model's best
    iteration, found on its own validation window, sets the number of trees.
    """
    started = time.perf_counter()
    basis = evaluated if isinstance(evaluated, RefitBasis) else RefitBasis.of_fit(evaluated)
    known_by = refit_windows.labels_known_by
    masks = {
        "train": rows_in(fs, refit_windows.train, known_by),
        "calibration": rows_in(fs, refit_windows.calibration, known_by),
    }
    # The selection model learns on the training window's last stretch, not on the calibration
    # rows it weighs (fitted and applied on the same rows, it would explain their selection away).
    selection_window = refit_windows.selection or refit_windows.calibration
    # The refit sorts its own training window's levels when the evaluated model sorted its own.
    order = "hit_rate" if basis.model.ordered else "native"
    rule = level_rule(config.train.min_category_count, order, config)
    data = fit_rows(fs, masks, rule, basis.imbalance, selection_window, config)
    rows = data.rows
    if rows["train"].y.sum() == 0:
        raise ValueError(f"{refit_windows.train} has no labelled hit: cannot refit")
    balanced = rebalance_step(
        rows["train"], rows["train"].y, basis.imbalance, dict(basis.params), config.seed, True
    )
    rounds = refit_rounds(basis.best_iteration, basis.labelled_rows, len(rows["train"]))
    booster = xgb.train(balanced.params, dmatrix(balanced.rows), num_boost_round=rounds)
    if config.train.calibration != "none" and len(np.unique(rows["calibration"].y)) < 2:
        raise ValueError(
            f"{refit_windows.calibration} needs hits and non-hits to calibrate the refit: "
            "set split.calibration_days larger or train.refit false"
        )
    correct = config.train.selection_correction != "none"
    calibrated = calibrate_step(
        Trees(booster, data.levels, data.ordered),
        rows["calibration"],
        Lodged(fs),
        CalibrationWindow.of_refit(refit_windows),
        config.train,
        correct,
    )
    evaluated_revenue = basis.model.revenue_booster
    revenue = revenue_step(
        fs,
        rows["train"],
        rows["calibration"],
        config,
        evaluated_revenue.num_boosted_rounds() if evaluated_revenue is not None else 100,
    )
    model = deployed_model(basis, refit_windows, rounds, booster, (data, calibrated, revenue))
    refit_log = RefitLog(
        windows=refit_windows,
        trees=rounds,
        rows={name: RefitCounts(len(part), int(part.y.sum())) for name, part in rows.items()},
        calibration=calibrated.method,
        selection_correction=data.selection_correction,
        anchoring=calibrated.anchoring,
        revenue_model=revenue.note,
        seconds=time.perf_counter() - started,
    )
    return RefitResult(model=model, log=refit_log)
