"""Walk-forward evaluation of the deployment procedure: the refit, its calibration, anchor and
cut-offs replayed at past cut-offs on what was known then, and measured on what followed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers.evaluate import experiment_config

from pipeline.config import Config
from pipeline.evaluate.walkforward import (
    DEPLOYED,
    EVALUATED,
    TRUTH,
    WalkInputs,
    cutoffs,
    deploy_at,
    walk_forward,
)
from pipeline.features.build import build_feature_set
from pipeline.plan import build_plan
from pipeline.serve.model import plan_of
from pipeline.simulate import simulate
from pipeline.train.fit import RefitBasis, fit


def _setting(tmp_path: Path) -> tuple[Config, Any, Any]:
    config = experiment_config(tmp_path)
    config = config.model_copy(
        update={
            "evaluate": config.evaluate.model_copy(
                update={"walk_forward_cutoffs": 2, "walk_forward_days": 20}
            ),
            # the last cut-off a day before the end of the data: stretches of known labels
            "serve": config.serve.model_copy(update={"score_last_days": 1}),
        }
    )
    data = simulate(config.simulate, config.seed)
    fs = build_feature_set(data.declarations, data.outcomes, config.features)
    plan = build_plan(config, fs)  # as `targeting train` lays and records it
    result = fit(fs, plan.evaluated, dict(config.train.params), config)
    model = result.model
    model.info = replace(model.info, plan=plan.for_model(model.revenue_booster is not None))
    return config, data, (fs, model)


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Any, Any]:
    return _setting(tmp_path_factory.mktemp("walk"))


def test_the_deployment_is_replayed_at_each_cutoff_and_measured_on_what_followed(
    setting: tuple[Config, Any, Any],
) -> None:
    config, data, (fs, model) = setting
    inputs = WalkInputs(
        data.declarations, data.outcomes, data.ground_truth, config.simulate.detection_rate
    )
    found = walk_forward(model, fs, inputs, config, plan_of(model, config, fs.lodged_at))

    assert found.population == TRUTH
    assert len(found.stretches) == 2
    cuts = pd.to_datetime(found.stretches["cutoff"])
    assert (cuts >= model.info.windows.calibration.end).all()
    # each refit learned only before its cut-off
    assert (pd.to_datetime(found.stretches["refit train end"]) <= cuts).all()
    assert (found.stretches["trees"] > 0).all()
    channels = found.channels
    # the random draw is judged on its own, as the export's KPIs keep it
    assert set(channels["channel"]) <= {"red", "yellow", "green", "random"}
    targeted = channels.loc[channels["channel"] != "random"]
    assert set(targeted["channel"]) == {"red", "yellow", "green"}
    assert targeted["realised hit rate"].notna().all()
    assert channels["declarations"].sum() == found.stretches["declarations"].sum()
    inside, judged = found.coverage()
    assert judged == len(channels.dropna(subset=["range low"])) and 0 <= inside <= judged
    metrics = found.metrics
    for name in (DEPLOYED, EVALUATED, f"{DEPLOYED} - {EVALUATED}"):
        rows = metrics.loc[(metrics["model"] == name) & (metrics["metric"] == "precision")]
        assert len(rows) == len(config.evaluate.rates)
    difference = metrics.loc[metrics["model"] == f"{DEPLOYED} - {EVALUATED}"]
    assert difference[["low", "high"]].notna().all().all()


def test_no_outcome_known_after_a_cutoff_reaches_what_is_deployed_at_it(
    setting: tuple[Config, Any, Any],
) -> None:
    config, data, (fs, model) = setting
    plan = plan_of(model, config, fs.lodged_at)
    cutoff = cutoffs(plan, config.evaluate)[0]
    basis = RefitBasis.of_model(model, fs, plan.evaluated)
    before = deploy_at(cutoff, basis, fs, data.declarations, config, plan)

    # flip every outcome that became known at or after the cut-off
    outcomes = data.outcomes.copy()
    known = pd.to_datetime(outcomes["result_at"]) + pd.Timedelta(
        days=config.features.reporting_delay_days
    )
    late = (known >= cutoff).to_numpy() & outcomes["inspected"].to_numpy(dtype=bool)
    assert late.sum() > 20
    outcomes.loc[late, "hit"] = ~outcomes.loc[late, "hit"].astype(bool)
    flipped = build_feature_set(data.declarations, outcomes, config.features)
    basis = RefitBasis.of_model(model, flipped, plan.evaluated)
    after = deploy_at(cutoff, basis, flipped, data.declarations, config, plan)

    assert after.model.booster_sha256() == before.model.booster_sha256()
    assert after.model.calibration == before.model.calibration
    assert after.thresholds.document["cutoffs"] == before.thresholds.document["cutoffs"]
    assert np.isclose(
        after.kpis["channels"]["red"]["expected_hit_rate"],
        before.kpis["channels"]["red"]["expected_hit_rate"],
    )
