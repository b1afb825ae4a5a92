"""The reviewer's report: one self-contained HTML page per run, figures embedded as base64 PNG.

A reviewer decides from it whether a model may go to the selectivity system: data windows, the
metrics table with intervals against baselines, calibration, lift and gain, breakdowns,
explanations, the feature manifest, warnings and a model card. Pure: `render_report` returns the
HTML text; the job writes it.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, select_autoescape
from markupsafe import Markup

from pipeline.evaluate.decision import Decision, decide, render_decision
from pipeline.evaluate.explain import Explanations
from pipeline.timeaxis import Window, after_last
from pipeline.train.fit import cap_warning

RANK_METRICS = ("roc_auc", "average_precision", "brier")


@dataclass
class ReportData:
    """Everything the report shows; frames are tidy, figures are PNG bytes."""

    title: str
    run_id: str
    model_summary: dict[str, str]
    windows: pd.DataFrame  # window, start, end, declarations, labelled, hits
    metrics: pd.DataFrame  # population, model, rate, metric, value, low, high
    calibration: pd.DataFrame  # predicted, observed
    gain: pd.DataFrame  # share, gain, oracle_gain, lift[, revenue_gain]
    breakdowns: dict[str, pd.DataFrame] = field(default_factory=dict)  # dimension -> frame
    proportionality: dict[str, pd.DataFrame] = field(default_factory=dict)
    explanations: Explanations | None = None
    local_figures: dict[str, bytes] = field(default_factory=dict)
    manifest: pd.DataFrame = field(default_factory=pd.DataFrame)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    drift: pd.DataFrame = field(default_factory=pd.DataFrame)  # feature, psi
    feature_auc: pd.DataFrame = field(default_factory=pd.DataFrame)  # feature, auc
    model_card: dict[str, str] = field(default_factory=dict)
    headline_rate: float = 0.05
    references: pd.DataFrame = field(default_factory=pd.DataFrame)  # name, trees, seconds...
    families: pd.DataFrame = field(default_factory=pd.DataFrame)  # family, effect, low, high...
    decision: Decision | None = None  # the decision page (pipeline/evaluate/decision.py)
    tradeoff: pd.DataFrame = field(default_factory=pd.DataFrame)  # revenue_weight, rate, ...
    tradeoff_population: str = ""


# --- warnings ---------------------------------------------------------------------------------


def review_warnings(
    importance: pd.DataFrame | None,
    dominance: pd.DataFrame | None,
    feature_auc: pd.DataFrame | None,
    drift: pd.DataFrame | None,
    *,
    psi_warn: float = 0.1,
    psi_alarm: float = 0.25,
    auc_limit: float = 0.95,
    mass_limit: float = 0.6,
    dominance_limit: float = 0.5,
    dominance_ratio: float = 3.0,
    min_feature_share: float = 0.05,
) -> list[str]:
    """What a reviewer must look at before approving: leakage, entity dominance, drift."""
    out: list[str] = []
    if importance is not None and len(importance):
        heavy = importance.loc[importance["share"] > mass_limit]
        out += [
            f"Possible leakage: {r.feature} carries {r.share:.0%} of all SHAP mass "
            f"(limit {mass_limit:.0%})."
            for r in heavy.itertuples()
        ]
    if feature_auc is not None and len(feature_auc):
        strong = feature_auc.loc[feature_auc["auc"] > auc_limit]
        out += [
            f"Possible leakage: {r.feature} alone ranks the test labels with AUC {r.auc:.3f} "
            f"(limit {auc_limit})."
            for r in strong.itertuples()
        ]
    if dominance is not None and len(dominance) and importance is not None and len(importance):
        relevant = set(importance.loc[importance["share"] >= min_feature_share, "feature"])
        dominated = dominance.loc[
            dominance["feature"].isin(relevant)
            & (dominance["share"] > dominance_limit)
            & (dominance["share"] >= dominance_ratio * dominance["row_share"])
        ].drop_duplicates("feature")
        out += [
            f"Feature {r.feature} is dominated by one entity: {r.entity_column} = {r.entity} "
            f"carries {r.share:.0%} of its SHAP mass with {r.row_share:.1%} of the declarations."
            for r in dominated.itertuples()
        ]
    if drift is not None and len(drift):
        for level, low, high in (("alarm", psi_alarm, np.inf), ("warning", psi_warn, psi_alarm)):
            hit = drift.loc[(drift["psi"] >= low) & (drift["psi"] < high)]
            hit = hit.sort_values("psi", ascending=False)
            if len(hit):
                top = ", ".join(f"{r.feature} {r.psi:.2f}" for r in hit.head(8).itertuples())
                more = f" and {len(hit) - 8} more" if len(hit) > 8 else ""
                out.append(
                    f"Drift {level}: {len(hit)} feature(s) with PSI >= {low:g} between the "
                    f"training and test windows: {top}{more} (table below)."
                )
    return out


# --- figures ----------------------------------------------------------------------------------


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def calibration_figure(calibration: pd.DataFrame) -> bytes:
    """Reliability diagram: observed hit rate against predicted probability."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.5))
    top = float(max(calibration[["predicted", "observed"]].max().max(), 0.05)) * 1.05
    ax.plot([0, top], [0, top], color="grey", linestyle="--", label="perfectly calibrated")
    ax.plot(calibration["predicted"], calibration["observed"], marker="o", label="model")
    ax.set_xlabel("predicted probability of a hit")
    ax.set_ylabel("observed hit rate")
    ax.set_title("Calibration (quantile bins)")
    ax.legend(loc="upper left")
    return _png(fig)


