"""Evaluation metrics against hand-computed cases, sklearn, and the bootstrap's behaviour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from pipeline.config import RuleConfig
from pipeline.evaluate import metrics as mx

# Ten declarations, ranked 0 (highest score) to 9; three hits; rate 0.2 controls two.
Y = np.array([1, 0, 1, 0, 0, 0, 0, 1, 0, 0], dtype=float)
SCORE = np.arange(10, 0, -1, dtype=float)
REVENUE = np.array([100, 0, 50, 0, 0, 0, 0, 200, 0, 0], dtype=float)


def value(table: pd.DataFrame, model: str, metric: str, rate: float | None = None) -> float:
    rows = table.loc[(table["model"] == model) & (table["metric"] == metric)]
    if rate is not None:
        rows = rows.loc[np.isclose(rows["rate"], rate)]
    assert len(rows) == 1, (model, metric, rate)
    return float(rows["value"].iloc[0])


def test_capacity_metrics_on_ten_declarations() -> None:
    table = mx.metrics_table(
        Y, {"m": SCORE}, [0.2, 0.5], revenue=REVENUE, resampling=mx.Resampling(replicates=0)
    )
    assert value(table, "m", "precision", 0.2) == pytest.approx(1 / 2)
    assert value(table, "m", "recall", 0.2) == pytest.approx(1 / 3)
    # the oracle controls two hits of three at k = 2
    assert value(table, "m", "precision_norm", 0.2) == pytest.approx(1 / 2)
    assert value(table, "m", "revenue", 0.2) == pytest.approx(100 / 350)
    assert value(table, "m", "revenue_norm", 0.2) == pytest.approx(100 / 300)
    # k = 5: rows 0..4 hold two hits; the oracle would hold all three
    assert value(table, "m", "precision", 0.5) == pytest.approx(2 / 5)
    assert value(table, "m", "precision_norm", 0.5) == pytest.approx(2 / 3)
    assert value(table, "m", "revenue", 0.5) == pytest.approx(150 / 350)
    assert table["low"].isna().all()  # no replicates, no intervals


def test_random_baseline_is_the_expected_value() -> None:
    table = mx.random_baseline(Y, [0.2], REVENUE)
    assert value(table, "random", "precision", 0.2) == pytest.approx(0.3)
    assert value(table, "random", "recall", 0.2) == pytest.approx(0.2)
    assert value(table, "random", "precision_norm", 0.2) == pytest.approx(0.3)
    assert value(table, "random", "revenue", 0.2) == pytest.approx(0.2)
    assert value(table, "random", "revenue_norm", 0.2) == pytest.approx(0.2 * 350 / 300)
    assert value(table, "random", "roc_auc") == 0.5


def test_random_baseline_matches_the_mean_of_many_random_rankings() -> None:
    rng = np.random.default_rng(3)
    scores = {f"r{i}": rng.random(10) for i in range(3000)}
    table = mx.metrics_table(
        Y, scores, [0.2], revenue=REVENUE, resampling=mx.Resampling(replicates=0)
    )
    simulated = table.loc[np.isclose(table["rate"], 0.2)].groupby("metric")["value"].mean()
    expected = mx.random_baseline(Y, [0.2], REVENUE).dropna(subset=["rate"])
    for row in expected.itertuples():
        assert simulated[row.metric] == pytest.approx(row.value, abs=0.02), row.metric


def test_ties_follow_position_and_strict_score_orders_them() -> None:
    tied = np.ones(10)
    table = mx.metrics_table(Y, {"m": tied}, [0.2], resampling=mx.Resampling(replicates=0))
    assert value(table, "m", "precision", 0.2) == pytest.approx(0.5)  # rows 0 and 1
    broken = mx.strict_score(tied, tie_break=np.arange(10))  # row 9 first, then 8
    assert np.argsort(-broken)[:3].tolist() == [9, 8, 7]
    assert len(np.unique(broken)) == 10


@given(st.integers(min_value=0, max_value=10_000))
def test_ranking_metrics_equal_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 200))
    y = (rng.random(n) < 0.3).astype(float)
    y[0], y[1] = 1.0, 0.0  # both classes present
    score = rng.normal(size=n) + y
    p = 1 / (1 + np.exp(-score))
    table = mx.metrics_table(
        y, {"m": score}, [0.1], probabilities={"m": p}, resampling=mx.Resampling(replicates=0)
    )
    assert value(table, "m", "roc_auc") == pytest.approx(roc_auc_score(y, score))
    assert value(table, "m", "average_precision") == pytest.approx(
        average_precision_score(y, score)
    )
    assert value(table, "m", "brier") == pytest.approx(np.mean((p - y) ** 2))


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(float)
    score = y * 1.0 + rng.normal(size=n)
    revenue = y * rng.lognormal(5, 1, n)
    return y, score, revenue


def interval(table: pd.DataFrame, model: str, metric: str, rate: float) -> tuple[float, ...]:
    rows = table.loc[
        (table["model"] == model) & (table["metric"] == metric) & np.isclose(table["rate"], rate)
    ]
    return tuple(float(rows[c].iloc[0]) for c in ("value", "low", "high"))


def test_bootstrap_interval_contains_the_estimate_and_shrinks_with_n() -> None:
    widths = []
    for n in (500, 8000):
        y, score, revenue = synthetic(n, seed=1)
        table = mx.metrics_table(
            y,
            {"m": score},
            [0.05],
            revenue=revenue,
            resampling=mx.Resampling(replicates=200, seed=7),
        )
        for metric in ("precision", "recall", "revenue"):
            point, low, high = interval(table, "m", metric, 0.05)
            assert low <= point <= high, metric
        point, low, high = interval(table, "m", "precision", 0.05)
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # 16x the rows: about a quarter of the width


def test_bootstrap_is_reproducible_with_a_seed() -> None:
    y, score, _ = synthetic(1000, seed=2)
    first = mx.metrics_table(
        y, {"m": score}, [0.05], resampling=mx.Resampling(replicates=50, seed=3)
    )
    again = mx.metrics_table(
        y, {"m": score}, [0.05], resampling=mx.Resampling(replicates=50, seed=3)
    )
    other = mx.metrics_table(
        y, {"m": score}, [0.05], resampling=mx.Resampling(replicates=50, seed=4)
    )
    pd.testing.assert_frame_equal(first, again)
    assert not first["low"].equals(other["low"])


def test_paired_difference_of_a_model_with_itself_is_exactly_zero() -> None:
    y, score, _ = synthetic(2000, seed=5)
    noise = np.random.default_rng(0).random(2000)
    table = mx.metrics_table(
        y,
        {"a": score, "b": score.copy(), "random": noise},
        [0.05],
        resampling=mx.Resampling(replicates=100, seed=1, compare=[("a", "b"), ("a", "random")]),
    )
    same = table.loc[table["model"] == "a - b"]
    assert (same[["value", "low", "high"]].to_numpy() == 0).all()
    _, low, _ = interval(table, "a - random", "precision", 0.05)
    assert low > 0  # the informative score beats noise, and the paired interval says so


def test_selection_metrics_of_a_fixed_selection() -> None:
    chosen = np.zeros(10, dtype=bool)
    chosen[[0, 7, 8]] = True  # two hits of three, revenue 300 of 350
    table = mx.selection_metrics(Y, chosen, revenue=REVENUE, replicates=0).set_index("metric")
    assert table.loc["control_share", "value"] == pytest.approx(0.3)
    assert table.loc["precision", "value"] == pytest.approx(2 / 3)
    assert table.loc["recall", "value"] == pytest.approx(2 / 3)
    assert table.loc["revenue", "value"] == pytest.approx(300 / 350)
    assert table.loc["revenue_norm", "value"] == pytest.approx(300 / 350)  # oracle k=3: all


def test_quota_mask_takes_each_office_top_by_share_or_count() -> None:
    office = np.array(["A"] * 6 + ["B"] * 4)
    score = np.array([1, 6, 3, 5, 2, 4, 9, 7, 8, 1], dtype=float)
    mask = mx.quota_mask(score, office, {"A": 0.34, "B": 1})
    # A: ceil(0.34 x 6) = 3 highest (6, 5, 4); B: one (9)
    assert np.flatnonzero(mask).tolist() == [1, 3, 5, 6]
    only_a = mx.quota_mask(score, office, {"A": 2})
    assert np.flatnonzero(only_a).tolist() == [1, 3]  # B has no capacity: nothing there


def test_breakdown_splits_the_global_selection_by_group() -> None:
    y, score, revenue = synthetic(3000, seed=8)
    groups = pd.Series(
        np.random.default_rng(1).choice(["x", "y", "z"], 3000), index=np.arange(3000) * 5
    )
    frame = mx.breakdown(y, score, groups, [0.05, 0.1], revenue)
    for rate, part in frame.groupby("rate"):
        assert part["selected"].sum() == int(np.ceil(rate * 3000))
        assert part["declarations"].sum() == 3000
        assert part["positives"].sum() == int(y.sum())
    assert frame["roc_auc"].between(0.5, 1).all()


def test_gain_curve_ends_at_one_and_stays_under_the_oracle() -> None:
    y, score, revenue = synthetic(1000, seed=9)
    gain = mx.gain_curve(y, score, revenue)
    assert gain["gain"].iloc[-1] == pytest.approx(1.0)
    assert (gain["gain"] <= gain["oracle_gain"] + 1e-12).all()
    assert gain["gain"].is_monotonic_increasing
    assert gain.loc[gain["share"] <= 0.05, "lift"].iloc[-1] > 1.5


def test_calibration_table_of_a_calibrated_score_is_near_the_diagonal() -> None:
    rng = np.random.default_rng(4)
    p = rng.uniform(0, 1, 20_000)
    y = (rng.random(20_000) < p).astype(float)
    table = mx.calibration_table(y, p, bins=5)
    assert len(table) == 5
    assert np.abs(table["predicted"] - table["observed"]).max() < 0.03


def test_single_feature_auc_finds_a_copied_label() -> None:
    y, score, _ = synthetic(2000, seed=6)
    X = pd.DataFrame(
        {
            "copy": y + 0.01 * score,
            "noise": np.random.default_rng(0).normal(size=2000),
            "level": pd.Categorical(np.where(y > 0, "bad", "good")),
        }
    )
    table = mx.single_feature_auc(X[:1000], y[:1000], X[1000:], y[1000:]).set_index("feature")
    assert table.loc["copy", "auc"] > 0.99
    assert table.loc["level", "auc"] > 0.99  # level hit rates learnt in the training part
    assert table.loc["noise", "auc"] < 0.6


def test_rules_score_counts_matched_criteria() -> None:
    declarations = pd.DataFrame(
        {"importer": ["I1", "I2", "I3", "I1"], "hs_code": ["610910", "850440", "610100", "940360"]}
    )
    rules = [
        RuleConfig(name="watch list", column="importer", values=["I1"]),
        RuleConfig(name="textiles", column="hs_code", prefix=["61"]),
    ]
    score = mx.rules_score(declarations, rules, seed=0)
    assert np.floor(score).tolist() == [2, 0, 1, 1]
    with pytest.raises(ValueError, match=r"rule 'origin'.*'origin_country'"):
        mx.rules_score(declarations, [RuleConfig(name="origin", column="origin_country")], 0)


def test_missing_labels_are_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="missing labels"):
        mx.metrics_table(np.array([1.0, np.nan]), {"m": np.array([1.0, 0.0])}, [0.5])
