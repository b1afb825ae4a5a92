"""`targeting tune --workers 2` against a real PostgreSQL server: one study, shared by two workers.

The server is a throwaway cluster on loopback (tests/helpers/postgres.py); when PostgreSQL cannot
be installed or started the test fails and says why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from helpers.postgres import PostgresUnavailable, postgres_server
from helpers.train import feature_set, train_config
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import to_yaml
from pipeline.train.tune import FINISHED

pytestmark = pytest.mark.slow

TRIALS = 4


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    try:
        with postgres_server() as url:
            yield url
    except PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL is needed for this test and is not available: {exc}")


def test_two_tune_workers_share_one_study_on_postgresql(tmp_path: Path, postgres_url: str):
    config = train_config(
        tmp_path,
        tune={"n_trials": TRIALS, "storage": postgres_url, "study_name": "postgres-shared"},
        split={"folds": 1},
        # No early stop: trials of ~0.5 s, so that both workers are still asking when the
        # study fills up.
        train={"num_boost_round": 300, "early_stopping_rounds": 300},
    )
    feature_set(rows=2_000, seed=5).to_parquet(config.paths.features, config.paths.manifest)
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(config), encoding="utf-8")

    result = CliRunner().invoke(app, ["tune", "--config", str(path), "--workers", "2"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    printed = " ".join(result.output.split())  # the console wraps lines at 100 columns
    assert "study postgres-shared at postgresql+psycopg2://" in printed

    storage = optuna.storages.RDBStorage(postgres_url)
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == ["postgres-shared"]
    study = optuna.load_study(study_name="postgres-shared", storage=storage)
    finished = study.get_trials(deepcopy=False, states=FINISHED)
    # Each worker stops once the study holds n_trials; the other may finish the one it was running.
    assert TRIALS <= len(finished) <= TRIALS + 1
    assert len(study.trials) == len(finished)  # nothing failed or left running
    workers = Counter(t.user_attrs["worker"] for t in finished)
    assert len(workers) == 2, workers  # both processes ran trials of the one study
    assert sorted(t.number for t in study.trials) == list(range(len(study.trials)))

    # Asked again, the complete study runs nothing more.
    again = CliRunner().invoke(app, ["tune", "--config", str(path), "--workers", "2"])
    assert again.exit_code == 0, again.output
    assert len(optuna.load_study(study_name="postgres-shared", storage=storage).trials) == len(
        study.trials
    )
