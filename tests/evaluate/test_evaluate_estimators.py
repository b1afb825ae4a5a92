"""Selection-bias estimators: IPW and doubly robust precision and recall on all declarations."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluate.estimators import Stratum, clopper_pearson, estimate_at_rates
from pipeline.serve.ranking import top_mask


def flow(seed: int, n: int = 100_000, random_rate: float = 0.02) -> dict[str, np.ndarray]:
    """Every declaration's true hit; a score that knows part of the risk; a random stratum with
    a recorded probability (labels only there)."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(0, 1, n)
    p = 1 / (1 + np.exp(-(-3.5 + 1.2 * risk)))
    y = (rng.random(n) < p).astype(float)
    score = risk + rng.normal(0, 0.7, n)
    stratum = rng.random(n) < random_rate
    return {"p": p, "y": y, "score": score, "stratum": stratum, "pi": np.full(n, random_rate)}


def test_clopper_pearson_matches_the_closed_forms() -> None:
    low, high = clopper_pearson(0, 10)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 10))
    low, high = clopper_pearson(10, 10)
    assert high == 1.0 and low == pytest.approx(0.025 ** (1 / 10))
    low, high = clopper_pearson(5, 20)
    assert low < 5 / 20 < high


def test_both_estimators_hold_the_truth_over_seeds() -> None:
    rates = [0.05, 0.10]
    covered = {"ipw": 0, "dr": 0}
    cells = 0
    for seed in range(8):
        f = flow(seed)
        table = estimate_at_rates(
            f["score"],
            Stratum(f["stratum"], f["y"], f["pi"]),
            rates,
            probability=f["p"],
            min_rows=30,
        )
        for rate in rates:
            chosen = top_mask(f["score"], rate)
            truth = {
                "precision": f["y"][chosen].mean(),
                "recall": f["y"][chosen].sum() / f["y"].sum(),
            }
            cells += 1
            for estimator in covered:
                row = table.loc[
                    (table["estimator"] == estimator)
                    & (table["rate"] == rate)
                    & (table["metric"] == "precision")
                ].iloc[0]
                covered[estimator] += int(row["low"] <= truth["precision"] <= row["high"])
                recall = table.loc[
                    (table["estimator"] == estimator)
                    & (table["rate"] == rate)
                    & (table["metric"] == "recall")
                ].iloc[0]
                assert recall["low"] <= recall["value"] <= recall["high"]
    # 95 % intervals: 12 of 16 or fewer would happen with probability < 1 % if they were right
    assert covered["ipw"] >= 0.75 * cells
    assert covered["dr"] >= 0.75 * cells


def test_doubly_robust_is_tighter_when_the_probability_is_right() -> None:
    f = flow(11)
    table = estimate_at_rates(
        f["score"], Stratum(f["stratum"], f["y"], f["pi"]), [0.1], probability=f["p"], min_rows=30
    )
    width = (table["high"] - table["low"]).groupby([table["estimator"], table["metric"]]).first()
    assert width[("dr", "precision")] < width[("ipw", "precision")]


def test_a_thin_stratum_is_too_few_to_judge() -> None:
    f = flow(3, n=20_000, random_rate=0.002)
    table = estimate_at_rates(
        f["score"], Stratum(f["stratum"], f["y"], f["pi"]), [0.01], min_rows=30
    )
    assert table["value"].isna().all()
    assert table["verdict"].str.startswith("too few to judge").all()
    assert (table["stratum_rows"] < 30).all()


def test_a_stratum_row_without_outcome_is_refused() -> None:
    f = flow(4, n=5_000)
    y = f["y"].copy()
    y[np.flatnonzero(f["stratum"])[0]] = np.nan
    with pytest.raises(ValueError, match="no outcome"):
        estimate_at_rates(f["score"], Stratum(f["stratum"], y, f["pi"]), [0.05])
