"""Scaling of the pipeline's stages with the number of declarations: time, memory, exponent.

    .venv/bin/python bench/scale.py [--rows 1000000 4000000 10000000] [--threads 1]
        [--chunk-months N] [--score-batch ROWS] [--train-engine memory|dask]

For each size, four stages run one after the other, each in a fresh child process so that its
peak resident memory (ru_maxrss) is its own; they pass their results through Parquet files in a
temporary folder:
- simulate: the synthetic stream (entities scaled with the size, as bench/features.py does);
- features: `build_feature_set` on the declarations and outcomes;
- train: `fit` with fixed parameters (no tuning, a fixed number of trees: early stopping cannot
  end it sooner), calibration and revenue model included, on the default windows;
- score: calibrated probability and expected revenue of every declaration of the feature set.
The defaults hold everything in memory (the figures measured so far). For sizes that do not fit:
`--chunk-months N` builds the features over N-month chunks, each written to the Parquet file as it
is built (`write_chunked`, timed with the building); `--train-engine dask` boosts on a 2-worker
LocalCluster (one thread each, started within the timed part) whose workers read the training and
validation windows from the file, the stage reading only the lodging times, the rows from the
validation window on and the hits (its peak memory and CPU seconds are its own: the workers' are
not counted); `--score-batch ROWS` scores batches of whole row groups (at most ROWS declarations, a
larger group alone) read from the file one at a time. Each stage's record says which `path` it used.
The timed part of a stage excludes reading its inputs and writing its outputs (recorded apart as
io_s). Wall-clock and CPU seconds are both recorded (the machine may be shared: CPU seconds do not
count waiting for a core). The scaling exponent of a stage is the least-squares slope of
log(seconds) on log(declarations): 1 is linear. Prints a table and writes
bench/results/scale.json, merged with what it holds: every record is kept by stage, path and
size (`runs_by_path`), `runs` holds the latest record of each size and stage, and an exponent is
only computed over sizes measured on the same path (`scaling_by_path`; `scaling` is the path with
the most sizes, its `path` and `sizes` stated).
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "scale.json"
STAGES = ("simulate", "features", "train", "score")
TREES = 100
PARAMS = {"learning_rate": 0.1, "max_depth": 6, "min_child_weight": 1.0, "subsample": 0.9}


DASK_WORKERS = 2


def _peak_gib() -> float:
    """Peak resident memory of this process in GiB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def stage_path(stage: str, chunk_months: int, score_batch: int, engine: str) -> str:
    """The name of the way a stage runs with these options ("memory" is the default)."""
    if stage == "features" and chunk_months:
        return f"chunked-{chunk_months}-months-written"
    if stage == "train" and engine == "dask":
        return f"dask-{DASK_WORKERS}-workers-from-file"
    if stage == "score" and score_batch:
        return f"batches-of-{score_batch}-rows-from-file"
    return "memory"


@dataclass(frozen=True)
class Options:
    """How the stages run: 0 / "memory" is the in-memory default."""

    chunk_months: int = 0
    score_batch: int = 0
    train_engine: str = "memory"

    def path(self, stage: str) -> str:
        """The path `stage` takes with these options."""
        return stage_path(stage, self.chunk_months, self.score_batch, self.train_engine)


