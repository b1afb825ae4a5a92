"""Where does LightGBM's edge on KCS come from? Category handling, measured learner by learner.

On KCS the model trails a LightGBM at its conventional settings (issue 24). Both boost trees on
the same raw declaration columns, most of them categories with many levels (hs6: some 2,400).
LightGBM sorts a category's levels by their gradient at each node with smoothing (``cat_smooth``
added to the hessian, levels met fewer than ``cat_smooth`` times left out of the sort, at least
``min_data_per_group`` rows per side, ``cat_l2``); XGBoost sorts them without smoothing. Five fits
on the same windows and columns tell the mechanism apart:

- ``XGBoost, native categories``: the plain reference's parameters, every level kept;
- ``XGBoost, native categories, rare levels missing``: the model's vocabulary (levels met fewer
  than ``train.min_category_count`` times in the training window reach the trees as missing),
  depth-wise and loss-guided: what `targeting train` does with ``train.category_order: native``;
- ``XGBoost, levels ordered by hit rate``: what ``train.category_order: hit_rate`` does
  (`pipeline.train.rows.hit_rate_order`): each category replaced by its level's position when
  the training window's levels (those met ``train.min_category_count`` times) are sorted by hit
  rate shrunk towards the window's rate by ``train.category_prior`` declarations: LightGBM's
  smoothed sort done once, globally;
- ``XGBoost, levels ordered by hit rate, loss-guided``: the same with LightGBM's tree shape
  (63 leaves grown best-first, as the LightGBM here);
- ``XGBoost, both``: the native categories and the positions;
- ``LightGBM``: the reference's parameters (its library's category defaults);
- ``LightGBM, no category smoothing``: ``cat_smooth`` 0, ``cat_l2`` 0, ``min_data_per_group`` 1.

Windows as `configs/kcs.yaml`: train January-July 2020, early stopping (on log-loss, patience 50)
on 2020-08-31..09-30, measured on 2020 Q4 (``development``: no choice of the pipeline was made on
it) and on 2021 Q1 (the test window). Average precision with a 95 % bootstrap interval. Prints
the table and writes bench/results/kcs_categories.json.

    .venv/bin/python bench/kcs_categories.py
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

from pipeline.config import Config, load
from pipeline.evaluate.metrics import metrics_table
from pipeline.evaluate.reference import plain_xgboost_params, raw_columns
from pipeline.features.build import build_feature_set
from pipeline.ingest.readers import load_inputs
from pipeline.train.rows import WindowRows, cast_levels, frequent_levels, hit_rate_order

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ("2020-01-01", "2020-08-01")
VALID = ("2020-08-31", "2020-10-01")
MEASURED = {
    "development (2020 Q4)": ("2020-10-01", "2021-01-01"),
    "test (2021 Q1)": ("2021-01-01", "2021-04-01"),
}
ROUNDS, PATIENCE, LEARNING_RATE = 3000, 50, 0.05


@dataclass(frozen=True)
class Windows:
    """The KCS rows of each window, their labels and the raw columns."""

    X: pd.DataFrame
    y: np.ndarray
    train: np.ndarray
    valid: np.ndarray
    measured: dict[str, np.ndarray]


def kcs_windows(config: Config) -> Windows:
    """The KCS feature set's raw columns and labelled rows of each window."""
    inputs = load_inputs(config)
    fs = build_feature_set(inputs.declarations, inputs.outcomes, config.features)
    lodged = pd.to_datetime(fs.lodged_at).reset_index(drop=True)
    y = fs.y.to_numpy(dtype=float)

    def inside(bounds: tuple[str, str]) -> np.ndarray:
        return ((lodged >= bounds[0]) & (lodged < bounds[1])).to_numpy() & np.isfinite(y)

    X = fs.X[raw_columns(fs, config.features)].reset_index(drop=True)
    measured = {name: inside(bounds) for name, bounds in MEASURED.items()}
    return Windows(X, y, inside(TRAIN), inside(VALID), measured)


def hit_rate_positions(w: Windows, config: Config) -> pd.DataFrame:
    """Each category column as the pipeline's hit-rate order gives it to the trees
    (`rows.hit_rate_order` on the training window, `serve.model.level_positions`)."""
    train = WindowRows(
        w.X[w.train], w.y[w.train], np.ones(int(w.train.sum())), np.zeros(int(w.train.sum()))
    )
    levels = frequent_levels(train.X, config.train.min_category_count)
    ordered = hit_rate_order(train, levels, config.train.category_prior)
    positions = cast_levels(w.X[list(ordered)], ordered, tuple(ordered))
    return positions.rename(columns=lambda c: f"{c}_position")


