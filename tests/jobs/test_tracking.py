"""`targeting train` against a real MLflow SQLite store: what a run records, the registry alias,
the logged models, and the last-run pointer."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
from helpers.train import feature_set, train_config
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipeline import tracking
from pipeline.config import PROJECT_ROOT
from pipeline.jobs import catalog
from pipeline.jobs.train import train, train_feature_set
from pipeline.plan import build_plan

# One tracking store and one trained run serve the whole module: keep it on one xdist worker.


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One tuned training run through the job (features read from Parquet)."""
    tmp = tmp_path_factory.mktemp("tracking")
    config = train_config(tmp, tune={"n_trials": 3})
    fs = feature_set(rows=3_000, seed=21)
    fs.to_parquet(config.paths.features, config.paths.manifest)
    result = train(config)
    return {"config": config, "fs": fs, "result": result, "run_id": result.figures["run_id"]}


def test_the_run_records_config_fingerprint_commit_and_versions(trained: dict[str, Any]) -> None:
    config, fs = trained["config"], trained["fs"]
    tracking.configure(config)
    run = MlflowClient().get_run(trained["run_id"])
    tags, params = run.data.tags, run.data.params
    reread = type(fs).read_parquet(config.paths.features, config.paths.manifest)
    assert tags["data_fingerprint"] == tracking.data_fingerprint([reread.X, reread.meta()])
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert tags["git_commit"] == (f"{commit}-dirty" if dirty else commit) if commit else "unknown"
    # the run says what it is, and names its training data with the fingerprint as digest
    assert f"config {config.name!r}" in tags["mlflow.note.content"]
    [data] = run.inputs.dataset_inputs
    assert data.dataset.digest == tags["data_fingerprint"][:32]
    assert data.dataset.name == f"{config.name}-feature-set"
    assert {t.key: t.value for t in data.tags}["mlflow.data.context"] == "training"
    assert not Path(json.loads(data.dataset.source)["uri"]).is_absolute()
    assert "hs2" in data.dataset.schema
    assert tags["version.xgboost"] == __import__("xgboost").__version__
    assert params["tune.n_trials"] == "3"
    assert params["seed"] == str(config.seed)
    assert "fit.learning_rate" in params
    assert "test.inspected.average_precision" in run.data.metrics
    artefacts = {a.path for a in MlflowClient().list_artifacts(trained["run_id"])}
    assert {"config.yaml", "targeting_model", "features", "fit_log.json"} <= artefacts
    text = mlflow.artifacts.load_text(f"runs:/{trained['run_id']}/config.yaml")
    assert "n_trials: 3" in text


def test_trials_are_nested_runs_of_the_training_run(trained: dict[str, Any]) -> None:
    tracking.configure(trained["config"])
    children = mlflow.search_runs(
        filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{trained['run_id']}'",
        output_format="list",
    )
    assert len(children) == 3
    assert all("learning_rate" in child.data.params for child in children)


def test_the_booster_is_logged_with_the_run_and_not_registered(trained: dict[str, Any]) -> None:
    # The registry holds the deployable scorer, registered by `export` (tests/jobs/test_approve.py).
    config, fs = trained["config"], trained["fs"]
    tracking.configure(config)
    name = config.tracking.registered_model
    assert not MlflowClient().search_registered_models(filter_string=f"name = '{name}'")

    bundle = tracking.load_model(trained["run_id"], "deployed")
    logged = f"runs:/{trained['run_id']}/{tracking.XGBOOST_ARTIFACT}"
    booster = mlflow.xgboost.load_model(logged)
    prepared = bundle.prepare(fs.X.head(200))
    np.testing.assert_allclose(
        booster.inplace_predict(prepared, predict_type="margin"), bundle.margin(fs.X.head(200))
    )
    signature = mlflow.models.get_model_info(logged).signature
    types = {spec.name: str(spec.type) for spec in signature.inputs.inputs}
    assert set(types) == set(bundle.feature_names)
    assert "string" in types["hs2"]  # category columns are logged as strings, not `category`
    assert bundle.booster.num_boosted_rounds() == bundle.info.trees


