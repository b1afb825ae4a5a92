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

from pipeline.config import Config


def cap_threads(config: Config) -> None:
    """Cap XGBoost's global thread count and every loaded OpenMP and BLAS pool at
    `compute.threads` in the calling thread (a job's main thread: see `cap_thread_count`)."""
    cap_thread_count(config.compute.threads)


def cap_thread_count(threads: int) -> None:
    """Cap XGBoost's global thread count and every loaded OpenMP and BLAS pool at `threads`.

    Both hold for the calling thread only: XGBoost keeps its global configuration per thread
    and OpenMP its thread count per thread, so a thread started afterwards (a scoring server's
    worker) runs with every core until it is capped itself (`serve.scorer.ScorerModel`)."""
    xgb.set_config(nthread=threads)
    try:
        # threadpoolctl, not an environment variable: the pools are loaded already and read
        # OMP_NUM_THREADS only when they start
        from threadpoolctl import threadpool_limits
    except ImportError:  # a serving install (requirements-serve.lock) lacks it; XGBoost,
        return  # whose threads scoring spends, is capped above
    threadpool_limits(limits=threads)
