"""The final fit, as chained steps: the windows' rows, rebalance, boost (early stopping, the
booster sliced at its best iteration), calibrate, and an optional revenue model.

Everything stateful is fitted inside its own window: the imbalance treatment (samplers, class
weights) on the training window only, early stopping on the validation window, the calibrator on
the calibration window. The boosting runs on an `Engine`: in memory, or on a dask cluster
(`train.dask_engine`) whose workers may read the training window through a file adapter the job
passes in; this module reads no file. `fit` returns a `TargetingModel` and a `FitLog`; it never
talks to MLflow (`tracking` does, at the edge).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import pandas as pd
import xgboost as xgb
from imblearn.over_sampling import SMOTE, SMOTENC
from imblearn.under_sampling import RandomUnderSampler
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss

from pipeline.config import Config
from pipeline.features.featureset import FeatureSet
from pipeline.serve.model import Calibration, DeployedRefit, ModelInfo, TargetingModel
from pipeline.serve.ranking import control_priority
from pipeline.timeaxis import Window, Windows
from pipeline.train.dask_engine import DaskEngine, FileReads, WindowFile
from pipeline.train.fitlog import (
    FitLog,
    RefitCounts,
    RefitLog,
    Timings,
    WindowCounts,
    validation_curve,
)
from pipeline.train.objectives import precision_at, revenue_at
from pipeline.train.rows import WindowRows
from pipeline.train.split import RefitWindows, rows_in

IMBALANCE_METHODS = ("none", "scale_pos_weight", "undersample", "smotenc", "inverse_propensity")
REPORT_RATES = (0.01, 0.02, 0.05, 0.10)
EVAL_METRIC = "aucpr"
MIN_REVENUE_HITS = 30
_MISSING_LEVEL = "__missing__"


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


def frequent_levels(X: pd.DataFrame, min_count: int) -> dict[str, list[str]]:
    """The levels of each category column seen at least ``min_count`` times in ``X`` (the
    training rows): the model's vocabulary. Rarer levels reach the trees as missing, as unseen
    ones do at serving time, the way LightGBM pools its rarest categories: a level met a handful
    of times cannot support a split of its own, and XGBoost sorts every level at every node."""
    out = {}
    for column in X.columns:
        values = X[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            counts = np.bincount(
                values.cat.codes.to_numpy() + 1, minlength=len(values.cat.categories) + 1
            )
            kept = counts[1:] >= max(min_count, 1)
            if not kept.any() and len(kept):
                # XGBoost refuses a category column without a level: a column no level of which
                # is frequent keeps its most frequent one (the rest reach the trees as missing).
                kept[int(np.argmax(counts[1:]))] = True
            out[str(column)] = [str(v) for v in values.cat.categories[kept]]
    return out


def cast_levels(X: pd.DataFrame, levels: dict[str, list[str]]) -> pd.DataFrame:
    """``X`` with each category column cast to ``levels`` (other levels become missing)."""
    cast = {c: X[c].cat.set_categories(kept) for c, kept in levels.items() if c in X.columns}
    return X.assign(**cast) if cast else X


def with_levels(rows: WindowRows, levels: dict[str, list[str]]) -> WindowRows:
    """``rows`` with each category column cast to ``levels`` (other levels become missing)."""
    return replace(rows, X=cast_levels(rows.X, levels))


def window_rows(fs: FeatureSet, mask: np.ndarray) -> WindowRows:
    """The rows of `fs` selected by `mask` (labelled rows only are expected)."""
    keep = np.asarray(mask, dtype=bool)
    return WindowRows(
        X=fs.X.loc[keep].reset_index(drop=True),
        y=fs.y.to_numpy(dtype=float)[keep],
        weight=fs.sample_weight.fillna(1.0).to_numpy(dtype=float)[keep],
        revenue=fs.revenue_recovered.to_numpy(dtype=float)[keep],
    )


def split_params(params: dict[str, Any], config: Config) -> tuple[dict[str, Any], str]:
    """XGBoost parameters (objective, seed, threads, device added) and the imbalance method.

    `params` may carry ``imbalance`` (a tuned choice); otherwise `config.train.imbalance` holds.
    """
    imbalance = str(params.get("imbalance", config.train.imbalance))
    if imbalance not in IMBALANCE_METHODS:
        raise ValueError(
            f"unknown imbalance method {imbalance!r}; choose one of {IMBALANCE_METHODS}"
        )
    booster = {k: v for k, v in params.items() if k != "imbalance"}
    booster.update(
        objective="binary:logistic",
        eval_metric=EVAL_METRIC,
        tree_method="hist",
        seed=config.seed,
        nthread=config.compute.threads,
        device=config.train.device,
    )
    return booster, imbalance


def _smotenc(rows: WindowRows, seed: int) -> WindowRows:
    """SMOTE-NC on the training window: NaN imputed inside the window first (median; a
    placeholder level for categories), synthetic rows appended; original rows kept as they were."""
    X = rows.X
    categorical = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]
    numeric = [c for c in X.columns if c not in categorical]
    filled = X.assign(
        **{c: X[c].astype(object).where(X[c].notna(), _MISSING_LEVEL) for c in categorical},
        **{
            c: X[c].astype(float).fillna(X[c].median() if X[c].notna().any() else 0.0)
            for c in numeric
        },
    )
    positives = int((rows.y == 1).sum())
    if positives < 2:
        raise ValueError(f"smotenc needs at least 2 hits in the training window, found {positives}")
    k = min(5, positives - 1)
    sampler: SMOTENC | SMOTE
    if categorical and numeric:
        sampler = SMOTENC(
            categorical_features=[X.columns.get_loc(c) for c in categorical],
            k_neighbors=k,
            random_state=seed,
        )
    elif numeric:
        sampler = SMOTE(k_neighbors=k, random_state=seed)
    else:
        raise ValueError("smotenc needs at least one numeric feature")
    resampled, y_new = sampler.fit_resample(filled, rows.y.astype(int))
    synthetic = pd.DataFrame(resampled).iloc[len(X) :].reset_index(drop=True)
    synthetic = synthetic.assign(
        **{c: pd.Categorical(synthetic[c], categories=X[c].cat.categories) for c in categorical},
        **{c: synthetic[c].astype(float) for c in numeric},
    )[list(X.columns)]
    extra = len(synthetic)
    return WindowRows(
        X=pd.concat([X, synthetic], ignore_index=True),
        y=np.concatenate([rows.y, np.asarray(y_new, dtype=float)[len(X) :]]),
        weight=np.concatenate([np.ones(len(X)), np.ones(extra)]),
        revenue=np.concatenate([rows.revenue, np.full(extra, np.nan)]),
    )


def positive_weight(y: np.ndarray) -> dict[str, float]:
    """XGBoost's scale_pos_weight for labels ``y``: non-hits per hit (1 without hits)."""
    positives = float((y == 1).sum())
    negatives = float((y == 0).sum())
    return {"scale_pos_weight": negatives / positives if positives else 1.0}


