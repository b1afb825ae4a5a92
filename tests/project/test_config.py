"""The config contract: YAML + overrides, unknown keys rejected by name, no side effects."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import PROJECT_ROOT, ConfigError, flatten, load, to_yaml

CONFIGS = PROJECT_ROOT / "configs"


@pytest.mark.parametrize("name", ["default.yaml", "kcs.yaml"])
def test_shipped_configs_load(name: str) -> None:
    config = load(CONFIGS / name)
    assert config.output_dir.is_absolute()
    assert config.name == name.removesuffix(".yaml")


def test_overrides_are_parsed_as_yaml_scalars() -> None:
    config = load(
        CONFIGS / "default.yaml",
        ["tune.n_trials=0", "serve.channels.red=0.03", "evaluate.rates=[0.01, 0.05]", "seed=7"],
    )
    assert config.tune.n_trials == 0
    assert config.serve.channels["red"] == pytest.approx(0.03)
    assert config.evaluate.rates == [0.01, 0.05]
    assert config.seed == 7


def test_unknown_key_in_file_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("tune:\n  n_trails: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load(path)
    assert "tune.n_trails" in str(err.value)
    assert str(path) in str(err.value)


def test_unknown_key_in_override_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"simulate\.rowz"):
        load(CONFIGS / "default.yaml", ["simulate.rowz=10"])


@pytest.mark.parametrize(
    ("override", "message"),
    [("tune.n_trials", "expected section.key=value"), ("seed.x=1", "not a section")],
)
def test_malformed_override(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(CONFIGS / "default.yaml", [override])


def test_invalid_value_names_key() -> None:
    with pytest.raises(ConfigError, match=r"simulate\.rows"):
        load(CONFIGS / "default.yaml", ["simulate.rows=-5"])


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tune: [1, 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(bad)


def test_round_trip_through_yaml(tmp_path: Path) -> None:
    config = load(CONFIGS / "kcs.yaml", ["tune.n_trials=3"])
    path = tmp_path / "resolved.yaml"
    path.write_text(to_yaml(config), encoding="utf-8")
    assert load(path) == config
    assert flatten(config)["tune.n_trials"] == "3"


def test_importing_every_module_has_no_side_effects(tmp_path: Path) -> None:
    """Importing the package creates nothing and sets no tracking URI."""
    code = (
        "import importlib, os, pkgutil, pipeline\n"
        "for m in pkgutil.walk_packages(pipeline.__path__, 'pipeline.'):\n"
        "    importlib.import_module(m.name)\n"
        "import mlflow\n"
        "assert 'MLFLOW_TRACKING_URI' not in os.environ\n"
        "print(sorted(os.listdir('.')))\n"
    )
    work = tmp_path / "work"
    work.mkdir()
    # HOME elsewhere: libraries may keep their own caches there (matplotlib's font cache).
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_threads_default_to_the_cores_this_process_may_use() -> None:
    assert load(CONFIGS / "default.yaml").compute.threads == len(os.sched_getaffinity(0))
    assert load(CONFIGS / "kcs.yaml", ["compute.threads=1"]).compute.threads == 1


def test_train_n_jobs_is_read_as_compute_threads_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = load(CONFIGS / "default.yaml", ["train.n_jobs=1"])
    assert config.compute.threads == 1
    assert "train.n_jobs" not in flatten(config)
    assert "train.n_jobs is deprecated" in caplog.text
    with pytest.raises(ConfigError, match=r"give compute\.threads only"):
        load(CONFIGS / "default.yaml", ["train.n_jobs=1", "compute.threads=2"])


def test_openmp_threads_sleep_while_waiting() -> None:
    """Importing the package makes waiting OpenMP threads passive unless the user chose."""
    code = "import os, pipeline; print(os.environ['OMP_WAIT_POLICY'])"
    env = {"PATH": "/usr/bin:/bin"}
    passive = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert passive.stdout.strip() == "PASSIVE"
    chosen = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
        capture_output=True,
        text=True,
    )
    assert chosen.stdout.strip() == "ACTIVE"