def gain_figure(gain: pd.DataFrame, rates: Sequence[float]) -> bytes:
    """Cumulative gain (with the oracle and random lines) and lift."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    left.plot(gain["share"], gain["gain"], label="hits caught (model)")
    if "revenue_gain" in gain:
        left.plot(gain["share"], gain["revenue_gain"], label="revenue caught (model)")
    left.plot(gain["share"], gain["oracle_gain"], color="black", linestyle=":", label="oracle")
    left.plot([0, 1], [0, 1], color="grey", linestyle="--", label="random")
    for rate in rates:
        left.axvline(rate, color="#cccccc", linewidth=0.8)
    left.set_xlabel("share of declarations controlled")
    left.set_ylabel("share caught")
    left.set_title("Cumulative gain")
    left.legend(loc="lower right")
    near = gain.loc[gain["share"] <= max(max(rates, default=0.1) * 3, 0.05)]
    right.plot(near["share"], near["lift"], marker=".")
    right.axhline(1.0, color="grey", linestyle="--")
    right.set_xlabel("share of declarations controlled")
    right.set_ylabel("lift over random")
    right.set_title("Lift at the top of the ranking")
    return _png(fig)


# --- tables -----------------------------------------------------------------------------------


def _interval(value: float, low: float, high: float) -> str:
    if pd.isna(value):
        return "–"
    if pd.isna(low) or pd.isna(high):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def rate_label(rate: float, policy_share: float | None = None) -> str:
    """A control rate as the tables show it: "5 %" for a configured round rate, two decimals
    otherwise, and the historical policy's own share named, so two rates never read alike."""
    text = f"{rate:.0%}" if abs(rate * 100 - round(rate * 100)) < 1e-9 else f"{rate:.2%}"
    if policy_share is not None and abs(rate - policy_share) < 1e-12:
        text += " (policy's share)"
    return text


def capacity_pivot(metrics: pd.DataFrame, population: str) -> pd.DataFrame:
    """One population's capacity metrics: rows model x rate, cells "value [low, high]"."""
    part = metrics.loc[
        (metrics["population"] == population)
        & metrics["rate"].notna()
        & ~metrics["metric"].isin(RANK_METRICS)
    ].copy()
    if part.empty:
        return pd.DataFrame()
    part["cell"] = [
        _interval(v, lo, hi)
        for v, lo, hi in zip(part["value"], part["low"], part["high"], strict=True)
    ]
    policy = part.loc[(part["model"] == "historical policy") & (part["metric"] == "control_share")]
    share = float(policy["value"].iloc[0]) if len(policy) else None
    part["n %"] = [rate_label(r, share) for r in part["rate"]]
    order = list(dict.fromkeys(part["metric"]))
    table = part.pivot_table(
        index=["model", "rate", "n %"], columns="metric", values="cell", aggfunc="first", sort=False
    )
    table = table[[m for m in order if m in table.columns]].reset_index()
    table["order"] = _model_order(table["model"])
    table = table.sort_values(["order", "rate"], kind="stable")
    table.columns.name = None
    return table.drop(columns=["order", "rate"])


def rank_pivot(metrics: pd.DataFrame, population: str) -> pd.DataFrame:
    """One population's ranking metrics (ROC-AUC, PR-AUC, Brier) by model."""
    part = metrics.loc[
        (metrics["population"] == population) & metrics["metric"].isin(RANK_METRICS)
    ].copy()
    if part.empty:
        return pd.DataFrame()
    part["cell"] = [
        _interval(v, lo, hi)
        for v, lo, hi in zip(part["value"], part["low"], part["high"], strict=True)
    ]
    table = part.pivot_table(
        index="model", columns="metric", values="cell", aggfunc="first", sort=False
    )
    table = table[[m for m in RANK_METRICS if m in table.columns]].reset_index()
    table.columns.name = None
    return table


def _model_order(models: pd.Series) -> pd.Series:
    """Sort key: the model first, then the champion, baselines, random, and differences last."""

    def key(name: str) -> int:
        if " - " in name:
            return 6
        if name == "model" or name.startswith("model "):
            return 0
        if name.startswith("champion"):
            return 1
        if name in ("historical policy",):
            return 2
        if name == "random":
            return 5
        return 3

    return models.map(key)


def headline(
    metrics: pd.DataFrame,
    shown: Sequence[str] = ("precision", "recall", "revenue"),
    rates: Sequence[float] | None = None,
    population: str | None = None,
) -> pd.DataFrame:
    """Point values of the main capacity metrics: rows population x model, columns metric@n.

    `rates` keeps only those rates; `population` only that population (index: model).
    """
    keep = metrics["metric"].isin(shown) & metrics["rate"].notna()
    if rates is not None:
        keep &= metrics["rate"].isin(list(rates))
    if population is not None:
        keep &= metrics["population"] == population
    part = metrics.loc[keep].copy()
    if part.empty:
        return pd.DataFrame()
    part["column"] = [f"{m}@{r:.0%}" for m, r in zip(part["metric"], part["rate"], strict=True)]
    part["order"] = _model_order(part["model"])
    part = part.sort_values(["order"], kind="stable")
    index = ["model"] if population is not None else ["population", "model"]
    table = part.pivot_table(
        index=index, columns="column", values="value", aggfunc="first", sort=False
    )
    table.columns.name = None
    return table


