"""Benchmark of the feature builder against its floor, on simulated declarations.

For each size: one subprocess simulates the declarations and writes them to Parquet; a fresh
subprocess reads them, builds the FeatureSet, then measures the floor (one stable sort by lodging
time plus one grouped cumulative sum per profile key) and reports its peak memory (ru_maxrss,
so each size runs in its own process). Prints declarations/s, the ratio to the floor and the
scaling, and writes bench/results/features.json. Times are CPU seconds of the process
(time.process_time: the build is single-threaded, and CPU time does not count the waits of a
machine shared with other work); wall-clock seconds are recorded beside them.

    .venv/bin/python bench/features.py --rows 1000000 4000000
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "features.json"


def simulate_to(rows: int, folder: Path, seed: int) -> None:
    """Simulate ``rows`` declarations (entities scaled with the size) into ``folder``."""
    from pipeline.ingest.simulate import scaled_config, simulate

    config = scaled_config(rows)
    data = simulate(config, seed)
    data.declarations.to_parquet(folder / "declarations.parquet")
    data.outcomes.to_parquet(folder / "outcomes.parquet")


def measure(folder: Path) -> dict[str, float]:
    """Build the features and the floor in this process; return timings and peak memory."""
    import numpy as np
    import pandas as pd

    from pipeline.config import FeaturesConfig
    from pipeline.features.build import build_feature_set
    from pipeline.features.profiles import profile_keys

    declarations = pd.read_parquet(folder / "declarations.parquet")
    outcomes = pd.read_parquet(folder / "outcomes.parquet")
    config = FeaturesConfig()
    wall, cpu = time.perf_counter(), time.process_time()
    feature_set = build_feature_set(declarations, outcomes, config)
    build_wall, build_s = time.perf_counter() - wall, time.process_time() - cpu
    features = feature_set.X.shape[1]
    del feature_set

    wall, cpu = time.perf_counter(), time.process_time()
    times = declarations["lodged_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    order = np.argsort(times, kind="stable")
    keys = declarations.iloc[order].reset_index(drop=True)
    keys["one"] = 1.0
    for key in profile_keys(config):
        keys.groupby(list(key), observed=True, sort=False)["one"].cumsum()
    floor_wall, floor_s = time.perf_counter() - wall, time.process_time() - cpu
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {
        "rows": len(declarations),
        "outcomes": len(outcomes),
        "features": features,
        "build_s": build_s,
        "floor_s": floor_s,
        "build_wall_s": build_wall,
        "floor_wall_s": floor_wall,
        "ratio_to_floor": build_s / floor_s,
        "declarations_per_s": len(declarations) / build_s,
        "peak_memory_gb": peak_gb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--_simulate", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._simulate:
        simulate_to(args.rows[0], args._simulate, args.seed)
        return
    if args._measure:
        print(json.dumps(measure(args._measure)))
        return

    runs = []
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            me = [sys.executable, __file__, "--rows", str(rows), "--seed", str(args.seed)]
            subprocess.run([*me, "--_simulate", str(folder)], check=True)
            out = subprocess.run(
                [*me, "--_measure", str(folder)], check=True, capture_output=True, text=True
            )
        run = json.loads(out.stdout.strip().splitlines()[-1])
        runs.append(run)
        print(
            f"{run['rows']:>10,} declarations  {run['features']} features  "
            f"build {run['build_s']:.1f} s CPU ({run['build_wall_s']:.1f} s wall)  "
            f"{run['declarations_per_s']:,.0f} declarations/s  "
            f"floor {run['floor_s']:.2f} s CPU  ratio {run['ratio_to_floor']:.2f}  "
            f"peak memory {run['peak_memory_gb']:.2f} GB"
        )
    result: dict[str, object] = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "runs": runs,
        "targets": {"ratio_to_floor": 3.0, "scaling_4x": 4.5, "peak_memory_gb_at_4m": 6.0},
    }
    if len(runs) >= 2:
        small, large = runs[0], runs[-1]
        scaling = large["build_s"] / small["build_s"]
        result["scaling"] = {
            "rows": [small["rows"], large["rows"]],
            "time_ratio": scaling,
        }
        print(f"time at {large['rows']:,} / time at {small['rows']:,}: {scaling:.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
