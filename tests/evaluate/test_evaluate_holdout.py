"""The test window scored for the notebooks: labels, capacity metrics, trade-off, lookups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.evaluate import WINDOWS, config, train_model, world

from pipeline.evaluate import holdout
from pipeline.evaluate import metrics as mx
from pipeline.evaluate.keys import Population
from pipeline.serve.model import plan_of


@pytest.fixture(scope="module")
def trained() -> dict:
    made = world(rows=4_000, seed=2)
    made["model"] = train_model(made["features"], seed=2, rounds=15)
    return made


def test_scored_test_window_holds_the_test_window_with_the_truth_as_label(trained, tmp_path: Path):
    plan = plan_of(trained["model"], config(tmp_path), trained["features"].lodged_at)
    scored = holdout.scored_test_window(
        trained["model"], trained["features"], plan, trained["ground_truth"]
    )
    start, end = (pd.Timestamp(WINDOWS["test"][k]) for k in ("start", "end"))
    lodged = trained["features"].lodged_at
    assert len(scored) == int(((lodged >= start) & (lodged < end)).sum())
    assert scored["lodged_at"].between(start, end, inclusive="left").all()
    assert holdout.population(scored) == Population.TRUTH.label
    assert scored["y"].notna().all()  # every declaration has a true label
    truth = trained["ground_truth"].set_index("declaration_id")
    expected = truth.loc[scored["declaration_id"], "fraud"].to_numpy(dtype=float)
    assert np.array_equal(scored["y"].to_numpy(), expected)
    assert scored["score"].is_unique  # tie-free ranking
    assert scored["probability"].between(0, 1).all()
    # the recorded outcome stays beside the label: NaN where nobody controlled
    assert scored["hit"].isna().any() and scored["hit"].notna().any()


def test_without_truth_only_controlled_declarations_are_labelled(trained, tmp_path: Path):
    plan = plan_of(trained["model"], config(tmp_path), trained["features"].lodged_at)
    scored = holdout.scored_test_window(trained["model"], trained["features"], plan)
    assert holdout.population(scored) == Population.INSPECTED.label
    assert scored["y"].equals(scored["hit"])
    curve = holdout.tradeoff_curve(scored)
    assert curve["share"].iloc[-1] == 1.0 and curve["gain"].iloc[-1] == pytest.approx(1.0)


def synthetic_scored(rows: int = 1_000, revenue: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    y = (rng.random(rows) < 0.08).astype(float)
    score = y + rng.normal(0, 0.7, rows)
    y_with_gaps = np.where(rng.random(rows) < 0.3, np.nan, y)
    return pd.DataFrame(
        {
            "declaration_id": [f"X{i}" for i in range(rows)],
            "score": score,
            "y": y_with_gaps,
            "revenue": np.where(y == 1, rng.lognormal(5, 1, rows), 0.0) if revenue else np.nan,
        },
        index=pd.RangeIndex(rows) * 2 + 1,
    )


def test_capacity_table_measures_the_labelled_rows_against_random():
    scored = synthetic_scored()
    table = holdout.capacity_table(scored, [0.01, 0.05], replicates=30, seed=1)
    assert set(table["model"]) == {"model", "random"}
    assert table["rate"].notna().all()
    labelled = scored.loc[scored["y"].notna()]
    direct = mx.metrics_table(
        labelled["y"],
        {"model": labelled["score"]},
        [0.01, 0.05],
        revenue=labelled["revenue"],
        resampling=mx.Resampling(replicates=0),
    )
    ours = table.loc[table["model"] == "model"].set_index(["rate", "metric"])["value"]
    theirs = direct.loc[direct["rate"].notna()].set_index(["rate", "metric"])["value"]
    pd.testing.assert_series_equal(ours.sort_index(), theirs.sort_index())
    model = table.loc[table["model"] == "model"]
    assert model[["low", "high"]].notna().all().all()
    precision = table.loc[table["metric"] == "precision"].pivot(
        index="rate", columns="model", values="value"
    )
    assert (precision["model"] > precision["random"]).all()


def test_without_revenue_no_revenue_metric_is_reported():
    scored = synthetic_scored(revenue=False)
    table = holdout.capacity_table(scored, [0.05])
    assert not table["metric"].str.startswith("revenue").any()
    assert "revenue_gain" not in holdout.tradeoff_curve(scored).columns
    assert "revenue_gain" in holdout.tradeoff_curve(synthetic_scored()).columns


def test_nothing_labelled_is_refused():
    scored = synthetic_scored().assign(y=np.nan)
    with pytest.raises(ValueError, match="no labelled declaration"):
        holdout.capacity_table(scored, [0.05])
    with pytest.raises(ValueError, match="no labelled declaration"):
        holdout.tradeoff_curve(scored)


def test_lookup_returns_rows_in_the_order_asked_and_names_missing_ids(trained):
    features, declarations = trained["features"], trained["declarations"]
    ids = [str(features.declaration_id.iloc[i]) for i in (30, 5, 1200)]
    rows, lodged = holdout.lookup(features, declarations.iloc[::-1], ids)
    assert rows.declaration_id.astype(str).tolist() == ids
    assert lodged["declaration_id"].astype(str).tolist() == ids
    pd.testing.assert_frame_equal(
        rows.X.reset_index(drop=True), features.X.iloc[[30, 5, 1200]].reset_index(drop=True)
    )
    assert rows.y.tolist() == pytest.approx(features.y.iloc[[30, 5, 1200]].tolist(), nan_ok=True)
    with pytest.raises(ValueError, match="NOPE-1"):
        holdout.lookup(features, declarations, [ids[0], "NOPE-1"])
