"""SHAP explanations for reviewers: what drives the score overall, and for one declaration.

TreeSHAP values of the booster's margin (log-odds), from `shap.TreeExplainer`. With shap 0.51 and
xgboost 3.2, `TreeExplainer(booster)` parses the model (categorical splits included) and, for the
default tree-path-dependent algorithm, delegates the computation to XGBoost's own
``predict(pred_contribs=True)``; it builds that DMatrix without ``enable_categorical`` when handed
a DataFrame, so we hand it a DMatrix. If shap ever fails to read the booster (shap issues 4184 and
4288 broke on XGBoost >= 3.0's array ``base_score``), we fall back to ``pred_contribs`` directly:
the same numbers, and `Explanations.method` says which path was taken.

Pure functions: figures come back as PNG bytes, values as frames; jobs write them.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from pipeline.config import Config
from pipeline.features.featureset import FeatureSet
from pipeline.serve.model import TargetingModel

MAX_DISPLAY = 15


@dataclass
class Explanations:
    """SHAP values of a sample of declarations and the figures a reviewer reads."""

    values: pd.DataFrame  # declaration_id, one column per feature, base_value, margin
    importance: pd.DataFrame  # feature, stage, mean_abs, share (of all SHAP mass)
    families: pd.DataFrame  # stage, mean_abs, share
    figures: dict[str, bytes] = field(default_factory=dict)  # name -> PNG
    method: str = "shap.TreeExplainer"


def shap_values(model: TargetingModel, X: pd.DataFrame) -> tuple[np.ndarray, float, str]:
    """TreeSHAP values (rows x features) of the margin, the base value and the method used."""
    matrix = xgb.DMatrix(model.prepare(X), enable_categorical=True)
    try:
        import shap

        explainer = shap.TreeExplainer(model.booster)
        values = np.asarray(explainer.shap_values(matrix), dtype=float)
        base = float(np.ravel(explainer.expected_value)[0])
        method = "shap.TreeExplainer"
    except Exception:
        contribs = np.asarray(model.booster.predict(matrix, pred_contribs=True), dtype=float)
        values, base, method = contribs[:, :-1], float(contribs[0, -1]), "xgboost pred_contribs"
    return values, base, method


def numeric_view(X: pd.DataFrame) -> pd.DataFrame:
    """Features as numbers for colouring plots: category codes (NaN when missing)."""
    cast = {
        c: X[c].cat.codes.astype(float).where(X[c].cat.codes >= 0)
        for c in X.columns
        if isinstance(X[c].dtype, pd.CategoricalDtype)
    }
    return X.assign(**cast).astype(float) if cast else X.astype(float)


def _png(figure: object) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig = figure if figure is not None else plt.gcf()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")  # type: ignore[attr-defined]
    plt.close("all")
    return buffer.getvalue()


def _explanation(values: np.ndarray, base: float, X: pd.DataFrame, labels: bool = False) -> object:
    """A shap.Explanation; `labels` adds category names for waterfalls (slow to slice on
    thousands of rows, so global views colour by category codes instead)."""
    import shap

    return shap.Explanation(
        values=values,
        base_values=np.full(len(values), base),
        data=numeric_view(X).to_numpy(),
        display_data=X.astype(object).to_numpy() if labels else None,
        feature_names=list(X.columns),
    )


def importance_tables(
    values: np.ndarray, features: Sequence[str], manifest: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean |SHAP| per feature and per feature family (manifest stage), with shares of the mass."""
    stage = manifest.set_index("name")["stage"] if len(manifest) else pd.Series(dtype=str)
    mean_abs = np.abs(values).mean(axis=0) if len(values) else np.zeros(len(features))
    total = mean_abs.sum()
    importance = pd.DataFrame(
        {
            "feature": list(features),
            "stage": [str(stage.get(f, "unknown")) for f in features],
            "mean_abs": mean_abs,
            "share": mean_abs / total if total > 0 else np.nan,
        }
    ).sort_values("mean_abs", ascending=False, ignore_index=True)
    families = (
        importance.groupby("stage", as_index=False)[["mean_abs", "share"]]
        .sum()
        .sort_values("mean_abs", ascending=False, ignore_index=True)
    )
    return importance, families


