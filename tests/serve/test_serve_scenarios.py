"""Capacity scenarios on a reference window, and reason codes laid out one per row."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers.evaluate import train_model, world
from helpers.serve import reference_frame, serve_config, watch_list_rules

from pipeline.serve.channels import forced_selection
from pipeline.serve.cutoffs import capacity_scenarios
from pipeline.serve.draw import serve_random_key
from pipeline.serve.scorer import reason_codes, reasons_table
from pipeline.serve.selectivity import ThresholdsError

RATES = [0.01, 0.02, 0.05]


def test_each_scenario_meets_its_red_share_and_expects_the_top_scores_hits():
    reference = reference_frame(rows=5_000, seed=3, ties=False).assign(aeo=False)
    serve = serve_config(random_rate=0.0, rules=[])
    table = capacity_scenarios(reference, serve, 60.0, RATES)
    assert table.groupby("red_rate").size().tolist() == [3, 3, 3]  # red, yellow, green
    red = table.loc[table["channel"] == "red"].set_index("red_rate")
    ranked = reference.sort_values("score", ascending=False)
    for rate in RATES:
        k = round(rate * len(reference))
        assert red.loc[rate, "declarations"] == k
        assert red.loc[rate, "expected_hits"] == pytest.approx(ranked["probability"].head(k).sum())
        expected = ranked["expected_revenue"].head(k).sum()
        assert red.loc[rate, "expected_revenue"] == pytest.approx(expected)
        assert red.loc[rate, "per_day"] == pytest.approx(k / 60.0)
    # a larger capacity catches more, each extra control less likely to hit
    assert red["expected_hits"].is_monotonic_increasing
    assert red["expected_hit_rate"].is_monotonic_decreasing
    yellow = table.loc[table["channel"] == "yellow", "share"]
    assert np.allclose(yellow, 0.06, atol=1 / len(reference))
    shares = table.groupby("red_rate")["share"].sum()
    assert np.allclose(shares, 1.0)


def test_random_draw_and_rules_count_in_the_red_share_and_the_config_is_untouched():
    reference = reference_frame(rows=5_000, seed=4)
    serve = serve_config(random_rate=0.005, rules=watch_list_rules())
    before = serve.model_dump()
    table = capacity_scenarios(reference, serve, 60.0, RATES)
    red = table.loc[table["channel"] == "red"].set_index("red_rate")
    random = table.loc[table["channel"] == "random"].set_index("red_rate")
    drawn, rule = forced_selection(reference, 0.005, serve_random_key(serve), serve.rules)
    forced = float((drawn | rule.notna().to_numpy()).mean())
    assert 0.01 < forced < 0.02  # the 1 % scenario is all random draws and rules
    # the draw is a row of its own, and red with it takes the red capacity
    assert np.allclose(random["share"], drawn.mean()) and len(random) == len(RATES)
    red_capacity = red["share"] + random["share"]
    assert np.allclose(red_capacity, np.maximum(RATES, forced), atol=2 / len(reference))
    assert serve.model_dump() == before
    assert "by_reason" not in table.columns


def test_no_channel_no_scenario():
    with pytest.raises(ThresholdsError, match="empty"):
        capacity_scenarios(reference_frame(rows=100), serve_config(channels={}), 60.0, [0.01])


def test_reasons_table_lays_out_each_reason_of_the_scorer():
    made = world(rows=3_000, seed=4)
    model = train_model(made["features"], seed=4, rounds=10)
    X = made["features"].X.iloc[:40]
    reasons = reason_codes(model, X, 3, {"duty_rate": "duty rate"})
    scored = pd.DataFrame(
        {
            "declaration_id": made["features"].declaration_id.iloc[:40].astype(str).to_numpy(),
            "channel": "red",
            "score": np.linspace(1, 0, 40),
            "reasons": reasons.to_numpy(),
        },
        index=pd.RangeIndex(40) * 3 + 2,
    )
    scored.loc[scored.index[:5], ["channel", "reasons"]] = ["green", None]
    table = reasons_table(scored)
    lists = [json.loads(r) for r in reasons.iloc[5:]]
    assert len(table) == sum(len(x) for x in lists) > 0
    assert not table["declaration_id"].isin(scored["declaration_id"].head(5)).any()
    first = table.groupby("declaration_id", sort=False).head(1)
    assert (first["rank"] == 1).all()
    assert (table["contribution"] > 0).all()
    ordered = table.groupby("declaration_id")["contribution"].apply(
        lambda c: c.is_monotonic_decreasing
    )
    assert ordered.all()
    one = scored["declaration_id"].iloc[7]
    assert table.loc[table["declaration_id"] == one, "feature"].tolist() == [
        r["feature"] for r in lists[2]
    ]


def test_reasons_table_of_rows_without_reasons_is_empty_with_its_columns():
    scored = pd.DataFrame(
        {"declaration_id": ["A", "B"], "channel": ["green", "red"], "score": [0.1, 0.9],
         "reasons": [None, "[]"]}
    )  # fmt: skip
    table = reasons_table(scored)
    assert table.empty
    assert list(table.columns) == [
        "declaration_id",
        "channel",
        "score",
        "rank",
        "feature",
        "value",
        "contribution",
        "phrase",
    ]
    assert reasons_table(scored.iloc[:1]).empty