class Clock:
    """Wall-clock and CPU seconds of the timed part of a stage."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def _simulate(rows: int, folder: Path, seed: int, threads: int, options: Options) -> dict[str, Any]:
    from pipeline.simulate import scaled_config, simulate

    config = scaled_config(rows)
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


def _features(rows: int, folder: Path, seed: int, threads: int, options: Options) -> dict[str, Any]:
    import pandas as pd

    from pipeline.config import FeaturesConfig
    from pipeline.features.build import build_feature_set
    from pipeline.features.chunked import Chunks, write_chunked

    io = time.perf_counter()
    declarations = pd.read_parquet(folder / "declarations.parquet")
    outcomes = pd.read_parquet(folder / "outcomes.parquet")
    io_s = time.perf_counter() - io
    if options.chunk_months:  # writing is part of building: timed with it
        with Clock() as clock:
            written, _ = write_chunked(
                declarations,
                outcomes,
                FeaturesConfig(reporting_delay_days=2),
                folder / "feature_set.parquet",
                folder / "manifest.csv",
                Chunks(options.chunk_months),
            )
        return {
            "wall_s": clock.wall,
            "cpu_s": clock.cpu,
            "io_s": io_s,
            "features": written.features,
            "labelled": written.labelled,
        }
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


def _around_training(path: Path, manifest: Path, config: Any) -> tuple[Any, Any]:
    """What the train job reads when dask workers read the training window (as
    `pipeline.jobs.train.read_around_training`, on the bench's windows: no held-out days): the
    rows lodged from the validation window on and every hit, windows placed on the file's
    lodging times."""
    import pandas as pd

    from pipeline.features.featureset import META_COLUMNS, FeatureSet
    from pipeline.plan import make_windows

    lodged = pd.read_parquet(path, columns=["lodged_at"])["lodged_at"]
    windows = make_windows(lodged, config.split)
    del lodged
    frame = pd.read_parquet(
        path, filters=[[("lodged_at", ">=", windows.valid.start)], [("y", "==", 1.0)]]
    )
    names = list(pd.read_csv(manifest)["name"])
    fs = FeatureSet(
        X=frame[names],
        manifest=pd.read_csv(manifest),
        **{name: frame[name] for name in META_COLUMNS},
    )
    return fs, windows


def _train(rows: int, folder: Path, seed: int, threads: int, options: Options) -> dict[str, Any]:
    from pipeline.config import Config
    from pipeline.features.featureset import FeatureSet
    from pipeline.jobs.feature_file import FeatureFile
    from pipeline.plan import make_windows
    from pipeline.train.fit import fit

    config = Config.model_validate(
        {
            "seed": seed,
            "output_dir": str(folder / "out"),
            "tune": {"n_trials": 0},
            "compute": {"threads": threads},
            "train": {
                "params": PARAMS,
                "num_boost_round": TREES,
                "early_stopping_rounds": TREES + 1,  # never stops early: a fixed amount of work
                "engine": options.train_engine,
                "dask_workers": DASK_WORKERS,
            },
        }
    )
    path, manifest = folder / "feature_set.parquet", folder / "manifest.csv"
    io = time.perf_counter()
    if options.train_engine == "dask":
        fs, windows = _around_training(path, manifest, config)
    else:
        fs = FeatureSet.read_parquet(path, manifest)
    io_s = time.perf_counter() - io
    with Clock() as clock:
        if options.train_engine == "dask":  # the workers read their windows from the file
            file = FeatureFile(path)
            result = fit(fs, windows, dict(config.train.params), config, feature_file=file)
        else:
            windows = make_windows(fs.lodged_at, config.split)
            result = fit(fs, windows, dict(config.train.params), config)
    io = time.perf_counter()
    result.model.save(folder / "model")
    return {
        "wall_s": clock.wall,
        "cpu_s": clock.cpu,
        "io_s": io_s + time.perf_counter() - io,
        "train_rows": result.log.rows["train"].fitted,
        "boost_s": result.log.timings.boost_s,
        "revenue_s": result.log.timings.revenue_s,
        "test_average_precision": result.log.metrics["test"].get("average_precision"),
        "boosted_from": result.log.boosted_from,
        "rows_held": len(fs),
    }


def batches_of_groups(group_rows: list[int], batch_rows: int) -> list[list[int]]:
    """Consecutive row groups in batches of at most ``batch_rows`` rows (a larger group alone)."""
    batches: list[list[int]] = [[]]
    rows = 0
    for group, size in enumerate(group_rows):  # a loop over row groups, not declarations
        if batches[-1] and rows + size > batch_rows:
            batches.append([])
            rows = 0
        batches[-1].append(group)
        rows += size
    return [batch for batch in batches if batch]


def _score_batches(folder: Path, model: Any, batch_rows: int) -> dict[str, Any]:
    """Score the feature-set file a batch of whole row groups (at most ``batch_rows``
    declarations) at a time, never the whole matrix; reading is io_s, scoring wall_s / cpu_s.
    Each batch is its own `read_row_groups` (`iter_batches` kept Arrow buffers alive: ~1 GiB more
    at 4M declarations)."""
    import pandas as pd
    import pyarrow.parquet as pq

    names = list(pd.read_csv(folder / "manifest.csv")["name"])
    file = pq.ParquetFile(folder / "feature_set.parquet")
    group_rows = [file.metadata.row_group(g).num_rows for g in range(file.num_row_groups)]
    wall = cpu = io_s = 0.0
    scored, probability_sum, revenue_sum, revenue_count = 0, 0.0, 0.0, 0
    # A loop over batches (tens at 10M declarations), not over declarations.
    for groups in batches_of_groups(group_rows, batch_rows):
        io = time.perf_counter()
        X = file.read_row_groups(groups, columns=names).to_pandas()
        io_s += time.perf_counter() - io
        with Clock() as clock:
            probability = model.predict_proba(X)
            revenue = model.expected_revenue(X, probability)
        wall, cpu = wall + clock.wall, cpu + clock.cpu
        scored += len(probability)
        probability_sum += float(np.sum(probability))
        known = ~np.isnan(revenue)
        revenue_sum += float(np.sum(revenue[known]))
        revenue_count += int(known.sum())
        del X
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "io_s": io_s,
        "scored": scored,
        "batches": len(batches_of_groups(group_rows, batch_rows)),
        "mean_probability": probability_sum / scored,
        "mean_expected_revenue": revenue_sum / revenue_count if revenue_count else float("nan"),
    }


def _score(rows: int, folder: Path, seed: int, threads: int, options: Options) -> dict[str, Any]:
    from pipeline.features.featureset import FeatureSet
    from pipeline.serve.model import TargetingModel

    io = time.perf_counter()
    model = TargetingModel.load(folder / "model")
    model.booster.set_param({"nthread": threads})
    if model.revenue_booster is not None:
        model.revenue_booster.set_param({"nthread": threads})
    if options.score_batch:
        figures = _score_batches(folder, model, options.score_batch)
        # io_s: loading the model and reading the batches (all but the scoring itself)
        return {**figures, "io_s": time.perf_counter() - io - figures["wall_s"]}
    fs = FeatureSet.read_parquet(folder / "feature_set.parquet", folder / "manifest.csv")
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


def child(
    stage: str, rows: int, folder: Path, seed: int, threads: int, options: Options
) -> dict[str, Any]:
    """Run one stage in this (fresh) process; its figures and peak memory."""
    sys.path.insert(0, str(ROOT))
    stage_function = {
        "simulate": _simulate,
        "features": _features,
        "train": _train,
        "score": _score,
    }[stage]
    figures = stage_function(rows, folder, seed, threads, options)
    return {
        **figures,
        "path": options.path(stage),
        # this process only: the dask workers of train on dask are not counted
        "peak_rss_gib": _peak_gib(),
    }


def exponent(sizes: list[int], seconds: list[float]) -> float | None:
    """Least-squares slope of log(seconds) on log(size); None with fewer than two sizes."""
    if len(sizes) < 2:
        return None
    slope, _ = np.polyfit(np.log(sizes), np.log(seconds), 1)
    return float(slope)


def exponents(by_size: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Wall, CPU and memory exponents over the sizes measured (failed runs left out)."""
    done = {int(r): f for r, f in by_size.items() if "wall_s" in f}
    sizes = sorted(done)
    return {
        "wall_exponent": exponent(sizes, [done[r]["wall_s"] for r in sizes]),
        "cpu_exponent": exponent(sizes, [done[r]["cpu_s"] for r in sizes]),
        "memory_exponent": exponent(sizes, [done[r]["peak_rss_gib"] for r in sizes]),
        "sizes": sizes,
    }


def load_by_path(previous: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Every record of an earlier scale.json by stage, path and size; records written before
    paths were recorded ran every stage in memory."""
    if "runs_by_path" in previous:
        by_path: dict[str, dict[str, dict[str, Any]]] = previous["runs_by_path"]
        return by_path
    by_path = {}
    for size, stages in previous.get("runs", {}).items():
        for stage, figures in stages.items():
            record = {**figures, "path": figures.get("path", "memory")}
            by_path.setdefault(stage, {}).setdefault(record["path"], {})[size] = record
    return by_path


def document_of(
    previous: dict[str, Any], measured: dict[str, dict[str, Any]], paths: dict[str, str]
) -> dict[str, Any]:
    """scale.json: the earlier records merged with this invocation's (`measured`, by size and
    stage; `paths`, the path of each stage now), by stage, path and size."""
    by_path = load_by_path(previous)
    for size, stages in measured.items():
        for stage, figures in stages.items():
            by_path.setdefault(stage, {}).setdefault(figures["path"], {})[size] = figures
    by_path = {
        stage: {
            path: dict(sorted(by_size.items(), key=lambda kv: int(kv[0])))
            for path, by_size in of_path.items()
        }
        for stage, of_path in by_path.items()
    }
    runs = {  # records written before paths were recorded ran in memory
        size: {stage: {**f, "path": f.get("path", "memory")} for stage, f in stages.items()}
        for size, stages in previous.get("runs", {}).items()
    }
    for size, stages in measured.items():
        runs[size] = {**runs.get(size, {}), **stages}
    runs = {size: runs[size] for size in sorted(runs, key=int)}
    scaling_by_path = {
        stage: {path: exponents(by_size) for path, by_size in sorted(by_path[stage].items())}
        for stage in STAGES
        if stage in by_path
    }
    scaling: dict[str, Any] = {}
    for stage, of_path in scaling_by_path.items():
        # the path with the most sizes; on a tie, the one this invocation ran
        best = max(of_path, key=lambda p: (len(of_path[p]["sizes"]), p == paths[stage]))
        scaling[stage] = {**of_path[best], "path": best}
    return {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
        "threads": previous.get("threads", 1),
        "trees": TREES,
        "params": PARAMS,
        "dask_workers": DASK_WORKERS,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runs": runs,
        "runs_by_path": by_path,
        "scaling": scaling,
        "scaling_by_path": scaling_by_path,
    }


def print_table(document: dict[str, Any]) -> None:
    """Size x stage: wall seconds, peak GiB and path; then the exponents of each path."""
    print(f"\n{'size':>11}  {'stage':<9}{'wall s':>9}{'peak GiB':>10}  path")
    for size, stages in document["runs"].items():
        for stage, f in stages.items():
            if "wall_s" in f:
                print(
                    f"{int(size):>11,}  {stage:<9}{f['wall_s']:>9.1f}{f['peak_rss_gib']:>10.2f}  "
                    f"{f['path']}"
                )
            else:
                print(f"{int(size):>11,}  {stage:<9}{'failed':>19}  {f['path']}")
    print(f"\n{'stage':<9}{'path':<36}{'sizes':<34}exponent wall / CPU / memory")
    for stage, of_path in document["scaling_by_path"].items():
        for path, s in of_path.items():
            sizes = ", ".join(f"{r:,}" for r in s["sizes"])
            slopes = (
                "n/a"
                if s["wall_exponent"] is None
                else f"{s['wall_exponent']:.2f} / {s['cpu_exponent']:.2f} / "
                f"{s['memory_exponent']:.2f}"
            )
            print(f"{stage:<9}{path:<36}{sizes:<34}{slopes}")


def _arguments() -> argparse.Namespace:
    """The command line's options."""
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
    parser.add_argument(
        "--chunk-months",
        type=int,
        default=0,
        help="build the features over chunks of this many months, each written to the file as "
        "it is built (0: the whole feature set in memory)",
    )
    parser.add_argument(
        "--score-batch",
        type=int,
        default=0,
        help="score batches of this many declarations read from the file one at a time "
        "(0: the whole matrix in memory)",
    )
    parser.add_argument(
        "--train-engine",
        choices=("memory", "dask"),
        default="memory",
        help=f"dask: a {DASK_WORKERS}-worker LocalCluster (one thread each) whose workers read "
        "the training windows from the feature-set file",
    )
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    options = Options(args.chunk_months, args.score_batch, args.train_engine)
    if args.stage:
        figures = child(args.stage, args.rows[0], args.folder, args.seed, args.threads, options)
        print(json.dumps(figures))
        return

    previous = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
    if previous and previous.get("threads", args.threads) != args.threads:
        sys.exit(f"{RESULTS} was measured with {previous['threads']} threads: use the same")
    previous["threads"] = args.threads
    paths = {stage: options.path(stage) for stage in STAGES}
    measured: dict[str, dict[str, Any]] = {}
    for rows in sorted(args.rows):
        with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
            measured[str(rows)] = {}
            for stage in STAGES:
                command = [sys.executable, __file__, "--stage", stage, "--rows", str(rows)]
                command += ["--folder", tmp, "--seed", str(args.seed)]
                command += ["--threads", str(args.threads)]
                command += ["--chunk-months", str(args.chunk_months)]
                command += ["--score-batch", str(args.score_batch)]
                command += ["--train-engine", args.train_engine]
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                if done.returncode != 0:  # recorded (a stage killed for memory, say), not retried
                    print(f"{stage} of {rows:,} declarations failed:\n{done.stderr[-4000:]}")
                    measured[str(rows)][stage] = {
                        "path": paths[stage],
                        "failed": f"exit status {done.returncode}",
                        "stderr_tail": done.stderr[-1000:],
                    }
                    break
                figures = json.loads(done.stdout.strip().splitlines()[-1])
                measured[str(rows)][stage] = figures
                print(
                    f"{rows:>11,}  {stage:<9} {figures['wall_s']:8.1f} s wall "
                    f"{figures['cpu_s']:8.1f} s CPU  (I/O {figures['io_s']:5.1f} s)  "
                    f"peak {figures['peak_rss_gib']:6.2f} GiB  {figures['path']}",
                    flush=True,
                )
                # written after every stage: what was measured survives a later failure
                document = document_of(previous, measured, paths)
                RESULTS.parent.mkdir(parents=True, exist_ok=True)
                RESULTS.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")

    document = document_of(previous, measured, paths)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print_table(document)
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