def rebalance(rows: WindowRows, method: str, seed: int) -> tuple[WindowRows, dict[str, Any]]:
    """Apply the imbalance treatment to the training window; returns rows and extra params.

    Weights are the rows' self-normalised inverse selection probabilities (`ipw_weights`) only
    for ``inverse_propensity``; every other method trains unweighted.
    """
    plain = WindowRows(rows.X, rows.y, np.ones(len(rows)), rows.revenue)
    if method == "none":
        return plain, {}
    if method == "inverse_propensity":
        return rows, {}
    if method == "scale_pos_weight":
        return plain, positive_weight(rows.y)
    if method == "undersample":
        # Sample row positions rather than the frame so that category dtypes survive untouched.
        sampler = RandomUnderSampler(random_state=seed)
        sampler.fit_resample(np.arange(len(rows)).reshape(-1, 1), rows.y.astype(int))
        keep = np.sort(sampler.sample_indices_)
        return WindowRows(
            rows.X.iloc[keep].reset_index(drop=True),
            rows.y[keep],
            np.ones(len(keep)),
            rows.revenue[keep],
        ), {}
    if method == "smotenc":
        return _smotenc(rows, seed), {}
    raise ValueError(f"unknown imbalance method {method!r}")


def dmatrix(rows: WindowRows, weighted: bool = True) -> xgb.DMatrix:
    """An XGBoost matrix with native categorical support."""
    return xgb.DMatrix(
        rows.X,
        label=rows.y,
        weight=rows.weight if weighted else None,
        enable_categorical=True,
    )


def train_booster(
    dtrain: xgb.DMatrix,
    dvalid: xgb.DMatrix,
    params: dict[str, Any],
    num_boost_round: int,
    early_stopping_rounds: int,
    callbacks: list[xgb.callback.TrainingCallback] | None = None,
    curve: dict[str, list[float]] | None = None,
) -> tuple[xgb.Booster, int]:
    """Boost with early stopping on the validation matrix; the booster sliced at the best round.
    ``curve``, when given, receives the validation metric of every round (``valid.<metric>``)."""
    history: dict[str, dict[str, list[float]]] = {}
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=num_boost_round,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=early_stopping_rounds,
        callbacks=callbacks,
        verbose_eval=False,
        evals_result=history,
    )
    if curve is not None:
        curve.update(validation_curve(history))
    best = int(booster.best_iteration)
    return booster[: best + 1], best


# --- selection correction: what each inspected declaration stands for -------------------------


def recorded_propensity(fs: FeatureSet) -> np.ndarray:
    """The recorded selection probability of each row in (0, 1] (`FeatureSet.probability`: a
    draw at p = 1 is 1, not unknown), NaN where none was recorded."""
    p = fs.probability.to_numpy(dtype=float)
    return np.where((p > 0) & (p <= 1), p, np.nan)


