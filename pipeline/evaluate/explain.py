"""SHAP explanations for reviewers: what drives the score overall, and for one declaration.

TreeSHAP values of the booster's margin (log-odds), from `shap.TreeExplainer`; the global views
stay on that additive scale, while each declaration's waterfall is restated on what is served:
its calibrated probability of a hit and, where the ranking uses expected revenue, its revenue if
hit (`probability_scale`, `revenue_explanation`). Category features are named by their levels,
never by internal codes, and the red channel is compared with the green one (`red_versus_green`).

With shap 0.51 and xgboost 3.2, `TreeExplainer(booster)` parses the model (categorical splits
included) and, for the default tree-path-dependent algorithm, delegates the computation to
XGBoost's own ``predict(pred_contribs=True)``; it builds that DMatrix without
``enable_categorical`` when handed a DataFrame, so we hand it a DMatrix. If shap ever fails to
read the booster (shap issues 4184 and 4288 broke on XGBoost >= 3.0's array ``base_score``), we
fall back to ``pred_contribs`` directly: the same numbers, and `Explanations.method` says which
path was taken.

Pure functions: figures come back as PNG bytes, values as frames; jobs write them.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from pipeline.config import EvaluateConfig
from pipeline.features.featureset import FeatureSet
from pipeline.plan import BY_PROBABILITY, RankingPolicy
from pipeline.serve.model import TargetingModel

MAX_DISPLAY = 15
TOP_LEVELS = 12  # levels of a category feature on its dependence plot; the rest pooled
LOG_LINK_OBJECTIVES = ("reg:tweedie", "reg:gamma", "count:poisson")  # output = exp(margin)


@dataclass
class Explanations:
    """SHAP values of a sample of declarations and the figures a reviewer reads."""

    values: pd.DataFrame  # declaration_id, one column per feature, base_value, margin
    importance: pd.DataFrame  # feature, stage, mean_abs, share (of all SHAP mass)
    families: pd.DataFrame  # stage, mean_abs, share
    figures: dict[str, bytes] = field(default_factory=dict)  # name -> PNG
    method: str = "shap.TreeExplainer"
    # feature, red, green (mean SHAP of each cohort), difference; empty without a ranking
    cohorts: pd.DataFrame = field(default_factory=pd.DataFrame)


def shap_values(
    model: TargetingModel, X: pd.DataFrame, booster: xgb.Booster | None = None
) -> tuple[np.ndarray, float, str]:
    """TreeSHAP values (rows x features) of a booster's margin (default: the hit model's), the
    base value and the method used."""
    booster = model.booster if booster is None else booster
    matrix = xgb.DMatrix(model.prepare(X), enable_categorical=True)
    try:
        import shap

        explainer = shap.TreeExplainer(booster)
        values = np.asarray(explainer.shap_values(matrix), dtype=float)
        base = float(np.ravel(explainer.expected_value)[0])
        method = "shap.TreeExplainer"
    except Exception:
        contribs = np.asarray(booster.predict(matrix, pred_contribs=True), dtype=float)
        values, base, method = contribs[:, :-1], float(contribs[0, -1]), "xgboost pred_contribs"
    return values, base, method


def colour_values(X: pd.DataFrame) -> pd.DataFrame:
    """Features as numbers for colouring plots. A category feature is NaN (drawn grey): its
    internal codes have no order, and colouring by them would show one that does not exist."""
    cast = {c: np.nan for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)}
    return X.assign(**cast).astype(float) if cast else X.astype(float)


def _rescaled(
    values: np.ndarray, base: float, served: np.ndarray, served_base: float
) -> np.ndarray:
    """SHAP values of a margin restated on the served quantity: each row scaled by
    (served - served_base) / (margin - base), so they add up exactly to what is served, from
    `served_base` (what the base margin serves). Signs and each feature's share of the row's
    margin are kept (the maps are monotone); a row at the base margin moves nothing."""
    moved = values.sum(axis=1)
    scale = np.divide(
        served - served_base, moved, out=np.zeros_like(moved), where=np.abs(moved) > 1e-12
    )
    return values * scale[:, None]


def probability_scale(
    model: TargetingModel, values: np.ndarray, base: float
) -> tuple[np.ndarray, float, np.ndarray]:
    """SHAP values of the margin restated on the served, calibrated probability of a hit: the
    values, the probability of the base margin, and each row's probability. Not a Shapley value
    of the probability itself (an isotonic map has none without a background sample): the
    log-odds attribution shared out over the probability the reviewer sees."""
    probability = model.calibration.apply(base + values.sum(axis=1))
    at_base = float(model.calibration.apply(np.array([base]))[0])
    return _rescaled(values, base, probability, at_base), at_base, probability


def _link_inverse(booster: xgb.Booster) -> Any:
    """How a booster's margin becomes its output: exp for the log-link regressors, else itself."""
    import json

    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    return np.exp if objective in LOG_LINK_OBJECTIVES else (lambda margin: margin)


