"""Our stack's conventions: MLflow run names say when and what differs, and an Optuna study
names the MLflow runs it tuned."""

from __future__ import annotations

import datetime as dt

import optuna

from pipeline.config import PROJECT_ROOT, load
from pipeline.jobs.train import link_study
from pipeline.tracking import RUN_NAME_LENGTH, run_name

WHEN = dt.datetime(2026, 12, 6, 12, 40, tzinfo=dt.UTC)
DEFAULT = PROJECT_ROOT / "configs" / "default.yaml"


def test_a_run_name_has_the_date_and_what_the_command_line_changed() -> None:
    config = load(
        DEFAULT,
        [
            "output_dir=/tmp/elsewhere",
            "simulate.rows=50000",
            "tracking.uri=sqlite:///x.db",
            "tune.n_trials=4",
        ],
    )
    assert config.overrides[1] == "simulate.rows=50000"
    name = run_name(config, "train", WHEN)
    assert name == "default train 2026-12-06 12:40 simulate.rows=50000 tune.n_trials=4"
    assert run_name(load(DEFAULT), "monitor", WHEN) == "default monitor 2026-12-06 12:40"
    long = load(DEFAULT, [f"evaluate.rates=[{', '.join(['0.01'] * 60)}]"])
    assert len(run_name(long, "train", WHEN)) == RUN_NAME_LENGTH
    assert run_name(long, "train", WHEN).endswith("...")
    assert long.model_copy(deep=True).overrides == long.overrides  # copies keep them


def test_the_study_names_the_runs_it_tuned() -> None:
    config = load(DEFAULT)
    study = optuna.create_study()
    link_study(study, "run-1", config)
    link_study(study, "run-2", config)
    link_study(study, "run-1", config)  # a rerun moves to the end, never twice
    assert study.user_attrs["mlflow_run_ids"] == ["run-2", "run-1"]
    assert study.user_attrs["config"] == "default"
    assert study.user_attrs["registered_model"] == "customs-targeting-default"


def test_runs_go_to_the_experiment_named_like_the_model() -> None:
    own = load(PROJECT_ROOT / "configs" / "own-data.example.yaml")
    assert own.tracking.experiment == "customs-targeting-own-data"
    assert own.tracking.registered_model == "customs-targeting-own-data"
    assert load(DEFAULT).tracking.experiment == "customs-targeting-default"
