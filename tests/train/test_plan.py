"""The run plan: the windows by role are ordered, disjoint where they must be, and the deployed
refit's windows are laid by the rule the walk-forward lays them by at its past cut-offs."""

from __future__ import annotations

import itertools
import json
from functools import lru_cache

import pandas as pd
import pytest
from helpers.train import feature_set
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipeline.config import Config
from pipeline.evaluate.walkforward import cutoffs
from pipeline.features.featureset import FeatureSet
from pipeline.plan import (
    RankingPolicy,
    RefitRule,
    RunPlan,
    SplitError,
    build_plan,
    held_out_days,
    lay_incoming,
    lay_refit,
)
from pipeline.timeaxis import Window, after_last, data_end


@lru_cache(maxsize=8)
def _declarations(days: int, seed: int) -> FeatureSet:
    return feature_set(rows=1_500, days=days, seed=seed)


def _overlap(a: Window, b: Window) -> bool:
    return a.start < b.end and b.start < a.end and a.end > a.start and b.end > b.start


SETTINGS = st.fixed_dictionaries(
    {
        "days": st.sampled_from([240, 365, 500]),
        "seed": st.integers(0, 2),
        "source": st.sampled_from(["simulate", "files"]),
        "valid_days": st.integers(10, 60),
        "calibration_days": st.integers(0, 40),
        "test_days": st.integers(10, 60),
        "gap_days": st.sampled_from([0.0, 7.0, 14.0]),
        "reference_days": st.integers(0, 45),
        "serve_reference_days": st.integers(5, 60),
        "score_last_days": st.integers(1, 30),
        "burn_in_days": st.integers(0, 30),
        "min_calibration_hits": st.integers(1, 40),
    }
)


def _config(s: dict) -> Config:
    split = {
        k: s[k]
        for k in (
            "valid_days",
            "calibration_days",
            "test_days",
            "gap_days",
            "reference_days",
            "burn_in_days",
        )
    }
    return Config.model_validate(
        {
            "data": {"source": s["source"]},
            "split": split,
            "train": {"min_calibration_hits": s["min_calibration_hits"]},
            "serve": {
                "reference_days": s["serve_reference_days"],
                "score_last_days": s["score_last_days"],
            },
            "evaluate": {"walk_forward_cutoffs": 3, "walk_forward_days": 14},
        }
    )


