"""The evaluate and explain jobs on a small simulated experiment, tracked in a real MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import helpers.evaluate as h
import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from pipeline.jobs.evaluate import evaluate
from pipeline.jobs.explain import explain

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("experiment")
    config = h.experiment_config(folder)
    data = h.simulated_tables(config)
    info = h.train_and_track(config, data)
    return {"config": config, "data": data, "info": info}


def artifacts(run_id: str, path: str) -> set[str]:
    return {f.path for f in MlflowClient().list_artifacts(run_id, path)}


def test_evaluate_writes_the_report_and_logs_it_to_the_run(experiment: dict) -> None:
    config, info = experiment["config"], experiment["info"]
    result = evaluate(config)  # no run id: the last training run
    assert result.figures["run_id"] == info.run_id
    assert result.outputs["report"] == config.paths.run_report(info.run_id)
    assert config.paths.report.resolve() == result.outputs["report"].resolve()  # latest: this run
    html = config.paths.report.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.count("data:image/png;base64,") >= 6
    metrics = pd.read_csv(result.outputs["metrics"])
    truth = metrics.loc[metrics["population"] == "all declarations (ground truth)"]
    assert {"model", "random", "historical policy", "plain XGBoost"} <= set(truth["model"])
    saved = json.loads(result.outputs["metrics_json"].read_text(encoding="utf-8"))
    assert saved["run_id"] == info.run_id and len(saved["metrics"]) == len(metrics)
    assert result.lines[-1] == f"report: {config.paths.run_report(info.run_id)}"
    assert any("historical policy" in line for line in result.lines)

    assert "report/report.html" in artifacts(info.run_id, "report")
    logged = MlflowClient().get_run(info.run_id).data.metrics
    key = "eval.true.model.precision_at_5pct"
    precision = truth.loc[
        (truth["model"] == "model") & (truth["metric"] == "precision") & (truth["rate"] == 0.05),
        "value",
    ]
    assert logged[key] == pytest.approx(float(precision.iloc[0]))


def test_explain_writes_values_and_figures_for_a_chosen_declaration(experiment: dict) -> None:
    config, info = experiment["config"], experiment["info"]
    chosen = str(experiment["data"].declarations["declaration_id"].iloc[10])  # training window
    result = explain(config, run_id=info.run_id, declarations=[chosen])
    folder = config.paths.explanations
    values = pd.read_parquet(folder / "shap_values.parquet")
    assert len(values) == config.evaluate.shap_sample
    local = pd.read_parquet(folder / "local_values.parquet")
    assert local["declaration_id"].iloc[0] == chosen
    assert local["why"].tolist() == ["requested", "red channel sample"]
    pngs = {p.name for p in (folder / "figures").glob("*.png")}
    assert {
        "shap_bar.png",
        "shap_beeswarm.png",
        "shap_families.png",
        f"waterfall_{chosen}.png",
    } <= pngs
    from pipeline import tracking

    revenue = tracking.load_model(info.run_id, "evaluated").revenue_booster is not None
    ranked_by_revenue = revenue and config.serve.rank_by != "probability"
    assert (f"waterfall_{chosen}_revenue.png" in pngs) == ranked_by_revenue
    assert "shap_red_vs_green.png" in pngs
    cohorts = pd.read_csv(folder / "red_vs_green.csv")
    assert set(cohorts["feature"]) == set(values.columns) - {
        "declaration_id",
        "base_value",
        "margin",
    }
    families = pd.read_csv(folder / "families.csv")
    assert set(families["stage"]) == {"raw", "valuation"}
    assert any(line.startswith("families: ") for line in result.lines)
    logged = artifacts(info.run_id, "explain/figures")
    assert f"explain/figures/waterfall_{chosen}.png" in logged


def test_explain_names_an_unknown_declaration(experiment: dict) -> None:
    with pytest.raises(ValueError, match="declaration_id has no row for \\['NOPE-1'\\]"):
        explain(experiment["config"], declarations=["NOPE-1"])


def test_a_challenger_is_compared_with_the_champion(experiment: dict, tmp_path: Path) -> None:
    config, data, first = experiment["config"], experiment["data"], experiment["info"]
    mlflow.set_tracking_uri(config.tracking.uri)
    # the first run's model registered and approved (export registers the scorer; any version
    # of the run serves the comparison, which loads the run's model)
    registered = mlflow.register_model(
        f"runs:/{first.run_id}/xgboost_model", config.tracking.registered_model
    )
    MlflowClient().set_registered_model_alias(
        config.tracking.registered_model, "champion", registered.version
    )
    params = {**config.train.params, "max_depth": 2, "learning_rate": 0.3}
    second = h.train_and_track(config, data, params)
    result = evaluate(config, run_id=second.run_id)
    metrics = pd.read_csv(result.outputs["metrics"])
    name = f"champion v{registered.version}"
    difference = metrics.loc[metrics["model"] == f"model - {name}"]
    assert len(difference) > 0 and difference["low"].notna().any()
    assert (difference["low"] <= difference["high"]).all()
    # the champion reviewing itself has nobody to compare with
    again = pd.read_csv(evaluate(config, run_id=first.run_id).outputs["metrics"])
    assert not again["model"].str.startswith("champion").any()


def test_the_champion_compared_is_the_model_its_run_serves(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from types import SimpleNamespace

    from pipeline import tracking
    from pipeline.jobs.evaluate import champion_model

    loaded: list[tuple[str, str]] = []
    monkeypatch.setattr(
        tracking,
        "alias_version",
        lambda config, alias: SimpleNamespace(run_id="champion-run", version="4"),
    )

    def load_model(run_id: str, role: str) -> str:
        loaded.append((run_id, role))
        return "served"

    monkeypatch.setattr(tracking, "load_model", load_model)
    config = h.config(tmp_path)
    assert champion_model(config, "challenger-run") == ("champion v4", "served")
    assert loaded == [("champion-run", "deployed")]
    assert champion_model(config, "champion-run") is None  # a champion never judges itself
