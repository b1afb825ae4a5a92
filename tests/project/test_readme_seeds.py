"""The README's claims over seeds: bench/quality.py's summary (means, t-intervals over seeds,
seeds whose own interval excludes 0) and tools/readme.py's wording (an edge only when the
interval over seeds excludes 0)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]


def _module(path: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quality() -> ModuleType:
    return _module("bench/quality.py", "bench_quality")


@pytest.fixture(scope="module")
def readme() -> ModuleType:
    return _module("tools/readme.py", "tools_readme")


def test_t_interval_is_the_textbook_one(quality: ModuleType, readme: ModuleType) -> None:
    values = [0.1, 0.3, 0.2]
    got = quality.t_interval(values)
    half = stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)
    assert got["n"] == 3 and got["mean"] == pytest.approx(0.2)
    assert got["low"] == pytest.approx(0.2 - half) and got["high"] == pytest.approx(0.2 + half)
    assert readme._t_interval(values) == pytest.approx((0.2, 0.2 - half, 0.2 + half))
    one = quality.t_interval([0.5])
    assert one["mean"] == 0.5 and one["low"] is None and one["high"] is None


def _seed(seed: int, gap: float, paired_low: float, effect: float, kept: bool) -> dict[str, Any]:
    """A per-seed record as `seed_record` writes it, for one ranking and metric."""
    differences = []
    for comparator, learner in (("best reference learner", "LightGBM"), ("LightGBM", "LightGBM")):
        differences.append(
            {
                "ranking": "probability",
                "comparator": comparator,
                "learner": learner,
                "metric": "precision",
                "value": gap,
                "low": paired_low if comparator != "LightGBM" else None,
                "high": gap + 0.1 if comparator != "LightGBM" else None,
            }
        )
    return {
        "seed": seed,
        "rows": 1000,
        "best_reference": "LightGBM",
        "differences": differences,
        "family_effects": [
            {
                "family": "valuation",
                "features": 12,
                "effect": effect,
                "low": effect - 0.01,
                "high": effect + 0.01,
                "dropped": not kept,
            }
        ],
    }


def test_summary_counts_seeds_and_keeps(quality: ModuleType, monkeypatch: Any) -> None:
    monkeypatch.setattr(quality, "RANKINGS", ("probability",))
    monkeypatch.setattr(quality, "REFERENCES", ("LightGBM",))
    monkeypatch.setattr(quality, "METRICS", ("precision",))
    per_seed = [
        _seed(42, 0.05, 0.01, 0.20, True),
        _seed(43, 0.03, -0.02, 0.10, True),
        _seed(44, 0.04, 0.02, -0.05, False),
    ]
    best, each = quality.summarise_differences(per_seed)
    assert best["comparator"] == "best reference learner"
    assert best["mean"] == pytest.approx(0.04) and best["low"] > 0
    assert (best["seeds_with_interval"], best["seeds_above_zero"]) == (3, 2)
    assert each["seeds_with_interval"] == 0 and each["values"] == [0.05, 0.03, 0.04]
    (family,) = quality.summarise_families(per_seed)
    assert (family["kept"], family["seeds"]) == (2, 3)
    assert family["seeds_above_zero"] == 2 and family["seeds_below_zero"] == 1
    assert family["low"] < 0 < family["high"]


def _doc(low: float, high: float) -> dict[str, Any]:
    row = {
        "ranking": "probability",
        "comparator": "LightGBM",
        "metric": "precision",
        "mean": (low + high) / 2,
        "low": low,
        "high": high,
        "t": 4.30,
        "seeds_with_interval": 3,
        "seeds_above_zero": 1,
        "seeds_below_zero": 0,
    }
    family = {
        "family": "history",
        "features": 10,
        "kept": 2,
        "seeds": 3,
        "mean": 0.01,
        "low": -0.02,
        "high": 0.04,
        "seeds_above_zero": 0,
        "seeds_below_zero": 0,
    }
    return {
        "seeds": [42, 43, 44],
        "per_seed": [
            {"seed": s, "rows": 60000, "best_reference": "LightGBM"} for s in (42, 43, 44)
        ],
        "differences": [row],
        "families": [family],
        "families_measured": "test window",
        "seconds": 100.0,
    }


def test_an_edge_only_when_the_interval_over_seeds_excludes_zero(readme: ModuleType) -> None:
    text = "\n".join(readme.quality_seeds(_doc(0.01, 0.09)))
    assert "by probability | LightGBM (the best, every seed) | +0.050 [+0.010, +0.090]" in text
    assert "Ranked by probability, the model has an edge over LightGBM in precision@5 %;" in text
    assert "edge in 1 of 3" in text and "t = 4.30" in text
    assert "| history | 10 | 2 of 3 | +0.010 [-0.020, +0.040] |" in text
    assert "out-of-sample effect is above 0 over the seeds: none" in text
    assert "unadjusted for multiplicity: the table holds 1 comparisons" in text
    straddling = "\n".join(readme.quality_seeds(_doc(-0.01, 0.09)))
    assert "Ranked by probability, the model has an edge over no reference learner" in straddling


def test_seed_tables_lead_with_the_deployed_ranking_and_label_in_sample_families(
    readme: ModuleType,
) -> None:
    doc = _doc(0.01, 0.09)
    revenue = dict(doc["differences"][0], ranking="expected revenue", mean=0.02, low=-0.01)
    doc["differences"].append(revenue)
    doc["deployed_ranking"] = "expected revenue"
    text = "\n".join(readme.quality_seeds(doc))
    assert text.index("| by expected revenue |") < text.index("| by probability |")
    assert "The rows lead with the ranking the export deploys, by expected revenue" in text
    assert text.index("Ranked by expected revenue") < text.index("Ranked by probability")
    assert "the table holds 2 comparisons" in text
    # families measured on the folds that chose them: a diagnostic, without an interval
    doc["families_measured"] = None
    text = "\n".join(readme.quality_seeds(doc))
    assert "in sample only (a diagnostic, not evidence)" in text
    assert "| history | 10 | 2 of 3 | +0.010 |" in text
    assert "effect is above 0 over the seeds" not in text


def test_the_bench_records_families_out_of_sample_and_the_deployed_ranking(
    quality: ModuleType,
) -> None:
    def row(population: str, effect: float) -> dict[str, Any]:
        return {
            "population": population,
            "family": "history",
            "features": 10,
            "in the model": "no",
            "test AP it adds": effect,
            "low (95 %)": effect - 0.02,
            "high (95 %)": effect + 0.02,
        }

    truth = "all declarations (ground truth)"
    ablation = [row("inspected", 0.05), row(truth, -0.01)]
    (effect,) = quality.family_effects(ablation, truth)
    assert effect == {
        "family": "history",
        "features": 10,
        "effect": -0.01,
        "low": -0.03,
        "high": 0.01,
        "dropped": True,
    }
    (inspected,) = quality.family_effects(ablation[:1], truth)  # KCS: inspected rows only
    assert inspected["effect"] == 0.05
    records = [{"model": "model by expected revenue"}]
    assert quality.deployed_ranking("auto", records) == "expected revenue"
    assert quality.deployed_ranking("auto", []) == "probability"
    assert quality.deployed_ranking("expected_revenue", []) == "expected revenue"