LOSS_GUIDED = {"grow_policy": "lossguide", "max_leaves": 63, "max_depth": 0}


def _xgboost(
    X: pd.DataFrame, w: Windows, config: Config, shape: dict[str, object] | None = None
) -> tuple[np.ndarray, int]:
    params = plain_xgboost_params(config.seed, config.compute.threads, shape or {})
    booster = xgb.train(
        params,
        xgb.DMatrix(X[w.train], w.y[w.train], enable_categorical=True),
        ROUNDS,
        evals=[(xgb.DMatrix(X[w.valid], w.y[w.valid], enable_categorical=True), "valid")],
        early_stopping_rounds=PATIENCE,
        verbose_eval=False,
    )
    trees = booster.best_iteration + 1
    return np.asarray(booster.inplace_predict(X, iteration_range=(0, trees))), trees


def _lightgbm(
    X: pd.DataFrame, w: Windows, seed: int, extra: dict[str, float]
) -> tuple[np.ndarray, int]:
    import lightgbm as lgb

    params = {"objective": "binary", "learning_rate": LEARNING_RATE, "num_leaves": 63}
    params |= {"seed": seed, "deterministic": True, "verbose": -1, **extra}
    train = lgb.Dataset(X[w.train], w.y[w.train])
    booster = lgb.train(
        params,
        train,
        ROUNDS,
        valid_sets=[lgb.Dataset(X[w.valid], w.y[w.valid], reference=train)],
        callbacks=[lgb.early_stopping(PATIENCE, verbose=False)],
    )
    return np.asarray(
        booster.predict(X, num_iteration=booster.best_iteration)
    ), booster.best_iteration


def learners(w: Windows, config: Config) -> dict[str, Callable[[], tuple[np.ndarray, int]]]:
    """Each learner of the comparison, ready to fit."""
    seed = config.seed
    ranks = hit_rate_positions(w, config)
    numbers = w.X.drop(columns=[c[: -len("_position")] for c in ranks.columns])
    ordered = numbers.join(ranks)
    train = w.X[w.train]
    pooled = cast_levels(w.X, frequent_levels(train, config.train.min_category_count))
    no_smoothing = {"cat_smooth": 0.0, "cat_l2": 0.0, "min_data_per_group": 1}
    return {
        "XGBoost, native categories": lambda: _xgboost(w.X, w, config),
        "XGBoost, native categories, rare levels missing": lambda: _xgboost(pooled, w, config),
        "XGBoost, native categories, rare levels missing, loss-guided": lambda: _xgboost(
            pooled, w, config, LOSS_GUIDED
        ),
        "XGBoost, levels ordered by hit rate": lambda: _xgboost(ordered, w, config),
        "XGBoost, levels ordered by hit rate, loss-guided": lambda: _xgboost(
            ordered, w, config, LOSS_GUIDED
        ),
        "XGBoost, both": lambda: _xgboost(w.X.join(ranks), w, config),
        "LightGBM": lambda: _lightgbm(w.X, w, seed, {}),
        "LightGBM, no category smoothing": lambda: _lightgbm(w.X, w, seed, no_smoothing),
    }


def measured_rows(w: Windows, scores: dict[str, np.ndarray]) -> list[dict[str, object]]:
    """Average precision of every learner on each measured window, with its interval."""
    rows: list[dict[str, object]] = []
    for window, inside in w.measured.items():
        table = metrics_table(w.y[inside], {k: v[inside] for k, v in scores.items()}, [0.1])
        ap = table[table["metric"] == "average_precision"]
        rows += [
            {
                "window": window,
                "learner": r.model,
                "average precision": round(r.value, 3),
                "low": round(r.low, 3),
                "high": round(r.high, 3),
            }
            for r in ap.itertuples()
        ]
    return rows


def main() -> None:
    config = load(ROOT / "configs" / "kcs.yaml")
    w = kcs_windows(config)
    scores, fitted = {}, []
    for name, fit in learners(w, config).items():
        started = time.perf_counter()
        scores[name], trees = fit()
        fitted.append(
            {"learner": name, "trees": trees, "seconds": round(time.perf_counter() - started, 1)}
        )
        print(f"{name}: {trees} trees, {fitted[-1]['seconds']} s", flush=True)
    rows = measured_rows(w, scores)
    print(pd.DataFrame(rows).to_string(index=False))
    out = ROOT / "bench" / "results" / "kcs_categories.json"
    payload = {
        "command": "bench/kcs_categories.py",
        "columns": list(w.X.columns),
        "fitted": fitted,
        "average_precision": rows,
    }
    out.write_text(json.dumps(payload, indent=2))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
