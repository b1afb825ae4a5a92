"""The headline: the model against its baselines on the most honest population, at one rate.

The run plan records the headline rate (`plan.headline_rate`: the configured rate nearest 5 %),
read by the report's breakdowns, the decision's fallback rate, the console and the run summary
alike; one pivot (`pivot`) lays the metrics frame out by model, and `headline` is the run
summary's table with intervals and the policies at their own control share.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from pipeline.evaluate.keys import (
    HEADLINE_METRICS,
    HISTORICAL,
    PRIMARY_POPULATIONS,
    RANDOM_BASELINE,
    Kind,
    Population,
)


def primary_population(metrics: pd.DataFrame) -> Population | None:
    """The most honest population present: ground truth, else the inspected declarations."""
    present = set(metrics["population"]) if len(metrics) else set()
    return next((p for p in PRIMARY_POPULATIONS if p in present), None)


def model_order(part: pd.DataFrame) -> pd.Series:
    """Sort key: the model first, then the champion, baselines, random, and differences last."""
    model = part["model"].astype(str)
    order = pd.Series(3, index=part.index)
    order[model.eq("model") | model.str.startswith("model ")] = 0
    order[model.str.startswith("champion")] = 1
    order[part["kind"].eq(Kind.POLICY) & model.eq(HISTORICAL)] = 2
    order[model.eq(RANDOM_BASELINE)] = 5
    order[part["kind"].eq(Kind.DIFFERENCE)] = 6
    return order


def pivot(
    metrics: pd.DataFrame,
    shown: Sequence[str] = HEADLINE_METRICS,
    rates: Sequence[float] | None = None,
    population: Population | None = None,
    values: str = "value",
) -> pd.DataFrame:
    """Point values of the main capacity metrics: rows population x model, columns metric@n.

    `rates` keeps only those rates; `population` only that population (index: model); `values`
    names what is shown (``value``, or an interval bound: ``low``, ``high``).
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
    part["order"] = model_order(part)
    part = part.sort_values(["order"], kind="stable")
    index = ["model"] if population is not None else ["population", "model"]
    table = part.pivot_table(
        index=index, columns="column", values=values, aggfunc="first", sort=False
    )
    table.columns.name = None
    return table


def headline(metrics: pd.DataFrame, rate: float) -> tuple[Population | None, pd.DataFrame]:
    """The model against its baselines at one control rate, and the policies at capacity.

    On the most honest population (`primary_population`), with each figure's interval; the
    paired differences are left to the report, and the random draw's revenue is not shown.
    Returns the population and a table (rows: model or baseline, in the metrics' order;
    columns: precision, recall, revenue as "value [low, high]" text, and the control share).
    """
    population = primary_population(metrics)
    kind = metrics["kind"]
    rows = metrics.loc[
        (metrics["population"] == population)
        & metrics["metric"].isin(HEADLINE_METRICS)
        & (metrics["rate"].sub(rate).abs().lt(1e-9) | kind.eq(Kind.POLICY))
        & kind.ne(Kind.DIFFERENCE)
        & ~(metrics["model"].eq(RANDOM_BASELINE) & metrics["metric"].eq("revenue"))
    ]
    order = pd.unique(rows["model"])
    shares = rows.groupby("model", sort=False)["rate"].first()
    # One column per metric: a policy's control share stands in for the rate (shown apart).
    at_rate = rows.assign(rate=rate)
    value, low, high = (
        pivot(at_rate, HEADLINE_METRICS, population=population, values=part)
        .rename(columns=lambda column: str(column).split("@")[0])
        .reindex(index=order, columns=list(HEADLINE_METRICS))
        for part in ("value", "low", "high")
    )
    text = value.map("{:.3f}".format, na_action="ignore")
    interval = " [" + low.map("{:.3f}".format) + ", " + high.map("{:.3f}".format) + "]"
    table = text.where(low.isna() | high.isna(), text + interval)
    table.insert(0, "control share", shares.reindex(order).map("{:.1%}".format))
    return population, table.dropna(axis="columns", how="all")
