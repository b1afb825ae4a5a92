"""The final fit: XGBoost with early stopping, the booster sliced at its best iteration,
calibration on a later window, and an optional revenue model.

Everything stateful is fitted inside its own window: the imbalance treatment (samplers, class
weights) on the training window only, early stopping on the validation window, the calibrator on
the calibration window. `fit` returns a `TargetingModel` and a plain log dict; it never talks to
MLflow (`train.tracking` does, at the edge).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

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
from pipeline.serve.model import Calibration, TargetingModel
from pipeline.serve.ranking import control_priority
from pipeline.timeaxis import Window, Windows
from pipeline.train.objectives import precision_at, revenue_at
from pipeline.train.split import RefitWindows, rows_in

IMBALANCE_METHODS = ("none", "scale_pos_weight", "undersample", "smotenc", "inverse_propensity")
REPORT_RATES = (0.01, 0.02, 0.05, 0.10)
EVAL_METRIC = "aucpr"
MIN_REVENUE_HITS = 30
_MISSING_LEVEL = "__missing__"


@dataclass
class FitResult:
    """The served model and what happened while fitting it (params, metrics, counts, timings)."""

    model: TargetingModel
    log: dict[str, Any]


@dataclass
class WindowRows:
    """Model inputs of one window's labelled declarations."""

    X: pd.DataFrame
    y: np.ndarray
    weight: np.ndarray
    revenue: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


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
        nthread=config.train.n_jobs,
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
) -> tuple[xgb.Booster, int]:
    """Boost with early stopping on the validation matrix; the booster sliced at the best round."""
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=num_boost_round,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=early_stopping_rounds,
        callbacks=callbacks,
        verbose_eval=False,
    )
    best = int(booster.best_iteration)
    return booster[: best + 1], best


