"""`targeting train` against a real `mlflow server` over HTTP (SQLite backend, proxied artefacts).

The server runs on a free loopback port with its database and artefact store in a temporary
folder; the run, its nested trials and the registered model are read back through the server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from helpers.servers import free_port, stop, wait_until_up
from helpers.train import feature_set, train_config
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from typer.testing import CliRunner

from pipeline import tracking
from pipeline.cli import app
from pipeline.config import to_yaml

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A tracking server on 127.0.0.1; yields its URL and its artefact folder."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    artifacts = folder / "artifacts"
    port = free_port()
    log = folder / "server.log"
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder / 'server.db'}",
        "--artifacts-destination",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/health", process, log)
        yield url, artifacts
    finally:
        # The server forks workers: stop its whole session (it was started in a new one).
        stop(process, group=True)


def test_train_logs_run_trials_and_model_through_the_server(
    server: tuple[str, Path], tmp_path: Path
) -> None:
    url, artifacts = server
    config = train_config(
        tmp_path,
        tune={"n_trials": 2},
        tracking={"uri": url, "experiment": "over-http", "registered_model": "over-http"},
    )
    fs = feature_set(rows=3_000, seed=3)
    fs.to_parquet(config.paths.features, config.paths.manifest)
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(config), encoding="utf-8")

    result = CliRunner().invoke(app, ["train", "--config", str(path)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    last = json.loads(config.paths.last_run.read_text(encoding="utf-8"))
    assert last["tracking_uri"] == url
    run_id = last["run_id"]

    client = MlflowClient(tracking_uri=url, registry_uri=url)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "over-http"
    assert 0 < run.data.metrics["test.inspected.average_precision"] <= 1
    assert run.data.params["tracking.uri"] == url
    # Artefacts go through the server's proxy into its own store, not to a local folder.
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    listed = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", tracking.MODEL_ARTIFACT} <= listed
    assert any(artifacts.rglob("config.yaml"))
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{run_id}'"
    )
    assert len(children) == 2

    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    try:
        booster = mlflow.xgboost.load_model(f"runs:/{run_id}/{tracking.XGBOOST_ARTIFACT}")
        bundle = tracking.load_model(run_id, "deployed")
    finally:
        mlflow.set_tracking_uri("")
        mlflow.set_registry_uri("")
    sample = fs.X.head(200)
    np.testing.assert_allclose(
        booster.inplace_predict(bundle.prepare(sample), predict_type="margin"),
        bundle.margin(sample),
    )
