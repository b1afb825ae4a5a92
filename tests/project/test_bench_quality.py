"""bench/quality.py shows the reference learners tuned with the model's budget beside the
untuned ones: its runs turn `evaluate.tune_references` on, a `--set` can turn it off, and its
summaries over seeds know the tuned learners by the names the evaluation gives them."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from pipeline.config import load
from pipeline.evaluate.reference import NAMES, TUNED

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quality() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_quality", ROOT / "bench/quality.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("config_file", ["configs/default.yaml", "configs/kcs.yaml"])
def test_the_benchmark_tunes_the_references_unless_told_not_to(
    quality: ModuleType, config_file: str
) -> None:
    assert not load(ROOT / config_file).evaluate.tune_references  # off by default
    assert load(ROOT / config_file, quality.settings([])).evaluate.tune_references
    off = quality.settings(["evaluate.tune_references=false"])
    assert not load(ROOT / config_file, off).evaluate.tune_references


def test_the_summaries_know_every_reference_learner_tuned_or_not(quality: ModuleType) -> None:
    assert set(quality.REFERENCES) == {*NAMES.values(), *TUNED.values()}
    records = [{"model": "model - LightGBM (tuned)"}, {"model": "model - LightGBM"}]
    assert quality._best(records) == "LightGBM (tuned)"
