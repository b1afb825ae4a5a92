"""One thread budget: `compute.threads` caps XGBoost's global thread count and the OpenMP pools
a job's process has loaded (pipeline/compute.py)."""

from __future__ import annotations

import xgboost as xgb
from threadpoolctl import threadpool_info, threadpool_limits

from pipeline.compute import cap_threads
from pipeline.config import available_cores, load


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