def revenue_explanation(
    model: TargetingModel, X: pd.DataFrame
) -> tuple[np.ndarray, float, np.ndarray] | None:
    """The revenue part explained in currency: SHAP values of the revenue model's margin restated
    on E[revenue | hit] as served (clipped at 0), its value at the base margin, and each row's
    E[revenue | hit]. None when the model has no revenue part."""
    if model.revenue_booster is None:
        return None
    values, base, _ = shap_values(model, X, model.revenue_booster)
    inverse = _link_inverse(model.revenue_booster)
    revenue = np.clip(inverse(base + values.sum(axis=1)), 0.0, None)
    at_base = float(np.clip(inverse(np.array([base])), 0.0, None)[0])
    return _rescaled(values, base, revenue, at_base), at_base, revenue


def _png(figure: object) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig = figure if figure is not None else plt.gcf()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")  # type: ignore[attr-defined]
    plt.close("all")
    return buffer.getvalue()


def _explanation(values: np.ndarray, base: float, X: pd.DataFrame, labels: bool = False) -> object:
    """A shap.Explanation; `labels` adds category names for waterfalls (slow to slice on
    thousands of rows, so the global views leave categories uncoloured instead)."""
    import shap

    return shap.Explanation(
        values=values,
        base_values=np.full(len(values), base),
        data=colour_values(X).to_numpy(),
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


@dataclass(frozen=True)
class GlobalViews:
    """How the global views are drawn: SHAP on a seeded sample of `sample` declarations,
    dependence plots of the `top_dependence` most important features."""

    sample: int
    top_dependence: int
    seed: int

    @classmethod
    def of(cls, evaluate: EvaluateConfig, seed: int) -> GlobalViews:
        """The `evaluate` section's sample and views, with the run's seed."""
        return cls(evaluate.shap_sample, evaluate.top_dependence, int(seed))


def global_explanations(
    model: TargetingModel,
    window: FeatureSet,
    views: GlobalViews,
    channel: pd.Series | None = None,
) -> Explanations:
    """Global views of a window's declarations: bar, beeswarm, dependence, families, and where
    `channel` (row-aligned with the window) is given, the red channel against the green one.
    The same inputs again (same booster, rows, manifest and views) return the kept result."""
    X, manifest, top_dependence = window.X, window.manifest, views.top_dependence
    rng = np.random.default_rng(views.seed)
    take = np.sort(rng.choice(len(X), size=min(views.sample, len(X)), replace=False))
    Xs = X.iloc[take][model.feature_names].reset_index(drop=True)
    ids = window.declaration_id.iloc[take]
    cohort = None if channel is None else channel.iloc[take].astype(str).reset_index(drop=True)
    key = _inputs_key(model, Xs, ids, manifest, top_dependence, cohort)
    if key in _LAST_GLOBAL:
        return _LAST_GLOBAL[key]
    values, base, method = shap_values(model, Xs)
    frame = values_frame(values, base, Xs, ids)
    importance, families = importance_tables(values, model.feature_names, manifest)
    explanation = _explanation(values, base, Xs)
    figures = _global_figures(explanation, Xs, values, importance["feature"].head(top_dependence))
    figures["shap_families"] = family_figure(families)
    cohorts = pd.DataFrame(columns=["feature", "red", "green", "difference"])
    if cohort is not None:
        cohorts, figure = red_versus_green(explanation, cohort)
        if figure:
            figures["shap_red_vs_green"] = figure
    found = Explanations(frame, importance, families, figures, method, cohorts)
    _LAST_GLOBAL.clear()
    _LAST_GLOBAL[key] = found
    return found


def _global_figures(
    explanation: Any, Xs: pd.DataFrame, values: np.ndarray, dependence: Sequence[str]
) -> dict[str, bytes]:
    """Bar, beeswarm and one dependence plot per feature of `dependence`."""
    import matplotlib.pyplot as plt
    import shap

    figures: dict[str, bytes] = {}
    plt.figure()
    shap.plots.bar(explanation, max_display=MAX_DISPLAY, show=False)
    figures["shap_bar"] = _png(None)
    plt.figure()
    with warnings.catch_warnings():  # an uncoloured (all-NaN) category column has no quantiles
        warnings.simplefilter("ignore", RuntimeWarning)
        shap.plots.beeswarm(explanation, max_display=MAX_DISPLAY, show=False)
    figures["shap_beeswarm"] = _png(None)
    for feature in dependence:
        if isinstance(Xs[feature].dtype, pd.CategoricalDtype):
            column = values[:, list(Xs.columns).index(feature)]
            figures[f"dependence_{feature}"] = category_dependence(feature, column, Xs[feature])
            continue
        plt.figure()
        shap.plots.scatter(explanation[:, feature], show=False)
        figures[f"dependence_{feature}"] = _png(None)
    return figures


def category_dependence(
    feature: str, values: np.ndarray, levels: pd.Series, top: int = TOP_LEVELS
) -> bytes:
    """A category feature's SHAP values by level: one box per level among the `top` most frequent
    of the sample, the others pooled, missing values on their own; level names on the y axis.
    Drawn here, not with shap.plots.scatter, which places the levels at their internal codes on
    the x axis (hs6 has thousands: their names overlapped)."""
    import matplotlib.pyplot as plt

    grouped = level_groups(levels, top)
    by_level = pd.Series(values).groupby(grouped.to_numpy())
    order = by_level.median().sort_values().index
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.32 * len(order)))
    ax.boxplot(
        [by_level.get_group(level).to_numpy() for level in order],
        orientation="horizontal",
        tick_labels=[f"{level} ({by_level.size()[level]})" for level in order],
        showfliers=False,
    )
    ax.axvline(0.0, color="#888888", linewidth=0.8)
    ax.set_xlabel(f"SHAP value of {feature} (log-odds)")
    ax.set_title(f"{feature}: the most frequent levels of the sample, the others pooled")
    return _png(fig)