@contextmanager
def dask_client(config: Config) -> Iterator[Any]:
    """A dask.distributed client: on `train.dask_scheduler`, else on a LocalCluster of
    `train.dask_workers` single-threaded worker processes that lives for the fit."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - the `scale` extra is in the lock file
        raise ValueError(
            "train.engine=dask needs dask.distributed: install the `scale` extra"
        ) from exc
    if config.train.dask_scheduler:
        with Client(config.train.dask_scheduler) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=config.train.dask_workers,
            threads_per_worker=1,
            processes=True,
            # Any free port: with None, distributed still tries 8787 and warns when it is taken.
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _dask_matrix(client: Any, rows: WindowRows, partitions: int, weighted: bool) -> Any:
    """A DaskDMatrix over `partitions` row blocks of a window (categories kept)."""
    import dask.dataframe as dd
    from xgboost import dask as dxgb

    parts = max(1, min(partitions, len(rows)))
    X = dd.from_pandas(rows.X, npartitions=parts, sort=False)
    y = dd.from_pandas(pd.Series(rows.y), npartitions=parts, sort=False)
    weight = (
        dd.from_pandas(pd.Series(rows.weight), npartitions=parts, sort=False) if weighted else None
    )
    return dxgb.DaskDMatrix(client, X, y, weight=weight, enable_categorical=True)


def train_booster_dask(
    client: Any,
    train: WindowRows,
    valid: WindowRows,
    params: dict[str, Any],
    num_boost_round: int,
    early_stopping_rounds: int,
    partitions: int,
) -> tuple[xgb.Booster, int]:
    """`train_booster` on a dask cluster: the training window is spread over the workers, which
    build one histogram together (xgboost.dask.train); the booster comes back sliced."""
    return _boost_on_cluster(
        client,
        _dask_matrix(client, train, partitions, weighted=True),
        _dask_matrix(client, valid, partitions, weighted=False),
        params,
        num_boost_round,
        early_stopping_rounds,
    )


def _boost_on_cluster(
    client: Any,
    dtrain: Any,
    dvalid: Any,
    params: dict[str, Any],
    num_boost_round: int,
    early_stopping_rounds: int,
) -> tuple[xgb.Booster, int]:
    """xgboost.dask.train with early stopping on ``dvalid``; the booster sliced at its best."""
    from xgboost import dask as dxgb

    # Each worker runs with its own threads; the in-process thread count does not apply.
    on_cluster = {k: v for k, v in params.items() if k != "nthread"}
    output = dxgb.train(
        client,
        on_cluster,
        dtrain,
        num_boost_round=num_boost_round,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=early_stopping_rounds,
        verbose_eval=False,
    )
    booster: xgb.Booster = output["booster"]
    best = int(booster.best_iteration)
    return booster[: best + 1], best


# Imbalance treatments that weigh rows by what the feature-set file holds (no resampling), so
# that dask workers can read their training window from it.
FILE_IMBALANCE = ("none", "scale_pos_weight", "inverse_propensity")


def _window_filters(
    window: Window, labels_known_by: pd.Timestamp | None
) -> list[tuple[str, str, Any]]:
    """Parquet filters selecting what `rows_in` selects: lodged in the window, labelled, the
    label known before ``labels_known_by``."""
    filters: list[tuple[str, str, Any]] = [
        ("lodged_at", ">=", window.start),
        ("lodged_at", "<", window.end),
        ("y", ">=", 0.0),  # labelled: a missing label is null in the file
    ]
    if labels_known_by is not None:
        filters.append(("label_known_at", "<", labels_known_by))
    return filters


def _row_group_starts(file: Any) -> np.ndarray:
    """The first row of each row group of a ParquetFile, and the number of rows at the end."""
    sizes = [file.metadata.row_group(g).num_rows for g in range(file.num_row_groups)]
    return np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])


def window_positions(
    path: Path, window: Window, labels_known_by: pd.Timestamp | None
) -> np.ndarray:
    """Row numbers in the feature-set file of the rows `rows_in` selects, in file order; only the
    row groups whose lodging times overlap the window are read, three metadata columns of them."""
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)
    starts = _row_group_starts(file)
    lodged = file.schema_arrow.get_field_index("lodged_at")
    found = [np.empty(0, dtype=np.int64)]
    # A loop over row groups (a handful), not over declarations.
    for group in range(file.num_row_groups):
        stats = file.metadata.row_group(group).column(lodged).statistics
        if stats is not None and stats.has_min_max:
            low, high = pd.Timestamp(stats.min), pd.Timestamp(stats.max)
            if high < window.start or low >= window.end:
                continue
        columns = ["lodged_at", "y", "label_known_at"]
        part = file.read_row_group(group, columns=columns).to_pandas()
        mask = window.contains(part["lodged_at"]) & part["y"].notna().to_numpy()
        if labels_known_by is not None:
            known = pd.to_datetime(part["label_known_at"])
            mask &= np.asarray((known < labels_known_by).fillna(False), dtype=bool)
        found.append(starts[group] + np.flatnonzero(mask))
    return np.concatenate(found)


def read_rows(path: Path, positions: np.ndarray, dtypes: pd.Series, weighted: bool) -> pd.DataFrame:
    """The rows at ``positions`` (sorted) of the feature-set file, read one row group at a time
    from the groups that hold them: the model's features (``dtypes``, categories cast to their
    levels), ``y`` and, when ``weighted``, ``sample_weight`` (missing -> 1). Run by a worker."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)
    starts = _row_group_starts(file)
    features = [str(c) for c in dtypes.index]
    columns = [*features, "y", *(["sample_weight"] if weighted else [])]
    if len(positions) == 0:
        return _empty_rows(dtypes, weighted)
    groups = np.searchsorted(starts, positions, side="right") - 1
    bounds = np.flatnonzero(np.diff(groups)) + 1
    # A loop over the row groups holding the rows (a handful): one group's rows are held at a
    # time besides those taken.
    tables = [
        file.read_row_group(int(group[0]), columns=columns).take(rows - starts[group[0]])
        for group, rows in zip(np.split(groups, bounds), np.split(positions, bounds), strict=True)
    ]
    frame = pa.concat_tables(tables).to_pandas()
    categories = {c: t for c, t in dtypes.items() if isinstance(t, pd.CategoricalDtype)}
    frame = frame.astype(categories)
    if weighted:
        frame["sample_weight"] = frame["sample_weight"].fillna(1.0)
    return frame


