"""Feature families chosen on validation: a forward selection on the rolling tuning folds.

The selection starts from the raw declaration columns (what an off-the-shelf model sees) and adds,
one at a time, the family (`features.build.FAMILIES`: trader ids, single-key profiles, cross-key
profiles, valuation, history, calendar) that raises mean validation average precision most,
until none does: every family must earn its place against the plain model. Each candidate is
boosted on the same folds (train.params at a screening learning rate of at least 0.3 with capped
trees, early stopping on each fold's validation block). The report shows what each family adds
to the chosen set (or would add, for those left out), with a paired bootstrap interval. Nothing
after the validation window is used, so the choice is part of the model's configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.features.build import feature_families
from pipeline.features.featureset import FeatureSet
from pipeline.timeaxis import Window, Windows
from pipeline.train.fit import (
    WindowRows,
    dmatrix,
    margin,
    rebalance,
    split_params,
    train_booster,
)
from pipeline.train.objectives import average_precision_replicates
from pipeline.train.tune import fold_rows

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
    folds: list[tuple[Window, WindowRows, WindowRows]],
    columns: list[str],
    params: dict[str, Any],
    config: Config,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(validation labels, margins) of a model on ``columns`` in each rolling fold."""
    booster_params, imbalance = split_params(params, config)
    booster_params["learning_rate"] = max(
        float(booster_params.get("learning_rate", 0.3)), SCREEN_LEARNING_RATE
    )
    out = []
    for _, fold_train, fold_valid in folds:
        train = replace(fold_train, X=fold_train.X[columns])
        valid = replace(fold_valid, X=fold_valid.X[columns])
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
    """Forward selection of feature families from the raw columns; every family's effect."""
    family = feature_families(fs.manifest, config.features)
    family = family.loc[[str(c) for c in fs.X.columns]]
    present = [str(f) for f in dict.fromkeys(family.to_numpy()) if f]
    replicates, seed = config.evaluate.bootstrap, config.seed
    cache: dict[frozenset[str], tuple[float, np.ndarray]] = {}
    folds = fold_rows(fs, windows, config)  # built once, sliced by column for each candidate

    def score(families: frozenset[str]) -> tuple[float, np.ndarray]:
        if families not in cache:
            columns = [c for c in family.index if family[c] in families]
            scores = _fold_scores(folds, columns, params, config)
            cache[families] = _mean_ap(scores, replicates, seed)
        return cache[families]

    start = frozenset({"raw"} if "raw" in present else present)
    chosen = start
    while True:
        candidates = [chosen | {f} for f in present if f not in chosen]
        if not candidates:
            break
        best = max(candidates, key=lambda c: score(c)[0])
        if score(best)[0] <= score(chosen)[0]:
            break
        chosen = best
    ap_chosen, draws_chosen = score(chosen)
    rows = []
    for name in present:
        if name in chosen:
            if chosen == {name}:
                continue
            other = chosen - {name}
            ap_with, draws_with = ap_chosen, draws_chosen
            ap_without, draws_without = score(other)
        else:
            ap_with, draws_with = score(chosen | {name})
            ap_without, draws_without = ap_chosen, draws_chosen
        effect = draws_with - draws_without
        low, high = (
            (float(q) for q in np.nanpercentile(effect, [2.5, 97.5]))
            if replicates
            else (np.nan, np.nan)
        )
        rows.append(
            dict(
                family=name,
                features=int((family == name).sum()),
                ap_with=ap_with,
                ap_without=ap_without,
                effect=ap_with - ap_without,
                low=low,
                high=high,
                dropped=name not in chosen,
            )
        )
    effects = pd.DataFrame(
        rows,
        columns=["family", "features", "ap_with", "ap_without", "effect", "low", "high", "dropped"],
    )
    kept = [f for f in present if f in chosen]
    return FamilySelection(
        kept=kept,
        columns=[c for c in family.index if family[c] in chosen],
        effects=effects,
        ap_all=score(frozenset(present))[0],
        ap_chosen=ap_chosen,
    )