def test_the_run_plan_is_recorded_with_both_models(trained: dict[str, Any]) -> None:
    """`targeting train` lays the plan once and records it with the evaluated model and the
    deployed refit, each with the ranking resolved against it."""
    config = trained["config"]
    tracking.configure(config)
    evaluated = tracking.load_model(trained["run_id"], "evaluated")
    deployed = tracking.load_model(trained["run_id"], "deployed")
    plan = build_plan(config, catalog.feature_set(config))
    for model in (evaluated, deployed):
        assert model.info.plan == plan.for_model(model.revenue_booster is not None)
    assert evaluated.info.windows == plan.evaluated and plan.refit is not None
    refit = deployed.info.refit
    assert refit is not None and (refit.train, refit.calibration) == (
        plan.refit.train,
        plan.refit.calibration,
    )
    assert evaluated.info.refit == refit and evaluated.info.refit_trees == deployed.info.trees


def test_the_flavour_signature_marks_missing_columns_optional(trained: dict[str, Any]) -> None:
    config, fs = trained["config"], trained["fs"]
    tracking.configure(config)
    logged = f"runs:/{trained['run_id']}/{tracking.XGBOOST_ARTIFACT}"
    signature = mlflow.models.get_model_info(logged).signature
    required = {spec.name: spec.required for spec in signature.inputs.inputs}
    missing = set(fs.X.columns[fs.X.isna().any().to_numpy()]) & set(required)
    assert missing, "the test's feature set should leave some feature missing"
    assert not any(required[c] for c in missing)
    assert all(required[c] for c in set(required) - missing)


def test_the_run_metrics_are_linked_to_the_logged_flavour(trained: dict[str, Any]) -> None:
    tracking.configure(trained["config"])
    run = MlflowClient().get_run(trained["run_id"])
    [output] = run.outputs.model_outputs
    logged = mlflow.get_logged_model(output.model_id)
    assert run.data.tags["xgboost_model_uri"] == f"models:/{output.model_id}"
    linked = {m.key for m in logged.metrics or []}
    assert "test.inspected.average_precision" in linked and "best_iteration" in linked


def test_the_validation_curve_is_logged_per_boosting_round(trained: dict[str, Any]) -> None:
    """Every round the final fit boosted, early-stopped ones included, as one metric history."""
    tracking.configure(trained["config"])
    run_id = trained["run_id"]
    log = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/fit_log.json"))
    [name] = [k for k in MlflowClient().get_run(run_id).data.metrics if k.startswith("curve.")]
    assert name == f"curve.valid.{log['params']['eval_metric']}"
    history = MlflowClient().get_metric_history(run_id, name)
    steps = sorted(m.step for m in history)
    config = trained["config"]
    rounds = min(
        log["best_iteration"] + 1 + config.train.early_stopping_rounds, config.train.num_boost_round
    )
    assert steps == list(range(rounds))
    best = max(history, key=lambda m: (m.value, -m.step))
    assert best.step == log["best_iteration"]


def test_last_run_points_at_the_run(trained: dict[str, Any]) -> None:
    last = tracking.read_last_run(trained["config"])
    assert last["run_id"] == trained["run_id"]
    assert last["model_uri"] == f"runs:/{trained['run_id']}/{tracking.MODEL_ARTIFACT}"
    assert "mlflow ui --backend-store-uri sqlite:///" in trained["result"].figures["ui_command"]


