"""Feature-family effects measured out of sample: an ablation on the test window.

The forward selection (`train.select`) chooses the families on the rolling tuning folds, and
what it says each family adds there is in-sample: the same fold blocks chose them. Here the
choice is frozen first. The chosen set, and the chosen set with one family changed (a kept
family left out, a dropped family added: `train.select.ablation_arms`), are each refitted with
the evaluated model's parameters and tree count on its own training labels
(`evaluate.selections.training_labels`), then scored on the test window, which no part of the
choice saw. A family's effect is the difference in average precision between the set with it
and the set without it, with a paired bootstrap 95 % interval (`metrics.metrics_table`, the same
resampled rows for both). One refit per family plus one: `evaluate.family_ablation` turns it off.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.evaluate import metrics as mx
from pipeline.evaluate.selections import training_labels
from pipeline.features.featureset import FeatureSet
from pipeline.serve.model import TargetingModel
from pipeline.timeaxis import Window
from pipeline.train.engine import margin
from pipeline.train.rows import cast_levels, frequent_levels, with_levels
from pipeline.train.select import AblationArm, ablation_arms, boost_arm

CHOSEN = "chosen families"
COLUMNS = [
    "population",
    "family",
    "features",
    "kept",
    "ap_with",
    "ap_without",
    "effect",
    "low",
    "high",
]


@dataclass(frozen=True)
class FamilyAblation:
    """Each family's out-of-sample effect on the test window's average precision, per
    population (frame: `COLUMNS`), how many refits it took, and why there is none."""

    effects: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COLUMNS))
    refits: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _arm_name(arm: AblationArm) -> str:
    return f"{'without' if arm.kept else 'with'} {arm.family}"


def _pair(arm: AblationArm) -> tuple[str, str]:
    """(with the family, without it): the chosen set is one side, the arm the other."""
    return (CHOSEN, _arm_name(arm)) if arm.kept else (_arm_name(arm), CHOSEN)


def arm_margins(
    model: TargetingModel,
    features: FeatureSet,
    windows: Mapping[str, Window],
    test_rows: np.ndarray,
    config: Config,
) -> tuple[dict[str, np.ndarray], list[AblationArm], list[str]]:
    """Each refit's booster margin on the test rows (the chosen set under `CHOSEN`, each arm
    under its name), the arms, and notes when nothing could be refitted."""
    own = training_labels(features, windows)
    trees = model.info.trees or model.booster.num_boosted_rounds()
    if own is None or own.y.sum() == 0:
        return {}, [], ["Family ablation skipped: the model records no training window with hits."]
    chosen, arms = ablation_arms(features, model.feature_names, config.features)
    if not arms:
        return {}, [], ["Family ablation skipped: the feature set has a single family."]
    levels = frequent_levels(own.X, config.train.min_category_count)
    train = with_levels(own, levels)
    test_X = cast_levels(features.X.loc[np.asarray(test_rows, dtype=bool)], levels)
    imbalance = model.info.imbalance or config.train.imbalance
    params = dict(model.info.params)
    margins = {}
    for name, columns in [(CHOSEN, chosen), *((_arm_name(a), a.columns) for a in arms)]:
        booster = boost_arm(train, columns, params, imbalance, trees, config)
        margins[name] = margin(booster, test_X[columns].reset_index(drop=True))
    return margins, arms, []


def family_ablation(
    model: TargetingModel,
    features: FeatureSet,
    windows: Mapping[str, Window],
    test_rows: np.ndarray,
    populations: Mapping[str, tuple[np.ndarray, np.ndarray]],
    config: Config,
) -> FamilyAblation:
    """Each family's effect on the test window's average precision, out of sample.

    Args:
        windows: the evaluated model's windows by name (its training window is refitted on).
        test_rows: mask of the test window over `features`.
        populations: name -> (mask over the test rows, labels of those rows): the inspected
            declarations and, on the simulator, every declaration against the ground truth.
    """
    if not config.evaluate.family_ablation:
        return FamilyAblation(notes=["Family ablation off (evaluate.family_ablation)."])
    started = time.perf_counter()
    margins, arms, notes = arm_margins(model, features, windows, test_rows, config)
    if not margins:
        return FamilyAblation(notes=notes)
    rows: list[dict[str, object]] = []
    for population, (mask, y) in populations.items():
        if len(y) == 0 or np.nansum(y) == 0:
            continue
        table = mx.metrics_table(
            y,
            {name: score[mask] for name, score in margins.items()},
            [],
            resampling=mx.Resampling(
                replicates=config.evaluate.bootstrap,
                seed=int(config.seed),
                compare=[_pair(arm) for arm in arms],
            ),
        ).set_index("model")
        table = table.loc[table["metric"] == "average_precision"]
        for arm in arms:
            with_it, without_it = _pair(arm)
            diff = table.loc[f"{with_it} - {without_it}"]
            rows.append(
                {
                    "population": population,
                    "family": arm.family,
                    "features": arm.features,
                    "kept": arm.kept,
                    "ap_with": float(table.loc[with_it, "value"]),
                    "ap_without": float(table.loc[without_it, "value"]),
                    "effect": float(diff["value"]),
                    "low": float(diff["low"]),
                    "high": float(diff["high"]),
                }
            )
    return FamilyAblation(
        effects=pd.DataFrame(rows, columns=COLUMNS),
        refits=len(margins),
        seconds=round(time.perf_counter() - started, 2),
        notes=notes,
    )
