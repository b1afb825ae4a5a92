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

import math
import os
import time

import xgboost as xgb

from pipeline.config import ComputeConfig, Config


def cap_threads(config: Config) -> None:
    """Cap XGBoost's global thread count and every loaded OpenMP and BLAS pool at
    `compute.threads` in the calling thread (a job's main thread: see `cap_thread_count`);
    XGBoost's at fewer while other processes keep the machine busy (`fit_threads`: the matrices
    and predictions are the same whatever its thread count)."""
    cap_thread_count(config.compute.threads)
    xgb.set_config(nthread=fit_threads(config.compute))


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


# --- yielding to a busy machine ----------------------------------------------------------------

# How long one reading of the machine's load serves the fits that follow (a tuning study starts
# dozens of fits a minute; the load of a shared machine changes over minutes).
LOAD_READING_S = 5.0
_SAMPLE_S = 0.1
_last_reading: tuple[float, float] | None = None  # (monotonic time, cores busy elsewhere)


def cpu_ticks() -> tuple[int, int] | None:
    """(busy ticks of the whole machine, busy ticks of this process) from /proc; None where
    there is no /proc (macOS, Windows)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        with open("/proc/self/stat", encoding="ascii") as own:
            # fields after the command name, which may hold spaces: utime and stime are 14, 15
            after = own.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, int(after[11]) + int(after[12])


def busy_elsewhere(sample_s: float = _SAMPLE_S) -> float | None:
    """Cores kept busy by other processes over the last `sample_s` seconds (0.0: an idle
    machine; 2.0: two CPU-bound neighbours); None where /proc cannot tell.

    Written by hand: psutil would add a dependency for two counters, and its per-process figure
    would still have to be taken from the machine's."""
    before = cpu_ticks()
    started = time.monotonic()
    time.sleep(sample_s)
    after = cpu_ticks()
    if before is None or after is None:
        return None
    ticks = os.sysconf("SC_CLK_TCK") * (time.monotonic() - started)
    return max(0.0, ((after[0] - before[0]) - (after[1] - before[1])) / ticks)


def fit_threads(compute: ComputeConfig | int) -> int:
    """The XGBoost threads of one fit: `compute.threads`, or fewer where other processes keep the
    machine busy (`compute.yield_to_load`): the cores they leave idle plus one, at least one.

    Beside two CPU-bound neighbours on 2 cores a 2-thread fit waits at every barrier for the
    thread the scheduler set aside and ran slower than a 1-thread fit (bench/load.py). XGBoost's
    trees are the same whatever its thread count (tests/jobs/test_compute.py), so this changes
    the time a fit takes, never the model. LightGBM's sums depend on its thread count: its
    reference fits keep `compute.threads`. A bare count yields (the plain XGBoost reference's)."""
    global _last_reading
    if isinstance(compute, int):  # a thread count of its own (a reference learner's)
        compute = ComputeConfig(threads=compute)
    if not compute.yield_to_load or compute.threads == 1:
        return compute.threads
    now = time.monotonic()
    if _last_reading is None or now - _last_reading[0] > LOAD_READING_S:
        others = busy_elsewhere()
        if others is None:
            return compute.threads
        _last_reading = (now, others)
    idle = (os.cpu_count() or 1) - _last_reading[1]
    return max(1, min(compute.threads, math.floor(idle) + 1))
