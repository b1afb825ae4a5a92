"""Load benchmark: `targeting run` on its own, then beside CPU-bound neighbour processes.

    .venv/bin/python bench/load.py [--config configs/default.yaml] [--set simulate.rows=60000]
        [--neighbours 2] [--wait-policies PASSIVE ACTIVE] [--limit-ratio 4] [--compare-yield]

Runs the whole chain (`targeting run`, a fresh output folder and tracking store each time, so
nothing is reused) once with no neighbour of ours, then once per OpenMP wait policy in
`--wait-policies` with `--neighbours` busy Python loops running (each one a process that keeps a
core busy, as another engineer's job would). Prints and writes the ratio "run under load / run
idle" (target: at most 2.5x with two neighbours on 2 cores) to bench/results/load_<config>.json.
PASSIVE is what the package sets (pipeline/__init__.py); ACTIVE is OpenMP's spinning wait, to
show what that setting is worth. With `--compare-yield`, one more run under load (PASSIVE) with
`compute.yield_to_load=false`: every XGBoost fit keeps `compute.threads` whatever the load, to
show what yielding threads to the neighbours is worth. A run under load is stopped after
`--limit-ratio` times the idle run and recorded as unfinished (seconds null); the file is written
after each run.

"Idle" means without our neighbours: on a shared machine other people's jobs run too, so the
load average (1 minute) is recorded when each run starts and ends.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import config_path, load  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TARGET = 2.5  # issue 27: at most 2.5x with two CPU-bound neighbours on 2 cores


def _busy(stop: Any) -> None:
    """A CPU-bound neighbour: a pure Python loop until told to stop."""
    count = 0
    while not stop.is_set():
        for _ in range(200_000):
            count += 1


def _timed_run(
    config: Path, overrides: list[str], folder: Path, policy: str, limit_s: float
) -> dict[str, Any]:
    """One `targeting run` in `folder` (its own outputs and tracking store); wall seconds and the
    load average around it; stopped after `limit_s` seconds (seconds None: did not finish)."""
    folder.mkdir(parents=True)
    sets = [
        *overrides,
        f"output_dir={folder / 'out'}",
        f"tracking.uri=sqlite:///{folder / 'mlflow.db'}",
    ]
    # `targeting run` of this checkout (python -m from its root imports its own pipeline)
    command = [sys.executable, "-m", "pipeline.cli", "run", "--config", str(config)]
    for override in sets:
        command += ["--set", override]
    env = {**os.environ, "OMP_WAIT_POLICY": policy, "MLFLOW_DISABLE_TELEMETRY": "true"}
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, cwd=ROOT, timeout=limit_s
        )
    except subprocess.TimeoutExpired:
        finished = None
    else:
        if done.returncode not in (0, 3):  # 3: a monitor alarm, the run itself finished
            sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
            raise SystemExit(f"targeting run failed (exit {done.returncode})")
        finished = round(time.perf_counter() - started, 1)
    return {
        "seconds": finished,
        "limit_s": limit_s,
        "omp_wait_policy": policy,
        "load_average_1min_start": round(load_before, 2),
        "load_average_1min_end": round(os.getloadavg()[0], 2),
    }


def under_load(
    config: Path,
    overrides: list[str],
    folder: Path,
    policy: str,
    neighbours: int,
    limit_s: float,
) -> dict[str, Any]:
    """`_timed_run` with `neighbours` busy processes running throughout."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    processes = [context.Process(target=_busy, args=(stop,)) for _ in range(neighbours)]
    for process in processes:
        process.start()
    try:
        time.sleep(2.0)  # the neighbours are running before the run starts
        return _timed_run(config, overrides, folder, policy, limit_s) | {"neighbours": neighbours}
    finally:
        stop.set()
        for process in processes:
            process.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--neighbours", type=int, default=2)
    parser.add_argument("--wait-policies", nargs="+", default=["PASSIVE"])
    parser.add_argument(
        "--compare-yield",
        action="store_true",
        help="also a run under load with compute.yield_to_load=false",
    )
    parser.add_argument(
        "--limit-ratio",
        type=float,
        default=4.0,
        help="stop a run under load after this many times the idle run (recorded as unfinished)",
    )
    args = parser.parse_args()
    config_file = config_path(args.config)
    config = load(config_file, args.overrides)
    results: dict[str, Any] = {
        "config": str(args.config),
        "overrides": args.overrides,
        "threads": config.compute.threads,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "cores_this_process_may_use": len(os.sched_getaffinity(0)),
        },
        "note": "idle means without our neighbours: the machine is shared, other jobs may run; "
        "see each run's load average",
        "target_ratio": TARGET,
    }
    out = RESULTS / f"load_{config.name}.json"
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        idle = _timed_run(config_file, args.overrides, Path(tmp) / "idle", "PASSIVE", 24 * 3600.0)
        print(f"idle: {idle['seconds']:.1f} s (load average {idle['load_average_1min_start']})")
        results |= {"idle": idle, "under_load": []}
        limit = args.limit_ratio * float(idle["seconds"])
        sides = [(policy, True) for policy in args.wait_policies]
        sides += [("PASSIVE", False)] if args.compare_yield else []
        for policy, yielding in sides:
            run = under_load(
                config_file,
                [*args.overrides, f"compute.yield_to_load={str(yielding).lower()}"],
                Path(tmp) / f"load-{policy}-{'yield' if yielding else 'fixed'}",
                policy,
                args.neighbours,
                limit,
            )
            run["yield_to_load"] = yielding
            run["ratio"] = (
                None if run["seconds"] is None else round(run["seconds"] / idle["seconds"], 2)
            )
            results["under_load"].append(run)
            # written after each run: a long one leaves what was measured before it
            out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
            took = (
                f"did not finish within {limit:.0f} s (more than {args.limit_ratio:g}x idle)"
                if run["seconds"] is None
                else f"{run['seconds']:.1f} s, {run['ratio']:.2f}x idle"
            )
            print(
                f"{args.neighbours} neighbours, OMP_WAIT_POLICY={policy}, yield_to_load="
                f"{yielding}: {took} (target <= "
                f"{TARGET}x; load average {run['load_average_1min_start']})"
            )
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
