"""`targeting export` and `targeting score` on a small simulated stream, real MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import Config, load

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, *more: str) -> Config:
    return load(
        None,
        [
            f"output_dir={tmp_path / 'out'}",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            "simulate.rows=6000",
            "simulate.days=240",
            "simulate.importers=400",
            "simulate.sellers=300",
            "simulate.declarants=40",
            "simulate.offices=4",
            "split.calibration_days=20",
            "split.valid_days=30",
            "split.test_days=30",
            "split.gap_days=7",
            "split.folds=1",
            "tune.n_trials=0",
            "train.num_boost_round=25",
            "compute.threads=1",
            "serve.reference_days=40",
            "serve.score_last_days=20",
            "serve.rules=[{name: watch-listed office, column: office, values: [OFFICE-NONE]}]",
            *more,
        ],
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Config:
    from pipeline.jobs.features import features
    from pipeline.jobs.simulate import simulate
    from pipeline.jobs.train import train

    config = _config(tmp_path_factory.mktemp("serve-jobs"))
    simulate(config)
    features(config)
    train(config)
    return config


def test_export_writes_a_valid_file_logged_with_the_run(trained: Config):
    from mlflow import MlflowClient

    from pipeline import tracking
    from pipeline.jobs.export import export
    from pipeline.serve.thresholds import Thresholds

    result = export(trained)
    path = result.outputs["thresholds"]
    assert path == trained.paths.thresholds
    run_id = tracking.read_last_run(trained)["run_id"]
    model = tracking.load_model(run_id, "deployed")
    thresholds = Thresholds.load(path, model.booster_sha256())
    document = thresholds.document
    assert document["model"]["uri"] == f"runs:/{run_id}/targeting_model"
    assert document["snapshot"]["uri"] == f"runs:/{run_id}/snapshot"
    shares = result.figures["shares"]
    assert abs(shares["red"] - 0.02) <= 0.005
    assert abs(shares["yellow"] - 0.06) <= 0.005
    logged = {a.path for a in MlflowClient().list_artifacts(run_id)}
    assert {"selectivity", "snapshot"} <= logged
    assert any("cut-offs" in line for line in result.lines)
    # A clean export: no machine-local path, no key, readable by the serving user, and the
    # file the run logged is the file on disk.
    text = path.read_text()
    assert str(trained.output_dir) not in text and "sqlite" not in text
    assert "path" not in document["snapshot"] and "tracking_uri" not in document["model"]
    assert "key" not in document["random"] and len(document["random"]["key_sha256"]) == 64
    assert path.stat().st_mode & 0o777 == 0o644
    logged_file = Path(
        MlflowClient().download_artifacts(run_id, f"selectivity/{path.name}", str(path.parent))
    )
    assert logged_file.read_text() == text
    offices = pd.read_csv(result.outputs["offices"])
    assert {"office", "channel", "cutoff_score", "expected_hit_rate"} <= set(offices.columns)
    assert set(offices.loc[offices["office"] == "*", "channel"]) == {"red", "yellow"}


def test_score_scores_every_row_of_a_file(trained: Config, tmp_path: Path):
    from pipeline.ingest.readers import load_inputs
    from pipeline.jobs.export import export
    from pipeline.jobs.score import score

    export(trained)
    declarations = load_inputs(trained).declarations
    start = declarations["lodged_at"].max() - pd.Timedelta(days=20)
    incoming = declarations.loc[declarations["lodged_at"] > start].reset_index(drop=True)
    incoming = incoming.astype({"declared_value": object})
    incoming.loc[0, "declared_value"] = "not a number"
    source = tmp_path / "incoming.csv"
    incoming.to_csv(source, index=False)
    for out in (tmp_path / "scored.csv", tmp_path / "scored.parquet"):
        snapshot = str(trained.paths.snapshot) if out.suffix == ".csv" else None
        result = score(trained, input=source, out=out, snapshot=snapshot)
        scored = pd.read_csv(out) if out.suffix == ".csv" else pd.read_parquet(out)
        assert len(scored) == len(incoming)
        assert (
            scored["declaration_id"].astype(str).tolist()
            == incoming["declaration_id"].astype(str).tolist()
        )
        assert scored.loc[0, "channel"] == "manual"
        assert "declared_value" in str(scored.loc[0, "error"])
        red = scored.loc[scored["channel"] == "red"]
        if out.suffix == ".csv":  # one column per reason part; a missing value is no reason
            assert "reasons" not in scored.columns and red["reason_1"].notna().all()
            assert red["reason_1_value"].notna().all()
        else:
            assert all(isinstance(json.loads(r), list) for r in red["reasons"])
        assert result.figures["rows"] == len(incoming)
        assert any("target" in line for line in result.lines)


def test_a_threshold_file_for_another_model_is_refused_by_the_score_job(
    trained: Config, tmp_path: Path
):
    from pipeline.jobs.export import export
    from pipeline.jobs.score import score
    from pipeline.serve.selectivity import ThresholdsError, content_digest

    path = export(trained, out=tmp_path / "selectivity.json").outputs["thresholds"]
    document = json.loads(path.read_text())
    document["model"]["booster_sha256"] = "0" * 64
    path.write_text(json.dumps(document))
    with pytest.raises(ThresholdsError, match="edited after export"):
        score(trained, input=tmp_path / "none.parquet", thresholds=path, out=tmp_path / "x.csv")
    document["content_sha256"] = content_digest(document)  # bound again, still another model
    path.write_text(json.dumps(document))
    source = tmp_path / "one.parquet"
    from pipeline.ingest.readers import load_inputs

    load_inputs(trained).declarations.head(5).to_parquet(source)
    with pytest.raises(ThresholdsError, match="another model"):
        score(trained, input=source, thresholds=path, out=tmp_path / "x.csv")


class _Stopped(BaseException):
    """The export process stops here (as if killed: no exception handler of the job runs)."""


@pytest.mark.parametrize(
    "stop", ["staged", "registered", "committed", "moved selectivity.json", "alias"]
)
def test_an_export_stopped_at_any_step_moves_the_alias_only_with_its_files(
    trained: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: str
):
    """The registry's challenger moves last: an export stopped before its commit leaves the
    alias and the files as they were; one stopped after it is completed by the next export
    (files first, then the alias), so the alias always names the export on disk."""
    from functools import partial

    from mlflow import MlflowClient

    from pipeline import tracking
    from pipeline.jobs import publish
    from pipeline.jobs.export import export, file_sha256

    out = tmp_path / "selectivity.json"
    export(trained, out=out)
    name = trained.tracking.registered_model
    client = MlflowClient()
    before = int(client.get_model_version_by_alias(name, "challenger").version)
    old_json, old_offices = out.read_bytes(), out.with_name("selectivity_offices.csv").read_bytes()

    def stop_at(step: str) -> None:
        if step == stop:
            raise _Stopped(step)

    monkeypatch.setattr(publish, "after_step", stop_at)
    with pytest.raises(_Stopped):
        export(trained, out=out)
    monkeypatch.setattr(publish, "after_step", lambda step: None)
    committed = stop not in ("staged", "registered")
    alias_now = int(client.get_model_version_by_alias(name, "challenger").version)
    assert alias_now == (before + 1 if stop == "alias" else before)
    if not committed:
        assert out.read_bytes() == old_json
        assert out.with_name("selectivity_offices.csv").read_bytes() == old_offices
        return
    publish.finish_pending(out.parent, partial(tracking.move_challenger, trained.tracking))
    challenger = client.get_model_version_by_alias(name, "challenger")
    assert int(challenger.version) == before + 1
    assert challenger.tags["thresholds_sha256"] == file_sha256(out)
    assert not (out.parent / publish.JOURNAL).exists()
