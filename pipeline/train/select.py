"""Feature families chosen on validation: leave one family out on the rolling tuning folds.

Each family (`features.build.FAMILIES`: raw columns, trader ids, single-key profiles, cross-key
profiles, valuation, history, calendar) is dropped in turn; the model with every family and each
model without one are boosted on the same folds (train.params at a screening learning rate of at
least 0.3, early stopping on each fold's validation block) and compared by mean validation
average precision, with a paired bootstrap interval of the difference. Families whose removal raises validation AP are dropped together,
and the reduced set is kept only if it beats every family on the same folds. Nothing after the
validation window is used, so the choice is part of the model's configuration, not of its test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.features.build import feature_families
from pipeline.features.featureset import FeatureSet
from pipeline.train.fit import (
    dmatrix,
    frequent_levels,
    margin,
    rebalance,
    split_params,
    train_booster,
    window_rows,
    with_levels,
)
from pipeline.train.objectives import average_precision_replicates
from pipeline.train.split import Windows, rolling_folds, rows_in

# A screening: the families are compared at a quick learning rate with a cap on the trees, the
# same for every candidate set, so that leaving each family out costs one short fit per fold.
SCREEN_LEARNING_RATE = 0.3
SCREEN_ROUNDS = 500


@dataclass(frozen=True)
class FamilySelection:
    """The families kept, their features, and each family's effect on validation AP."""

    kept: list[str]
    columns: list[str]
    effects: pd.DataFrame  # family, features, ap_without, effect, low, high, dropped
    ap_all: float
    ap_chosen: float

    def as_dict(self) -> dict[str, Any]:
        """For logs and the model's info."""
        return {
            "kept": self.kept,
            "ap_all": self.ap_all,
            "ap_chosen": self.ap_chosen,
            "effects": self.effects.to_dict(orient="records"),
        }


def _fold_scores(
    fs: FeatureSet, windows: Windows, columns: list[str], params: dict[str, Any], config: Config
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(validation labels, margins) of a model on ``columns`` in each rolling fold."""
    booster_params, imbalance = split_params(params, config)
    booster_params["learning_rate"] = max(
        float(booster_params.get("learning_rate", 0.3)), SCREEN_LEARNING_RATE
    )
    valid_known_by = windows.labels_known_by(windows.valid)
    out = []
    for train_window, valid_window in rolling_folds(fs.lodged_at, config.split, windows):
        train = window_rows(fs, rows_in(fs, train_window, valid_window.start))
        valid = window_rows(fs, rows_in(fs, valid_window, valid_known_by))
        train.X, valid.X = train.X[columns], valid.X[columns]
        levels = frequent_levels(train.X, config.train.min_category_count)
        train, valid = with_levels(train, levels), with_levels(valid, levels)
        train, extra = rebalance(train, imbalance, config.seed)
        booster, _ = train_booster(
            dmatrix(train),
            dmatrix(valid, weighted=False),
            {**booster_params, **extra},
            min(config.train.num_boost_round, SCREEN_ROUNDS),
            config.train.early_stopping_rounds,
        )
        out.append((valid.y, margin(booster, valid.X)))
    return out


def _mean_ap(
    folds: list[tuple[np.ndarray, np.ndarray]], replicates: int, seed: int
) -> tuple[float, np.ndarray]:
    """Mean AP over the folds and its bootstrap replicates (the same draws for every model)."""
    points, draws = zip(
        *(
            average_precision_replicates(y, score, replicates, seed + i)
            for i, (y, score) in enumerate(folds)
        ),
        strict=True,
    )
    return float(np.mean(points)), np.mean(np.vstack(draws), axis=0)


def select_families(
    fs: FeatureSet, windows: Windows, params: dict[str, Any], config: Config
) -> FamilySelection:
    """Leave-one-family-out on the tuning folds; the families kept and every family's effect."""
    family = feature_families(fs.manifest, config.features)
    family = family.loc[[str(c) for c in fs.X.columns]]
    present = [f for f in dict.fromkeys(family.to_numpy()) if f]
    replicates, seed = config.evaluate.bootstrap, config.seed
    everything = list(family.index)
    ap_all, draws_all = _mean_ap(
        _fold_scores(fs, windows, everything, params, config), replicates, seed
    )
    rows = []
    for name in present:
        columns = [c for c in everything if family[c] != name]
        if not columns:
            continue
        ap, draws = _mean_ap(_fold_scores(fs, windows, columns, params, config), replicates, seed)
        effect = draws_all - draws
        low, high = (
            (float(q) for q in np.nanpercentile(effect, [2.5, 97.5]))
            if replicates
            else (np.nan, np.nan)
        )
        rows.append(
            dict(
                family=name,
                features=int((family == name).sum()),
                ap_without=ap,
                effect=ap_all - ap,
                low=low,
                high=high,
            )
        )
    effects = pd.DataFrame(
        rows, columns=["family", "features", "ap_without", "effect", "low", "high"]
    )
    harmful = effects.loc[effects["effect"] < 0, "family"].tolist()
    kept, ap_chosen = present, ap_all
    if harmful:
        candidate = [f for f in present if f not in harmful]
        columns = [c for c in everything if family[c] in candidate]
        ap, _ = _mean_ap(_fold_scores(fs, windows, columns, params, config), 0, seed)
        if ap > ap_all:
            kept, ap_chosen = candidate, ap
    effects["dropped"] = ~effects["family"].isin(kept)
    return FamilySelection(
        kept=kept,
        columns=[c for c in everything if family[c] in kept],
        effects=effects,
        ap_all=ap_all,
        ap_chosen=ap_chosen,
    )
