"""The headline (`evaluate.headline`): the report's pivot at one rate, with intervals, and the
one rule that picks the rate."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.evaluate.headline import headline
from pipeline.evaluate.keys import HISTORICAL, Kind, Population
from pipeline.plan import headline_rate

TRUTH = Population.TRUTH


def _metrics() -> pd.DataFrame:
    rows = []
    for population in (Population.INSPECTED, TRUTH):
        for model in ("model", "rules", "random", "model - rules"):
            kind = Kind.DIFFERENCE if model == "model - rules" else Kind.VALUE
            for rate in (0.01, 0.05):
                for metric in ("precision", "recall", "revenue", "lift"):
                    value = 0.5 if population == TRUTH else 0.9
                    low, high = (np.nan, np.nan) if model == "rules" else (0.4, 0.6)
                    rows.append((population, model, kind, metric, rate, value + rate, low, high))
    for metric in ("precision", "recall"):  # a policy at its own control share
        rows.append((TRUTH, HISTORICAL, Kind.POLICY, metric, 0.1234, 0.3, 0.25, 0.35))
    rows.append((TRUTH, "model", Kind.VALUE, "pr_auc", np.nan, 0.4, 0.3, 0.5))
    columns = ["population", "model", "kind", "metric", "rate", "value", "low", "high"]
    return pd.DataFrame(rows, columns=columns)


def test_headline_on_the_ground_truth_with_intervals_and_policies() -> None:
    population, table = headline(_metrics(), 0.05)
    assert population == TRUTH
    assert table.index.tolist() == ["model", "rules", "random", "historical policy"]
    assert table.columns.tolist() == ["control share", "precision", "recall", "revenue"]
    assert table.loc["model"].tolist() == [
        "5.0%", "0.550 [0.400, 0.600]", "0.550 [0.400, 0.600]", "0.550 [0.400, 0.600]"
    ]  # fmt: skip
    assert table.loc["rules", "precision"] == "0.550"  # no interval: the value alone
    assert pd.isna(table.loc["random", "revenue"])  # a random draw's revenue is not shown
    assert table.loc["historical policy"].iloc[:3].tolist() == [
        "12.3%", "0.300 [0.250, 0.350]", "0.300 [0.250, 0.350]"
    ]  # fmt: skip
    assert pd.isna(table.loc["historical policy", "revenue"])


def test_headline_falls_back_to_the_inspected_declarations() -> None:
    metrics = _metrics()
    population, table = headline(metrics.loc[metrics["population"] != TRUTH], 0.01)
    assert population == Population.INSPECTED
    assert table.loc["model", "precision"] == "0.910 [0.400, 0.600]"
    assert "historical policy" not in table.index


def test_one_rule_picks_the_headline_rate() -> None:
    """The configured rate nearest 5 % (the run summary once took the largest rate when 5 % was
    not configured: 20 % of [1 %, 3 %, 20 %], where the report read 3 %)."""
    assert headline_rate([0.01, 0.02, 0.05, 0.10]) == 0.05
    assert headline_rate([0.01, 0.03, 0.2]) == 0.03
    assert headline_rate([0.2]) == 0.2
