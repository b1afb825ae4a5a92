"""Exact TreeSHAP reason codes where they pay (the most severe channel), approximate elsewhere."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from helpers.serve import (
    declarations,
    make_snapshot,
    scored_reference,
    serve_config,
    thresholds_document,
    trained,
)

from pipeline.config import FeaturesConfig, ServeConfig
from pipeline.serve.scorer import Scorer, reason_codes, reason_methods
from pipeline.serve.thresholds import Thresholds


@pytest.fixture(scope="module")
def scored() -> tuple[Scorer, pd.DataFrame, pd.DataFrame, dict[str, Thresholds]]:
    config = FeaturesConfig()
    world = trained(declarations(3_000, seed=5, start=dt.date(2024, 1, 1), days=100), seed=5)
    model = world.model
    reference = scored_reference(world.history, world.feature_set, model)
    documents = {}
    for method in ("treeshap_red", "treeshap", "approximate"):
        document = thresholds_document(model, reference, serve_config(reason_method=method), {})
        documents[method] = Thresholds.from_document(document, model.booster_sha256())
    snapshot = make_snapshot(world.history, world.inspected, config)
    scorer = Scorer(model, snapshot, documents["treeshap"], config)
    incoming = declarations(800, seed=6, start=dt.date(2024, 4, 20), days=5)
    return scorer, incoming, scorer.features(incoming), documents


def test_red_rows_get_exact_treeshap_and_other_controls_approximate(
    scored: tuple[Scorer, pd.DataFrame, pd.DataFrame, dict[str, Thresholds]],
) -> None:
    scorer, incoming, X, documents = scored
    results = {}
    for method, thresholds in documents.items():
        scorer.thresholds = thresholds
        results[method] = scorer.score_features(incoming, X)
    mixed = results["treeshap_red"]
    assert documents["treeshap_red"].reason_method == "treeshap_red"  # recorded in the export
    red = (mixed["channel"] == "red").to_numpy()
    others = mixed["reasons"].notna().to_numpy() & ~red
    assert red.any() and others.any()
    assert mixed["reasons"][red].tolist() == results["treeshap"]["reasons"][red].tolist()
    assert mixed["reasons"][others].tolist() == results["approximate"]["reasons"][others].tolist()
    # The two methods do differ on these rows: the test would see a wrong choice.
    assert results["treeshap"]["reasons"][others].tolist() != mixed["reasons"][others].tolist()
    exact = reason_codes(scorer.model, X.loc[red], 3, scorer.descriptions, "treeshap")
    assert mixed["reasons"][red].tolist() == exact.tolist()


def test_reason_methods_split_the_controlled_rows() -> None:
    controlled = np.array([True, True, False, True])
    red = np.array([True, False, False, False])
    pairs = reason_methods("treeshap_red", controlled, red)
    assert [(rows.tolist(), method) for rows, method in pairs] == [
        ([True, False, False, False], "treeshap"),
        ([False, True, False, True], "approximate"),
    ]
    assert [m for _, m in reason_methods("approximate", controlled, red)] == ["approximate"]
    assert ServeConfig().reason_method == "treeshap_red"
