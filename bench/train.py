"""Training benchmark: job overhead over bare XGBoost, trials per minute, what pruning saves.

    .venv/bin/python bench/train.py [--rows 200000] [--trials 12] [--threads 2] [--device cpu]

On one FeatureSet of `--rows` simulated declarations (the project's simulator and feature
builder; a synthetic set from tests/helpers_train.py when those are not importable):
- overhead (default parameters, and learning_rate 0.02 for a longer boosting):
  `jobs.train.train_feature_set` with fixed parameters (tune.n_trials = 0: windows,
  imbalance, boosting with early stopping, calibration, revenue model, metrics, MLflow logging and
  registration) over a bare `xgboost.train` with the same parameters and early stopping on the
  same, already built, DMatrix. Target: at most 1.3x. The tracking store is created before the
  timed runs (a project's store exists already); best of `--repeat` runs.
- trials per minute of the study (2 prequential folds), with and without pruning, same seed;
- pruning saving: wall time each study needed to first reach the best value both reached.
Prints the figures and writes bench/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import xgboost as xgb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pipeline.config import Config  # noqa: E402
from pipeline.features.featureset import FeatureSet  # noqa: E402
from pipeline.jobs.train import train_feature_set, windows_of  # noqa: E402
from pipeline.train import tracking  # noqa: E402
from pipeline.train.fit import dmatrix, split_params, window_rows  # noqa: E402
from pipeline.train.split import rows_in  # noqa: E402
from pipeline.train.tune import run_study  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "train.json"


def feature_set(rows: int, seed: int) -> tuple[FeatureSet, str]:
    """The simulator's declarations through the feature builder, else the tests' synthetic set."""
    try:
        from pipeline.config import FeaturesConfig, SimulateConfig
        from pipeline.features.build import build_feature_set
        from pipeline.ingest.simulate import simulate

        data = simulate(SimulateConfig(rows=rows), seed)
        built = build_feature_set(
            data.declarations, data.outcomes, FeaturesConfig(reporting_delay_days=2)
        )
        return built, "simulate"
    except ImportError:
        from helpers_train import feature_set as synthetic

        return synthetic(rows=rows, seed=seed, days=730), "synthetic"


def bench_config(
    folder: Path, args: argparse.Namespace, learning_rate: float = 0.1, **tune: Any
) -> Config:
    """The default experiment, tracked and stored under `folder`."""
    params = {**Config().train.params, "learning_rate": learning_rate}
    return Config.model_validate(
        {
            "seed": args.seed,
            "output_dir": str(folder / "out"),
            "tune": {"n_trials": 0, **tune},
            "train": {"n_jobs": args.threads, "device": args.device, "params": params},
            "tracking": {"uri": f"sqlite:///{folder}/mlflow.db", "experiment": "bench"},
        }
    )


def overhead(
    fs: FeatureSet, folder: Path, args: argparse.Namespace, learning_rate: float
) -> dict[str, Any]:
    """Fixed-parameter job against bare xgboost.train on the same matrices."""
    config = bench_config(folder, args, learning_rate)
    tracking.configure(config)  # the store exists in a real project: not part of the timing
    windows = windows_of(config, fs)
    params, _ = split_params(dict(config.train.params), config)
    train = window_rows(fs, rows_in(fs, windows.train, windows.valid.start))
    valid = window_rows(fs, rows_in(fs, windows.valid, windows.labels_known_by(windows.valid)))
    dtrain, dvalid = dmatrix(train, weighted=False), dmatrix(valid, weighted=False)
    bare, job = [], []
    best = -1
    for _ in range(args.repeat):
        started = time.perf_counter()
        booster = xgb.train(
            params,
            dtrain,
            num_boost_round=config.train.num_boost_round,
            evals=[(dvalid, "valid")],
            early_stopping_rounds=config.train.early_stopping_rounds,
            verbose_eval=False,
        )
        bare.append(time.perf_counter() - started)
        best = int(booster.best_iteration)
        started = time.perf_counter()
        result = train_feature_set(config, fs, progress=False)
        job.append(time.perf_counter() - started)
        assert result.figures["best_iteration"] == best, "job and bare boosting disagree"
    return {
        "learning_rate": learning_rate,
        "job_timings": result.figures["timings"],
        "train_rows": len(train),
        "valid_rows": len(valid),
        "best_iteration": best,
        "bare_xgboost_train_s": min(bare),
        "job_s": min(job),
        "overhead_x": min(job) / min(bare),
        "target_x": 1.3,
    }


def study_figures(
    fs: FeatureSet, folder: Path, args: argparse.Namespace, pruning: bool
) -> dict[str, Any]:
    """Run one study from scratch; its wall time and best-value trajectory."""
    config = bench_config(folder, args, n_trials=args.trials, pruning=pruning)
    windows = windows_of(config, fs)
    started = time.perf_counter()
    study = run_study(fs, windows, config)
    wall = time.perf_counter() - started
    first = min(t.datetime_start for t in study.trials if t.datetime_start)
    trajectory = []
    best = float("-inf")
    for trial in sorted(study.trials, key=lambda t: t.number):
        if trial.value is not None and trial.value > best:
            best = trial.value
        done = trial.datetime_complete or first
        trajectory.append(((done - first).total_seconds(), best))
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    return {
        "wall_s": wall,
        "trials": len(study.trials),
        "pruned": pruned,
        "trials_per_minute": len(study.trials) / wall * 60,
        "best_value": study.best_value,
        "trajectory": trajectory,
    }


def time_to_reach(trajectory: list[tuple[float, float]], target: float) -> float:
    """Seconds until the running best first reached `target`."""
    return next(seconds for seconds, best in trajectory if best >= target - 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    started = time.perf_counter()
    fs, source = feature_set(args.rows, args.seed)
    build_s = time.perf_counter() - started
    print(
        f"feature set: {len(fs):,} declarations ({source}), {fs.X.shape[1]} features, "
        f"{int(fs.y.notna().sum()):,} labelled, built in {build_s:.1f} s"
    )
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        costs = [overhead(fs, folder / f"overhead-{rate}", args, rate) for rate in (0.1, 0.02)]
        for cost in costs:
            print(
                f"overhead at learning_rate {cost['learning_rate']}: job {cost['job_s']:.2f} s vs "
                f"bare xgboost.train {cost['bare_xgboost_train_s']:.2f} s "
                f"on {cost['train_rows']:,} training rows ({cost['best_iteration'] + 1} trees): "
                f"{cost['overhead_x']:.2f}x (target <= 1.3x); inside the job: "
                + ", ".join(f"{k} {v:.2f}" for k, v in cost["job_timings"].items())
            )
        pruned = study_figures(fs, folder / "pruned", args, pruning=True)
        full = study_figures(fs, folder / "full", args, pruning=False)
    target = min(pruned["best_value"], full["best_value"])
    reach_pruned = time_to_reach(pruned["trajectory"], target)
    reach_full = time_to_reach(full["trajectory"], target)
    for name, figures in (("with pruning", pruned), ("without pruning", full)):
        print(
            f"study {name}: {figures['trials']} trials ({figures['pruned']} pruned) in "
            f"{figures['wall_s']:.1f} s = {figures['trials_per_minute']:.1f} trials/min, "
            f"best {figures['best_value']:.4f}"
        )
    print(
        f"time to reach {target:.4f}: {reach_pruned:.1f} s with pruning, {reach_full:.1f} s "
        f"without (saves {reach_full - reach_pruned:.1f} s; whole study saves "
        f"{full['wall_s'] - pruned['wall_s']:.1f} s)"
    )
    results = {
        "rows": len(fs),
        "source": source,
        "features": int(fs.X.shape[1]),
        "labelled": int(fs.y.notna().sum()),
        "threads": args.threads,
        "device": args.device,
        "xgboost": xgb.__version__,
        "machine": platform.platform(),
        "overhead": costs,
        "study_pruning": {k: v for k, v in pruned.items() if k != "trajectory"},
        "study_no_pruning": {k: v for k, v in full.items() if k != "trajectory"},
        "pruning": {
            "target_value": target,
            "seconds_to_target_with": reach_pruned,
            "seconds_to_target_without": reach_full,
            "saved_s": reach_full - reach_pruned,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