def level_groups(levels: pd.Series, top: int = TOP_LEVELS) -> pd.Series:
    """Each value's level name if among the `top` most frequent (missing counted as a level),
    else "other levels (n)"."""
    names = pd.Series(levels.astype("string").fillna("(missing)").to_numpy(dtype=object))
    counts = names.value_counts()
    kept = counts.index[:top]
    pooled = f"other levels ({len(counts) - len(kept)})"
    return names.where(names.isin(kept), pooled)


def channel_cohorts(score: np.ndarray, channels: dict[str, float]) -> pd.Series:
    """Each declaration's channel under the export's shares applied to `score`: red for the top
    red share, yellow for the next, green for the rest (the random draw is not a cohort)."""
    from pipeline.serve.ranking import top_mask

    red_share = channels.get("red", 0.0)
    red = top_mask(score, red_share)
    flagged = top_mask(score, red_share + channels.get("yellow", 0.0))
    return pd.Series(np.where(red, "red", np.where(flagged, "yellow", "green")))


def red_versus_green(explanation: Any, cohort: pd.Series) -> tuple[pd.DataFrame, bytes]:
    """Mean SHAP value per feature of the red and of the green declarations (a table, largest
    difference first) and shap's cohort bar; no figure when a cohort is empty."""
    import matplotlib.pyplot as plt
    import shap

    values = pd.DataFrame(explanation.values, columns=explanation.feature_names)
    means = values.groupby(cohort.to_numpy()).mean().reindex(["red", "green"])
    table = pd.DataFrame(
        {"feature": values.columns, "red": means.loc["red"], "green": means.loc["green"]}
    ).reset_index(drop=True)
    table["difference"] = table["red"] - table["green"]
    table = table.sort_values("difference", key=np.abs, ascending=False, ignore_index=True)
    chosen = cohort.isin(["red", "green"]).to_numpy()
    if not {"red", "green"} <= set(cohort[chosen]):
        return table, b""
    compared = explanation[chosen].cohorts(cohort[chosen].to_numpy()).mean(0)
    plt.figure()
    shap.plots.bar(compared, max_display=MAX_DISPLAY, show=False)
    plt.title("Mean SHAP value (log-odds): red channel against green")
    return table, _png(None)


