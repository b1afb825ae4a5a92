"""From review to deployment: export registers the scorer, `targeting approve` makes it the
champion, and the README's `make serve` serves exactly that champion over REST on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers.chain import run_chain
from helpers.servers import free_port, stop, wait_until_up
from mlflow import MlflowClient
from typer.testing import CliRunner

from pipeline import tracking
from pipeline.cli import app
from pipeline.config import PROJECT_ROOT, Config
from pipeline.ingest.columns import DECLARATION_COLUMNS
from pipeline.jobs.approve import ApprovalError, approve
from pipeline.serve.bundle import serve_requirements

pytestmark = pytest.mark.slow
START_TIMEOUT_S = 180.0
STAMP = ".venv/.installed-stamp"  # `make -o`: never reinstall from a test


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Config:
    config, _ = run_chain(tmp_path_factory.mktemp("approve-chain"))
    tracking.configure(config)
    return config


def _scorer_version(config: Config) -> Any:
    return MlflowClient().get_model_version_by_alias(
        config.tracking.registered_model, tracking.CHALLENGER
    )


def test_export_registers_the_self_contained_scorer_as_challenger(chain: Config) -> None:
    version = _scorer_version(chain)
    assert version.tags["component"] == "scorer"
    exported = chain.paths.thresholds.read_bytes()
    assert version.tags["thresholds_sha256"] == hashlib.sha256(exported).hexdigest()
    # the file names the version that carries it, and the version names the file's own digest
    document = json.loads(exported)
    assert str(document["model"]["version"]) == str(version.version)
    assert version.tags["content_sha256"] == document["content_sha256"]
    assert "Not approved yet" in version.description
    uri = f"models:/{chain.tracking.registered_model}/{version.version}"
    local = Path(mlflow.artifacts.download_artifacts(uri))
    assert (local / "code" / "pipeline" / "serve" / "scorer.py").is_file()  # code bundled
    requirements = (local / "requirements.txt").read_text(encoding="utf-8").split()
    assert requirements == serve_requirements()  # pinned serve set, no unpublished package
    assert all("==" in r for r in requirements) and "customs-targeting" not in requirements
    assert not any(r.split("==")[0] in {"shap", "optuna", "scikit-learn"} for r in requirements)
    # no input schema (the scorer checks each request itself), the scored columns typed out
    signature = mlflow.models.get_model_info(uri).signature
    assert signature.inputs is None
    assert {"declaration_id", "channel", "reasons"} <= set(signature.outputs.input_names())


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed here")
def test_the_exports_test_vectors_pass_the_javascript_reference(chain: Config) -> None:
    vectors = chain.paths.thresholds.with_name("selectivity_vectors.json")
    policy = json.loads(vectors.read_text(encoding="utf-8"))["policy"]
    exported = json.loads(chain.paths.thresholds.read_text(encoding="utf-8"))
    assert policy["cutoffs"] == exported["cutoffs"] and policy["rules"] == exported["rules"]
    done = subprocess.run(
        ["node", str(PROJECT_ROOT / "docs" / "channel_assignment.js"), str(vectors)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and "vectors agree" in done.stdout, done.stdout + done.stderr


def test_the_evaluated_run_carries_its_verdict(chain: Config) -> None:
    decision = json.loads((chain.paths.report.parent / "metrics.json").read_text())["decision"]
    run = MlflowClient().get_run(_scorer_version(chain).run_id)
    assert run.data.tags["verdict"] == decision["verdict"]
    assert run.data.metrics["decision.ready"] == float(decision["verdict"] == "ready to approve")
    standing = [c["name"] for c in decision["criteria"] if c["status"] != "pass"]
    assert all(name in run.data.tags["verdict_not_passed"] for name in standing)


def _not_json(constant: str) -> None:
    raise ValueError(f"a bare {constant}: not JSON (RFC 8259), JSON.parse refuses it")


def test_every_json_file_the_run_wrote_is_strict_json(chain: Config) -> None:
    written = sorted(chain.paths.root.rglob("*.json"))
    names = {path.name for path in written}
    assert {"run_summary.json", "metrics.json", chain.paths.thresholds.name} <= names
    for path in written:
        json.loads(path.read_text(encoding="utf-8"), parse_constant=_not_json)


def test_approval_needs_a_reason_and_a_scorer_version(chain: Config) -> None:
    with pytest.raises(ApprovalError, match="needs a reason"):
        approve(chain, reason="  ", reviewer="a.reviewer")
    run_id = _scorer_version(chain).run_id
    booster = mlflow.register_model(
        f"runs:/{run_id}/{tracking.XGBOOST_ARTIFACT}", chain.tracking.registered_model
    )
    with pytest.raises(ApprovalError, match=f"v{booster.version} is not a scorer"):
        approve(chain, version=str(booster.version), reason="ok", reviewer="a.reviewer")


def _run_folder(config: Config) -> Path:
    """The local artefact folder of the challenger's run."""
    run = MlflowClient().get_run(_scorer_version(config).run_id)
    return Path(run.info.artifact_uri.removeprefix("file://"))


@contextmanager
def _logged_verdict(config: Config, verdict: str) -> Iterator[None]:
    """The run's logged report says `verdict` for the duration of the block (restored after)."""
    logged = _run_folder(config) / "report" / "metrics.json"
    kept = logged.read_text(encoding="utf-8")
    document = json.loads(kept)
    document["decision"]["verdict"] = verdict
    logged.write_text(json.dumps(document), encoding="utf-8")
    try:
        yield
    finally:
        logged.write_text(kept, encoding="utf-8")