def family_figure(families: pd.DataFrame) -> bytes:
    """Horizontal bar of SHAP mass by feature family."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * max(len(families), 1)))
    ordered = families.iloc[::-1]
    ax.barh(ordered["stage"], ordered["share"] * 100, color="#3b6ea8")
    ax.set_xlabel("share of mean |SHAP| (%)")
    ax.set_title("What drives the score, by feature family")
    for y_pos, share in enumerate(ordered["share"]):
        ax.text(share * 100, y_pos, f" {share:.0%}", va="center", fontsize=9)
    return _png(fig)


def global_explanations(
    model: TargetingModel,
    X: pd.DataFrame,
    declaration_id: pd.Series,
    manifest: pd.DataFrame,
    *,
    sample: int,
    top_dependence: int,
    seed: int,
) -> Explanations:
    """Global views on a seeded sample of `sample` rows: bar, beeswarm, dependence, families.
    The same inputs again (same booster, rows, manifest and views) return the kept result."""
    import matplotlib.pyplot as plt
    import shap

    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(len(X), size=min(sample, len(X)), replace=False))
    Xs = X.iloc[take][model.feature_names].reset_index(drop=True)
    ids = declaration_id.iloc[take]
    key = _inputs_key(model, Xs, ids, manifest, top_dependence)
    if key in _LAST_GLOBAL:
        return _LAST_GLOBAL[key]
    values, base, method = shap_values(model, Xs)
    frame = values_frame(values, base, Xs, ids)
    importance, families = importance_tables(values, model.feature_names, manifest)
    explanation = _explanation(values, base, Xs)
    figures: dict[str, bytes] = {}
    plt.figure()
    shap.plots.bar(explanation, max_display=MAX_DISPLAY, show=False)
    figures["shap_bar"] = _png(None)
    plt.figure()
    shap.plots.beeswarm(explanation, max_display=MAX_DISPLAY, show=False)
    figures["shap_beeswarm"] = _png(None)
    for feature in importance["feature"].head(top_dependence):
        plt.figure()
        column = explanation[:, feature]  # type: ignore[index]
        shap.plots.scatter(column, show=False)
        if isinstance(Xs[feature].dtype, pd.CategoricalDtype):
            _category_ticks(plt.gca(), Xs[feature])
        figures[f"dependence_{feature}"] = _png(None)
    figures["shap_families"] = family_figure(families)
    found = Explanations(frame, importance, families, figures, method)
    _LAST_GLOBAL.clear()
    _LAST_GLOBAL[key] = found
    return found


def window_explanations(model: TargetingModel, window: FeatureSet, config: Config) -> Explanations:
    """`global_explanations` of a window's declarations with the `evaluate` section's sample,
    views and the run's seed: the one call the report and `targeting explain` share."""
    return global_explanations(
        model,
        window.X,
        window.declaration_id,
        window.manifest,
        sample=config.evaluate.shap_sample,
        top_dependence=config.evaluate.top_dependence,
        seed=int(config.seed),
    )


# The last global explanation of this process, keyed by everything it was computed from:
# `targeting run` reviews (evaluate) then explains the same model on the same seeded sample, and
# SHAP with its figures is the slowest view of a large model (about 27 s on KCS). Written by hand
# because functools' caches need hashable arguments, and these are frames and a booster.
_LAST_GLOBAL: dict[str, Explanations] = {}


def _inputs_key(
    model: TargetingModel,
    Xs: pd.DataFrame,
    ids: pd.Series,
    manifest: pd.DataFrame,
    top_dependence: int,
) -> str:
    """Digest of the booster, the sampled rows and ids, the manifest and the views asked for."""
    digest = hashlib.sha256(bytes(model.booster.save_raw("ubj")))
    for frame in (Xs, ids.astype(str).to_frame(), manifest.astype(str)):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        digest.update(",".join(map(str, frame.columns)).encode())
    digest.update(str(top_dependence).encode())
    return digest.hexdigest()


