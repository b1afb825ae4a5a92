"""The keys of the metrics frame, and the labels a reader sees in their place.

The frame (`population`, `model`, `kind`, `rate`, `metric`, `value`, `low`, `high`) is a contract
between the evaluators, the decision, the report, the run summary and the README: code selects
rows by these keys, never by the words shown to a reader. `Population` keys who a figure is
measured on; `Kind` says what a row is (a model's value, a paired difference between two of
them, or a selection policy judged at its own control share); the policies have one name each
here. Labels are put in only where the frame is rendered: the reviewer's files (`rendered`),
the report, the console and the README.
"""

from __future__ import annotations

from enum import StrEnum

import pandas as pd


class Population(StrEnum):
    """Who a figure is measured on (the key doubles as the MLflow metric prefix: eval.<key>)."""

    TRUTH = "true"
    INSPECTED = "inspected"
    IPW = "ipw"
    DR = "dr"

    @property
    def label(self) -> str:
        """What a reader sees: the population in words."""
        return POPULATION_LABELS[self]


POPULATION_LABELS = {
    Population.TRUTH: "all declarations (ground truth)",
    Population.INSPECTED: "inspected",
    Population.IPW: "random stratum (IPW)",
    Population.DR: "random stratum (doubly robust)",
}
# The most honest population first: ground truth, else the inspected declarations.
PRIMARY_POPULATIONS = (Population.TRUTH, Population.INSPECTED)


class Kind(StrEnum):
    """What a row of the metrics frame is."""

    VALUE = "value"  # a ranking's figure at a control rate (model, learner, random baseline)
    DIFFERENCE = "difference"  # a paired difference: challenger minus reference
    POLICY = "policy"  # a selection judged at its own control share (the rate column)


MODEL = "model"
# The random baseline: selects at the flow's hit rate, recovers no revenue.
RANDOM_BASELINE = "random"
HISTORICAL = "historical policy"
AT_OFFICE_CAPACITY = "model at office capacity"
AT_CONFIGURED_CAPACITY = "model at configured capacity"
HEADLINE_METRICS = ("precision", "recall", "revenue")
COLUMNS = ["population", "model", "kind", "rate", "metric", "value", "low", "high"]


def difference_name(challenger: str, reference: str) -> str:
    """The model column of a paired difference (its kind says it is one)."""
    return f"{challenger} - {reference}"


def population_label(key: object) -> str:
    """The label of a population key; anything else (an older file's label) as it is."""
    text = str(key)
    return Population(text).label if text in Population._value2member_map_ else text


def rendered(metrics: pd.DataFrame) -> pd.DataFrame:
    """The frame as the reviewer's files show it: populations in words, no machine column."""
    if metrics.empty:
        return metrics
    shown = metrics.drop(columns="kind", errors="ignore")
    return shown.assign(population=shown["population"].map(population_label))