def _empty_rows(dtypes: pd.Series, weighted: bool) -> pd.DataFrame:
    """What `read_rows` gives for no rows (the dask frame's meta)."""
    columns = {str(c): pd.Series(dtype=t) for c, t in dtypes.items()}
    columns["y"] = pd.Series(dtype=float)
    if weighted:
        columns["sample_weight"] = pd.Series(dtype=float)
    return pd.DataFrame(columns)


def parquet_window_matrix(
    client: Any,
    path: Path,
    window: Window,
    labels_known_by: pd.Timestamp | None,
    dtypes: pd.Series,
    partitions: int,
    weighted: bool,
) -> Any:
    """A DaskDMatrix of one window's labelled rows (`rows_in`'s), read by the workers from the
    feature-set file: the rows are cut into `partitions` consecutive blocks (as `_dask_matrix`
    cuts a frame in memory) dealt round the workers, so every worker holds a non-empty part of
    every matrix (XGBoost refuses a worker an empty one when features are categories)."""
    import dask.dataframe as dd
    from xgboost import dask as dxgb

    positions = window_positions(path, window, labels_known_by)
    workers = sorted(client.scheduler_info()["workers"])
    if len(positions) < len(workers):
        raise ValueError(
            f"{window} has {len(positions)} labelled declarations in {path}: fewer than the "
            f"{len(workers)} dask workers"
        )
    blocks = np.array_split(positions, min(max(partitions, len(workers)), len(positions)))
    parts = [
        client.submit(read_rows, path, block, dtypes, weighted, workers=[worker], pure=False)
        for block, worker in zip(blocks, workers * len(blocks), strict=False)
    ]
    frame = dd.from_delayed(parts, meta=_empty_rows(dtypes, weighted), verify_meta=False)
    features = [str(c) for c in dtypes.index]
    weight = frame["sample_weight"] if weighted else None
    return dxgb.DaskDMatrix(
        client, frame[features], frame["y"], weight=weight, enable_categorical=True
    )


def _boost(
    train: WindowRows,
    valid: WindowRows,
    params: dict[str, Any],
    config: Config,
    source: BoostSource | None = None,
    weighted_valid: bool = False,
) -> tuple[xgb.Booster, int]:
    """The final boosting on the configured engine (train.engine); on dask with a ``source``,
    the workers read the training and validation windows from the feature-set file.
    ``weighted_valid``: early stopping weighs the validation rows (in memory only)."""
    if config.train.engine == "dask":
        with dask_client(config) as client:
            workers = len(client.scheduler_info()["workers"])
            partitions = workers * config.train.dask_partitions_per_worker
            if source is None:
                return train_booster_dask(
                    client,
                    train,
                    valid,
                    params,
                    config.train.num_boost_round,
                    config.train.early_stopping_rounds,
                    partitions,
                )
            windows = source.windows
            dtrain, dvalid = (
                parquet_window_matrix(
                    client,
                    source.path,
                    window,
                    windows.labels_known_by(window),
                    source.dtypes,
                    partitions,
                    weighted=weighted and source.weighted,
                )
                for window, weighted in ((windows.train, True), (windows.valid, False))
            )
            return _boost_on_cluster(
                client,
                dtrain,
                dvalid,
                params,
                config.train.num_boost_round,
                config.train.early_stopping_rounds,
            )
    return train_booster(
        dmatrix(train),
        dmatrix(valid, weighted=weighted_valid),
        params,
        config.train.num_boost_round,
        config.train.early_stopping_rounds,
    )


