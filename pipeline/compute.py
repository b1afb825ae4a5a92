"""One thread budget for every library a job runs: `compute.threads`.

The boosters read `config.compute.threads` where they are built (XGBoost ``nthread``, LightGBM
``num_threads``, CatBoost ``thread_count``; tuning workers split it). `cap_threads` covers what
takes no thread argument: a DMatrix is built, and a booster loaded from the registry predicts,
with XGBoost's global ``nthread``; scikit-learn and numpy may call into an OpenMP or BLAS pool.
Threads that wait for work do not spin (pipeline/__init__.py sets ``OMP_WAIT_POLICY=PASSIVE``
before any OpenMP runtime loads): beside two other CPU-bound processes on 2 cores, spinning
threads took a 2-thread XGBoost fit from 6 s to 53 s (bench/load.py measures a whole run).
"""

from __future__ import annotations

import xgboost as xgb
from threadpoolctl import threadpool_limits

from pipeline.config import Config


def cap_threads(config: Config) -> None:
    """Cap XGBoost's global thread count and every loaded OpenMP and BLAS pool at
    `compute.threads` for the rest of the process (a job's process)."""
    threads = config.compute.threads
    xgb.set_config(nthread=threads)
    # threadpoolctl, not an environment variable: the pools are loaded already and read
    # OMP_NUM_THREADS only when they start
    threadpool_limits(limits=threads)
