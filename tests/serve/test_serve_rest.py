"""The scorer as an MLflow pyfunc, served over REST by `mlflow models serve` on loopback."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers.serve import (
    declarations,
    labelled_training,
    make_snapshot,
    outcomes,
    serve_config,
    thresholds_document,
    train_model,
)

from pipeline.config import FeaturesConfig
from pipeline.features import build
from pipeline.serve.ranking import rank
from pipeline.serve.scorer import Scorer, rest_answer
from pipeline.serve.thresholds import Thresholds
from pipeline.tracking import log_scorer

pytestmark = pytest.mark.slow
START_TIMEOUT_S = 180.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def tracking(tmp_path: Path) -> Iterator[str]:
    """A real MLflow SQLite store in tmp_path, artefacts beside it; the old URI restored after."""
    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("serve", artifact_location=str(tmp_path / "artifacts"))
    mlflow.set_experiment(experiment_id=experiment)
    try:
        yield uri
    finally:
        mlflow.set_tracking_uri(previous)


def _not_json(constant: str) -> Any:
    raise ValueError(f"not strict JSON: a bare {constant} in the answer (RFC 8259 has none)")


def strict_json(text: bytes | str) -> Any:
    """Parse as a strict parser (Node's JSON.parse) would: a bare NaN or Infinity is an error."""
    return json.loads(text, parse_constant=_not_json)


def _post(url: str, payload: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return strict_json(answer.read())


def test_the_strict_parser_refuses_what_python_writes_by_default() -> None:
    with pytest.raises(ValueError, match="bare NaN"):
        strict_json(json.dumps({"score": float("nan")}))
    with pytest.raises(ValueError, match="bare -Infinity"):
        strict_json(json.dumps([float("-inf")]))


def _wait_for_ping(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"mlflow models serve exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise AssertionError(f"no /ping answer within {START_TIMEOUT_S} s: {log.read_text()[-3000:]}")


def _comparable(frame: pd.DataFrame) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(frame.to_json(orient="records"))
    return records


def test_mlflow_models_serve_answers_like_the_in_process_scorer(tmp_path: Path, tracking: str):
    config = FeaturesConfig()
    history = declarations(3_000, seed=21, start=dt.date(2024, 1, 1), days=90)
    inspected = outcomes(history, seed=21)
    feature_set = build.build_feature_set(history, inspected, config)
    X, y = labelled_training(feature_set)
    model = train_model(X, y, rounds=15)
    reference = pd.concat(
        [
            history.set_index("declaration_id")
            .loc[feature_set.declaration_id.astype(str)]
            .reset_index(),
            rank(model, feature_set.X, "probability").frame(feature_set.X.index),
        ],
        axis=1,
    )
    document = thresholds_document(model, reference, serve_config(), {})
    thresholds = Thresholds(document)
    snapshot = make_snapshot(history, inspected, config)
    model.save(tmp_path / "model")
    snapshot.save(tmp_path / "snapshot")
    thresholds.save(tmp_path / "selectivity.json")

    with mlflow.start_run() as run:
        run_id = run.info.run_id
    uri = log_scorer(
        run_id, tmp_path / "model", tmp_path / "snapshot", tmp_path / "selectivity.json"
    )
    assert uri == f"runs:/{run_id}/scorer"

    batch = declarations(40, seed=22, start=dt.date(2024, 4, 1), days=3)
    batch.loc[3, "declared_value"] = -1.0  # invalid: must come back manual, not vanish
    batch.loc[5, "office"] = "NEW-OFFICE"
    in_process = Scorer(model, snapshot, thresholds, config).score(batch)
    loaded = mlflow.pyfunc.load_model(uri).predict(batch)
    pd.testing.assert_frame_equal(loaded.reset_index(drop=True), rest_answer(in_process))

    port = _free_port()
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # the server starts `uvicorn` by name: the interpreter's own bin/ first on the PATH
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri]
    command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    with log.open("wb") as sink:
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
        try:
            _wait_for_ping(f"http://127.0.0.1:{port}/ping", server, log)
            split = json.loads(batch.to_json(orient="split", date_format="iso", index=False))
            answer = _post(f"http://127.0.0.1:{port}/invocations", {"dataframe_split": split})
            # Text booleans are read as written, and one bad cell costs its row only.
            subset = batch.iloc[6:12].reset_index(drop=True)
            records = json.loads(subset.to_json(orient="records", date_format="iso"))
            for record in records:
                record["aeo"] = "false"
            records[2]["lodged_at"] = "yesterday"
            hostile = _post(f"http://127.0.0.1:{port}/invocations", {"dataframe_records": records})
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=20)
    served = pd.DataFrame(answer["predictions"])
    assert len(served) == len(batch)
    expected = pd.DataFrame(_comparable(in_process))
    assert served["declaration_id"].tolist() == expected["declaration_id"].tolist()
    assert served["channel"].tolist() == expected["channel"].tolist()
    assert served["channel"].iloc[3] == "manual"
    np.testing.assert_allclose(
        served["probability"].astype(float), expected["probability"].astype(float), rtol=1e-6
    )
    for column in ("selection_reason", "error"):
        assert served[column].tolist() == expected[column].tolist(), column
    # reasons: a JSON array of objects, not JSON text inside the JSON; null where none
    assert served["reasons"].tolist() == [
        None if text is None else json.loads(text) for text in expected["reasons"]
    ]
    listed = [r for r in answer["predictions"] if r["reasons"] is not None]
    assert listed and all(isinstance(r["reasons"], list) for r in listed)
    assert {"feature", "value", "contribution", "phrase"} == set(listed[0]["reasons"][0])
    # what was NaN in the frame is null in the answer (the manual row has no score)
    assert answer["predictions"][3]["score"] is None
    drawn = [r["selection_probability"] for r in answer["predictions"]]
    assert None in drawn and all(p is None or 0 < p <= 1 for p in drawn)
    rows = pd.DataFrame(hostile["predictions"])
    assert (
        len(rows) == 6
        and (rows["channel"] == "manual").tolist() == [False] * 2 + [True] + [False] * 3
    )
    assert "lodged_at: not a date ('yesterday')" in rows["error"].iloc[2]
    as_false = pd.DataFrame(
        _comparable(
            Scorer(model, snapshot, thresholds, config).score(
                subset.assign(aeo=False).drop(index=2)
            )
        )
    )
    assert rows.drop(index=2)["channel"].tolist() == as_false["channel"].tolist()