def fit_selection_model(fs: FeatureSet, window: Window, config: Config) -> xgb.Booster:
    """P(controlled | features): a small XGBoost fitted on every declaration lodged in `window`
    (the validation window in `fit`), controlled or not, for rows whose selection probability
    is unknown."""
    inside = window.contains(fs.lodged_at)
    controlled = fs.y.notna().to_numpy()[inside].astype(float)
    if controlled.sum() == 0 or controlled.sum() == len(controlled):
        raise ValueError(
            f"{window}: {int(controlled.sum())} of {len(controlled)} declarations controlled; "
            "a selection model needs controlled and uncontrolled ones (train.selection_correction)"
        )
    params = {
        "objective": "binary:logistic",
        "max_depth": 3,
        "learning_rate": 0.2,
        "min_child_weight": 5.0,
        "tree_method": "hist",
        "max_bin": 64,
        "seed": config.seed,
        "nthread": config.compute.threads,
        "device": config.train.device,
    }
    matrix = xgb.DMatrix(fs.X.loc[inside], label=controlled, enable_categorical=True)
    return xgb.train(params, matrix, num_boost_round=40)


def selection_propensity(
    fs: FeatureSet, mask: np.ndarray, selection: xgb.Booster | None, floor: float
) -> np.ndarray:
    """Selection probability of the rows in `mask`: the recorded one where known, else the
    selection model's (1 without a model), clipped at `floor`."""
    keep = np.asarray(mask, dtype=bool)
    recorded = recorded_propensity(fs)[keep]
    estimated = np.ones(int(keep.sum()))
    unknown = np.isnan(recorded)
    if selection is not None and unknown.any():
        X = fs.X.loc[keep].loc[unknown]
        estimated[unknown] = np.asarray(selection.inplace_predict(X), dtype=float)
    return np.clip(np.where(unknown, estimated, recorded), floor, 1.0)


def ipw_weights(propensity: np.ndarray) -> np.ndarray:
    """Self-normalised inverse-propensity weights (mean 1 over the rows)."""
    weight = 1.0 / np.asarray(propensity, dtype=float)
    return weight / weight.mean() if len(weight) else weight


def effective_rows(weight: np.ndarray) -> float:
    """Kish's effective sample size of weighted rows: (sum w)^2 / sum w^2."""
    return float(weight.sum() ** 2 / (weight**2).sum()) if len(weight) else 0.0


@dataclass(frozen=True)
class RandomStratum:
    """The random stratum of a span: its self-normalised IPW hit rate and its counts."""

    rate: float
    rows: int
    hits: int
    effective_rows: float  # Kish's effective rows (the rows themselves at one selection rate)

    @property
    def effective_hits(self) -> float:
        """The hits an unweighted sample of `effective_rows` with this hit rate would hold."""
        return self.rate * self.effective_rows if self.rows else 0.0


def random_stratum_rows(fs: FeatureSet, span: Window, known_by: pd.Timestamp | None) -> np.ndarray:
    """Mask of the random stratum's rows (`FeatureSet.stratum`) lodged in `span` whose label
    was known by `known_by` (any time when None)."""
    keep = fs.stratum & fs.labelled.to_numpy() & span.contains(fs.lodged_at)
    if known_by is not None:
        known = pd.to_datetime(fs.label_known_at) < known_by
        keep &= np.asarray(known.fillna(False), dtype=bool)
    return keep


def random_stratum_rate(
    fs: FeatureSet, span: Window, known_by: pd.Timestamp | None
) -> RandomStratum:
    """Hit rate of every declaration estimated on the random stratum (rows with a recorded
    selection probability) lodged in `span`, labels known by `known_by`: self-normalised IPW."""
    probability = recorded_propensity(fs)
    keep = random_stratum_rows(fs, span, known_by)
    y = fs.y.to_numpy(dtype=float)[keep]
    weight = 1.0 / probability[keep]
    rate = float((weight * y).sum() / weight.sum()) if len(y) else float("nan")
    return RandomStratum(rate, int(keep.sum()), int(y.sum()), effective_rows(weight))


def anchor_shift(probability: np.ndarray, target: float) -> float:
    """The log-odds shift that makes the mean of `probability` equal `target` (bisection)."""
    if not 0.0 < target < 1.0 or len(probability) == 0:
        return 0.0
    from scipy.optimize import brentq

    from pipeline.serve.model import shift_log_odds

    def gap(shift: float) -> float:
        return float(shift_log_odds(probability, shift).mean() - target)

    if gap(-20.0) > 0 or gap(20.0) < 0:
        return 0.0
    return float(brentq(gap, -20.0, 20.0, xtol=1e-6))


# Quantiles of the anchored level kept in the bundle: (k + 1/2) %, so the 3rd and the 98th are
# the 2.5 % and 97.5 % ends of its 95 % interval.
LEVEL_QUANTILES = 100
LEVEL_GRID_ROWS = 20_000  # rows the level's grid of shifts is read on (`level_shifts`)


