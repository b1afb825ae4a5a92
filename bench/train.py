"""Training benchmark: the train job against bare boosting of every booster it trains, and
trials per minute of the study on matrices quantised once per window against plain ones.

    .venv/bin/python bench/train.py [--rows 200000] [--trials 12] [--threads 2] [--device cpu]

On one FeatureSet of `--rows` simulated declarations (the project's simulator and feature
builder; a synthetic set from tests/helpers/train.py when those are not importable):
- overhead (default parameters, and learning_rate 0.02 for a longer boosting):
  `jobs.train.train_feature_set` with fixed parameters (tune.n_trials = 0: windows, imbalance,
  boosting with early stopping, calibration, revenue model, metrics, MLflow logging and
  registration; the data fingerprint recorded by the features job, as in a project) over the
  bare `xgboost.train` of every booster the job trains (the targeting model; when the data has
  revenue, the revenue model; when some inspected rows have no recorded selection probability,
  the selection model of the selection correction) with the same parameters and early stopping
  on the same, already built, matrices (`overhead_x_targeting_and_revenue`: over the first two
  only, as measured before). Target: at most 1.3x. Threads capped at `--threads` as the CLI caps
  them before a job (`compute.cap_threads`). The tracking store exists before the timed runs
  (a project's does); best of `--repeat` runs, the two sides alternating under the same load;
  `--clock cpu` times both sides in CPU seconds of the process (with `--threads 1`), which
  other people's load on a shared machine distorts far less than wall seconds.
- trials per minute of the default study (2 prequential folds, pruning as configured), same
  seed, on the tuner's matrices (one QuantileDMatrix per training window; the validation rows
  in a plain DMatrix, which XGBoost predicts faster every round) and on plain DMatrix per fold
  as before issue 16; the trials must agree. With `--compare-pruning`, also the study without
  pruning and what pruning saves. The tuning throughput of issue 27 (parallel workers on the KCS
  folds) is bench/tune.py's.
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

import numpy as np
import optuna
import xgboost as xgb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pipeline import tracking  # noqa: E402
from pipeline.compute import cap_threads  # noqa: E402
from pipeline.config import Config  # noqa: E402
from pipeline.features.featureset import FeatureSet, record_fingerprint  # noqa: E402
from pipeline.jobs.train import train_feature_set, windows_of  # noqa: E402
from pipeline.timeaxis import Window  # noqa: E402
from pipeline.train import tune  # noqa: E402
from pipeline.train.engine import category_order, dmatrix, split_params  # noqa: E402
from pipeline.train.fit import fit_rows, level_rule, window_masks  # noqa: E402
from pipeline.train.propensity import (  # noqa: E402
    SELECTION_ROUNDS,
    needs_selection_model,
    selection_matrix,
    selection_params,
)
from pipeline.train.rebalance import rebalance  # noqa: E402
from pipeline.train.revenue import has_revenue, revenue_params  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "train.json"


def feature_set(rows: int, seed: int) -> tuple[FeatureSet, str]:
    """The simulator's declarations through the feature builder, else the tests' synthetic set."""
    try:
        from pipeline.config import FeaturesConfig, SimulateConfig
        from pipeline.features.build import build_feature_set
        from pipeline.simulate import simulate

        data = simulate(SimulateConfig(rows=rows), seed)
        built = build_feature_set(
            data.declarations, data.outcomes, FeaturesConfig(reporting_delay_days=2)
        )
        return built, "simulate"
    except ImportError:
        from helpers.train import feature_set as synthetic

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
            "compute": {"threads": args.threads},
            # the family choice and the refit boost further models of their own: the job is
            # compared on the boosters the bare side trains (the evaluated model, its revenue)
            "train": {
                "device": args.device,
                "params": params,
                "select_families": False,
                "refit": False,
            },
            "tracking": {"uri": f"sqlite:///{folder}/mlflow.db", "experiment": "bench"},
        }
    )


def revenue_boosting(
    train: Any, valid: Any, config: Config
) -> tuple[dict[str, Any], xgb.DMatrix, xgb.DMatrix | None] | None:
    """The revenue model's parameters and matrices as `revenue.fit_revenue_model` builds them (the
    job's tree count is checked against the bare one, so a drift between the two shows)."""
    on_train = (train.y == 1) & np.isfinite(train.revenue)
    on_valid = (valid.y == 1) & np.isfinite(valid.revenue)
    if not config.train.revenue_model or on_train.sum() < 30:
        return None
    params = revenue_params(config)
    dtrain, dvalid = (
        xgb.DMatrix(
            rows.X.loc[mask], label=np.clip(rows.revenue[mask], 0, None), enable_categorical=True
        )
        for rows, mask in ((train, on_train), (valid, on_valid))
    )
    # Fewer than 10 validation hits: the job boosts 100 rounds without early stopping.
    return params, dtrain, dvalid if on_valid.sum() >= 10 else None


