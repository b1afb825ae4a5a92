"""Backtest speed: 52 weekly steps, monthly retraining, 500,000 simulated declarations.

    .venv/bin/python bench/backtest.py [--rows 500000] [--weeks 52] [--policies random_10]

Simulates `--rows` declarations over the warm-up (180 days) plus `--weeks` weeks, so every
declaration is replayed, then runs `backtest.replay.run_backtest` with the named policies
(default: the historical replay and model + 10 % random, retrained every 4 steps with the
default booster parameters). Prints the total and its breakdown (simulation, features, training,
scoring, selection) and writes bench/results/backtest.json. Target: <= 600 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.backtest.replay import run_backtest  # noqa: E402
from pipeline.backtest.retrain import PHASES  # noqa: E402
from pipeline.config import PolicyConfig, load  # noqa: E402
from pipeline.simulate import simulate  # noqa: E402


def _arguments() -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--warmup-days", type=int, default=180)
    parser.add_argument("--policies", nargs="+", default=["historical", "random_10"])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "backtest.json")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[42],
        help="simulator and policy seeds; timings are the first seed's, summaries every seed's",
    )
    return parser.parse_args()


def main() -> None:
    """Run the benchmark and write its JSON."""
    args = _arguments()

    days = args.warmup_days + 7 * args.weeks
    config = load(
        ROOT / "configs" / "default.yaml",
        [
            f"simulate.rows={args.rows}",
            f"simulate.days={days}",
            f"backtest.weeks={args.weeks}",
            f"backtest.warmup_days={args.warmup_days}",
        ],
    )
    known = {p.name: p for p in config.backtest.policies}
    policies = [known.get(name) or PolicyConfig(name=name) for name in args.policies]
    config.backtest.policies = policies

    per_seed: dict[str, Any] = {}
    for seed in args.seeds[1:]:
        config.seed = seed
        data = simulate(config.simulate, seed)
        extra = run_backtest(data.declarations, data.outcomes, data.ground_truth, config)
        per_seed[str(seed)] = json.loads(extra.summary.to_json(orient="records", date_format="iso"))
        print(f"  seed {seed} done", flush=True)
    config.seed = args.seeds[0]

    started = time.perf_counter()
    data = simulate(config.simulate, config.seed)
    simulate_s = time.perf_counter() - started

    tick = time.perf_counter()
    result = run_backtest(
        data.declarations,
        data.outcomes,
        data.ground_truth,
        config,
        progress=lambda line: print(f"  {time.perf_counter() - tick:7.1f} s  {line}", flush=True),
    )
    backtest_s = time.perf_counter() - tick

    phases = {phase: 0.0 for phase in PHASES}
    for seconds in result.timings.values():
        for phase in PHASES:
            phases[phase] += seconds.get(phase, 0.0)
    other = backtest_s - sum(phases.values())
    figures: dict[str, Any] = {
        "rows": len(data.declarations),
        "days": days,
        "steps": int(result.kpis["step"].nunique()),
        "retrain_every_steps": config.backtest.retrain_every_steps,
        "policies": args.policies,
        "simulate_s": round(simulate_s, 1),
        "backtest_s": round(backtest_s, 1),
        "total_s": round(simulate_s + backtest_s, 1),
        "breakdown_s": {k.removesuffix("_s"): round(v, 1) for k, v in phases.items()}
        | {"other": round(other, 1)},
        "per_policy_s": {
            name: {k: round(v, 1) for k, v in seconds.items()}
            for name, seconds in result.timings.items()
        },
        "target_s": 600,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        },
        "summary": json.loads(result.summary.to_json(orient="records", date_format="iso")),
        "seeds": args.seeds,
        "summary_by_seed": {
            str(args.seeds[0]): json.loads(
                result.summary.to_json(orient="records", date_format="iso")
            ),
            **per_seed,
        },
    }
    print(json.dumps({k: v for k, v in figures.items() if k != "summary"}, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
