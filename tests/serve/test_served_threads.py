"""`mlflow models serve` runs the scorer with the export's `compute.threads`: the pyfunc caps
XGBoost and OpenMP in each thread it predicts on (the scoring server's worker threads), at the
count recorded when it was logged, as `targeting score` caps its own process."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
import xgboost as xgb
from helpers.serve import declarations, logged_scorer, trained
from helpers.servers import mlflow_store
from threadpoolctl import threadpool_info

from pipeline.config import available_cores
from pipeline.serve.scorer import served_threads


@pytest.fixture
def tracking(tmp_path: Path) -> Iterator[str]:
    """A real MLflow SQLite store in tmp_path; the old tracking URI restored after."""
    with mlflow_store(tmp_path, "threads") as uri:
        yield uri


def _openmp_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "openmp"]


def _on_a_worker_thread(model: Any, batch: Any) -> dict[str, Any]:
    """Predict on a new thread, as the scoring server does (asyncio.to_thread), and read that
    thread's XGBoost and OpenMP thread counts before and after."""
    seen: dict[str, Any] = {}

    def serve() -> None:
        seen["before"] = xgb.get_config()["nthread"], _openmp_threads()
        seen["answer"] = model.predict(batch)
        seen["after"] = xgb.get_config()["nthread"], _openmp_threads()

    worker = threading.Thread(target=serve)
    worker.start()
    worker.join()
    return seen


def test_a_loaded_scorer_predicts_with_the_recorded_thread_count(
    tmp_path: Path, tracking: str
) -> None:
    world = trained(
        declarations(1_500, seed=31, start=dt.date(2024, 1, 1), days=60), seed=31, rounds=10
    )
    logged = logged_scorer(world, tmp_path, threads=1)
    batch = declarations(20, seed=32, start=dt.date(2024, 3, 5), days=2)

    main = xgb.get_config()["nthread"]
    seen = _on_a_worker_thread(mlflow.pyfunc.load_model(logged.uri), batch)
    assert len(seen["answer"]) == len(batch)
    assert seen["before"][0] == 0  # a new thread starts uncapped (XGBoost: every core)
    nthread, openmp = seen["after"]
    assert nthread == 1
    assert openmp and all(count == 1 for count in openmp)
    assert xgb.get_config()["nthread"] == main  # the loading thread is left as it was

    # `mlflow models serve` reads SERVING_MODEL_CONFIG into this override
    override = mlflow.pyfunc.load_model(logged.uri, model_config={"threads": 2})
    assert _on_a_worker_thread(override, batch)["after"][0] == min(2, available_cores())


def test_served_threads_are_the_recorded_count_within_the_cores() -> None:
    cores = available_cores()
    assert served_threads({"threads": 1}) == 1
    assert served_threads({"threads": cores + 7}) == cores
    assert served_threads(None) == served_threads({}) == cores  # logged before threads were
    for wrong in (0, "2", True):
        with pytest.raises(ValueError, match="whole number"):
            served_threads({"threads": wrong})
