"""`jobs.ensure`: which jobs a config still needs, judged from its artefacts and MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pipeline import tracking
from pipeline.config import Config, load
from pipeline.jobs.catalog import last_run_id
from pipeline.jobs.ensure import ensure, missing_stages


def small(tmp_path: Path, *more: str) -> Config:
    return load(
        None,
        [
            f"output_dir={tmp_path / 'out'}",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            "simulate.rows=500",
            "simulate.days=60",
            "simulate.importers=50",
            *more,
        ],
    )


def fake_features(config: Config) -> None:
    """The three feature artefacts as empty files: `ensure` judges presence, not content."""
    paths = config.paths
    paths.features.parent.mkdir(parents=True, exist_ok=True)
    paths.features.touch()
    paths.manifest.touch()
    paths.snapshot.mkdir(parents=True, exist_ok=True)


def recorded_run(config: Config, uri: str | None = None) -> str:
    """A real run in the config's store, recorded in last_run.json as `train` would."""
    tracking.configure(config)
    experiment = MlflowClient().get_experiment_by_name(config.tracking.experiment)
    run = MlflowClient().create_run(experiment.experiment_id)
    config.paths.last_run.parent.mkdir(parents=True, exist_ok=True)
    config.paths.last_run.write_text(
        json.dumps(
            {
                "run_id": run.info.run_id,
                "tracking_uri": uri or tracking.tracking_uri(config.tracking),
            }
        )
    )
    return str(run.info.run_id)


def test_a_fresh_config_needs_every_stage_in_order(tmp_path: Path):
    config = small(tmp_path)
    assert missing_stages(config) == ["data", "features", "model", "export"]
    assert missing_stages(config, "features") == ["data", "features"]


def test_files_are_read_where_they_are_so_data_is_never_missing(tmp_path: Path):
    config = load("configs/kcs.yaml", [f"output_dir={tmp_path / 'out'}"])
    assert missing_stages(config, "features") == ["features"]
    assert ensure(config, "data") == []


def test_ensure_simulates_once(tmp_path: Path):
    config = small(tmp_path)
    ran = ensure(config, "data")
    assert [r.stage for r in ran] == ["simulate"]
    assert config.paths.declarations.is_file()
    assert missing_stages(config, "data") == []
    assert ensure(config, "data") == []


def test_a_missing_stage_makes_every_later_stage_run(tmp_path: Path):
    config = small(tmp_path)
    fake_features(config)
    assert missing_stages(config, "features") == ["data", "features"]


def test_a_run_from_another_store_or_absent_from_this_one_does_not_count(tmp_path: Path):
    config = small(tmp_path)
    ensure(config, "data")
    fake_features(config)
    recorded_run(config, uri=f"sqlite:///{tmp_path / 'elsewhere.db'}")
    assert last_run_id(config) is None
    assert missing_stages(config, "model") == ["model"]
    config.paths.last_run.write_text(
        json.dumps({"run_id": "0" * 32, "tracking_uri": tracking.tracking_uri(config.tracking)})
    )
    assert last_run_id(config) is None


@pytest.mark.parametrize("same_run", [True, False])
def test_an_export_counts_only_for_the_last_run(tmp_path: Path, same_run: bool):
    config = small(tmp_path)
    ensure(config, "data")
    fake_features(config)
    run_id = recorded_run(config)
    assert last_run_id(config) == run_id
    assert missing_stages(config) == ["export"]
    config.paths.thresholds.write_text(
        json.dumps({"model": {"run_id": run_id if same_run else "another run"}})
    )
    assert missing_stages(config) == ([] if same_run else ["export"])


@pytest.mark.parametrize("same_run", [True, False])
def test_a_report_counts_only_for_the_last_run(tmp_path: Path, same_run: bool):
    config = small(tmp_path)
    ensure(config, "data")
    fake_features(config)
    run_id = recorded_run(config)
    assert missing_stages(config, "report") == ["report"]
    reviewed = run_id if same_run else "another-run"
    report = config.paths.run_report(reviewed)  # each run's report in its own folder
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("<html></html>")
    assert missing_stages(config, "report") == ["report"]  # no metrics.json: which run?
    (report.parent / "metrics.json").write_text(json.dumps({"run_id": reviewed}))
    assert missing_stages(config, "report") == ([] if same_run else ["report"])