@dataclass(frozen=True)
class BoostSource:
    """Where dask workers read the final fit's windows: the feature-set file, its windows, the
    model's feature dtypes and whether the training rows carry their inverse-propensity weight."""

    path: Path
    windows: Windows
    dtypes: pd.Series
    weighted: bool

    def labels(self, window: Window) -> np.ndarray:
        """The labels of a window's rows that the workers read (`rows_in`'s rows)."""
        filters = _window_filters(window, self.windows.labels_known_by(window))
        frame = pd.read_parquet(self.path, columns=["y"], filters=filters)
        return frame["y"].to_numpy(dtype=float)

    def lodged(self, window: Window) -> int:
        """Declarations lodged in a window, counted in the file (no column is read)."""
        import pyarrow.dataset as ds

        lodged_at = ds.field("lodged_at")
        start, end = window.start.to_datetime64(), window.end.to_datetime64()
        return int(
            ds.dataset(self.path).count_rows(filter=(lodged_at >= start) & (lodged_at < end))
        )


# --- selection correction: what each inspected declaration stands for -------------------------


def recorded_propensity(fs: FeatureSet) -> np.ndarray:
    """The recorded selection probability of each row (the random stratum's known rate), NaN
    where none was recorded (`FeatureSet.sample_weight` holds its inverse, 1 elsewhere)."""
    weight = fs.sample_weight.to_numpy(dtype=float)
    return np.where(np.isfinite(weight) & (weight > 1.0), 1.0 / weight, np.nan)


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
        "nthread": config.train.n_jobs,
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


def random_stratum_rate(
    fs: FeatureSet, span: Window, known_by: pd.Timestamp | None
) -> tuple[float, int, int]:
    """Hit rate of every declaration estimated on the random stratum (rows with a recorded
    selection probability) lodged in `span`, labels known by `known_by`: self-normalised IPW.
    Returns (rate, random rows, random hits)."""
    probability = recorded_propensity(fs)
    keep = np.isfinite(probability) & fs.labelled.to_numpy() & span.contains(fs.lodged_at)
    if known_by is not None:
        known = pd.to_datetime(fs.label_known_at) < known_by
        keep &= np.asarray(known.fillna(False), dtype=bool)
    y = fs.y.to_numpy(dtype=float)[keep]
    weight = 1.0 / probability[keep]
    rate = float((weight * y).sum() / weight.sum()) if len(y) else float("nan")
    return rate, int(keep.sum()), int(y.sum())


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
    (`random_stratum_rate`). A refit calls it with its own windows."""
    window = windows.calibration if windows.calibration.days > 0 else windows.valid
    first = pd.Timestamp(pd.to_datetime(fs.lodged_at).min())
    start = max(first, window.end - pd.Timedelta(days=config.train.anchor_days))
    if earliest is not None:  # `fs` holds every declaration only from `earliest` on
        start = max(start, earliest)
    span = Window("anchor", start, window.end)
    rate, rows_n, hits = random_stratum_rate(fs, span, windows.labels_known_by(window))
    if hits < config.train.min_random_hits:
        return calibration, (
            f"not anchored: {hits} random-stratum hits ({rows_n} rows) in {span}, need "
            f"{config.train.min_random_hits}"
        )
    # The mean probability over every declaration of the same span as the random rows: the two
    # sides of the match come from the same stretch of time (fraud drifts).
    inside = span.contains(fs.lodged_at)
    X = fs.X.loc[inside, booster.feature_names] if booster.feature_names else fs.X.loc[inside]
    p = calibration.apply(margin(booster, cast_levels(X, levels or {})))
    shift = anchor_shift(p, rate)
    anchored = Calibration(**{**calibration.__dict__, "shift": calibration.shift + shift})
    return anchored, (
        f"anchored on the random stratum: {hits} hits in {rows_n} rows, hit rate {rate:.2%}; "
        f"mean probability over {int(inside.sum()):,} declarations of {span} "
        f"{p.mean():.2%} -> {rate:.2%} (log-odds shift {shift:+.3f})"
    )


def margin(booster: xgb.Booster, X: pd.DataFrame) -> np.ndarray:
    """Raw log-odds of a booster on a frame."""
    return np.asarray(booster.inplace_predict(X, predict_type="margin"), dtype=float)


def calibrate(
    margins: np.ndarray, y: np.ndarray, method: str, weight: np.ndarray | None = None
) -> Calibration:
    """Fit the calibration on a held-out window's margins and labels.

    `weight`: each row's self-normalised inverse selection probability (`ipw_weights`), so the
    calibrated probability is P(hit) over every declaration, not over the inspected ones.
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
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
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
        "nthread": config.train.n_jobs,
        "device": config.train.device,
    }


