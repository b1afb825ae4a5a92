"""Bring your own data: `targeting simulate --format csv` writes an extract shaped like an
administration's, and `configs/own-data.example.yaml` runs the whole chain from those CSV files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from helpers.chain import SMALL_CHAIN
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import PROJECT_ROOT, load

pytestmark = pytest.mark.slow
EXAMPLE = PROJECT_ROOT / "configs" / "own-data.example.yaml"
runner = CliRunner()


def _invoke(*arguments: str) -> str:
    result = runner.invoke(app, list(arguments))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def _sets(overrides: list[str]) -> list[str]:
    return [part for override in overrides for part in ("--set", override)]


def test_the_example_config_runs_the_chain_from_csv_files(tmp_path: Path) -> None:
    extract = tmp_path / "extract"
    simulated = [s for s in SMALL_CHAIN if s.startswith("simulate.")]
    _invoke("simulate", "--format", "csv", "--out", str(extract), *_sets(simulated))
    declarations, outcomes = extract / "declarations.csv", extract / "outcomes.csv"
    head = pd.read_csv(declarations, nrows=5, dtype=str)
    assert head["lodged_at"].str.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$").all()
    assert not (extract / "declarations.parquet").exists()

    overrides = [
        f"data.declarations={declarations}",
        f"data.outcomes={outcomes}",
        f"output_dir={tmp_path / 'out'}",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        *[s for s in SMALL_CHAIN if not s.startswith("simulate.")],
        "evaluate.bootstrap=20",
        "evaluate.shap_sample=200",
    ]
    checked = _invoke("validate", "--config", str(EXAMPLE), *_sets(overrides))
    assert "0 quarantined" in " ".join(checked.split())
    _invoke("run", "--config", str(EXAMPLE), *_sets(overrides))

    config = load(EXAMPLE, overrides)
    assert config.data.source == "files" and config.name == "own-data"
    report = config.paths.report.read_text(encoding="utf-8")
    assert '<section id="decision">' in report
    # no ground truth in an administration's extract: the inspected population is the evidence
    assert "all declarations (ground truth)" not in report.split('id="summary"')[0]
    assert config.paths.thresholds.is_file()
    scored = pd.read_parquet(config.paths.scored)
    assert len(scored) > 0 and scored["channel"].notna().all()
