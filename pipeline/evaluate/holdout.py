"""A run's test window scored, for the review and threshold notebooks.

`scored_test_window` scores the declarations of the run plan's test window (`serve.model.plan_of`
gives a model's plan) and lines them up with the most honest label available: the simulator's
ground truth (every declaration, fraud or not) when there is one, else the recorded outcome
(controlled declarations only). `capacity_table`
and `tradeoff_curve` read what the top of that ranking catches; `lookup` finds declarations by
id in the feature set and the canonical declarations, in the order asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields

import numpy as np
import pandas as pd

from pipeline.evaluate import metrics as mx
from pipeline.evaluate.keys import Population
from pipeline.features.featureset import FeatureSet
from pipeline.plan import RunPlan
from pipeline.serve.model import TargetingModel
from pipeline.serve.ranking import rank


def test_window(features: FeatureSet, plan: RunPlan) -> FeatureSet:
    """The rows of `features` inside the run plan's test window."""
    window = plan.test
    test = features.subset(window.contains(features.lodged_at))
    if len(test) == 0:
        raise ValueError(
            f"the test window {window.start} .. {window.end} holds no declaration of the features"
        )
    return test


def scored_test_window(
    model: TargetingModel,
    features: FeatureSet,
    plan: RunPlan,
    ground_truth: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per declaration of the run plan's test window, ranked under the plan's ranking:
    score, probability, outcome and label.

    Columns: declaration_id, lodged_at, office, score (tie-free ranking score, what the channels
    rank by), probability (calibrated P(hit)), hit (recorded outcome; NaN when not controlled),
    revenue_recovered, and the evaluation label ``y`` with its ``revenue``: with `ground_truth`,
    fraud and revenue_recoverable of every declaration (`population` says which); without, the
    recorded hit and revenue, NaN for declarations nobody controlled.
    """
    test = test_window(features, plan)
    ranked = rank(model, test.X, plan.ranking)
    frame = pd.DataFrame(
        {
            "declaration_id": test.declaration_id.astype(str).to_numpy(),
            "lodged_at": test.lodged_at.to_numpy(),
            "office": test.office.astype("string").to_numpy(),
            "score": ranked.priority,
            "probability": ranked.probability,
            "hit": test.y.to_numpy(dtype=float),
            "revenue_recovered": test.revenue_recovered.to_numpy(dtype=float),
        }
    )
    if ground_truth is None:
        frame["y"] = frame["hit"]
        frame["revenue"] = frame["revenue_recovered"]
        return frame
    truth = (
        ground_truth.assign(declaration_id=ground_truth["declaration_id"].astype(str))
        .drop_duplicates("declaration_id")
        .set_index("declaration_id")
        .reindex(frame["declaration_id"].to_numpy())
    )
    frame["fraud"] = truth["fraud"].astype("boolean").to_numpy()
    frame["fraud_type"] = truth["fraud_type"].astype("string").to_numpy()
    frame["y"] = truth["fraud"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    frame["revenue"] = truth["revenue_recoverable"].to_numpy(dtype=float)
    return frame


def population(scored: pd.DataFrame) -> str:
    """Which declarations the label `y` of `scored` covers, in words (for a reader)."""
    key = Population.TRUTH if "fraud" in scored.columns else Population.INSPECTED
    return key.label


def _labelled(scored: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """y, score and revenue of the labelled rows (revenue None when the data records none)."""
    rows = scored["y"].notna().to_numpy()
    revenue = scored["revenue"].to_numpy(dtype=float)[rows]
    has_revenue = bool(np.isfinite(revenue).any() and np.nansum(revenue) > 0)
    return (
        scored["y"].to_numpy(dtype=float)[rows],
        scored["score"].to_numpy(dtype=float)[rows],
        revenue if has_revenue else None,
    )


def capacity_table(
    scored: pd.DataFrame, rates: Sequence[float], *, replicates: int = 0, seed: int = 0
) -> pd.DataFrame:
    """Precision, recall and revenue when the top n % of the test window are controlled.

    Tidy rows (model, rate, metric, value, low, high) for the model and a uniformly random
    selection, on the labelled rows of `scored` (see `population`); bootstrap intervals with
    `replicates` > 0.
    """
    y, score, revenue = _labelled(scored)
    if len(y) == 0:
        raise ValueError("no labelled declaration in the test window: nothing to measure")
    table = mx.metrics_table(
        y,
        {"model": score},
        rates,
        revenue=revenue,
        resampling=mx.Resampling(replicates=replicates, seed=seed),
    )
    baseline = mx.random_baseline(y, rates, revenue)
    both = pd.concat([table, baseline], ignore_index=True)
    return both.loc[both["rate"].notna()].reset_index(drop=True)


def tradeoff_curve(scored: pd.DataFrame, points: int = 200) -> pd.DataFrame:
    """Share of declarations controlled against the share of hits (and revenue) caught.

    `metrics.gain_curve` on the labelled rows of `scored`: share, gain, oracle_gain, lift and,
    when the data records revenue, revenue_gain.
    """
    y, score, revenue = _labelled(scored)
    if len(y) == 0:
        raise ValueError("no labelled declaration in the test window: no trade-off curve")
    return mx.gain_curve(y, score, revenue, points=points)


def lookup(
    features: FeatureSet, declarations: pd.DataFrame, ids: Sequence[str]
) -> tuple[FeatureSet, pd.DataFrame]:
    """The feature rows and canonical declarations of `ids`, in the order of `ids`.

    Raises ValueError naming the ids that either table lacks.
    """
    wanted = pd.Index([str(i) for i in ids])
    in_features = pd.Index(features.declaration_id.astype(str)).get_indexer(wanted)
    in_declarations = pd.Index(declarations["declaration_id"].astype(str)).get_indexer(wanted)
    missing = wanted[(in_features < 0) | (in_declarations < 0)]
    if len(missing):
        raise ValueError(
            f"no declaration {', '.join(missing[:10])}"
            + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            + " in the features and declarations of this config"
        )
    parts = {
        f.name: getattr(features, f.name).iloc[in_features].reset_index(drop=True)
        for f in fields(features)
        if f.name != "manifest"
    }
    return (
        FeatureSet(manifest=features.manifest, **parts),
        declarations.iloc[in_declarations].reset_index(drop=True),
    )