def level_shifts(anchored: np.ndarray, stratum: RandomStratum) -> list[float]:
    """The anchored level's uncertainty, as log-odds shifts of the anchored probabilities.

    The random stratum is the only unbiased evidence of the level (officers pick on what the
    features do not show), so the level is as uncertain as its hit rate: Jeffreys' posterior
    Beta(hits + 1/2, rows - hits + 1/2) on the effective counts. Each of `LEVEL_QUANTILES`
    equally spaced quantiles of that rate becomes the shift that moves the mean of `anchored`
    (every declaration of the anchor's span) onto it, read off a grid of shifts: the mean is
    monotone in the shift, so interpolating its inverse is exact to the grid's curvature.
    """
    from scipy.stats import beta

    from pipeline.serve.model import shift_log_odds

    # The means over a sorted, evenly thinned copy (at most LEVEL_GRID_ROWS rows, each the middle
    # of its stretch of the order): the quantiles need the level to a fraction of a per cent, and
    # every anchored fit (a backtest's retrains too) would otherwise pay 241 passes over the span.
    ordered = np.sort(np.asarray(anchored, dtype=float))
    step = max(1, -(-len(ordered) // LEVEL_GRID_ROWS))
    thinned = ordered[step // 2 :: step]
    grid = np.linspace(-6.0, 6.0, 241)
    means = np.array([shift_log_odds(thinned, d).mean() for d in grid])
    hits, rows = stratum.effective_hits, stratum.effective_rows
    quantiles = (np.arange(LEVEL_QUANTILES) + 0.5) / LEVEL_QUANTILES
    rates = beta.ppf(quantiles, hits + 0.5, rows - hits + 0.5)
    return [round(float(d), 6) for d in np.interp(rates, means, grid)]


def anchor_span(
    fs: FeatureSet, available: Window, known_by: pd.Timestamp | None, config: Config
) -> Window:
    """The last `train.anchor_days` of `available`, reaching further back (day by day, to the
    start of `available` at most) when they hold fewer than `train.min_random_hits` random-stratum
    hits: a short span follows the fraud rate's drift, but a level needs hits to rest on."""
    days = pd.Timedelta(days=config.train.anchor_days)
    start = max(available.start, available.end - days)
    hit = random_stratum_rows(fs, available, known_by) & (fs.y.to_numpy(dtype=float) == 1.0)
    times = np.sort(pd.to_datetime(fs.lodged_at[hit]).to_numpy())
    needed = config.train.min_random_hits
    if len(times) >= needed and times[-needed] < start:
        start = max(available.start, pd.Timestamp(times[-needed]).floor("D"))
    return Window("anchor", start, available.end)


def anchor_calibration(
    calibration: Calibration,
    booster: xgb.Booster,
    fs: FeatureSet,
    windows: Windows,
    config: Config,
    earliest: pd.Timestamp | None = None,
    levels: dict[str, list[str]] | None = None,
) -> tuple[Calibration, str]:
    """Shift the calibrated log-odds so the mean probability over every declaration (controlled
    or not) of the last `train.anchor_days` before the calibration window's end is the random
    stratum's hit rate over the same days, labels known by the test window
    (`random_stratum_rate`), and keep the level's uncertainty (`level_shifts`). A refit calls
    it with its own windows."""
    from pipeline.serve.model import shift_log_odds

    window = windows.calibration if windows.calibration.days > 0 else windows.valid
    first = pd.Timestamp(pd.to_datetime(fs.lodged_at).min())
    if earliest is not None:  # `fs` holds every declaration only from `earliest` on
        first = max(first, earliest)
    known_by = windows.labels_known_by(window)
    span = anchor_span(fs, Window("data", first, window.end), known_by, config)
    stratum = random_stratum_rate(fs, span, known_by)
    if stratum.hits < config.train.min_random_hits:
        return calibration, (
            f"not anchored: {stratum.hits} random-stratum hits ({stratum.rows} rows) in {span}, "
            f"need {config.train.min_random_hits}"
        )
    # The mean probability over every declaration of the same span as the random rows: the two
    # sides of the match come from the same stretch of time (fraud drifts).
    inside = span.contains(fs.lodged_at)
    X = fs.X.loc[inside, booster.feature_names] if booster.feature_names else fs.X.loc[inside]
    p = calibration.apply(margin(booster, cast_levels(X, levels or {})))
    shift = anchor_shift(p, stratum.rate)
    bounds = level_shifts(shift_log_odds(p, shift), stratum)
    anchored = Calibration(
        **{**calibration.__dict__, "shift": calibration.shift + shift, "level_shifts": bounds}
    )
    return anchored, (
        f"anchored on the random stratum: {stratum.hits} hits in {stratum.rows} rows, hit rate "
        f"{stratum.rate:.2%}; mean probability over {int(inside.sum()):,} declarations of {span} "
        f"{p.mean():.2%} -> {stratum.rate:.2%} (log-odds shift {shift:+.3f}); the level's 95 % "
        f"interval is a further shift of [{bounds[2]:+.3f}, {bounds[97]:+.3f}]"
    )


def margin(booster: xgb.Booster, X: pd.DataFrame) -> np.ndarray:
    """Raw log-odds of a booster on a frame."""
    return np.asarray(booster.inplace_predict(X, predict_type="margin"), dtype=float)


def effective_hits(y: np.ndarray, weight: np.ndarray | None) -> float:
    """Hits an unweighted sample would need to carry the same evidence: Kish's effective rows
    times the weighted hit rate (the plain hit count without weights)."""
    y = np.asarray(y, dtype=float)
    if weight is None or len(y) == 0:
        return float(y.sum())
    w = np.asarray(weight, dtype=float)
    return effective_rows(w) * float((w * y).sum() / w.sum())


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


def objective_value(
    objective: str, y: np.ndarray, score: np.ndarray, revenue: np.ndarray, at_rate: float
) -> float:
    """The tuning objective on one window: average precision, precision@n% or revenue@n%."""
    if objective == "average_precision":
        return float(average_precision_score(y, score)) if y.sum() > 0 else 0.0
    if objective == "precision_at":
        return precision_at(y, score, at_rate)
    if objective == "revenue_at":
        return revenue_at(np.where(y == 1, revenue, 0.0), score, at_rate)
    raise ValueError(f"unknown objective {objective!r}")


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


def has_revenue(fs: FeatureSet) -> bool:
    """Whether any hit in the data has a recorded revenue."""
    hits = fs.y.to_numpy(dtype=float) == 1
    return bool(np.isfinite(fs.revenue_recovered.to_numpy(dtype=float)[hits]).any())


def revenue_params(config: Config) -> dict[str, Any]:
    """The revenue model's XGBoost parameters: a Tweedie regressor of E[revenue | hit]."""
    return {
        "objective": "reg:tweedie",
        "tweedie_variance_power": 1.5,
        "learning_rate": 0.1,
        "max_depth": 4,
        "min_child_weight": 5.0,
        "tree_method": "hist",
        "seed": config.seed,
        "nthread": config.compute.threads,
        "device": config.train.device,
    }


def fit_revenue_model(
    train: WindowRows, valid: WindowRows, config: Config, fallback_rounds: int = 100
) -> tuple[xgb.Booster | None, str]:
    """E[revenue | hit]: a Tweedie XGBoost regressor on the training window's hits, early-stopped
    on `valid`'s; with fewer than 10 hits there, `fallback_rounds` trees (a refit passes the
    evaluated model's count).

    Returns (None, reason) when the data cannot support one.
    """
    if not config.train.revenue_model:
        return None, "disabled (train.revenue_model is false)"
    on_train = (train.y == 1) & np.isfinite(train.revenue)
    if on_train.sum() < MIN_REVENUE_HITS:
        return None, (
            f"skipped: {int(on_train.sum())} hits with revenue in the training window "
            f"(need {MIN_REVENUE_HITS}); the data has no usable revenue"
        )
    params = revenue_params(config)
    dtrain = xgb.DMatrix(
        train.X.loc[on_train],
        label=np.clip(train.revenue[on_train], 0, None),
        enable_categorical=True,
    )
    on_valid = (valid.y == 1) & np.isfinite(valid.revenue)
    if on_valid.sum() >= 10:
        dvalid = xgb.DMatrix(
            valid.X.loc[on_valid],
            label=np.clip(valid.revenue[on_valid], 0, None),
            enable_categorical=True,
        )
        booster, best = train_booster(
            dtrain, dvalid, params, config.train.num_boost_round, config.train.early_stopping_rounds
        )
        return booster, f"tweedie regressor on {int(on_train.sum())} hits, {best + 1} trees"
    booster = xgb.train(params, dtrain, num_boost_round=fallback_rounds)
    return booster, (
        f"tweedie regressor on {int(on_train.sum())} hits, {fallback_rounds} trees "
        f"({int(on_valid.sum())} held-out hits with revenue: too few to stop on)"
    )


# The best iteration this close to train.num_boost_round means the cap, not early stopping,
# ended the boosting: the model may be short of trees.
CAP_SHARE = 0.95


def cap_warning(best_iteration: int, num_boost_round: int, where: str) -> str | None:
    """A warning when boosting stopped within 5 % of the round cap, else None."""
    if best_iteration + 1 >= CAP_SHARE * num_boost_round:
        return (
            f"{where}: the best iteration ({best_iteration + 1} trees) is within "
            f"{100 * (1 - CAP_SHARE):.0f} % of train.num_boost_round={num_boost_round}; the model "
            "may be short of trees: raise train.num_boost_round or the learning rate"
        )
    return None


def refit_rounds(best_iteration: int, evaluated_rows: int, refit_rows: int) -> int:
    """Trees of the refit: the evaluated model's best count scaled to the grown training window
    (more rows support proportionally more trees at the same learning rate)."""
    scale = refit_rows / max(evaluated_rows, 1)
    return max(1, round((best_iteration + 1) * max(scale, 1.0)))


def weigh_by_selection(
    fs: FeatureSet,
    masks: dict[str, np.ndarray],
    rows: dict[str, WindowRows],
    selection_window: Window,
    config: Config,
) -> tuple[dict[str, WindowRows], str]:
    """Each window's rows weighted by self-normalised inverse selection probability: the recorded
    probability where known, else a selection model fitted on every declaration of
    `selection_window` (a refit calls this with its own windows). Returns the rows and a note."""
    recorded = recorded_propensity(fs)
    needs_model = any(
        bool(np.isnan(recorded[np.asarray(m, dtype=bool)]).any()) for m in masks.values()
    )
    # Every declaration of the training window controlled (KCS): nothing was selected, p = 1.
    everyone = bool(fs.y.notna().to_numpy()[selection_window.contains(fs.lodged_at)].all())
    selection = (
        fit_selection_model(fs, selection_window, config) if needs_model and not everyone else None
    )
    out: dict[str, WindowRows] = {}
    effective: dict[str, float] = {}
    for name, part in rows.items():
        propensity = selection_propensity(fs, masks[name], selection, config.train.propensity_floor)
        weight = ipw_weights(propensity)
        out[name] = WindowRows(part.X, part.y, weight, part.revenue)
        effective[name] = effective_rows(weight)
    source = (
        "recorded where known, else a selection model"
        if selection
        else "every declaration controlled: weights 1"
        if everyone
        else "recorded"
    )
    note = (
        f"self-normalised IPW ({source}; floor {config.train.propensity_floor:g}); effective "
        + ", ".join(f"{k} {v:,.0f} of {len(rows[k]):,}" for k, v in effective.items())
    )
    return out, note


# --- engines: where the final boosting runs ----------------------------------------------------

# Imbalance treatments that weigh rows by what the feature-set file holds (no resampling), so
# that dask workers can read their training window from it.
FILE_IMBALANCE = ("none", "scale_pos_weight", "inverse_propensity")


class Engine(Protocol):
    """Where the final fit boosts and finds its training window: in this process
    (`MemoryEngine`) or on a dask cluster (`dask_engine.DaskEngine`), whose workers may read the
    window from the feature-set file, `fs` then holding only part of it."""

    @property
    def boosted_from(self) -> str:
        """Where the boosted rows came from: memory, or the feature-set file."""
        ...

    def category_min_count(self, configured: int) -> int:
        """Training rows a category level needs to enter the model's vocabulary."""
        ...

    def training_labels(self, train: WindowRows, window: Window) -> np.ndarray:
        """The training window's labels as the boosting sees them."""
        ...

    def lodged(self, lodged_at: pd.Series, window: Window) -> int:
        """Declarations lodged in the training window."""
        ...

    def resamples(self) -> bool:
        """Whether the imbalance treatment may resample the training rows."""
        ...

    def memory_from(self, windows: Windows) -> pd.Timestamp | None:
        """From when `fs` holds every declaration (None: all along)."""
        ...

    def boost(
        self,
        train: WindowRows,
        valid: WindowRows,
        params: dict[str, Any],
        config: Config,
        weighted_valid: bool,
    ) -> tuple[xgb.Booster, int, dict[str, list[float]]]:
        """Boost with early stopping on the validation window; the booster sliced at its best,
        its best iteration and its validation curve (`validation_curve`). ``weighted_valid``:
        early stopping weighs the validation rows."""
        ...


@dataclass(frozen=True)
class MemoryEngine:
    """xgboost.train in this process, on the windows `fs` holds."""

    @property
    def boosted_from(self) -> str:
        return "memory"

    def category_min_count(self, configured: int) -> int:
        return configured

    def training_labels(self, train: WindowRows, window: Window) -> np.ndarray:
        return train.y

    def lodged(self, lodged_at: pd.Series, window: Window) -> int:
        return int(window.contains(lodged_at).sum())

    def resamples(self) -> bool:
        return True

    def memory_from(self, windows: Windows) -> pd.Timestamp | None:
        return None

    def boost(
        self,
        train: WindowRows,
        valid: WindowRows,
        params: dict[str, Any],
        config: Config,
        weighted_valid: bool,
    ) -> tuple[xgb.Booster, int, dict[str, list[float]]]:
        curve: dict[str, list[float]] = {}
        booster, best = train_booster(
            dmatrix(train),
            dmatrix(valid, weighted=weighted_valid),
            params,
            config.train.num_boost_round,
            config.train.early_stopping_rounds,
            curve=curve,
        )
        return booster, best, curve


def engine_for(
    config: Config,
    imbalance: str,
    windows: Windows,
    dtypes: pd.Series,
    feature_file: WindowFile | None,
) -> Engine:
    """The configured engine (train.engine); on dask with a ``feature_file`` the workers read the
    training and validation windows from it, unless the imbalance treatment resamples rows."""
    if config.train.engine != "dask":
        return MemoryEngine()
    reads = (
        FileReads(feature_file, windows, dtypes, weighted=imbalance == "inverse_propensity")
        if feature_file is not None and imbalance in FILE_IMBALANCE
        else None
    )
    return DaskEngine(reads)


# --- the fit's steps: each returns its part and what the log records of it ---------------------


@dataclass(frozen=True)
class FitRows:
    """The windows' labelled rows, cast to the model's vocabulary (`levels`) and weighted by
    inverse selection probability when the selection is corrected (`selection_correction`)."""

    rows: dict[str, WindowRows]
    levels: dict[str, list[str]]
    selection_correction: str


def fit_rows(
    fs: FeatureSet,
    masks: dict[str, np.ndarray],
    min_count: int,
    imbalance: str,
    selection_window: Window,
    config: Config,
) -> FitRows:
    """The rows of each window (`masks`), the vocabulary: levels seen `min_count` times in the
    training window, and each row's weight; the selection model learns on `selection_window`."""
    rows = {name: window_rows(fs, mask) for name, mask in masks.items()}
    levels = frequent_levels(rows["train"].X, min_count)
    rows = {name: with_levels(part, levels) for name, part in rows.items()}
    note = "none"
    if config.train.selection_correction != "none" or imbalance == "inverse_propensity":
        rows, note = weigh_by_selection(fs, masks, rows, selection_window, config)
    return FitRows(rows=rows, levels=levels, selection_correction=note)


@dataclass(frozen=True)
class Rebalanced:
    """The training rows as boosted, the parameters with the treatment's own, the rows fitted."""

    rows: WindowRows
    params: dict[str, Any]
    fitted: int


def rebalance_step(
    train: WindowRows,
    labels: np.ndarray,
    imbalance: str,
    params: dict[str, Any],
    seed: int,
    resample: bool,
) -> Rebalanced:
    """The imbalance treatment of the training window (`rebalance`); without ``resample`` (dask
    workers read the window's weights and labels from the file) only scale_pos_weight applies,
    computed on the file's ``labels``."""
    if resample:
        rows, extra = rebalance(train, imbalance, seed)
        return Rebalanced(rows, {**params, **extra}, len(rows))
    extra = positive_weight(labels) if imbalance == "scale_pos_weight" else {}
    return Rebalanced(train, {**params, **extra}, len(labels))


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
    config: Config,
    weighted_valid: bool,
) -> Boosted:
    """Boosting with early stopping on the validation window, on the engine."""
    tick = time.perf_counter()
    booster, best, curve = engine.boost(train, valid, params, config, weighted_valid)
    return Boosted(booster, best, time.perf_counter() - tick, curve)


@dataclass(frozen=True)
class Calibrated:
    """The calibration, anchored on the random stratum when it can be, and how."""

    calibration: Calibration
    anchoring: str
    seconds: float
    method: str  # the method fitted and why (`calibration_method`)


def calibrate_step(
    booster: xgb.Booster,
    held: WindowRows,
    fs: FeatureSet,
    windows: Windows,
    config: Config,
    weighted: bool,
    levels: dict[str, list[str]],
    memory_from: pd.Timestamp | None = None,
) -> Calibrated:
    """Calibration on the held-out window's margins (weighted by inverse selection probability
    when ``weighted``), then the anchor on the random stratum (`anchor_calibration`); `fs` holds
    every declaration only from ``memory_from`` on (dask workers read the training window)."""
    tick = time.perf_counter()
    weight = held.weight if weighted else None
    method, note = calibration_method(
        config.train.calibration, held.y, weight, config.train.isotonic_min_hits
    )
    calibration = (
        calibrate(margin(booster, held.X), held.y, method, weight)
        if method != "none"
        else Calibration(method="none")
    )
    anchoring = "not anchored (train.anchor_to_random is false)"
    if config.train.anchor_to_random and calibration.method != "none":
        calibration, anchoring = anchor_calibration(
            calibration, booster, fs, windows, config, memory_from, levels
        )
    return Calibrated(calibration, anchoring, time.perf_counter() - tick, note)


@dataclass(frozen=True)
class RevenuePart:
    """The revenue model (None when the data cannot support one) and why."""

    booster: xgb.Booster | None
    note: str
    in_data: bool  # whether any hit of the data has a recorded revenue
    seconds: float


def revenue_step(
    fs: FeatureSet,
    train: WindowRows,
    held: WindowRows,
    config: Config,
    fallback_rounds: int = 100,
) -> RevenuePart:
    """E[revenue | hit] on the training window's hits, stopped on the held-out window's."""
    tick = time.perf_counter()
    in_data = has_revenue(fs)
    booster, note = (
        fit_revenue_model(train, held, config, fallback_rounds)
        if in_data
        else (None, "skipped: the data has no revenue")
    )
    return RevenuePart(booster, note, in_data, time.perf_counter() - tick)


def held_out_metrics(
    booster: xgb.Booster,
    calibration: Calibration,
    rows: dict[str, WindowRows],
    with_revenue: bool,
) -> dict[str, dict[str, float]]:
    """`window_metrics` of the validation, calibration and test windows."""
    metrics: dict[str, dict[str, float]] = {}
    for name in ("valid", "calibration", "test"):
        part = rows[name]
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


def evaluated_info(
    config: Config,
    windows: Windows,
    imbalance: str,
    engine: Engine,
    data: FitRows,
    balanced: Rebalanced,
    boosted: Boosted,
    calibrated: Calibrated,
    revenue: RevenuePart,
) -> ModelInfo:
    """What the evaluated model's bundle records of its fit, from the steps' parts."""
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
    windows: Windows, labels: dict[str, np.ndarray], calibration: WindowRows, config: Config
) -> None:
    """Clear errors when a window cannot fit, early-stop or calibrate."""
    for name, y in labels.items():
        if y.sum() == 0:
            window: Window = getattr(windows, name)
            raise ValueError(
                f"{window} has {len(y)} labelled declarations and no hit: "
                "cannot fit or early-stop; widen the window (split.*)"
            )
    if config.train.calibration != "none" and len(calibration) == 0:
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
    engine = engine_for(config, imbalance, windows, fs.X.dtypes, feature_file)
    masks = {
        w.name: rows_in(fs, w, windows.labels_known_by(w))
        for w in (windows.train, windows.valid, windows.calibration, windows.test)
    }
    # The selection model learns on the validation window: every engine holds it whole in
    # memory, and it precedes the calibration window.
    min_count = engine.category_min_count(config.train.min_category_count)
    data = fit_rows(fs, masks, min_count, imbalance, windows.valid, config)
    rows = data.rows
    labels = {
        "train": engine.training_labels(rows["train"], windows.train),
        "valid": rows["valid"].y,
    }
    _check_windows(windows, labels, rows["calibration"], config)
    balanced = rebalance_step(
        rows["train"], labels["train"], imbalance, booster_params, config.seed, engine.resamples()
    )
    prepare_s = time.perf_counter() - started

    correct = config.train.selection_correction != "none"
    weigh_valid = config.train.selection_correction == "ipw"
    boosted = boost_step(engine, balanced.rows, rows["valid"], balanced.params, config, weigh_valid)
    calibrated = calibrate_step(
        boosted.booster,
        rows["calibration"],
        fs,
        windows,
        config,
        correct,
        data.levels,
        engine.memory_from(windows),
    )
    revenue = revenue_step(fs, rows["train"], rows["valid"], config)
    metrics = held_out_metrics(boosted.booster, calibrated.calibration, rows, revenue.in_data)
    seconds = (boosted.seconds, calibrated.seconds, revenue.seconds)
    timings = Timings(prepare_s, *seconds, total_s=time.perf_counter() - started)
    steps = (data, balanced, boosted, calibrated, revenue)
    info = evaluated_info(config, windows, imbalance, engine, *steps)
    model = TargetingModel(
        booster=boosted.booster,
        calibration=calibrated.calibration,
        feature_names=[str(c) for c in fs.X.columns],
        categories=data.levels,
        revenue_booster=revenue.booster,
        info=info,
    )
    cap = cap_warning(boosted.best_iteration, config.train.num_boost_round, "final fit")
    log = FitLog(
        params=balanced.params,
        imbalance=imbalance,
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
    def of_model(cls, model: TargetingModel, fs: FeatureSet) -> RefitBasis:
        """The basis of an evaluated bundle read back (the walk-forward evaluation): its
        labelled training rows counted again on `fs`, as `fit` counted them."""
        info = model.info
        if info.windows is None or info.best_iteration is None:
            raise ValueError("the model records no windows or best iteration: it cannot be refit")
        windows = info.windows
        labelled = int(rows_in(fs, windows.train, windows.labels_known_by(windows.train)).sum())
        return cls(
            model, dict(info.params), info.imbalance or "none", info.best_iteration, labelled
        )


def deployed_model(
    basis: RefitBasis,
    refit_windows: RefitWindows,
    rounds: int,
    booster: xgb.Booster,
    steps: tuple[FitRows, Calibrated, RevenuePart],
) -> TargetingModel:
    """The refit's bundle: every fact of it its own (its calibration, selection correction and
    anchor were fitted on its windows, not the evaluated model's)."""
    data, calibrated, revenue = steps
    modelled = "selection model" in data.selection_correction
    deployed = DeployedRefit(
        refit_windows.train,
        refit_windows.calibration,
        refit_windows.labels_known_by,
        rounds,
        refit_windows.selection if modelled else None,
    )
    info = replace(
        basis.model.info,
        role="deployed",
        refit=deployed,
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
        revenue_booster=revenue.booster,
        info=info,
    )


def refit(
    fs: FeatureSet,
    refit_windows: RefitWindows,
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
    data = fit_rows(
        fs, masks, config.train.min_category_count, basis.imbalance, selection_window, config
    )
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
        booster, rows["calibration"], fs, refit_windows.as_windows(), config, correct, data.levels
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
