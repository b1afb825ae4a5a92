"""The reviewer's report: one self-contained HTML page per run, figures embedded as base64 PNG.

A reviewer decides from it whether a model may go to the selectivity system: data windows, the
metrics table with intervals against baselines, calibration, lift and gain, breakdowns,
explanations, the feature manifest, warnings and a model card. Rendering only: the figures are
computed by `evaluate.assess` (`ReportData`); `render_report` returns the HTML text; the job
writes it.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, select_autoescape
from markupsafe import Markup

from pipeline.evaluate.assess import ReportData
from pipeline.evaluate.decision import render_decision
from pipeline.evaluate.headline import model_order, pivot, primary_population
from pipeline.evaluate.keys import HISTORICAL, Population
from pipeline.evaluate.walkforward import WalkForward

RANK_METRICS = ("roc_auc", "average_precision", "brier")


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
    if "low" in calibration:  # the random stratum's bins carry an interval
        judged = calibration.dropna(subset=["low", "high"])
        ax.vlines(judged["predicted"], judged["low"], judged["high"], color="C0", alpha=0.5)
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


def capacity_pivot(metrics: pd.DataFrame, population: Population) -> pd.DataFrame:
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
    policy = part.loc[(part["model"] == HISTORICAL) & (part["metric"] == "control_share")]
    share = float(policy["value"].iloc[0]) if len(policy) else None
    part["n %"] = [rate_label(r, share) for r in part["rate"]]
    order = list(dict.fromkeys(part["metric"]))
    table = part.pivot_table(
        index=["model", "kind", "rate", "n %"],
        columns="metric",
        values="cell",
        aggfunc="first",
        sort=False,
    )
    table = table[[m for m in order if m in table.columns]].reset_index()
    table["order"] = model_order(table)
    table = table.sort_values(["order", "rate"], kind="stable")
    table.columns.name = None
    return table.drop(columns=["order", "rate", "kind"])


def rank_pivot(metrics: pd.DataFrame, population: Population) -> pd.DataFrame:
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
    ("walkforward", "What deploys, replayed"),
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
    Population.INSPECTED: "Declarations of the test window with a known outcome, ranked among "
    "themselves (the usual published evaluation; it overstates hit rates, the labels being "
    "selective).",
    Population.TRUTH: "Every declaration of the test window, labelled with the "
    "simulator's ground truth: what the model catches among all frauds, not only among the "
    "inspected ones.",
    Population.IPW: "True rates estimated on the random-selection stratum (recorded "
    "selection probability), self-normalised inverse-propensity weights, Clopper-Pearson 95 % "
    "intervals on the effective counts; the model's cut-off is set on all declarations. A cell "
    "with fewer stratum rows than evaluate.min_stratum_rows is left empty: too few to judge.",
    Population.DR: "The model's own calibrated probability over every "
    "declaration, corrected by the random stratum's weighted residuals (augmented IPW); normal "
    "95 % intervals of the correction. Right when either the probability or the weights are.",
}


def _proportion_table(frame: pd.DataFrame) -> pd.DataFrame:
    view = frame[["group", "declarations", "selected", "selected_share"]].copy()
    overall = view["selected"].sum() / max(view["declarations"].sum(), 1)
    view["ratio_to_overall"] = view["selected_share"] / overall if overall > 0 else np.nan
    return view.sort_values("declarations", ascending=False)


def _populations(metrics: pd.DataFrame) -> list[dict[str, Any]]:
    """Each population's capacity and ranking tables, with what the population is."""
    return [
        {
            "name": Population(p).label,
            "description": POPULATION_TEXT[Population(p)],
            "capacity": _frame_html(capacity_pivot(metrics, p), classes="grid figures"),
            "ranking": _frame_html(rank_pivot(metrics, p), empty=""),
        }
        for p in dict.fromkeys(metrics["population"])
    ]


def _curve_figures(data: ReportData, rates: Sequence[float]) -> list[dict[str, Any]]:
    """Calibration, gain and lift, and the ranking trade-off, each with its caption."""
    curve_figures = []
    if len(data.calibration):
        curve_figures.append(
            {
                "img": _img(calibration_figure(data.calibration), "calibration"),
                "caption": "Reliability of the calibrated probability on the test window, on "
                f"{data.calibration_population or 'the inspected declarations'} (the "
                "population the probability speaks of); the inspected declarations' table "
                "below is a diagnostic.",
            }
        )
    if len(data.gain):
        curve_figures.append(
            {
                "img": _img(gain_figure(data.gain, list(rates)), "gain and lift"),
                "caption": "Cumulative gain and lift; vertical lines mark the configured rates.",
            }
        )
    if len(data.tradeoff):
        from pipeline.evaluate.selections import tradeoff_figure

        curve_figures.append(
            {
                "img": _img(tradeoff_figure(data.tradeoff), "ranking trade-off"),
                "caption": "Precision against revenue share as the ranking moves from probability "
                "(w=0) to expected revenue (w=1), one line per control rate.",
            }
        )
    return curve_figures


SHAP_CAPTIONS = {
    "shap_families": "SHAP mass by feature family (manifest stage).",
    "shap_bar": "Global importance: mean |SHAP| per feature.",
    "shap_beeswarm": "Beeswarm: each dot a declaration, colour the feature's value (a category "
    "feature is grey: its levels have no order).",
    "shap_red_vs_green": "Red against green: mean SHAP value per feature of the declarations the "
    "export's shares put in the red channel and of those in the green one.",
}


