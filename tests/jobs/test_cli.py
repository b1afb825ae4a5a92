"""The `targeting` command as a user meets it: version, help, choices, errors, default config."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.cli import app, package_version
from pipeline.config import PROJECT_ROOT, ConfigError, config_path, load
from pipeline.evaluate.keys import HISTORICAL, Kind, Population
from pipeline.jobs.evaluate import CONSOLE_WIDTH, headline_lines

runner = CliRunner()


def test_version_prints_the_installed_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"targeting (customs-targeting) {package_version()}"
    assert package_version()[0].isdigit()


def test_help_shows_choices_and_value_names_not_python_types() -> None:
    result = runner.invoke(app, ["score", "--help"], terminal_width=100)
    assert result.exit_code == 0
    assert "canonical|kcs" in result.output and "KEY=VALUE" in result.output
    assert "<bool>" not in result.output and "list[str]" not in result.output
    assert max(map(len, result.output.splitlines())) <= 100


def test_an_enumerated_option_refuses_a_value_outside_its_choices(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", "--input", str(tmp_path / "x.csv"), "--format", "xls"])
    assert result.exit_code == 2
    assert "'xls' is not one of 'canonical'," in result.output and "'kcs'" in result.output


def test_an_unknown_config_key_suggests_the_closest_one() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown key 'tune\.n_trial' \(did you mean 'tune\.n_trials'\?\)"
    ):
        load(None, ["tune.n_trial=3"])
    with pytest.raises(ConfigError, match=r"unknown key 'evalute' \(did you mean 'evaluate'\?\)"):
        load(None, ["evalute.rates=[0.05]"])
    with pytest.raises(ConfigError) as nothing_close:
        load(None, ["train.zzz=1"])
    assert "did you mean" not in str(nothing_close.value)


def test_the_cli_reports_the_suggestion_and_exits_2() -> None:
    result = runner.invoke(app, ["features", "--set", "split.gap_dayz=3"])
    assert result.exit_code == 2
    assert "did you mean 'split." in result.output


def test_the_default_config_is_found_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert config_path(None) == PROJECT_ROOT / "configs" / "default.yaml"
    assert config_path(Path("configs/kcs.yaml")) == PROJECT_ROOT / "configs" / "kcs.yaml"
    local = tmp_path / "configs" / "default.yaml"
    local.parent.mkdir()
    local.write_text("name: local\n", encoding="utf-8")
    assert config_path(None).resolve() == local  # a config in the current folder comes first
    assert os.getcwd() == str(tmp_path)


def _metrics(models: list[str], rates: list[float]) -> pd.DataFrame:
    def kind(model: str) -> Kind:
        if " - " in model:  # the differences this test names
            return Kind.DIFFERENCE
        return Kind.POLICY if model == HISTORICAL else Kind.VALUE

    rows = [
        {"population": p, "model": m, "kind": kind(m), "metric": k, "rate": r, "value": 0.123456}
        for p, m, k, r in itertools.product(
            [Population.INSPECTED, Population.TRUTH],
            models,
            ["precision", "recall", "revenue"],
            rates,
        )
    ]
    return pd.DataFrame(rows)


def test_the_console_headline_fits_100_columns_and_names_what_it_left_out() -> None:
    models = ["model", "plain XGBoost", "rules", "model - plain XGBoost"]
    rates = [0.01, 0.02, 0.05, 0.10]
    # the historical policy is judged at its own control share only
    metrics = pd.concat([_metrics(models, rates), _metrics(["historical policy"], [0.0537])])
    lines = headline_lines(metrics, rates)
    assert max(map(len, lines)) <= CONSOLE_WIDTH
    assert lines[0].startswith("all declarations (ground truth), at control rates 1%")
    assert "other rates in the report" in lines[0]
    assert not any(line.startswith("model - ") for line in lines)
    assert "0.123" in lines[2] and "0.123456" not in lines[2]
    assert "historical policy (control share 5.4%): precision 0.123" in lines[-1]
    few = headline_lines(_metrics(models, [0.05]), [0.05])
    assert few[0] == "all declarations (ground truth), at control rates 5%:"


def test_a_job_reports_its_long_steps_to_whoever_shows_them(tmp_path: Path) -> None:
    from pipeline.jobs import step, steps_shown_by
    from pipeline.jobs.features import features
    from pipeline.jobs.simulate import simulate

    config = load(
        None,
        [
            f"output_dir={tmp_path}",
            "simulate.rows=3000",
            "simulate.days=120",
            "simulate.importers=200",
            "simulate.sellers=150",
            "simulate.declarants=20",
            "simulate.offices=3",
        ],
    )
    simulate(config)
    seen: list[str] = []
    with steps_shown_by(seen.append):
        features(config)
    step("after the block: nobody listens")
    assert seen == ["point-in-time features and the serving snapshot"]