def boost_revenue(
    revenue: tuple[dict[str, Any], xgb.DMatrix, xgb.DMatrix | None] | None, config: Config
) -> int:
    """The bare revenue boosting on `revenue_boosting`'s matrices; its tree count (0: none)."""
    if revenue is None:
        return 0
    params, rtrain, rvalid = revenue
    if rvalid is None:
        xgb.train(params, rtrain, num_boost_round=100)
        return 100
    booster = xgb.train(
        params,
        rtrain,
        num_boost_round=config.train.num_boost_round,
        evals=[(rvalid, "valid")],
        early_stopping_rounds=config.train.early_stopping_rounds,
        verbose_eval=False,
    )
    return int(booster.best_iteration) + 1


def selection_boosting(
    fs: FeatureSet, masks: dict[str, np.ndarray], window: Window, imbalance: str, config: Config
) -> xgb.DMatrix | None:
    """The selection model's matrix where the job fits one (`propensity.weigh_by_selection`:
    a selection correction, and inspected rows without a recorded probability), else None."""
    corrects = config.train.selection_correction != "none" or imbalance == "inverse_propensity"
    if corrects and needs_selection_model(fs, masks, window):
        return selection_matrix(fs, window)
    return None


def overhead(
    fs: FeatureSet, folder: Path, args: argparse.Namespace, learning_rate: float
) -> dict[str, Any]:
    """Fixed-parameter job against the bare boosting of each of its boosters."""
    config = bench_config(folder, args, learning_rate)
    # as `targeting train` runs it: the CLI caps XGBoost's global thread count (a DMatrix is
    # built with it) and the OpenMP and BLAS pools (scikit-learn's calibration) at
    # compute.threads before any job (cli._run_job); uncapped, they ran on every core
    cap_threads(config)
    tracking.configure(config)  # the store exists in a real project: not part of the timing
    # The features job wrote the file and its fingerprint: train reads it, as in a project.
    fs.to_parquet(config.paths.features, config.paths.manifest)
    record_fingerprint(config.paths.features, config.paths.manifest)
    windows = windows_of(config, fs)
    params, imbalance = split_params(dict(config.train.params), config)
    # the job's rows: rare category levels pooled, rows weighed by the selection correction
    masks = window_masks(fs, windows)
    order = category_order(dict(config.train.params), config)
    rule = level_rule(config.train.min_category_count, order, config)
    rows = fit_rows(fs, masks, rule, imbalance, windows.valid, config)
    train, valid = rows.rows["train"], rows.rows["valid"]
    fitted, extra = rebalance(train, imbalance, config.seed)
    dtrain, dvalid = dmatrix(fitted), dmatrix(valid, weighted=False)
    revenue = revenue_boosting(train, valid, config) if has_revenue(fs) else None
    selection = selection_boosting(fs, masks, windows.valid, imbalance, config)
    # --clock cpu: this process's CPU seconds, far steadier than wall seconds under others' load
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    bare, bare_revenue, bare_selection, job = [], [], [], []
    best, revenue_trees = -1, 0
    for _ in range(args.repeat):
        started = clock()
        booster = xgb.train(
            {**params, **extra},
            dtrain,
            num_boost_round=config.train.num_boost_round,
            evals=[(dvalid, "valid")],
            early_stopping_rounds=config.train.early_stopping_rounds,
            verbose_eval=False,
        )
        bare.append(clock() - started)
        best = int(booster.best_iteration)
        started = clock()
        revenue_trees = boost_revenue(revenue, config)
        bare_revenue.append(clock() - started)
        started = clock()
        if selection is not None:
            xgb.train(selection_params(config), selection, num_boost_round=SELECTION_ROUNDS)
        bare_selection.append(clock() - started)
        started = clock()
        result = train_feature_set(config, fs, progress=False, source=config.paths.features)
        job.append(clock() - started)
        assert result.figures["best_iteration"] == best, "job and bare boosting disagree"
    bare_total = min(b + r + s for b, r, s in zip(bare, bare_revenue, bare_selection, strict=True))
    two = min(b + r for b, r in zip(bare, bare_revenue, strict=True))
    note = next((line for line in result.lines if "revenue model" in line), "")
    if revenue is not None:
        assert f"{revenue_trees} trees" in note, f"bare revenue boosting disagrees: {note}"
    return {
        "learning_rate": learning_rate,
        "job_timings": result.figures["timings"],
        "train_rows": len(train),
        "valid_rows": len(valid),
        "best_iteration": best,
        "revenue_trees": revenue_trees,
        "revenue_note": note,
        "bare_xgboost_train_s": min(bare),
        "bare_revenue_train_s": min(bare_revenue),
        "selection_trees": SELECTION_ROUNDS if selection is not None else 0,
        "bare_selection_train_s": min(bare_selection),
        "bare_every_booster_s": bare_total,
        "job_s": min(job),
        "overhead_x": min(job) / bare_total,
        # as measured before the selection model counted among the job's boosters
        "overhead_x_targeting_and_revenue": min(job) / two,
        "target_x": 1.3,
        "clock": "CPU seconds (job_timings: wall)" if args.clock == "cpu" else "wall seconds",
    }