EXAMPLE = {
    "days": 365,
    "seed": 0,
    "source": "simulate",
    "valid_days": 40,
    "calibration_days": 30,
    "test_days": 40,
    "gap_days": 14.0,
    "reference_days": 30,
    "serve_reference_days": 30,
    "score_last_days": 20,
    "burn_in_days": 0,
    "min_calibration_hits": 5,
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SETTINGS)
def test_the_windows_by_role_are_ordered_and_disjoint_where_they_must_be(s: dict) -> None:
    config = _config(s)
    fs = _declarations(s["days"], s["seed"])
    try:
        plan = build_plan(config, fs)
    except SplitError:
        assume(False)
        return
    e = plan.evaluated
    gap = pd.Timedelta(days=config.split.gap_days)
    # The evaluated model's windows: in time order, apart by the label delay, inside the data.
    ordered = e.ordered()
    assert ordered[0] == e.train and ordered[-1] == e.test
    for before, after in itertools.pairwise(ordered):
        assert before.end <= after.start and after.start - before.end >= gap
    assert all(w.end <= plan.usable_end for w in ordered)
    # The cut-offs are set after the test window (or just before it), never on its rows, and
    # on no window the evaluated model learned, stopped or calibrated on when laid after it.
    assert not _overlap(plan.reference, e.test)
    assert plan.reference.end <= plan.usable_end
    if plan.reference.start >= e.test.end:
        assert not any(_overlap(plan.reference, w) for w in ordered)
    # The incoming stretch ends after the last declaration; on a simulated stream it is the
    # held-out stretch, which no window of the fit reaches.
    assert plan.incoming.end == after_last(fs.lodged_at)
    if held_out_days(config.data, config.serve):
        assert plan.incoming.start == plan.usable_end
        assert not _overlap(plan.incoming, plan.reference)
    refit = plan.refit
    assert refit is not None
    # The refit: every label known at the end of the usable data, train then calibration.
    assert refit.labels_known_by == plan.usable_end
    assert refit.train.start == e.train.start
    assert refit.train.start < refit.train.end == refit.calibration.start
    # No calibration window with split.calibration_days = 0 (then the refit is not calibrated).
    assert (refit.calibration.end > refit.calibration.start) == bool(config.split.calibration_days)
    assert refit.calibration.end <= plan.usable_end
    assert refit.selection is not None and refit.selection.end == refit.calibration.start
    assert refit.selection.start >= refit.train.start


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SETTINGS)
def test_the_deployed_refit_is_laid_as_the_walk_forward_lays_its_past_cut_offs(s: dict) -> None:
    config = _config(s)
    fs = _declarations(s["days"], s["seed"])
    try:
        plan = build_plan(config, fs)
    except SplitError:
        assume(False)
        return
    rule = RefitRule.of(config)
    # The deployed refit is the walk-forward's procedure at a cut-off at the end of the data.
    assert plan.refit == lay_refit(fs, plan.evaluated.train.start, plan.usable_end, rule)
    for cutoff in cutoffs(plan, config.evaluate):
        try:
            past = lay_refit(fs, plan.evaluated.train.start, cutoff, rule)
        except SplitError:
            continue
        assert past.labels_known_by == cutoff and past.calibration.end <= cutoff
        assert past.train.start == plan.evaluated.train.start
        assert cutoff >= plan.evaluated.calibration.end
        reference = plan.reference_at(cutoff)
        assert reference.end == cutoff and reference.days == pytest.approx(plan.reference.days)


def test_the_plan_round_trips_through_the_model_info_json() -> None:
    config = _config(EXAMPLE)
    plan = build_plan(config, _declarations(365, 0)).for_model(has_revenue=True)
    assert plan.ranking == RankingPolicy("expected_revenue", config.serve.revenue_weight)
    assert RunPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    assert plan.headline_rate == 0.05
    no_refit = config.model_copy(update={"train": config.train.model_copy(update={"refit": False})})
    without = build_plan(no_refit, _declarations(365, 0))
    assert without.refit is None and RunPlan.from_dict(without.to_dict()) == without


def test_the_incoming_stretch_begins_where_the_holdout_begins() -> None:
    lodged = pd.Series(pd.date_range("2024-01-01", "2024-06-30", freq="6h"))
    incoming = lay_incoming(lodged, 20)
    # the day boundary where the stretch `run` scores begins, to after the last declaration
    assert incoming.start == pd.Timestamp("2024-06-11") == data_end(lodged, 20)
    assert incoming.end == after_last(lodged) and incoming.contains(lodged)[-1]
    assert not incoming.contains(lodged[lodged < incoming.start]).any()


def test_each_role_reads_its_own_windows_and_the_one_test_window() -> None:
    config = _config({**EXAMPLE, "source": "files"})
    plan = build_plan(config, _declarations(365, 0))
    evaluated = plan.named_windows("evaluated")
    assert list(evaluated) == ["train", "valid", "calibration", "test"]
    assert evaluated["test"] == plan.test == plan.evaluated.test
    deployed = plan.named_windows("deployed")
    assert plan.refit is not None and list(deployed) == ["train", "calibration", "test"]
    assert deployed["train"] == plan.refit.train and deployed["test"] == plan.test
    # the drift monitor's reference: the end of the training window of the model monitored
    assert plan.drift_reference("deployed", 30).end == plan.refit.train.end
    assert plan.drift_reference("evaluated", None) == Window(
        "reference", plan.evaluated.train.start, plan.evaluated.train.end
    )
    assert plan.drift_reference("deployed", 30).days == 30