def primary_population(metrics: pd.DataFrame) -> str | None:
    """The most honest population present: ground truth, else the inspected declarations."""
    present = set(metrics["population"]) if len(metrics) else set()
    return next((p for p in PRIMARY_POPULATIONS if p in present), None)


def _frame_html(
    frame: pd.DataFrame,
    floats: str = "{:.3f}",
    index: bool = False,
    empty: str = "<p class='muted'>nothing to show</p>",
    classes: str = "grid",
) -> Markup:
    """A frame as an HTML table (cells escaped by pandas), safe to place in the template."""
    if frame is None or frame.empty:
        return Markup(empty)
    formatters: dict[Any, Any] = {
        c: (lambda v, f=floats: "–" if pd.isna(v) else f.format(v))
        for c in frame.columns
        if pd.api.types.is_float_dtype(frame[c])
    }
    formatters.update(
        {  # counts with thousands separators
            c: (lambda v: "–" if pd.isna(v) else f"{int(v):,}")
            for c in frame.columns
            if pd.api.types.is_integer_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
        }
    )
    return Markup(
        frame.to_html(
            index=index, classes=classes, border=0, na_rep="–", formatters=formatters, escape=True
        )
    )


def _img(png: bytes, alt: str) -> Markup:
    data = base64.b64encode(png).decode("ascii")
    return Markup(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')


# --- the page ---------------------------------------------------------------------------------

TEMPLATE = Path(__file__).with_name("templates") / "report.html.j2"

TOC = (
    ("decision", "Decision"),
    ("summary", "Summary"),
    ("windows", "Data windows"),
    ("metrics", "Metrics"),
    ("quality", "References & families"),
    ("calibration", "Calibration & gain"),
    ("breakdowns", "Breakdowns"),
    ("explanations", "Explanations"),
    ("warnings", "Warnings"),
    ("manifest", "Features"),
    ("card", "Model card"),
)

POPULATION_TEXT = {
    "inspected": "Declarations of the test window with a known outcome, ranked among themselves "
    "(the usual published evaluation; it overstates hit rates, the labels being selective).",
    "all declarations (ground truth)": "Every declaration of the test window, labelled with the "
    "simulator's ground truth: what the model catches among all frauds, not only among the "
    "inspected ones.",
    "random stratum (IPW)": "True rates estimated on the random-selection stratum (recorded "
    "selection probability), self-normalised inverse-propensity weights, Clopper-Pearson 95 % "
    "intervals on the effective counts; the model's cut-off is set on all declarations. A cell "
    "with fewer stratum rows than evaluate.min_stratum_rows is left empty: too few to judge.",
    "random stratum (doubly robust)": "The model's own calibrated probability over every "
    "declaration, corrected by the random stratum's weighted residuals (augmented IPW); normal "
    "95 % intervals of the correction. Right when either the probability or the weights are.",
}


def _proportion_table(frame: pd.DataFrame) -> pd.DataFrame:
    view = frame[["group", "declarations", "selected", "selected_share"]].copy()
    overall = view["selected"].sum() / max(view["declarations"].sum(), 1)
    view["ratio_to_overall"] = view["selected_share"] / overall if overall > 0 else np.nan
    return view.sort_values("declarations", ascending=False)


def render_report(data: ReportData, rates: Sequence[float] = (0.01, 0.02, 0.05, 0.1)) -> str:
    """The whole report as one self-contained HTML string."""
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    template = env.from_string(TEMPLATE.read_text(encoding="utf-8"))
    populations = [
        {
            "name": str(p),
            "description": POPULATION_TEXT.get(str(p), ""),
            "capacity": _frame_html(capacity_pivot(data.metrics, str(p)), classes="grid figures"),
            "ranking": _frame_html(rank_pivot(data.metrics, str(p)), empty=""),
        }
        for p in dict.fromkeys(data.metrics["population"])
    ]
    curve_figures = []
    if len(data.calibration):
        curve_figures.append(
            {
                "img": _img(calibration_figure(data.calibration), "calibration"),
                "caption": "Reliability of the calibrated probability on the test window.",
            }
        )
    if len(data.gain):
        curve_figures.append(
            {
                "img": _img(gain_figure(data.gain, list(rates)), "gain and lift"),
                "caption": "Cumulative gain and lift; vertical lines mark the configured rates.",
            }
        )
    tradeoff_html = Markup("")
    if len(data.tradeoff):
        from pipeline.evaluate.selections import tradeoff_figure

        curve_figures.append(
            {
                "img": _img(tradeoff_figure(data.tradeoff), "ranking trade-off"),
                "caption": "Precision against revenue share as the ranking moves from probability "
                "(w=0) to expected revenue (w=1), one line per control rate.",
            }
        )
        tradeoff_html = _frame_html(data.tradeoff)
    shap_figures: list[dict[str, Any]] = []
    families_html = Markup("<p class='muted'>no explanations</p>")
    method = ""
    if data.explanations is not None:
        method = data.explanations.method
        families_html = _frame_html(data.explanations.families)
        captions = {
            "shap_families": "SHAP mass by feature family (manifest stage).",
            "shap_bar": "Global importance: mean |SHAP| per feature.",
            "shap_beeswarm": "Beeswarm: each dot a declaration, colour the feature's value.",
        }
        for name, png in data.explanations.figures.items():
            caption = captions.get(name, f"Dependence: {name.removeprefix('dependence_')}")
            # the global views get the page's full width: their labels stay legible
            wide = name in ("shap_bar", "shap_beeswarm")
            shap_figures.append({"img": _img(png, name), "caption": caption, "wide": wide})
    local_figures = [
        {"img": _img(png, name), "caption": name.replace("_", " "), "wide": True}
        for name, png in data.local_figures.items()
    ]
    primary = primary_population(data.metrics)
    head = headline(data.metrics, rates=rates, population=primary)
    return template.render(
        title=data.title,
        run_id=data.run_id,
        decision_html=render_decision(data.decision) if data.decision else Markup(""),
        toc=TOC,
        model_summary=data.model_summary,
        warnings=data.warnings,
        notes=data.notes,
        # One row per metric@n and one column per selection: twelve columns did not fit a page.
        headline_html=_frame_wrapped(
            head.T.rename_axis(index="metric", columns=None) if len(head) else head
        ),
        headline_population=primary or "",
        windows_html=_frame_html(data.windows),
        populations=populations,
        curve_figures=curve_figures,
        headline_rate=f"{data.headline_rate:.0%}",
        breakdowns=[(k, _frame_html(v)) for k, v in data.breakdowns.items()],
        explanation_method=method,
        families_html=families_html,
        shap_figures=shap_figures,
        local_figures=local_figures,
        drift_html=_frame_html(data.drift),
        auc_html=_frame_html(data.feature_auc),
        manifest_html=_frame_html(data.manifest),
        references_html=_frame_html(
            data.references, empty="<p class='muted'>no reference learner was fitted</p>"
        ),
        families_effect_html=_frame_html(
            data.families, empty="<p class='muted'>feature families were not chosen</p>"
        ),
        model_card=data.model_card,
        tradeoff_html=tradeoff_html,
        tradeoff_population=data.tradeoff_population,
        proportionality=[
            (k, _frame_html(_proportion_table(v))) for k, v in data.proportionality.items()
        ],
    )


def _frame_wrapped(frame: pd.DataFrame) -> Markup:
    if frame.empty:
        return Markup("<p class='muted'>nothing to show</p>")
    return _frame_html(frame.reset_index())


def html_tables(frames: Mapping[str, pd.DataFrame]) -> dict[str, str]:
    """Frames rendered as the report's HTML tables (for notebooks)."""
    return {name: _frame_html(frame) for name, frame in frames.items()}


# --- assessment: every figure of the report from a model and its feature set --------------------

PRIMARY_POPULATIONS = ("all declarations (ground truth)", "inspected")
ENTITY_COLUMNS = ("importer", "declarant", "seller")


@dataclass
class Assessment:
    """The report's content and the tidy metrics table behind it."""

    metrics: pd.DataFrame
    report: ReportData
    explanations: Explanations | None


def parse_windows(
    info: Mapping[str, Any], lodged_at: pd.Series, test_days: int
) -> tuple[dict[str, Window], list[str]]:
    """The model's windows; a test window derived when absent.

    Accepts ``{"test": {"start": ..., "end": ...}}`` and ``{"test": [start, end]}``.
    """
    notes: list[str] = []
    windows: dict[str, Window] = {}
    for name, window in dict(info.get("windows") or {}).items():
        if isinstance(window, Mapping):
            start, end = window.get("start"), window.get("end")
        elif isinstance(window, Sequence) and not isinstance(window, str) and len(window) == 2:
            start, end = window
        else:
            continue
        if start is not None and end is not None:
            windows[str(name)] = Window(str(name), pd.Timestamp(start), pd.Timestamp(end))
    if "test" not in windows:
        end = after_last(lodged_at)
        windows["test"] = Window("test", end - pd.Timedelta(days=test_days), end)
        notes.append(
            f"The model records no test window: the last {test_days} days of the feature set "
            "are used, which may overlap its training data."
        )
    return windows, notes


RANKING_NAMES = {
    "probability": "probability of a hit",
    "expected_revenue": "expected revenue",
    "blend": "blend of probability and expected revenue",
}


ESTIMATOR_POPULATIONS = {
    "ipw": "random stratum (IPW)",
    "dr": "random stratum (doubly robust)",
}


def stratum_estimates(
    priority: np.ndarray,
    stratum: np.ndarray,
    y: np.ndarray,
    propensity: np.ndarray,
    probability: np.ndarray,
    rates: Sequence[float],
    min_rows: int,
    notes: list[str],
) -> list[pd.DataFrame]:
    """The model's precision and recall on all declarations estimated from the random stratum
    (`evaluate.estimators`: self-normalised IPW with Clopper-Pearson intervals, doubly robust),
    and the flow's hit rate as the random selection's precision; a note per thin cell."""
    from pipeline.evaluate.estimators import estimate_at_rates

    table = estimate_at_rates(
        priority,
        stratum,
        y,
        propensity,
        [*rates, 1.0],
        probability=probability,
        min_rows=min_rows,
    )
    thin = table.loc[(table["verdict"] != "") & (table["rate"] < 1.0)]
    for r in thin.drop_duplicates("rate").itertuples():
        notes.append(f"Random-stratum estimate at {r.rate:.0%}: {r.verdict}.")
    out = []
    for estimator, population in ESTIMATOR_POPULATIONS.items():
        part = table.loc[table["estimator"] == estimator]
        model = part.loc[part["rate"] < 1.0].assign(model="model")
        flow = part.loc[(part["rate"] == 1.0) & (part["metric"] == "precision")]
        random = pd.concat([flow.assign(rate=r) for r in rates]).assign(model="random")
        out.append(_with_population(pd.concat([model, random]), population))
    return out


def _with_population(frame: pd.DataFrame, population: str) -> pd.DataFrame:
    return frame.assign(population=population)[
        ["population", "model", "rate", "metric", "value", "low", "high"]
    ]


def _selection_rows(frame: pd.DataFrame, model: str) -> pd.DataFrame:
    share = float(frame.loc[frame["metric"] == "control_share", "value"].iloc[0])
    return frame.assign(model=model, rate=share)


def assess(
    model: Any,
    features: Any,
    config: Any,
    *,
    declarations: pd.DataFrame | None = None,
    ground_truth: pd.DataFrame | None = None,
    champion: tuple[str, Any] | None = None,
    run_id: str = "",
    local_ids: Sequence[str] = (),
) -> Assessment:
    """Metrics against baselines, explanations and warnings of `model` on its test window.

    Args:
        model: the TargetingModel under review.
        features: the FeatureSet of every declaration (windows are cut from it).
        config: the experiment Config (evaluate, serve, train, monitor, split sections).
        declarations: canonical declarations (rules, AEO, origin, HS code, entity ids).
        ground_truth: the simulator's truth (fraud, revenue_recoverable) when there is one.
        champion: (name, model) of the registered champion, compared with a paired bootstrap.
        local_ids: declarations to explain one by one (waterfalls), on top of a red sample.
    """
    from pipeline.evaluate import explain as ex
    from pipeline.evaluate import metrics as mx
    from pipeline.evaluate import reference

    ev = config.evaluate
    rates = [float(r) for r in ev.rates]
    seed = int(config.seed)
    notes: list[str] = []
    windows, window_notes = parse_windows(model.info, features.lodged_at, config.split.test_days)
    notes += window_notes
    test = features.subset(windows["test"].contains(features.lodged_at))
    if len(test) == 0:
        raise ValueError(
            f"test window {windows['test'].start} .. {windows['test'].end} holds no declaration "
            f"of the feature set"
        )
    train = (
        features.subset(windows["train"].contains(features.lodged_at))
        if "train" in windows
        else None
    )
    decl = None
    if declarations is not None:
        decl = (
            declarations.drop_duplicates("declaration_id")
            .set_index("declaration_id")
            .reindex(test.declaration_id.astype(str).to_numpy())
            .reset_index()
        )

    from pipeline.evaluate import selections as sel
    from pipeline.serve.ranking import rank

    # Every selection is ranked by the same target (serve.rank_by) under its plain name, and by
    # probability and by expected revenue under "<name> by ...": the comparison is like for like.
    weight = config.serve.revenue_weight
    ranked = rank(model, test.X, config.serve.rank_by, weight)
    rank_by, score, probability = ranked.rank_by, ranked.priority, ranked.probability
    ranked_by = RANKING_NAMES[rank_by]
    learners = {"model": sel.LearnerScores(ranked.margin, probability, ranked.revenue_if_hit)}
    probabilities = {"model": probability}
    compare: list[tuple[str, str]] = []
    if champion is not None:
        name, champ = champion
        missing = sorted(set(champ.feature_names) - set(test.X.columns))
        if missing:
            notes.append(f"Champion {name} skipped: it needs features absent here ({missing[:5]}).")
        else:
            learners[name] = sel.learner_scores(champ, test.X)
            probabilities[name] = learners[name].probability
            compare.append(("model", name))
    references = reference.for_model(
        model.info, features, windows["test"].contains(features.lodged_at), config
    )
    notes += references.notes
    own = sel.training_labels(features, windows)
    revenue_if_hit = None
    if references.scores and own is not None and own.y.sum() > 0:
        raw = reference.raw_columns(features, config)
        own_raw = sel.WindowRows(own.X[raw], own.y, own.weight, own.revenue)
        revenue_if_hit = sel.raw_revenue_if_hit(own_raw, test.X, config)
    learners |= sel.reference_learners(references.scores, revenue_if_hit)
    probabilities |= references.scores
    best_reference = reference.best_reference(references.scores, test.y.to_numpy(dtype=float))
    scores: dict[str, np.ndarray] = sel.both_rankings(learners, rank_by, weight)
    if best_reference is not None:
        compare.append(("model", best_reference))
        for words in sel.RANKINGS.values():
            if f"{best_reference} {words}" in scores and f"model {words}" in scores:
                compare.append((f"model {words}", f"{best_reference} {words}"))
    if ev.rules and decl is not None:
        scores["rules"] = mx.rules_score(decl, ev.rules, seed)
    elif not ev.rules:
        notes.append("Rules baseline skipped: no risk criteria in evaluate.rules.")

    parts: list[pd.DataFrame] = []
    labelled = test.labelled.to_numpy()
    y_obs = test.y.to_numpy(dtype=float)
    revenue_obs = test.revenue_recovered.to_numpy(dtype=float)
    has_revenue = bool(np.isfinite(revenue_obs[labelled]).any())
    if labelled.sum() > 0:
        rev = revenue_obs[labelled] if has_revenue else None
        table = mx.metrics_table(
            y_obs[labelled],
            {k: v[labelled] for k, v in scores.items()},
            rates,
            revenue=rev,
            probabilities={k: v[labelled] for k, v in probabilities.items()},
            replicates=ev.bootstrap,
            seed=seed,
            compare=compare,
        )
        parts += [
            _with_population(table, "inspected"),
            _with_population(mx.random_baseline(y_obs[labelled], rates, rev), "inspected"),
        ]

    truth = None
    if ground_truth is not None:
        truth = (
            ground_truth.drop_duplicates("declaration_id")
            .set_index("declaration_id")
            .reindex(test.declaration_id.astype(str).to_numpy())
        )
        if truth["fraud"].isna().any():
            notes.append(
                f"{int(truth['fraud'].isna().sum())} test declarations have no ground truth and "
                "are left out of the true figures."
            )
    population_truth = "all declarations (ground truth)"
    if truth is not None and truth["fraud"].notna().any():
        known = truth["fraud"].notna().to_numpy()
        y_true = truth["fraud"].to_numpy()[known].astype(float)
        money = truth["revenue_recoverable"].to_numpy(dtype=float)[known]
        controlled = labelled[known]
        policy_share = float(controlled.mean())
        truth_rates = sorted(set(rates) | ({policy_share} if policy_share > 0 else set()))
        table = mx.metrics_table(
            y_true,
            {k: v[known] for k, v in scores.items()},
            truth_rates,
            revenue=money,
            replicates=ev.bootstrap,
            seed=seed,
            compare=compare,
        )
        parts += [
            _with_population(table, population_truth),
            _with_population(mx.random_baseline(y_true, truth_rates, money), population_truth),
        ]
        if controlled.any():
            policy = mx.selection_metrics(
                y_true, controlled, revenue=money, replicates=ev.bootstrap, seed=seed
            )
            parts.append(
                _with_population(_selection_rows(policy, "historical policy"), population_truth)
            )
            offices = test.office.astype("string").to_numpy()[known]
            capacity = pd.Series(controlled).groupby(offices).sum().astype(float)
            quota = mx.quota_mask(score[known], offices, capacity.to_dict())
            at_capacity = mx.selection_metrics(
                y_true, quota, revenue=money, replicates=ev.bootstrap, seed=seed
            )
            parts.append(
                _with_population(
                    _selection_rows(at_capacity, "model at office capacity"), population_truth
                )
            )
        if config.serve.office_capacity:
            # serve.office_capacity is red controls per office and day: over the test window
            days = windows["test"].days
            per_window = {o: max(c * days, 1.0) for o, c in config.serve.office_capacity.items()}
            offices = test.office.astype("string").to_numpy()[known]
            quota = mx.quota_mask(score[known], offices, per_window)
            configured = mx.selection_metrics(
                y_true, quota, revenue=money, replicates=ev.bootstrap, seed=seed
            )
            parts.append(
                _with_population(
                    _selection_rows(configured, "model at configured capacity"), population_truth
                )
            )
    stratum = (test.selection_reason.astype("string") == "random").fillna(False).to_numpy()
    weight = test.sample_weight.to_numpy(dtype=float)
    stratum &= labelled & (weight > 1.0)  # a recorded selection probability
    if stratum.sum() > 0:
        parts += stratum_estimates(
            score, stratum, y_obs, 1.0 / weight, probability, rates, ev.min_stratum_rows, notes
        )
    metrics = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    # curves and breakdowns on the most honest population available
    if truth is not None and truth["fraud"].notna().any():
        keep = truth["fraud"].notna().to_numpy()
        y_main = truth["fraud"].to_numpy()[keep].astype(float)
        money_main: np.ndarray | None = truth["revenue_recoverable"].to_numpy(dtype=float)[keep]
    else:
        keep = labelled
        y_main = y_obs[keep]
        money_main = revenue_obs[keep] if has_revenue else None
    calibration = (
        mx.calibration_table(y_obs[labelled], probability[labelled])
        if labelled.sum() > 1
        else pd.DataFrame(columns=["predicted", "observed"])
    )
    gain = mx.gain_curve(y_main, score[keep], money_main) if keep.sum() else pd.DataFrame()
    tradeoff = pd.DataFrame()
    if keep.sum():
        mine = learners["model"]
        kept = sel.LearnerScores(
            mine.margin[keep],
            mine.probability[keep],
            None if mine.revenue_if_hit is None else mine.revenue_if_hit[keep],
        )
        tradeoff = sel.tradeoff_table(y_main, money_main, kept, rates)
    headline_rate = min(rates, key=lambda r: abs(r - 0.05))
    groups: dict[str, pd.Series] = {"office": test.office}
    if "hs2" in test.X.columns:
        groups["HS chapter"] = test.X["hs2"]
    elif decl is not None and "hs_code" in decl:
        groups["HS chapter"] = decl["hs_code"].astype("string").str[:2]
    groups["month"] = pd.to_datetime(test.lodged_at).dt.strftime("%Y-%m")
    breakdowns = {}
    if keep.sum():
        for name, group in groups.items():
            frame = mx.breakdown(
                y_main,
                score[keep],
                group.reset_index(drop=True)[keep],
                [headline_rate],
                money_main,
            )
            frame = frame.drop(columns="rate")
            if name != "month":  # largest groups first; months stay in time order
                frame = frame.sort_values("declarations", ascending=False, kind="stable")
            breakdowns[name] = frame
    proportionality = {}
    prop_groups: dict[str, pd.Series] = {"office": test.office}
    if decl is not None:
        for column, label in (("aeo", "AEO status"), ("origin_country", "origin")):
            if column in decl:
                prop_groups[label] = decl[column]
    for label, group in prop_groups.items():
        frame = mx.breakdown(
            np.nan_to_num(y_obs), score, group.reset_index(drop=True), [headline_rate]
        )
        proportionality[label] = frame

    # explanations and the warnings that need them
    explanations = ex.global_explanations(
        model,
        test.X,
        test.declaration_id,
        features.manifest,
        sample=ev.shap_sample,
        top_dependence=ev.top_dependence,
        seed=seed,
    )
    red = ex.red_sample(score, config.serve.channels.get("red", 0.02), ev.red_waterfalls, seed)
    chosen_rows = list(red)
    if local_ids:
        ids = test.declaration_id.astype(str)
        chosen_rows += list(np.flatnonzero(ids.isin([str(i) for i in local_ids]).to_numpy()))
    _, local_figures = ex.waterfalls(
        model, test.X.iloc[chosen_rows], test.declaration_id.iloc[chosen_rows]
    )
    sample_ids = explanations.values["declaration_id"]
    position = pd.Series(np.arange(len(test)), index=test.declaration_id.astype(str).to_numpy())
    rows = position.reindex(sample_ids.astype(str).to_numpy()).to_numpy()
    entity_frame = pd.DataFrame(index=range(len(rows)))
    for column in ENTITY_COLUMNS:
        if decl is not None and column in decl:
            entity_frame[column] = decl[column].to_numpy()[rows]
    for column in test.X.columns:
        if isinstance(test.X[column].dtype, pd.CategoricalDtype):
            entity_frame[column] = test.X[column].to_numpy()[rows]
    dominance = ex.dominance(explanations.values, entity_frame, model.feature_names)
    feature_auc = pd.DataFrame(columns=["feature", "auc"])
    drift = pd.DataFrame(columns=["feature", "psi"])
    if train is not None and len(train):
        from pipeline.evaluate.drift import judge_drift

        # Drift judged where it matters: features carrying the model (SHAP share), against the
        # drift they already showed inside the training window; every feature has a verdict.
        drift = judge_drift(
            train.X[model.feature_names],
            train.lodged_at,
            test.X[model.feature_names],
            explanations.importance,
            psi_warn=config.monitor.psi_warn,
            psi_alarm=config.monitor.psi_alarm,
        )
        tl = train.labelled.to_numpy()
        if tl.sum() and labelled.sum():
            feature_auc = mx.single_feature_auc(
                train.X.loc[tl, model.feature_names],
                train.y[tl].to_numpy(dtype=float),
                test.X.loc[labelled, model.feature_names],
                y_obs[labelled],
            )
    warnings = review_warnings(explanations.importance, dominance, feature_auc, None)
    if "verdict" in drift:
        from pipeline.evaluate.drift import drift_warnings

        warnings += drift_warnings(drift)

    capped = cap_warning(
        int(model.info.get("best_iteration", 0)), config.train.num_boost_round, "Evaluated model"
    )
    warnings += [capped] if capped else []

    windows_table = _windows_table(features, windows)
    summary = {
        "model": f"XGBoost ({model.booster.num_boosted_rounds()} trees, "
        f"{len(model.feature_names)} features), calibration {model.calibration.method}",
        "ranked by": ranked_by,
        "test window": f"{windows['test'].start.date()} .. {windows['test'].end.date()} "
        f"({len(test):,} declarations, {int(labelled.sum()):,} with an outcome)",
        "ground truth": "yes (simulator)" if truth is not None else "no",
        "random stratum": f"{int(stratum.sum())} declarations",
        "bootstrap": f"{ev.bootstrap} replicates, seed {seed}",
        "deployed model": deployed_summary(model.info),
    }
    card = model_card(config, test, labelled, has_revenue, truth is not None, windows)
    card["What the probability means"] = probability_meaning(model.info)
    report = ReportData(
        title=f"Targeting model review: {config.name}",
        run_id=run_id,
        model_summary=summary,
        windows=windows_table,
        metrics=metrics,
        calibration=calibration,
        gain=gain,
        breakdowns=breakdowns,
        proportionality=proportionality,
        explanations=explanations,
        local_figures=local_figures,
        manifest=features.manifest,
        warnings=warnings,
        notes=notes,
        drift=drift,
        feature_auc=feature_auc,
        model_card=card,
        headline_rate=headline_rate,
        references=pd.DataFrame(references.fitted),
        families=family_effects(model.info),
        decision=decide(
            metrics,
            calibration,
            judged_features(drift),
            ev.acceptance,
            primary_population(metrics),
            run_id,
            champion=champion[0] if champion is not None else None,
            best_reference=best_reference,
        ),
        tradeoff=tradeoff,
        tradeoff_population=(
            population_truth if truth is not None and truth["fraud"].notna().any() else "inspected"
        ),
    )
    return Assessment(metrics=metrics, report=report, explanations=explanations)


def judged_features(drift: pd.DataFrame) -> pd.DataFrame:
    """The rows of the drift table that are judged (`evaluate.drift`): stable or drifting, not
    those set aside ("not judged: ...")."""
    if "verdict" not in drift:
        return drift
    return drift.loc[~drift["verdict"].astype(str).str.startswith("not judged")]


def deployed_summary(info: Mapping[str, Any]) -> str:
    """What is deployed: the refit (its windows and trees) or this very model."""
    deployed = info.get("deployed")
    if not isinstance(deployed, Mapping):
        return "this model (no refit: train.refit is off)"
    train, calibration = deployed["windows"]["train"], deployed["windows"]["calibration"]
    return (
        f"the same configuration refit on every label known by {deployed['labels_known_by'][:10]}"
        f" (train {train['start'][:10]} .. {train['end'][:10]}, calibration "
        f"{calibration['start'][:10]} .. {calibration['end'][:10]}, {deployed['trees']} trees); "
        "these test figures are the evaluated model's"
    )


def family_effects(info: Mapping[str, Any]) -> pd.DataFrame:
    """The feature-family ablation a model records: each family's effect on validation AP."""
    families = info.get("families")
    if not isinstance(families, Mapping) or not families.get("effects"):
        return pd.DataFrame()
    frame = pd.DataFrame(list(families["effects"]))
    frame["kept"] = ~frame.pop("dropped").astype(bool)
    return frame.rename(
        columns={
            "ap_with": "validation AP with it",
            "ap_without": "validation AP without it",
            "effect": "AP it adds",
            "low": "low (95 %)",
            "high": "high (95 %)",
        }
    )


def _windows_table(features: Any, windows: Mapping[str, Window]) -> pd.DataFrame:
    rows = []
    for name, window in windows.items():
        inside = window.contains(features.lodged_at)
        y = features.y.to_numpy(dtype=float)[inside]
        rows.append(
            {
                "window": name,
                "start": str(window.start.date()),
                "end (exclusive)": str(window.end.date()),
                "declarations": int(inside.sum()),
                "with outcome": int(np.isfinite(y).sum()),
                "hits": int(np.nansum(y)),
            }
        )
    return pd.DataFrame(rows)


def probability_meaning(info: Mapping[str, Any]) -> str:
    """What the model's calibrated probability is the chance of, from its fit log."""
    meaning = str(
        info.get(
            "probability_means",
            "not recorded by this model (fitted before the selection correction): read it as "
            "P(hit | controlled by the historical policy), which overstates the chance of a hit "
            "of a declaration the policy would not have picked",
        )
    )
    details = [str(info[k]) for k in ("selection_correction", "anchoring") if info.get(k)]
    if str(info.get("anchoring", "")).startswith("not anchored"):
        details.append(
            "without the anchor, the probability can still overstate the chance of a hit where "
            "the historical controls were picked on what the features do not show"
        )
    return (
        meaning
        + (". " + "; ".join(details) if details else "")
        + (
            ". The ranking uses the booster's margin: ties in the calibrated probability never "
            "decide."
        )
    )


def model_card(
    config: Any,
    test: Any,
    labelled: np.ndarray,
    has_revenue: bool,
    has_truth: bool,
    windows: Mapping[str, Window],
) -> dict[str, str]:
    """Intended use, data and limitations, in a reviewer's words."""
    span = ", ".join(f"{k} {v.start.date()}..{v.end.date()}" for k, v in windows.items())
    return {
        "Intended use": "Rank import declarations by risk so that a customs selectivity system "
        "sends the top of the ranking to documentary or physical control within each office's "
        "capacity. A decision aid for risk analysts, not an automatic sanction: every control "
        "is carried out and judged by an officer.",
        "Data": f"Experiment {config.name!r}; windows {span}. Labels are inspection outcomes "
        f"({int(labelled.sum()):,} known in the test window)"
        + ("; revenue recovered is recorded" if has_revenue else "; no revenue in the data")
        + ("; the simulator's ground truth gives true figures." if has_truth else "."),
        "Limitations": "Labels exist only for controlled declarations: metrics on inspected "
        "declarations overstate what the model finds in the whole flow, and the model learns "
        "the past policy's blind spots. Only the random stratum (and, on simulated data, the "
        "ground truth) measures true rates. Fraud patterns drift; retrain and monitor. Scores "
        "are calibrated on a past window and may be dishonest after drift.",
        "Proportionality": "Selection rates by AEO status, origin and office below: a group "
        "selected far above the overall rate must be justified by its risk, not by its "
        "identity alone. Keep a random stratum so compliance is measured on everyone.",
    }