def window_explanations(
    model: TargetingModel,
    window: FeatureSet,
    ranking: RankingPolicy,
    views: GlobalViews,
    channels: Mapping[str, float],
) -> Explanations:
    """`global_explanations` of a window's declarations with the `views` (`GlobalViews.of` the
    `evaluate` section and the run's seed), its red and green channels as the export's shares
    (`serve.channels`) and the run plan's `ranking` put them: the one call the report and
    `targeting explain` share."""
    from pipeline.serve.ranking import rank

    score = rank(model, window.X, ranking).priority
    return global_explanations(model, window, views, channel=channel_cohorts(score, dict(channels)))


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
    cohort: pd.Series | None = None,
) -> str:
    """Digest of the booster, the sampled rows and ids, the manifest, the views asked for and
    the rows' channels."""
    digest = hashlib.sha256(bytes(model.booster.save_raw("ubj")))
    cohorts = pd.Series(dtype=str) if cohort is None else cohort
    for frame in (Xs, ids.astype(str).to_frame(), manifest.astype(str), cohorts.to_frame()):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        digest.update(",".join(map(str, frame.columns)).encode())
    digest.update(str(top_dependence).encode())
    return digest.hexdigest()


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
    model: TargetingModel,
    X: pd.DataFrame,
    declaration_id: pd.Series,
    ranking: RankingPolicy = BY_PROBABILITY,
) -> tuple[pd.DataFrame, dict[str, bytes]]:
    """Local explanations: SHAP values (margin, log-odds) and one waterfall per declaration of its
    served probability of a hit; where `ranking` (the run plan's) uses expected revenue and the
    model has a revenue part, a second waterfall of its revenue if hit."""
    Xs = X[model.feature_names].reset_index(drop=True)
    ids = declaration_id.astype("string").reset_index(drop=True)
    if len(Xs) == 0:
        return values_frame(np.zeros((0, Xs.shape[1])), 0.0, Xs, ids), {}
    values, base, _ = shap_values(model, Xs)
    on_probability, p0, probability = probability_scale(model, values, base)
    revenue = None
    if model.revenue_booster is not None and ranking.resolved(True).rank_by != "probability":
        revenue = revenue_explanation(model, Xs)
    figures: dict[str, bytes] = {}
    for i, identifier in enumerate(ids):  # one figure per requested declaration (a handful)
        title = f"declaration {identifier}: probability of a hit {probability[i]:.3f} (served)"
        row = Xs.iloc[[i]]
        figures[f"waterfall_{identifier}"] = _waterfall(on_probability[i], p0, row, title)
        if revenue is not None:
            money, r0, if_hit = revenue
            title = (
                f"declaration {identifier}: revenue if hit {if_hit[i]:,.0f}; expected revenue "
                f"{probability[i]:.3f} x {if_hit[i]:,.0f} = {probability[i] * if_hit[i]:,.0f}"
            )
            figures[f"waterfall_{identifier}_revenue"] = _waterfall(money[i], r0, row, title)
    return values_frame(values, base, Xs, ids), figures


def _waterfall(values: np.ndarray, base: float, row: pd.DataFrame, title: str) -> bytes:
    """shap's waterfall of one declaration (a one-row frame), its features named with their
    values (category levels by name)."""
    import matplotlib.pyplot as plt
    import shap

    explanation = shap.Explanation(
        values=values,
        base_values=base,
        data=colour_values(row).to_numpy()[0],
        display_data=row.astype(object).to_numpy()[0],
        feature_names=list(row.columns),
    )
    plt.figure()
    # shap 0.51's waterfall(show=False) turns pyplot's interactive mode off for good; the context
    # restores it, so a notebook that explains declarations keeps showing its later figures
    with plt.ioff():
        shap.plots.waterfall(explanation, max_display=12, show=False)
    plt.title(title)
    return _png(None)


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