def _shap_figures(data: ReportData) -> list[dict[str, Any]]:
    """The global SHAP views (bar, beeswarm, families, dependence), each with its caption."""
    if data.explanations is None:
        return []
    shap_figures: list[dict[str, Any]] = []
    for name, png in data.explanations.figures.items():
        caption = SHAP_CAPTIONS.get(name, f"Dependence: {name.removeprefix('dependence_')}")
        # the global views get the page's full width: their labels stay legible
        wide = name in ("shap_bar", "shap_beeswarm")
        shap_figures.append({"img": _img(png, name), "caption": caption, "wide": wide})
    return shap_figures


def _local_caption(name: str) -> str:
    """What a waterfall shows: the served probability, or the revenue if hit."""
    identifier = name.removeprefix("waterfall_")
    if identifier.endswith("_revenue"):
        return f"{identifier.removesuffix('_revenue')}: revenue if hit, in currency"
    return f"{identifier}: probability of a hit, as served (calibrated)"


def render_report(data: ReportData, rates: Sequence[float] = (0.01, 0.02, 0.05, 0.1)) -> str:
    """The whole report as one self-contained HTML string."""
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    template = env.from_string(TEMPLATE.read_text(encoding="utf-8"))
    explained = data.explanations
    local_figures = [
        {"img": _img(png, name), "caption": _local_caption(name), "wide": True}
        for name, png in data.local_figures.items()
    ]
    primary = primary_population(data.metrics)
    head = pivot(data.metrics, rates=rates, population=primary)
    return template.render(
        title=data.title,
        run_id=data.run_id,
        decision_html=render_decision(data.decision) if data.decision else Markup(""),
        walk_html=walk_forward_html(data.walk_forward),
        calibration_html=_frame_html(data.calibration, empty=""),
        calibration_population=data.calibration_population,
        calibration_inspected_html=_frame_html(data.calibration_inspected, empty=""),
        toc=TOC,
        model_summary=data.model_summary,
        warnings=data.warnings,
        notes=data.notes,
        # One row per metric@n and one column per selection: twelve columns did not fit a page.
        headline_html=_frame_wrapped(
            head.T.rename_axis(index="metric", columns=None) if len(head) else head
        ),
        headline_population=primary.label if primary else "",
        windows_html=_frame_html(data.windows),
        populations=_populations(data.metrics),
        curve_figures=_curve_figures(data, rates),
        headline_rate=f"{data.headline_rate:.0%}",
        breakdowns=[(k, _frame_html(v)) for k, v in data.breakdowns.items()],
        explanation_method=explained.method if explained is not None else "",
        families_html=_frame_html(explained.families)
        if explained is not None
        else Markup("<p class='muted'>no explanations</p>"),
        shap_figures=_shap_figures(data),
        local_figures=local_figures,
        drift_html=_frame_html(data.drift),
        auc_html=_frame_html(data.feature_auc),
        manifest_html=_frame_html(data.manifest),
        references_html=_frame_html(
            data.references, empty="<p class='muted'>no reference learner was fitted</p>"
        ),
        families_effect_html=_frame_html(
            data.families, empty="<p class='muted'>no family ablation (see the notes)</p>"
        ),
        families_in_sample_html=_frame_html(
            data.families_in_sample,
            empty="<p class='muted'>feature families were not chosen</p>",
        ),
        model_card=data.model_card,
        tradeoff_html=_frame_html(data.tradeoff) if len(data.tradeoff) else Markup(""),
        tradeoff_population=data.tradeoff_population,
        proportionality=[
            (k, _frame_html(_proportion_table(v))) for k, v in data.proportionality.items()
        ],
    )


def walk_forward_pivot(metrics: pd.DataFrame) -> pd.DataFrame:
    """The walk-forward's pooled metrics: one row per selection, `metric@n %` columns, each
    value with its 95 % interval."""
    if metrics.empty:
        return metrics
    shown = metrics.loc[metrics["metric"].isin(["precision", "recall", "revenue"])].copy()
    shown["cell"] = [
        f"{r.value:.3f} [{r.low:.3f}, {r.high:.3f}]" if np.isfinite(r.low) else f"{r.value:.3f}"
        for r in shown.itertuples()
    ]
    shown["column"] = [f"{r.metric}@{rate_label(r.rate)}" for r in shown.itertuples()]
    table = shown.pivot_table(index="model", columns="column", values="cell", aggfunc="first")
    return table.reset_index().rename_axis(columns=None)


def walk_forward_html(walk: WalkForward | None) -> Markup:
    """The walk-forward section's tables: the stretches and their refits, the pooled metrics of
    the deployed procedure against the evaluated model, each channel's expected and realised
    hit rate."""
    if walk is None:
        return Markup(
            "<p class='muted'>not run (evaluate.walk_forward_cutoffs is 0, or "
            "<code>targeting evaluate --no-walk-forward</code>)</p>"
        )
    inside, cells = walk.coverage()
    parts = [
        f"<p class='note'>Measured on {walk.population}. {' '.join(walk.notes)}</p>",
        _frame_html(walk.stretches, empty="<p class='muted'>no cut-off</p>"),
        "<h3>Deployed procedure against the evaluated model, same stretches</h3>",
        _frame_html(walk_forward_pivot(walk.metrics), empty="<p class='muted'>no labels</p>"),
        f"<h3>Channels: realised hit rate inside the export's 95 % range in {inside} of "
        f"{cells} cells</h3>",
        _frame_html(walk.channels, empty=""),
    ]
    return Markup("".join(str(p) for p in parts))


def _frame_wrapped(frame: pd.DataFrame) -> Markup:
    if frame.empty:
        return Markup("<p class='muted'>nothing to show</p>")
    return _frame_html(frame.reset_index())


def html_tables(frames: Mapping[str, pd.DataFrame]) -> dict[str, str]:
    """Frames rendered as the report's HTML tables (for notebooks)."""
    return {name: _frame_html(frame) for name, frame in frames.items()}