def fit_revenue_model(
    train: WindowRows, valid: WindowRows, config: Config
) -> tuple[xgb.Booster | None, str]:
    """E[revenue | hit]: a Tweedie XGBoost regressor on the training window's hits.

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
    booster = xgb.train(params, dtrain, num_boost_round=100)
    return booster, f"tweedie regressor on {int(on_train.sum())} hits, 100 trees (few valid hits)"


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


def refit(
    fs: FeatureSet,
    refit_windows: RefitWindows,
    evaluated: FitResult,
    config: Config,
) -> FitResult:
    """The deployed model: the evaluated model's configuration (parameters, features, imbalance
    treatment) boosted on every label known at the end of the data, with the evaluated model's
    trees scaled to the grown window, calibrated on the latest labelled stretch.

    No early stopping: no later labelled window exists to stop on; the evaluated model's best
    iteration, found on its own validation window, sets the number of trees.
    """
    started = time.perf_counter()
    log = evaluated.log
    booster_params = dict(log["params"])
    imbalance = str(log["imbalance"])
    known_by = refit_windows.labels_known_by
    masks = {
        "train": rows_in(fs, refit_windows.train, known_by),
        "calibration": rows_in(fs, refit_windows.calibration, known_by),
    }
    rows = {name: window_rows(fs, mask) for name, mask in masks.items()}
    levels = frequent_levels(rows["train"].X, config.train.min_category_count)
    rows = {name: with_levels(part, levels) for name, part in rows.items()}
    correct = config.train.selection_correction != "none"
    selection_note = "none"
    if correct or imbalance == "inverse_propensity":
        rows, selection_note = weigh_by_selection(
            fs, masks, rows, refit_windows.calibration, config
        )
    if rows["train"].y.sum() == 0:
        raise ValueError(f"{refit_windows.train} has no labelled hit: cannot refit")
    train_rows, extra = rebalance(rows["train"], imbalance, config.seed)
    booster_params.update(extra)
    rounds = refit_rounds(
        int(log["best_iteration"]), int(log["rows"]["train"]["fitted"]), len(train_rows)
    )
    booster = xgb.train(booster_params, dmatrix(train_rows), num_boost_round=rounds)
    method = config.train.calibration
    calibration = Calibration(method="none")
    if method != "none":
        if len(np.unique(rows["calibration"].y)) < 2:
            raise ValueError(
                f"{refit_windows.calibration} needs hits and non-hits to calibrate the refit: "
                "set split.calibration_days larger or train.refit false"
            )
        held = rows["calibration"]
        calibration = calibrate(
            margin(booster, held.X), held.y, method, held.weight if correct else None
        )
    anchor_note = "not anchored (train.anchor_to_random is false)"
    if config.train.anchor_to_random and calibration.method != "none":
        calibration, anchor_note = anchor_calibration(
            calibration, booster, fs, refit_windows.as_windows(), config, levels=levels
        )
    revenue_booster: xgb.Booster | None = None
    revenue_note = "skipped: the data has no revenue"
    if has_revenue(fs):
        revenue_booster, revenue_note = fit_revenue_model(
            rows["train"], rows["calibration"], config
        )
    evaluated_info = evaluated.model.info
    info: dict[str, Any] = {
        **evaluated_info,
        "role": "deployed",
        "windows": refit_windows.as_dict(),
        "labels_known_by": refit_windows.labels_known_by.isoformat(),
        "best_iteration": rounds - 1,
        "revenue_model": revenue_note,
        "evaluated": {
            "windows": evaluated_info["windows"],
            "best_iteration": evaluated_info["best_iteration"],
        },
    }
    model = TargetingModel(
        booster=booster,
        calibration=calibration,
        feature_names=list(evaluated.model.feature_names),
        categories=levels,
        revenue_booster=revenue_booster,
        info=info,
    )
    refit_log: dict[str, Any] = {
        "windows": refit_windows.as_dict(),
        "labels_known_by": refit_windows.labels_known_by.isoformat(),
        "trees": rounds,
        "rows": {
            name: {"labelled": len(part), "hits": int(part.y.sum())} for name, part in rows.items()
        },
        "calibration": calibration.method,
        "selection_correction": selection_note,
        "anchoring": anchor_note,
        "revenue_model": revenue_note,
        "seconds": time.perf_counter() - started,
    }
    return FitResult(model=model, log=refit_log)


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


def fit(
    fs: FeatureSet,
    windows: Windows,
    params: dict[str, Any],
    config: Config,
    source: Path | None = None,
) -> FitResult:
    """Fit, slice, calibrate (and add a revenue model): the model to serve and its log.

    ``source`` is the feature-set Parquet file `fs` was read from: on train.engine=dask the
    workers then read the training and validation windows from it rather than from `fs` (unless
    the imbalance treatment resamples rows, which happens here).
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    booster_params, imbalance = split_params(params, config)
    boost_source = (
        BoostSource(source, windows, fs.X.dtypes, weighted=imbalance == "inverse_propensity")
        if source is not None and config.train.engine == "dask" and imbalance in FILE_IMBALANCE
        else None
    )
    masks = {
        w.name: rows_in(fs, w, windows.labels_known_by(w))
        for w in (windows.train, windows.valid, windows.calibration, windows.test)
    }
    rows = {name: window_rows(fs, mask) for name, mask in masks.items()}
    # The model's vocabulary: levels frequent enough in the training window (all of them when
    # the dask workers read the windows from the file, whose categories are whole).
    levels = frequent_levels(
        rows["train"].X, 1 if boost_source is not None else config.train.min_category_count
    )
    rows = {name: with_levels(part, levels) for name, part in rows.items()}

    correct = config.train.selection_correction != "none"
    weigh_valid = config.train.selection_correction == "ipw"
    selection_note = "none"
    if correct or imbalance == "inverse_propensity":
        # The selection model learns on the validation window: every engine holds it whole in
        # memory (the dask job keeps only the training window's hits), and it precedes the
        # calibration window.
        rows, selection_note = weigh_by_selection(fs, masks, rows, windows.valid, config)
    # The training window's labels as the boosting sees them: read from the file when the workers
    # read it (`fs` may then hold only the training window's hits, see jobs.train).
    labels = {
        "train": boost_source.labels(windows.train) if boost_source else rows["train"].y,
        "valid": rows["valid"].y,
    }
    for name, y in labels.items():
        if y.sum() == 0:
            window: Window = getattr(windows, name)
            raise ValueError(
                f"{window} has {len(y)} labelled declarations and no hit: "
                "cannot fit or early-stop; widen the window (split.*)"
            )
    if config.train.calibration != "none" and len(rows["calibration"]) == 0:
        raise ValueError(
            f"{windows.calibration} has no labelled declaration: set split.calibration_days > 0 "
            "or train.calibration: none"
        )
    if boost_source is not None:  # weights and labels come from the file: nothing to resample
        train_rows = rows["train"]
        extra = positive_weight(labels["train"]) if imbalance == "scale_pos_weight" else {}
    else:
        train_rows, extra = rebalance(rows["train"], imbalance, config.seed)
    booster_params.update(extra)
    timings["prepare_s"] = time.perf_counter() - started

    tick = time.perf_counter()
    booster, best = _boost(
        train_rows, rows["valid"], booster_params, config, boost_source, weighted_valid=weigh_valid
    )
    timings["boost_s"] = time.perf_counter() - tick

    tick = time.perf_counter()
    calibration = (
        calibrate(
            margin(booster, rows["calibration"].X),
            rows["calibration"].y,
            config.train.calibration,
            rows["calibration"].weight if correct else None,
        )
        if config.train.calibration != "none"
        else Calibration(method="none")
    )
    anchor_note = "not anchored (train.anchor_to_random is false)"
    if config.train.anchor_to_random and calibration.method != "none":
        # Boosted from the file (dask), `fs` may hold only the training window's hits: the
        # anchor then looks no further back than the validation window.
        earliest = windows.valid.start if boost_source is not None else None
        calibration, anchor_note = anchor_calibration(
            calibration, booster, fs, windows, config, earliest, levels
        )
    timings["calibrate_s"] = time.perf_counter() - tick

    tick = time.perf_counter()
    revenue_ok = has_revenue(fs)
    if revenue_ok:
        revenue_booster, revenue_note = fit_revenue_model(rows["train"], rows["valid"], config)
    else:
        revenue_booster, revenue_note = None, "skipped: the data has no revenue"
    timings["revenue_s"] = time.perf_counter() - tick

    metrics: dict[str, dict[str, float]] = {}
    for name in ("valid", "calibration", "test"):
        part = rows[name]
        m = margin(booster, part.X) if len(part) else np.empty(0)
        raw = 1.0 / (1.0 + np.exp(-m))
        metrics[name] = window_metrics(part, raw, calibration.apply(m), revenue_ok, m)
    timings["total_s"] = time.perf_counter() - started

    info: dict[str, Any] = {
        "params": booster_params,
        "windows": windows.as_dict(),
        "best_iteration": best,
        "imbalance": imbalance,
        "objective": config.tune.objective,
        "calibration": calibration.method,
        "selection_correction": selection_note,
        "anchoring": anchor_note,
        "probability_means": (
            "The chance that a control of the declaration finds an irregularity, for any "
            "declaration (not only the kind the historical policy picked): "
            + ("early stopping and calibration" if weigh_valid else "calibration")
            + " weighted by inverse selection probability"
            if correct
            else "P(hit | controlled by the historical policy): early stopping and calibration on "
            "the inspected declarations, unweighted"
        ),
        "revenue_model": revenue_note,
        "registered_model": config.tracking.registered_model,
        "seed": config.seed,
        "engine": config.train.engine,
        "boosted_from": "feature-set file" if boost_source is not None else "memory",
        "role": "evaluated",
    }
    model = TargetingModel(
        booster=booster,
        calibration=calibration,
        feature_names=[str(c) for c in fs.X.columns],
        categories=levels,
        revenue_booster=revenue_booster,
        info=info,
    )
    lodged = {name: int(getattr(windows, name).contains(fs.lodged_at).sum()) for name in rows}
    fitted_train = len(train_rows)
    if boost_source is not None:  # `fs` may hold only the training window's hits
        lodged["train"] = boost_source.lodged(windows.train)
        fitted_train = len(labels["train"])
    log: dict[str, Any] = {
        "params": booster_params,
        "imbalance": imbalance,
        "best_iteration": best,
        "windows": windows.as_dict(),
        "rows": {
            name: {
                "lodged": lodged[name],
                "labelled": len(labels["train"]) if name == "train" else len(part),
                "fitted": fitted_train if name == "train" else len(part),
            }
            for name, part in rows.items()
        },
        "metrics": metrics,
        "revenue_model": revenue_note,
        "selection_correction": selection_note,
        "anchoring": anchor_note,
        "boosted_from": info["boosted_from"],
        "timings": timings,
        "warnings": [
            w for w in [cap_warning(best, config.train.num_boost_round, "final fit")] if w
        ],
    }
    return FitResult(model=model, log=log)