def test_a_second_training_is_a_new_run_and_the_last_run(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    # Own output folder: the module's run stays the last run of its own folder.
    config = trained["config"].model_copy(deep=True)
    config.tune.n_trials = 0
    config.output_dir = tmp_path / "out"
    first = train_feature_set(config, trained["fs"], progress=False)
    second = train_feature_set(config, trained["fs"], progress=False)
    assert tracking.read_last_run(config)["run_id"] == second.figures["run_id"]
    assert second.figures["run_id"] != first.figures["run_id"]
    # artefacts live beside the SQLite file, never in the working directory
    experiment = MlflowClient().get_experiment_by_name(config.tracking.experiment)
    store = Path(tracking.tracking_uri(config.tracking).removeprefix("sqlite:///")).parent
    assert experiment.artifact_location.startswith((store / "mlartifacts").as_uri())


def test_other_jobs_can_add_to_the_run(trained: dict[str, Any], tmp_path: Path) -> None:
    tracking.configure(trained["config"])
    report = tmp_path / "report.html"
    report.write_text("<html></html>")
    tracking.log_artifacts(trained["run_id"], report, "report")
    tracking.log_metrics(trained["run_id"], {"evaluate.precision_at_5": 0.5, "nan": float("nan")})
    tracking.set_tags(trained["run_id"], {"evaluated": "yes"})
    run = MlflowClient().get_run(trained["run_id"])
    assert run.data.metrics["evaluate.precision_at_5"] == 0.5
    assert "nan" not in run.data.metrics
    assert run.data.tags["evaluated"] == "yes"
    assert [a.path for a in MlflowClient().list_artifacts(trained["run_id"], "report")] == [
        "report/report.html"
    ]


def test_fingerprint_follows_the_data() -> None:
    fs = feature_set(rows=500, seed=1)
    same = feature_set(rows=500, seed=1)
    assert tracking.data_fingerprint([fs.X]) == tracking.data_fingerprint([same.X])
    changed = fs.X.copy()
    changed.loc[7, "undervaluation"] += 1e-9
    assert tracking.data_fingerprint([fs.X]) != tracking.data_fingerprint([changed])
    assert tracking.data_fingerprint([fs.X]) != tracking.data_fingerprint(
        [fs.X.astype({"noise": "float32"})]
    )


def test_tracking_uri_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = train_config(tmp_path)
    assert tracking.tracking_uri(config.tracking) == f"sqlite:///{tmp_path}/mlflow.db"
    config.tracking.uri = None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking.tracking_uri(config.tracking) == "http://tracking.example:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking.tracking_uri(config.tracking) == f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"


def test_train_without_features_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run `targeting features` first"):
        train(train_config(tmp_path))


def test_log_training_needs_the_parent_run(tmp_path: Path) -> None:
    from pipeline.plan import make_windows
    from pipeline.train.fit import fit

    fs = feature_set(rows=1_500, seed=2)
    config = train_config(tmp_path)
    result = fit(fs, make_windows(fs.lodged_at, config.split), config.train.params, config)
    with pytest.raises(RuntimeError, match="start_parent_run"):
        tracking.log_training(config, result, tracking.TrainedOn(fs.manifest, "x", pd.DataFrame()))


def test_pruned_trials_are_finished_and_tagged_as_pruned(trained: dict[str, Any]) -> None:
    tracking.configure(trained["config"])
    with tracking.start_parent_run(trained["config"], run_name="trials") as parent:
        tracking.log_trials(
            parent,
            [
                optuna.trial.create_trial(
                    params={"max_depth": 3},
                    distributions={"max_depth": optuna.distributions.IntDistribution(2, 8)},
                    value=0.4,
                ),
                optuna.trial.create_trial(
                    params={"max_depth": 7},
                    distributions={"max_depth": optuna.distributions.IntDistribution(2, 8)},
                    state=optuna.trial.TrialState.PRUNED,
                ),
            ],
        )
    children = mlflow.search_runs(
        filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent}'", output_format="list"
    )
    states = {c.data.params["max_depth"]: c for c in children}
    assert (
        states["7"].info.status == "FINISHED" and states["7"].data.tags["optuna.pruned"] == "true"
    )
    assert states["3"].info.status == "FINISHED" and "optuna.pruned" not in states["3"].data.tags


def test_jobs_read_the_store_through_the_adapter(trained: dict[str, Any], tmp_path: Path) -> None:
    config, run_id = trained["config"], trained["run_id"]
    tracking.configure(config)
    assert "data_fingerprint" in tracking.run_tags(run_id)
    assert tracking.run_is_live(run_id)
    assert not tracking.run_is_live("0" * 32)
    note = tmp_path / "note.json"
    note.write_text('{"read": "back"}')
    tracking.log_artifacts(run_id, note, "readback")
    assert tracking.artifact_paths(run_id, "readback") == ["readback/note.json"]
    local = tracking.download_artifact(run_id, "readback/note.json", tmp_path / "down")
    assert local.read_text() == note.read_text()
    with pytest.raises(FileNotFoundError, match="no artefact readback/absent"):
        tracking.download_artifact(run_id, "readback/absent.json", tmp_path / "none")
    # training registers nothing: no version, no alias, no scorer of the run
    assert tracking.alias_version(config.tracking, tracking.CHAMPION) is None
    assert tracking.model_version(config.tracking, "1") is None
    assert tracking.scorer_versions(config.tracking, run_id) == []