class PlainMatrices(tune.Objective):
    """The tuner's objective as before issue 16: a plain DMatrix per training fold too."""

    plain: dict[tuple[int, str, str], tuple[xgb.DMatrix, dict[str, Any]]]

    def _train_matrix(
        self, fold: int, imbalance: str, order: str = "native"
    ) -> tuple[Any, dict[str, Any]]:
        self.plain = getattr(self, "plain", {})
        if (fold, imbalance, order) not in self.plain:
            rows, extra = rebalance(self.fold(fold, order)[0], imbalance, self.config.seed)
            self.plain[(fold, imbalance, order)] = (dmatrix(rows), extra)
        return self.plain[(fold, imbalance, order)]


def study_figures(
    fs: FeatureSet,
    folder: Path,
    args: argparse.Namespace,
    pruning: bool = True,
    objective: type[tune.Objective] = tune.Objective,
) -> dict[str, Any]:
    """Run one study from scratch (matrices built inside the timing); wall time, trials."""
    config = bench_config(folder, args, n_trials=args.trials, pruning=pruning)
    windows = windows_of(config, fs)
    started = time.perf_counter()
    study = tune.load_study(config)
    study.optimize(objective(fs, windows, config), n_trials=args.trials)
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
        "values": [t.value for t in study.trials],
        "trajectory": trajectory,
    }


def time_to_reach(trajectory: list[tuple[float, float]], target: float) -> float:
    """Seconds until the running best first reached `target`."""
    return next(seconds for seconds, best in trajectory if best >= target - 1e-12)


def arguments() -> argparse.Namespace:
    """The command line: data size, study size, threads, repeats and what to compare."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--compare-pruning", action="store_true")
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[0.1, 0.02])
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    return parser.parse_args()


def built_feature_set(args: argparse.Namespace) -> tuple[FeatureSet, str]:
    """The benchmark's feature set and where it came from, its size printed."""
    started = time.perf_counter()
    fs, source = feature_set(args.rows, args.seed)
    build_s = time.perf_counter() - started
    print(
        f"feature set: {len(fs):,} declarations ({source}), {fs.X.shape[1]} features, "
        f"{int(fs.y.notna().sum()):,} labelled, built in {build_s:.1f} s"
    )
    return fs, source


