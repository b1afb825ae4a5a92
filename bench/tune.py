"""Tuning throughput: trials per minute of the study on a config's tuning folds, one worker
against the default (parallel workers on a journal file when the cores allow), same seed and
trial budget.

    .venv/bin/python bench/tune.py [--config configs/kcs.yaml] [--set k=v ...] [--trials 8]
        [--sides sequential default] [--name kcs] [--baseline-root DIR]

Reads the config's feature set (run `targeting features` with the same settings first; the tuning
uses every column, as `targeting tune` does), then runs one study from scratch per side in a
fresh storage under a temporary folder, the matrices built inside the timing (`run_study`, as the
train job calls it):
- ``sequential``: one process with every thread (`tune.workers=1`, the SQLite study file);
- ``default``: the config's own workers and storage (`tune.workers` unset: one worker per core
  the threads allow, on a journal file).
- ``baseline`` (with ``--baseline-root``, a checkout of an older commit, e.g. a `git worktree`
  of the commit before issue 27): the sequential side run by that checkout's pipeline, in a
  process of its own, on its own copy of the config file.
Prints trials per minute, the best validation value and each trial's value by trial number; the
ratio default over sequential and over the baseline (target: at least 2x, with the same best
value for the same trials) and the load average (1 minute) when each side starts and ends: the
machine is shared. Writes bench/results/tune_<name>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

BENCH_ROOT = Path(__file__).resolve().parent.parent
# --root: measure another checkout's pipeline (the baseline side runs this file so, in a process
# of its own); read before the pipeline is imported.
ROOT = Path(sys.argv[sys.argv.index("--root") + 1]) if "--root" in sys.argv else BENCH_ROOT
sys.path.insert(0, str(ROOT))

from pipeline.config import Config, load  # noqa: E402
from pipeline.jobs import catalog  # noqa: E402
from pipeline.jobs.train import windows_of  # noqa: E402
from pipeline.train import tune  # noqa: E402

RESULTS = BENCH_ROOT / "bench" / "results"
TARGET_X = 2.0  # issue 27: at least twice the trials per minute, the same best value


def side_config(config: Config, side: str, folder: Path, trials: int) -> Config:
    """The config of one side: its own storage under `folder`, `trials` trials."""
    side_cfg = config.model_copy(deep=True)
    side_cfg.tune.n_trials = trials
    side_cfg.tune.study_name = f"bench-{side}"
    if side == "sequential":
        side_cfg.tune.workers = 1
        side_cfg.tune.storage = f"sqlite:///{folder / 'sequential.db'}"
    else:
        side_cfg.tune.storage = str(folder / "default.journal")
    return side_cfg


def run_side(config: Config, side: str, folder: Path, trials: int) -> dict[str, Any]:
    """One study from scratch: wall seconds, trials per minute, values by trial number."""
    side_cfg = side_config(config, side, folder, trials)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    fs = catalog.feature_set(side_cfg)
    study = tune.run_study(fs, windows_of(side_cfg, fs), side_cfg)
    wall = time.perf_counter() - started
    finished = study.get_trials(deepcopy=False, states=tune.FINISHED)
    pruned = [t.number for t in finished if t.state == optuna.trial.TrialState.PRUNED]
    return {
        "side": side,
        # an older pipeline (--root) has no tuning_workers: its workers were tune.workers
        "workers": tune.tuning_workers(side_cfg, trials)
        if hasattr(tune, "tuning_workers")
        else side_cfg.tune.workers,
        "threads": side_cfg.compute.threads,
        "storage": tune.storage_url(side_cfg),
        "wall_s": wall,
        "trials": len(finished),
        "pruned": pruned,
        "trials_per_minute": len(finished) / wall * 60,
        "best_value": study.best_value,
        "best_trial": study.best_trial.number,
        "values": {t.number: t.value for t in sorted(finished, key=lambda t: t.number)},
        "trees": {t.number: t.user_attrs.get("trees") for t in finished},
        "load_1min": [load_before, os.getloadavg()[0]],
    }


def baseline_side(args: argparse.Namespace) -> dict[str, Any]:
    """The sequential side run by the checkout at ``--baseline-root`` (this file, in a process
    of its own, with that checkout's pipeline and config file)."""
    root = Path(args.baseline_root).resolve()
    command = [sys.executable, str(Path(__file__).resolve()), "--root", str(root)]
    command += ["--config", str(root / args.config), "--trials", str(args.trials)]
    command += [part for setting in args.settings for part in ("--set", setting)]
    command += ["--sides", "sequential", "--name", f"{args.name}-baseline", "--side-json"]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=True)
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["side"] = "baseline"
    figures["root"] = str(root)
    return figures


def report(figures: dict[str, Any]) -> None:
    """One side's line."""
    print(
        f"{figures['side']}: {figures['trials']} trials ({len(figures['pruned'])} pruned) with "
        f"{figures['workers']} worker(s) in {figures['wall_s']:.1f} s = "
        f"{figures['trials_per_minute']:.2f} trials/min, best {figures['best_value']:.4f} "
        f"(trial {figures['best_trial']}); load {figures['load_1min'][0]:.2f} -> "
        f"{figures['load_1min'][1]:.2f}",
        flush=True,
    )


def ratios(sides: list[dict[str, Any]]) -> dict[str, Any]:
    """The default side over the sequential one and over the baseline: trials per minute, and
    whether the best validation value is the same."""
    by_side = {figures["side"]: figures for figures in sides}
    out: dict[str, Any] = {}
    if "default" not in by_side:
        return out
    default = by_side["default"]
    for other in ("sequential", "baseline"):
        if other in by_side:
            speedup = default["trials_per_minute"] / by_side[other]["trials_per_minute"]
            same = default["best_value"] == by_side[other]["best_value"]
            out[f"speedup_over_{other}_x"] = speedup
            out[f"same_best_value_as_{other}"] = same
            print(
                f"trials/min default over {other}: {speedup:.2f}x (target {TARGET_X:g}x); "
                f"same best value: {same}"
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/kcs.yaml")
    parser.add_argument("--set", dest="settings", action="append", default=[])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--sides", nargs="+", default=["sequential", "default"])
    parser.add_argument("--name", default="kcs")
    parser.add_argument("--baseline-root", default=None)
    parser.add_argument("--root", default=None, help="(the baseline's own process)")
    parser.add_argument("--side-json", action="store_true", help="(the baseline's own process)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = load(args.config, args.settings)
    sides = []
    if args.baseline_root:
        sides.append(baseline_side(args))
        report(sides[-1])
    with tempfile.TemporaryDirectory() as scratch:
        for side in args.sides:
            sides.append(run_side(config, side, Path(scratch), args.trials))
            if args.side_json:
                print(json.dumps(sides[-1], default=str))
                return
            report(sides[-1])
    results: dict[str, Any] = {
        "config": args.config,
        "settings": args.settings,
        "trials": args.trials,
        "cpus": len(os.sched_getaffinity(0)),
        "machine": platform.platform(),
        "sides": sides,
        "target_x": TARGET_X,
        "shared_machine": "2 cores shared with other work; the load average of each side is kept",
        **ratios(sides),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"tune_{args.name}.json"
    out.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(f"written {out}")


if __name__ == "__main__":
    main()
