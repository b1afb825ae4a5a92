"""ModelInfo: the bundle's info typed, written and read back as the same JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from pipeline.config import Config
from pipeline.plan import RankingPolicy, RefitPlan, RunPlan, Windows
from pipeline.serve.model import (
    META_FILE,
    Calibration,
    FamiliesKept,
    ModelInfo,
    TargetingModel,
    plan_of,
)
from pipeline.timeaxis import Window

WINDOWS = Windows(
    train=Window("train", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-05-01")),
    valid=Window("valid", pd.Timestamp("2024-05-01"), pd.Timestamp("2024-06-01")),
    calibration=Window("calibration", pd.Timestamp("2024-06-01"), pd.Timestamp("2024-06-15")),
    test=Window("test", pd.Timestamp("2024-06-15"), pd.Timestamp("2024-08-01")),
)
REFIT = RefitPlan(
    train=Window("refit-train", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-07-20")),
    calibration=Window("refit-calibration", pd.Timestamp("2024-07-20"), pd.Timestamp("2024-08-03")),
    labels_known_by=pd.Timestamp("2024-08-10"),
)
PLAN = RunPlan(
    evaluated=WINDOWS,
    refit=REFIT,
    reference=Window("reference", pd.Timestamp("2024-08-01"), pd.Timestamp("2024-08-10")),
    incoming=Window("incoming", pd.Timestamp("2024-08-10"), pd.Timestamp("2024-09-01 00:00:01")),
    usable_end=pd.Timestamp("2024-08-10"),
    ranking=RankingPolicy("expected_revenue", 0.5),
    headline_rate=0.05,
)
EVALUATED = ModelInfo(
    role="evaluated",
    windows=WINDOWS,
    best_iteration=41,
    params={"learning_rate": 0.1, "max_depth": 6, "objective": "binary:logistic", "seed": 7},
    refit=REFIT,
    refit_trees=57,
    imbalance="scale_pos_weight",
    objective="average_precision",
    calibration="isotonic",
    selection_correction="none",
    anchoring="not anchored (train.anchor_to_random is false)",
    probability_means="P(hit | controlled by the historical policy)",
    revenue_model="tweedie regressor on 300 hits, 20 trees",
    registered_model="customs-targeting",
    seed=7,
    engine="memory",
    boosted_from="memory",
    families=FamiliesKept(
        kept=["valuation", "history"],
        ap_all=0.31,
        ap_chosen=0.32,
        effects=[{"family": "route", "ap_without": 0.32, "effect": -0.01, "dropped": True}],
    ),
    plan=PLAN,
)


def test_model_info_round_trips_through_its_dict() -> None:
    deployed = ModelInfo(**{**EVALUATED.__dict__, "role": "deployed", "revenue_model": "none"})
    for info in (EVALUATED, deployed, ModelInfo()):
        written = json.loads(json.dumps(info.to_dict()))
        assert ModelInfo.from_dict(written) == info
        assert ModelInfo.from_dict(written).to_dict() == written


def test_the_dict_is_the_one_the_fit_wrote_before_the_info_was_typed() -> None:
    """Same keys in the same order: an evaluated model's windows and its refit under
    ``deployed``; a deployed model's own windows, trees and the evaluated model's under
    ``evaluated``."""
    evaluated = EVALUATED.to_dict()
    assert list(evaluated)[:3] == ["params", "windows", "best_iteration"]
    assert list(evaluated)[-3:] == ["families", "plan", "deployed"]
    assert evaluated["windows"] == WINDOWS.as_dict() and evaluated["best_iteration"] == 41
    assert evaluated["deployed"] == {
        "windows": {"train": REFIT.train.as_dict(), "calibration": REFIT.calibration.as_dict()},
        "trees": 57,
        "labels_known_by": "2024-08-10T00:00:00",
    }
    deployed = ModelInfo(**{**EVALUATED.__dict__, "role": "deployed"}).to_dict()
    assert list(deployed)[-3:] == ["plan", "labels_known_by", "evaluated"]
    assert deployed["windows"] == evaluated["deployed"]["windows"]
    assert deployed["best_iteration"] == 56  # the refit's trees - 1
    assert deployed["evaluated"] == {"windows": WINDOWS.as_dict(), "best_iteration": 41}
    assert ModelInfo.from_dict(deployed).trees == 57


def test_a_saved_bundle_loads_with_the_same_info(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"value": rng.normal(size=200), "weight": rng.normal(size=200)})
    y = (X["value"] + rng.normal(size=200) > 0).astype(float)
    booster = xgb.train({"max_depth": 2, "nthread": 1}, xgb.DMatrix(X, y), num_boost_round=3)
    calibration = Calibration(shift=-0.4, level_shifts=[-0.3, 0.0, 0.25])
    model = TargetingModel(booster, calibration, list(X.columns), info=EVALUATED)
    model.save(tmp_path / "bundle")
    loaded = TargetingModel.load(tmp_path / "bundle")
    assert loaded.info == EVALUATED
    assert loaded.calibration == calibration  # the level's uncertainty travels with the model
    saved = json.loads((tmp_path / "bundle" / META_FILE).read_text(encoding="utf-8"))
    assert saved["info"] == json.loads(json.dumps(EVALUATED.to_dict()))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_an_older_bundle_without_some_keys_still_loads() -> None:
    info = ModelInfo.from_dict({"windows": WINDOWS.as_dict(), "best_iteration": 9})
    assert info.windows == WINDOWS and info.best_iteration == 9 and info.role == "evaluated"
    assert info.probability_means is None and info.refit is None and info.families is None
    assert info.plan is None  # saved before the run plan: `plan_of` rebuilds it
    # a calibration saved before the level's uncertainty was kept: no interval, same mapping
    older = Calibration(**{"method": "platt", "platt_a": 1.0, "platt_b": 0.0, "shift": 0.1})
    assert older.level_shifts is None
    partial = ModelInfo.from_dict({"windows": {"train": WINDOWS.train.as_dict()}})
    assert partial.windows is None and partial.plan is None


def _bundle(info: ModelInfo) -> TargetingModel:
    X = pd.DataFrame({"value": np.arange(20.0)})
    booster = xgb.train({"nthread": 1}, xgb.DMatrix(X, X["value"] > 9), num_boost_round=2)
    return TargetingModel(booster, Calibration(), ["value"], info=info)


def test_the_recorded_plan_is_read_and_an_older_bundle_has_it_rebuilt_from_its_windows() -> None:
    lodged = pd.Series(pd.date_range("2024-01-01", "2024-08-31", freq="D"))
    config = Config()
    assert plan_of(_bundle(EVALUATED), config, lodged) is PLAN  # what train decided, as is
    older = ModelInfo.from_dict({"windows": WINDOWS.as_dict(), "best_iteration": 9})
    rebuilt = plan_of(_bundle(older), config, lodged)
    assert rebuilt.evaluated == WINDOWS and rebuilt.refit is None
    # laid by the functions train lays them with: after the test window, before the held-out
    # days (the last serve.score_last_days of a simulated stream), ranked as the model can
    assert rebuilt.reference.start == WINDOWS.test.end
    assert rebuilt.reference.end == rebuilt.usable_end == pd.Timestamp("2024-08-02")
    assert rebuilt.incoming.start == rebuilt.usable_end
    assert rebuilt.ranking == RankingPolicy("probability", config.serve.revenue_weight)
    with pytest.raises(ValueError, match="retrain it with `targeting train`"):
        plan_of(_bundle(ModelInfo()), config, lodged)
