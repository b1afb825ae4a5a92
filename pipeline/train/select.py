"""Feature families chosen on validation: a forward selection on the rolling tuning folds.

The selection starts from the raw declaration columns (what an off-the-shelf model sees) and adds,
one at a time, the family (`features.build.FAMILIES`: single-key profiles, cross-key profiles,
as-of target statistics, valuation, history, calendar, and each trader id column on its own)
that raises mean validation average precision most, until none does: every family must earn its
place against the plain model. Each candidate is boosted on the same folds (train.params at a
screening learning rate of at least 0.3 with capped trees, early stopping on each fold's
validation block). Nothing after the validation window is
used, so the choice is part of the model's configuration.

What each family adds on those folds (`FamilySelection.effects`) is in-sample: the same fold
blocks chose the families, so a family is kept exactly when its effect there is above 0. It is
kept as a diagnostic, without intervals. The evidence is out of sample (`ablation_arms`,
`boost_arm`; measured by `evaluate.families`): after the choice is frozen, the chosen set is
refitted without each kept family and with each family left out, with the model's parameters and
tree count on its training window, and scored on the test window.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from pipeline.config import Config, FeaturesConfig
from pipeline.features.build import feature_families
from pipeline.features.featureset import FeatureSet
from pipeline.plan import Windows
from pipeline.timeaxis import Window
from pipeline.train.engine import Rounds, dmatrix, margin, split_params, train_booster
from pipeline.train.objectives import average_precision_replicates
from pipeline.train.rebalance import rebalance
from pipeline.train.rows import WindowRows
from pipeline.train.tune import fold_rows

# A screening: the families are compared at a quick learning rate with a cap on the trees, the
# same for every candidate set, so that leaving each family out costs one short fit per fold.
SCREEN_LEARNING_RATE = 0.3
SCREEN_ROUNDS = 500


@dataclass(frozen=True)
class FamilySelection:
    """The families kept, their features, and each family's in-sample effect on the validation
    AP of the folds that chose them (a diagnostic: no interval)."""

    kept: list[str]
    columns: list[str]
    effects: pd.DataFrame  # family, features, ap_with, ap_without, effect, dropped
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
            Rounds(
                min(config.train.num_boost_round, SCREEN_ROUNDS), config.train.early_stopping_rounds
            ),
        )
        out.append((valid.y, margin(booster, valid.X)))
    return out


def _mean_ap(folds: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean average precision over the folds' validation blocks."""
    return float(np.mean([average_precision_replicates(y, score, 0, 0)[0] for y, score in folds]))


def select_families(
    fs: FeatureSet, windows: Windows, params: dict[str, Any], config: Config
) -> FamilySelection:
    """Forward selection of feature families from the raw columns; every family's effect."""
    family = feature_families(fs.manifest, config.features)
    family = family.loc[[str(c) for c in fs.X.columns]]
    present = [str(f) for f in dict.fromkeys(family.to_numpy()) if f]
    cache: dict[frozenset[str], float] = {}
    # built once, sliced by column for each candidate
    folds = fold_rows(fs, windows, config.split, config.train.min_category_count)

    def score(families: frozenset[str]) -> float:
        if families not in cache:
            columns = [c for c in family.index if family[c] in families]
            cache[families] = _mean_ap(_fold_scores(folds, columns, params, config))
        return cache[families]

    start = frozenset({"raw"} if "raw" in present else present)
    chosen = start
    while True:
        candidates = [chosen | {f} for f in present if f not in chosen]
        if not candidates:
            break
        best = max(candidates, key=score)
        if score(best) <= score(chosen):
            break
        chosen = best
    rows = []
    for name in present:
        if chosen == {name}:
            continue
        joined = name in chosen
        with_it, without_it = (chosen, chosen - {name}) if joined else (chosen | {name}, chosen)
        rows.append(
            dict(
                family=name,
                features=int((family == name).sum()),
                ap_with=score(with_it),
                ap_without=score(without_it),
                effect=score(with_it) - score(without_it),
                dropped=not joined,
            )
        )
    effects = pd.DataFrame(
        rows, columns=["family", "features", "ap_with", "ap_without", "effect", "dropped"]
    )
    kept = [f for f in present if f in chosen]
    return FamilySelection(
        kept=kept,
        columns=[c for c in family.index if family[c] in chosen],
        effects=effects,
        ap_all=score(frozenset(present)),
        ap_chosen=score(chosen),
    )


# --- out of sample: the frozen choice refitted with one family changed --------------------------


@dataclass(frozen=True)
class AblationArm:
    """The frozen choice with one family changed: left out (a kept family) or added (one the
    selection dropped), as the columns of one refit."""

    family: str
    kept: bool  # whether the selection kept the family (the arm then leaves it out)
    features: int
    columns: list[str]


def ablation_arms(
    fs: FeatureSet, chosen: list[str], features: FeaturesConfig
) -> tuple[list[str], list[AblationArm]]:
    """The chosen columns (in `fs`'s order) and one arm per family present in `fs`: the chosen
    set without each kept family (unless it is the only one) and with each family left out
    (families by the `features` settings)."""
    family = feature_families(fs.manifest, features)
    family = family.loc[[str(c) for c in fs.X.columns]]
    kept = {family[c] for c in chosen if c in family.index}
    present = [str(f) for f in dict.fromkeys(family.to_numpy()) if f]
    arms = []
    for name in present:
        if kept == {name}:
            continue
        families = kept - {name} if name in kept else kept | {name}
        columns = [str(c) for c in family.index if family[c] in families]
        arms.append(AblationArm(name, name in kept, int((family == name).sum()), columns))
    return [str(c) for c in family.index if family[c] in kept], arms


def boost_arm(
    train: WindowRows,
    columns: list[str],
    params: dict[str, Any],
    imbalance: str,
    trees: int,
    config: Config,
) -> xgb.Booster:
    """A fixed number of `trees` boosted on `columns` of the training rows with the model's
    parameters and imbalance treatment (no early stopping: every arm gets the same budget)."""
    booster_params, _ = split_params({**params, "imbalance": imbalance}, config)
    rows, extra = rebalance(replace(train, X=train.X[columns]), imbalance, config.seed)
    return xgb.train({**booster_params, **extra}, dmatrix(rows), num_boost_round=trees)