def print_overhead(cost: dict[str, Any]) -> None:
    """One learning rate's job against bare boosting."""
    print(
        f"overhead at learning_rate {cost['learning_rate']}: job {cost['job_s']:.2f} s "
        f"vs bare boosting {cost['bare_every_booster_s']:.2f} s (targeting model "
        f"{cost['bare_xgboost_train_s']:.2f} s, {cost['best_iteration'] + 1} trees; "
        f"revenue model {cost['bare_revenue_train_s']:.2f} s, {cost['revenue_trees']} "
        f"trees; selection model {cost['bare_selection_train_s']:.2f} s, "
        f"{cost['selection_trees']} trees) on {cost['train_rows']:,} training rows: "
        f"{cost['overhead_x']:.2f}x (target <= 1.3x; over the first two boosters only "
        f"{cost['overhead_x_targeting_and_revenue']:.2f}x); inside the job: "
        + ", ".join(f"{k} {v:.2f}" for k, v in cost["job_timings"].items())
    )


def measured(fs: FeatureSet, args: argparse.Namespace) -> dict[str, Any]:
    """Every timed run in a scratch folder: the job's overhead per learning rate, the study on
    plain and on quantised matrices and, with --compare-pruning, the study without pruning."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        costs = [
            overhead(fs, folder / f"overhead-{rate}", args, rate) for rate in args.learning_rates
        ]
        for cost in costs:
            print_overhead(cost)
        plain = study_figures(fs, folder / "plain", args, objective=PlainMatrices)
        shared = study_figures(fs, folder / "shared", args)
        full = (
            study_figures(fs, folder / "full", args, pruning=False)
            if args.compare_pruning
            else None
        )
    return {"costs": costs, "plain": plain, "shared": shared, "full": full}


def print_studies(plain: dict[str, Any], shared: dict[str, Any]) -> tuple[float, bool]:
    """The two studies' trials per minute; returns the speed-up and whether the trials agree."""
    same = plain["values"] == shared["values"]
    speedup = shared["trials_per_minute"] / plain["trials_per_minute"]
    for name, figures in (("plain DMatrix", plain), ("quantised once per window", shared)):
        print(
            f"study on {name}: {figures['trials']} trials ({figures['pruned']} pruned) in "
            f"{figures['wall_s']:.1f} s = {figures['trials_per_minute']:.1f} trials/min, "
            f"best {figures['best_value']:.4f}"
        )
    print(f"trials/min quantised over plain: {speedup:.2f}x (target 2x); same trials: {same}")
    return speedup, same


def pruning_saves(shared: dict[str, Any], full: dict[str, Any] | None) -> dict[str, Any] | None:
    """Seconds to reach the worse of the two best values with and without pruning, printed."""
    if full is None:
        return None
    target = min(shared["best_value"], full["best_value"])
    reach_pruned = time_to_reach(shared["trajectory"], target)
    reach_full = time_to_reach(full["trajectory"], target)
    print(
        f"time to reach {target:.4f}: {reach_pruned:.1f} s with pruning, {reach_full:.1f} s "
        f"without (whole study saves {full['wall_s'] - shared['wall_s']:.1f} s)"
    )
    return {
        "target_value": target,
        "seconds_to_target_with": reach_pruned,
        "seconds_to_target_without": reach_full,
        "saved_s": reach_full - reach_pruned,
    }


def kept(figures: dict[str, Any]) -> dict[str, Any]:
    """A study's figures without its per-trial lists."""
    return {k: v for k, v in figures.items() if k not in ("trajectory", "values")}


def main() -> None:
    args = arguments()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fs, source = built_feature_set(args)
    runs = measured(fs, args)
    plain, shared, full = runs["plain"], runs["shared"], runs["full"]
    speedup, same = print_studies(plain, shared)
    results = {
        "rows": len(fs),
        "source": source,
        "features": int(fs.X.shape[1]),
        "labelled": int(fs.y.notna().sum()),
        "threads": args.threads,
        "clock": args.clock,
        "device": args.device,
        "xgboost": xgb.__version__,
        "machine": platform.platform(),
        "overhead": runs["costs"],
        "study_plain_matrices": kept(plain),
        "study_quantised": kept(shared),
        "study_speedup_x": speedup,
        "study_same_trials": same,
        "study_target_x": 2.0,
        "study_no_pruning": kept(full) if full is not None else None,
        "pruning": pruning_saves(shared, full),
        "shared_machine": "2 cores shared with other work; both sides measured in this run",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
