"""Scaling of the pipeline's stages with the number of declarations: time, memory, exponent.

    .venv/bin/python bench/scale.py [--rows 1000000 4000000 10000000] [--threads 1]

For each size, four stages run one after the other, each in a fresh child process so that its
peak resident memory (ru_maxrss) is its own; they pass their results through Parquet files in a
temporary folder:
- simulate: the synthetic stream (entities scaled with the size, as bench/features.py does);
- features: `build_feature_set` on the declarations and outcomes;
- train: `fit` with fixed parameters (no tuning, a fixed number of trees: early stopping cannot
  end it sooner), calibration and revenue model included, on the default windows;
- score: calibrated probability and expected revenue of every declaration of the feature set.
The timed part of a stage excludes reading its inputs and writing its outputs (recorded apart as
io_s). Wall-clock and CPU seconds are both recorded (the machine may be shared: CPU seconds do not
count waiting for a core). The scaling exponent of a stage is the least-squares slope of
log(seconds) on log(declarations): 1 is linear. Prints a table and writes
bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "scale.json"
STAGES = ("simulate", "features", "train", "score")
TREES = 100
PARAMS = {"learning_rate": 0.1, "max_depth": 6, "min_child_weight": 1.0, "subsample": 0.9}


def _peak_gib() -> float:
    """Peak resident memory of this process in GiB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class Clock:
    """Wall-clock and CPU seconds of the timed part of a stage."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def _simulate(rows: int, folder: Path, seed: int, threads: int) -> dict[str, Any]:
    from pipeline.config import SimulateConfig
    from pipeline.ingest.simulate import simulate

    scale = rows / 200_000
    config = SimulateConfig(
        rows=rows,
        importers=max(int(8_000 * scale), 100),
        sellers=max(int(6_000 * scale), 100),
        declarants=max(int(300 * scale), 10),
    )
    with Clock() as clock:
        data = simulate(config, seed)
    io = time.perf_counter()
    data.declarations.to_parquet(folder / "declarations.parquet")
    data.outcomes.to_parquet(folder / "outcomes.parquet")
    return {
        "wall_s": clock.wall,
        "cpu_s": clock.cpu,
        "io_s": time.perf_counter() - io,
        "outcomes": len(data.outcomes),
    }


def _features(rows: int, folder: Path, seed: int, threads: int) -> dict[str, Any]:
    import pandas as pd

    from pipeline.config import FeaturesConfig
    from pipeline.features.build import build_feature_set

    io = time.perf_counter()
    declarations = pd.read_parquet(folder / "declarations.parquet")
    outcomes = pd.read_parquet(folder / "outcomes.parquet")
    io_s = time.perf_counter() - io
    with Clock() as clock:
        fs = build_feature_set(declarations, outcomes, FeaturesConfig(reporting_delay_days=2))
    io = time.perf_counter()
    fs.to_parquet(folder / "feature_set.parquet", folder / "manifest.csv")
    return {
        "wall_s": clock.wall,
        "cpu_s": clock.cpu,
        "io_s": io_s + time.perf_counter() - io,
        "features": fs.X.shape[1],
        "labelled": int(fs.y.notna().sum()),
    }


def _train(rows: int, folder: Path, seed: int, threads: int) -> dict[str, Any]:
    from pipeline.config import Config
    from pipeline.features.featureset import FeatureSet
    from pipeline.train.fit import fit
    from pipeline.train.split import make_windows

    io = time.perf_counter()
    fs = FeatureSet.read_parquet(folder / "feature_set.parquet", folder / "manifest.csv")
    io_s = time.perf_counter() - io
    config = Config.model_validate(
        {
            "seed": seed,
            "output_dir": str(folder / "out"),
            "tune": {"n_trials": 0},
            "train": {
                "params": PARAMS,
                "num_boost_round": TREES,
                "early_stopping_rounds": TREES + 1,  # never stops early: a fixed amount of work
                "n_jobs": threads,
            },
        }
    )
    with Clock() as clock:
        windows = make_windows(fs.lodged_at, config.split)
        result = fit(fs, windows, dict(config.train.params), config)
    io = time.perf_counter()
    result.model.save(folder / "model")
    return {
        "wall_s": clock.wall,
        "cpu_s": clock.cpu,
        "io_s": io_s + time.perf_counter() - io,
        "train_rows": result.log["rows"]["train"]["fitted"],
        "boost_s": result.log["timings"]["boost_s"],
        "revenue_s": result.log["timings"]["revenue_s"],
        "test_average_precision": result.log["metrics"]["test"].get("average_precision"),
    }


def _score(rows: int, folder: Path, seed: int, threads: int) -> dict[str, Any]:
    from pipeline.features.featureset import FeatureSet
    from pipeline.serve.model import TargetingModel

    io = time.perf_counter()
    fs = FeatureSet.read_parquet(folder / "feature_set.parquet", folder / "manifest.csv")
    model = TargetingModel.load(folder / "model")
    model.booster.set_param({"nthread": threads})
    if model.revenue_booster is not None:
        model.revenue_booster.set_param({"nthread": threads})
    io_s = time.perf_counter() - io
    with Clock() as clock:
        probability = model.predict_proba(fs.X)
        revenue = model.expected_revenue(fs.X, probability)
    return {
        "wall_s": clock.wall,
        "cpu_s": clock.cpu,
        "io_s": io_s,
        "scored": len(probability),
        "mean_probability": float(np.mean(probability)),
        "mean_expected_revenue": float(np.nanmean(revenue)),
    }


def child(stage: str, rows: int, folder: Path, seed: int, threads: int) -> dict[str, Any]:
    """Run one stage in this (fresh) process; its figures and peak memory."""
    sys.path.insert(0, str(ROOT))
    stage_function = {
        "simulate": _simulate,
        "features": _features,
        "train": _train,
        "score": _score,
    }[stage]
    figures = stage_function(rows, folder, seed, threads)
    return {**figures, "peak_rss_gib": _peak_gib()}


def exponent(sizes: list[int], seconds: list[float]) -> float | None:
    """Least-squares slope of log(seconds) on log(size); None with fewer than two sizes."""
    if len(sizes) < 2:
        return None
    slope, _ = np.polyfit(np.log(sizes), np.log(seconds), 1)
    return float(slope)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="XGBoost threads (train, score); on a shared machine two threads competing with "
        "other work can be ten times slower than one",
    )
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(child(args.stage, args.rows[0], args.folder, args.seed, args.threads)))
        return

    runs: dict[str, dict[str, Any]] = {}
    for rows in sorted(args.rows):
        with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
            runs[str(rows)] = {}
            for stage in STAGES:
                command = [sys.executable, __file__, "--stage", stage, "--rows", str(rows)]
                command += ["--folder", tmp, "--seed", str(args.seed)]
                command += ["--threads", str(args.threads)]
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    sys.exit(f"{stage} of {rows:,} declarations failed:\n{done.stderr[-4000:]}")
                figures = json.loads(done.stdout.strip().splitlines()[-1])
                runs[str(rows)][stage] = figures
                print(
                    f"{rows:>11,}  {stage:<9} {figures['wall_s']:8.1f} s wall "
                    f"{figures['cpu_s']:8.1f} s CPU  (I/O {figures['io_s']:5.1f} s)  "
                    f"peak {figures['peak_rss_gib']:6.2f} GiB",
                    flush=True,
                )

    sizes = sorted(int(r) for r in runs)
    scaling = {
        stage: {
            "wall_exponent": exponent(sizes, [runs[str(r)][stage]["wall_s"] for r in sizes]),
            "cpu_exponent": exponent(sizes, [runs[str(r)][stage]["cpu_s"] for r in sizes]),
            "memory_exponent": exponent(
                sizes, [runs[str(r)][stage]["peak_rss_gib"] for r in sizes]
            ),
        }
        for stage in STAGES
    }
    print()
    header = f"{'stage':<9}" + "".join(f"{f'{r:,} (s / GiB)':>24}" for r in sizes)
    print(header + f"{'exponent wall/CPU/mem':>26}")
    for stage in STAGES:
        cells = "".join(
            f"{runs[str(r)][stage]['wall_s']:>13.1f} / {runs[str(r)][stage]['peak_rss_gib']:>6.2f}"
            + " " * 2
            for r in sizes
        )
        s = scaling[stage]
        if s["wall_exponent"] is None:
            slopes = "n/a"
        else:
            slopes = (
                f"{s['wall_exponent']:.2f} / {s['cpu_exponent']:.2f} / {s['memory_exponent']:.2f}"
            )
        print(f"{stage:<9}{cells}{slopes:>24}")
    document = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
        "threads": args.threads,
        "trees": TREES,
        "params": PARAMS,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runs": runs,
        "scaling": scaling,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