def _category_ticks(axis: Any, values: pd.Series, most: int = 45) -> None:
    """Name the categories on a dependence plot's x axis (the plot places them at their codes):
    every category seen in the sample, or the `most` most frequent."""
    seen = values.cat.codes.loc[values.cat.codes >= 0]
    codes = np.sort(seen.value_counts().index.to_numpy()[:most])
    names = values.cat.categories.astype(str).to_numpy()[codes]
    axis.set_xticks(codes)
    axis.set_xticklabels(names, rotation=90, fontsize=7 if len(codes) > 20 else 9)


def values_frame(
    values: np.ndarray, base: float, X: pd.DataFrame, declaration_id: pd.Series
) -> pd.DataFrame:
    """SHAP values as a frame: declaration_id, one column per feature, base_value, margin."""
    frame = pd.DataFrame(values, columns=list(X.columns))
    frame.insert(0, "declaration_id", declaration_id.astype("string").to_numpy())
    frame["base_value"] = base
    frame["margin"] = base + values.sum(axis=1)
    return frame


def waterfalls(
    model: TargetingModel, X: pd.DataFrame, declaration_id: pd.Series
) -> tuple[pd.DataFrame, dict[str, bytes]]:
    """Local explanations: SHAP values and one waterfall per declaration (margin, log-odds)."""
    import matplotlib.pyplot as plt
    import shap

    Xs = X[model.feature_names].reset_index(drop=True)
    ids = declaration_id.astype("string").reset_index(drop=True)
    if len(Xs) == 0:
        return values_frame(np.zeros((0, Xs.shape[1])), 0.0, Xs, ids), {}
    values, base, _ = shap_values(model, Xs)
    explanation = _explanation(values, base, Xs, labels=True)
    figures: dict[str, bytes] = {}
    for i, identifier in enumerate(ids):  # one figure per requested declaration (a handful)
        plt.figure()
        shap.plots.waterfall(explanation[i], max_display=12, show=False)  # type: ignore[index]
        plt.title(f"declaration {identifier} (log-odds of a hit)")
        figures[f"waterfall_{identifier}"] = _png(None)
    return values_frame(values, base, Xs, ids), figures


def red_sample(score: np.ndarray, red_share: float, count: int, seed: int) -> np.ndarray:
    """Positions of `count` declarations drawn (seeded) from the top `red_share` by score."""
    from pipeline.serve.ranking import top_mask

    if count == 0 or len(score) == 0:
        return np.zeros(0, dtype=np.int64)
    red = np.flatnonzero(top_mask(score, red_share))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(red, size=min(count, len(red)), replace=False))


def dominance(
    shap_frame: pd.DataFrame, entities: pd.DataFrame, features: Sequence[str]
) -> pd.DataFrame:
    """For each feature, the entity (importer, HS chapter...) whose |SHAP| mass most exceeds its
    share of declarations.

    `entities` is row-aligned with `shap_frame` and holds the identifier columns to check.
    Returns feature, entity_column, entity, share (of that feature's mass), row_share (of the
    declarations), highest share first. A common level (most declarations come by sea) carries
    much mass without dominating; one importer with 1 % of the rows and 60 % of the mass does.
    """
    columns = ["feature", "entity_column", "entity", "share", "row_share"]
    rows = []
    for column in entities.columns:  # a few identifier columns
        key = entities[column].astype("string").fillna("<missing>").to_numpy()
        mass = shap_frame[list(features)].abs().groupby(key).sum()
        totals = mass.sum(axis=0)
        shares = mass / totals.where(totals > 0)
        row_share = pd.Series(key).value_counts(normalize=True).reindex(mass.index).to_numpy()
        excess = shares.to_numpy() - row_share[:, None]
        best = np.nan_to_num(excess, nan=-np.inf).argmax(axis=0)
        picked = np.arange(len(features))
        rows.append(
            pd.DataFrame(
                {
                    "feature": list(features),
                    "entity_column": column,
                    "entity": mass.index.to_numpy()[best],
                    "share": shares.to_numpy()[best, picked],
                    "row_share": row_share[best],
                }
            )
        )
    if not rows:
        return pd.DataFrame(columns=columns)
    return pd.concat(rows)[columns].sort_values("share", ascending=False, ignore_index=True)
