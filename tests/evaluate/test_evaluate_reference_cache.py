"""The reference learners are fitted once per rows and settings and kept in the run catalog: a
second evaluation of a model trained with another setting reads them instead of fitting them."""

from __future__ import annotations

import logging
from pathlib import Path

import helpers.evaluate as h
import pandas as pd
import pytest

from pipeline.jobs.catalog import REFERENCES_FOLDER, catalog_folder
from pipeline.jobs.evaluate import evaluate

pytestmark = pytest.mark.slow

CATALOG_LOG = "pipeline.jobs.catalog"


def entries(folder: Path) -> list[Path]:
    return sorted((folder / REFERENCES_FOLDER).glob("*.pickle"))


def test_a_second_evaluation_with_another_model_setting_reuses_the_references(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = h.experiment_config(tmp_path)
    config.evaluate.reference_learners = ["xgboost"]
    config.evaluate.reference_rounds = 60
    config.evaluate.reference_min_trees = 20
    data = h.simulated_tables(config)
    h.train_and_track(config, data)
    with caplog.at_level(logging.INFO, logger=CATALOG_LOG):
        first = evaluate(config)
    assert "reference learners fitted and saved in the run catalog" in caplog.text
    [entry] = entries(catalog_folder(config))

    params = {**config.train.params, "max_depth": 2, "learning_rate": 0.3}
    second_run = h.train_and_track(config, data, params)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=CATALOG_LOG):
        second = evaluate(config, run_id=second_run.run_id)
    assert f"reference learners read from the run catalog ({entry.name})" in caplog.text
    assert "fitted and saved" not in caplog.text
    assert entries(catalog_folder(config)) == [entry]
    # the same references in both reports; the models differ
    metrics = [pd.read_csv(r.outputs["metrics"]) for r in (first, second)]
    plain = [m.loc[m["model"] == "plain XGBoost"].reset_index(drop=True) for m in metrics]
    assert len(plain[0]) > 0
    pd.testing.assert_frame_equal(
        plain[0].drop(columns=["low", "high"]), plain[1].drop(columns=["low", "high"])
    )

    # a reference setting decides their scores: fitted again, kept beside the first
    config.evaluate.reference_rounds = 70
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=CATALOG_LOG):
        evaluate(config, run_id=second_run.run_id)
    assert "reference learners fitted and saved in the run catalog" in caplog.text
    assert len(entries(catalog_folder(config))) == 2