def _approve_cli(config: Config, *options: str) -> Any:
    settings = [
        "--set",
        f"output_dir={config.output_dir}",
        "--set",
        f"tracking.uri={config.tracking.uri}",
    ]
    return CliRunner().invoke(app, ["approve", *options, *settings])


def test_approval_respects_the_reports_verdict(chain: Config) -> None:
    name = chain.tracking.registered_model
    challenger = str(_scorer_version(chain).version)
    with _logged_verdict(chain, "not ready"):
        refused = _approve_cli(chain, "--reason", "looks fine", "--reviewer", "j.doe")
        assert refused.exit_code == 1, refused.output
        said = " ".join(refused.output.split())  # the console wraps at its width
        assert "the report's verdict is 'not ready', not 'ready to approve'" in said
        assert '--override "why the verdict is set aside"' in said
        assert MlflowClient().get_model_version(name, challenger).tags.get("approved_by") is None
    with _logged_verdict(chain, "ready to approve"):
        ready = approve(chain, reason="ready on every criterion", reviewer="j.doe")
    assert ready.figures["verdict"] == "ready to approve" and ready.figures["override"] is None
    tags = MlflowClient().get_model_version(name, challenger).tags
    assert tags["verdict"] == "ready to approve" and "verdict_override" not in tags
    criteria = json.loads(tags["verdict_criteria"])
    assert criteria and {"name", "status", "figure"} <= set(criteria[0])


def test_approve_moves_the_champion_and_records_who_when_why(chain: Config) -> None:
    name = chain.tracking.registered_model
    challenger = str(_scorer_version(chain).version)
    verdict = json.loads((chain.paths.report.parent / "metrics.json").read_text())["decision"]
    result = _approve_cli(
        chain,
        "--reason",
        "beats the historical policy at capacity",
        "--reviewer",
        "j.doe",
        "--override",
        "calibration judged on the random stratum by hand",
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert f"{name} v{challenger} is now @champion" in result.output
    champion = MlflowClient().get_model_version_by_alias(name, tracking.CHAMPION)
    assert str(champion.version) == challenger
    assert champion.tags["approved_by"] == "j.doe"
    assert champion.tags["approval_reason"] == "beats the historical policy at capacity"
    assert champion.tags["approved_at"].endswith("+00:00")
    assert champion.tags["verdict"] == verdict["verdict"]
    assert champion.tags["verdict_override"] == "calibration judged on the random stratum by hand"
    logged = json.loads(champion.tags["verdict_criteria"])
    assert [c["status"] for c in logged] == [c["status"] for c in verdict["criteria"]]
    assert "Approved as champion by j.doe" in champion.description
    assert "set aside because: calibration judged" in champion.description
    last = json.loads(MlflowClient().get_registered_model(name).tags["last_approval"])
    assert last["version"] == challenger and last["approved_by"] == "j.doe"
    run_id = _scorer_version(chain).run_id
    again = approve(chain, run_id=run_id, reason="re-approved", reviewer="k.roe", override="ok")
    assert again.figures["previous"] == challenger == again.figures["version"]
    with pytest.raises(ApprovalError, match="run nope has no scorer registered"):
        approve(chain, run_id="nope", reason="ok", reviewer="k.roe")


def test_approval_refuses_a_version_whose_report_is_missing(chain: Config, tmp_path: Path) -> None:
    version = _scorer_version(chain)
    run = MlflowClient().get_run(version.run_id)
    store = Path(run.info.artifact_uri.removeprefix("file://"))
    report = store / "report" / "report.html"
    kept = tmp_path / "report.html"
    shutil.move(report, kept)
    try:
        with pytest.raises(ApprovalError, match=r"has no report .*targeting evaluate --run-id"):
            approve(chain, version=str(version.version), reason="ok", reviewer="a.reviewer")
    finally:
        shutil.move(kept, report)


def test_make_serve_answers_with_the_approved_champion(chain: Config, tmp_path: Path) -> None:
    name = chain.tracking.registered_model
    approve(chain, reason="served by the REST test", reviewer="a.reviewer", override="a test")
    champion = f"models:/{name}@{tracking.CHAMPION}"
    incoming = pd.read_parquet(chain.paths.incoming).head(30)
    # what a selectivity system sends: the declaration columns, plain text rather than categories
    batch = incoming[[c.name for c in DECLARATION_COLUMNS]]
    batch = batch.astype({c: object for c in batch.columns if batch[c].dtype == "category"})
    expected = mlflow.pyfunc.load_model(champion).predict(batch)
    port = free_port()
    log = tmp_path / "serve.log"
    # The README's command as written, from the project root; the shell's PATH as it is (the
    # Makefile puts .venv/bin first for the `uvicorn` that MLflow starts by name). `-o STAMP`:
    # a pyproject.toml newer than the install stamp must not make the test reinstall .venv.
    env = {**os.environ, "MLFLOW_TRACKING_URI": str(chain.tracking.uri)}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    command = ["make", "-s", "-o", STAMP, "serve", f"MODEL={champion}", f"PORT={port}"]
    with log.open("wb") as sink:
        server = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            wait_until_up(f"http://127.0.0.1:{port}/ping", server, log)
            split = json.loads(batch.to_json(orient="split", date_format="iso", index=False))
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/invocations",
                json.dumps({"dataframe_split": split}).encode(),
                {"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=60) as answer:
                served = pd.DataFrame(json.loads(answer.read())["predictions"])
        finally:
            stop(server, group=True)
    assert served["declaration_id"].tolist() == expected["declaration_id"].tolist()
    assert served["channel"].tolist() == expected["channel"].tolist()
    np.testing.assert_allclose(
        served["probability"].astype(float), expected["probability"].astype(float), rtol=1e-6
    )
