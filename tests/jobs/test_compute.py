"""One thread budget: `compute.threads` caps XGBoost's global thread count and the OpenMP pools
a job's process has loaded (pipeline/compute.py)."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from threadpoolctl import threadpool_info, threadpool_limits

from pipeline.compute import busy_elsewhere, cap_threads, cpu_ticks, fit_threads
from pipeline.config import ComputeConfig, available_cores, load


def test_cap_threads_caps_xgboost_and_the_openmp_pools() -> None:
    before = xgb.get_config()["nthread"]
    try:
        cap_threads(load(None, ["compute.threads=1"]))
        assert xgb.get_config()["nthread"] == 1
        pools = [p for p in threadpool_info() if p["user_api"] == "openmp"]
        assert pools, "XGBoost's OpenMP runtime is loaded"
        assert all(p["num_threads"] == 1 for p in pools)
    finally:  # the other tests of this process keep their threads
        xgb.set_config(nthread=before)
        threadpool_limits(limits=available_cores())


def _spin(stop: Any) -> None:
    """A CPU-bound neighbour process."""
    while not stop.is_set():
        sum(range(100_000))


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="/proc tells the machine's load")
def test_busy_elsewhere_counts_a_neighbour_process() -> None:
    stop = multiprocessing.get_context("spawn").Event()
    neighbour = multiprocessing.get_context("spawn").Process(target=_spin, args=(stop,))
    neighbour.start()
    try:
        time.sleep(1.0)  # the neighbour is up and spinning
        with_neighbour = busy_elsewhere(0.5)
    finally:
        stop.set()
        neighbour.join()
    assert with_neighbour is not None and with_neighbour >= 0.6  # a core, less other tests' gaps


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="/proc tells the machine's load")
def test_this_process_own_cpu_is_read_to_be_taken_off() -> None:
    """The ticks taken off the machine's busy ticks are this process's own (every thread)."""
    sum(range(3_000_000))  # some CPU time of our own
    ticks = cpu_ticks()
    spent = os.times()
    assert ticks is not None
    own_s = ticks[1] / os.sysconf("SC_CLK_TCK")
    assert abs(own_s - (spent.user + spent.system)) < 0.05
    assert ticks[0] >= ticks[1]


def test_fit_threads_keeps_the_budget_when_told_not_to_yield_or_alone() -> None:
    assert fit_threads(ComputeConfig(threads=3, yield_to_load=False)) == 3
    assert fit_threads(ComputeConfig(threads=1)) == 1
    assert 1 <= fit_threads(ComputeConfig(threads=2)) <= 2


def test_xgboost_grows_the_same_trees_whatever_its_thread_count() -> None:
    """What makes yielding threads to the load safe: the model does not depend on them (weighted
    rows, native categories, row and column subsampling)."""
    rng = np.random.default_rng(7)
    n = 20_000
    X = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(6)})
    X["chapter"] = pd.Categorical(rng.integers(0, 90, n).astype(str))
    y = (X["x0"] + rng.normal(size=n) + (X["chapter"].cat.codes % 7 == 0) > 1.5).astype(float)
    matrix = xgb.DMatrix(X, y, weight=rng.uniform(0.5, 3, n), enable_categorical=True)
    params = {"max_depth": 5, "subsample": 0.8, "colsample_bynode": 0.7, "max_cat_to_onehot": 1}
    models = [
        bytes(xgb.train({**params, "nthread": threads, "seed": 1}, matrix, 60).save_raw("ubj"))
        for threads in (1, 2, 4)
    ]
    assert models[0] == models[1] == models[2]
