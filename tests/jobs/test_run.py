"""`targeting run`: the whole chain from the CLI on a small simulated stream, real MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers.chain import run_chain

from pipeline.config import Config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, str]:
    return run_chain(tmp_path_factory.mktemp("run-chain"))


def test_run_leaves_every_artefact_and_says_where(chain: tuple[Config, str]):
    config, output = chain
    paths = config.paths
    for path in (
        paths.declarations,
        paths.features,
        paths.manifest,
        paths.snapshot,
        paths.report,
        paths.thresholds,
        paths.scored,
        paths.incoming,
        paths.incoming_snapshot,
    ):
        assert path.exists(), path
    summary = json.loads((paths.root / "run_summary.json").read_text(encoding="utf-8"))
    # the run's own report folder, which `runs/latest` names
    assert Path(summary["outputs"]["report"]).resolve() == paths.report.resolve()
    assert Path(summary["outputs"]["thresholds"]) == paths.thresholds
    assert Path(summary["outputs"]["scored"]) == paths.scored
    assert "mlflow ui" in output
    headline = summary["headline"]
    assert headline["population"] == "all declarations (ground truth)"
    assert {"model", "plain XGBoost", "rules", "historical policy"} <= set(headline)
    assert set(summary["incoming_truth"]) <= {"red", "yellow", "green"}
    frauds = sum(row["share of frauds"] for row in summary["incoming_truth"].values())
    assert frauds == pytest.approx(1.0)
    assert "report" in output and "selectivity" in output


def test_every_incoming_declaration_gets_a_channel(chain: tuple[Config, str]):
    config, _ = chain
    incoming = pd.read_parquet(config.paths.incoming)
    scored = pd.read_parquet(config.paths.scored)
    assert len(incoming) > 0
    assert sorted(scored["declaration_id"]) == sorted(incoming["declaration_id"])
    assert scored["channel"].isin(["red", "yellow", "green"]).all()
    assert (scored["channel"] == "red").any()
    assert scored["score"].nunique() > 10, "the model ranks nothing: one leaf"


def test_incoming_stretch_is_unseen_by_training_and_by_its_snapshot(chain: tuple[Config, str]):
    """The replayed last days lie after every training window and after the snapshot's as_of."""
    from pipeline import tracking
    from pipeline.features.build import Snapshot

    config, _ = chain
    incoming = pd.read_parquet(config.paths.incoming)
    start = incoming["lodged_at"].min()
    assert start >= incoming["lodged_at"].max().normalize() - pd.Timedelta(
        days=config.serve.score_last_days
    )
    snapshot = Snapshot.load(config.paths.incoming_snapshot)
    assert snapshot.as_of <= start
    tracking.configure(config)
    model = tracking.load_model(tracking.read_last_run(config)["run_id"], "deployed")
    for window in model.info.windows_dict().values():
        assert pd.Timestamp(window["end"]) <= start
