"""Simulator throughput and peak memory.

    .venv/bin/python bench/simulate.py [--rows 1000000] [--seed 42] [--repeat 1]

Each run happens in a fresh child process, so the peak resident memory
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`) is the simulation's own, not a previous run's;
the child also reports its resident memory after the imports (the baseline). Prints rows/s and
peak memory, and records them per row count in bench/results/simulate.json (earlier row counts
are kept, so a 1M and a 10M run sit side by side).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "simulate.json"


def _peak_gib() -> float:
    """Peak resident memory of this process in GiB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def child(rows: int, seed: int) -> dict[str, Any]:
    """Run one simulation in this (fresh) process and measure it."""
    sys.path.insert(0, str(ROOT))
    from pipeline.config import SimulateConfig
    from pipeline.simulate import simulate, summary

    baseline = _peak_gib()
    started = time.perf_counter()
    data = simulate(SimulateConfig(rows=rows), seed)
    seconds = time.perf_counter() - started
    figures = summary(data)
    frame_gib = (
        sum(
            getattr(data, t).memory_usage(deep=True).sum()
            for t in ("declarations", "outcomes", "ground_truth")
        )
        / 2**30
    )
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "peak_rss_gib": round(_peak_gib(), 3),
        "baseline_rss_gib": round(baseline, 3),
        "frames_gib": round(float(frame_gib), 3),
        "fraud_rate": round(figures["fraud_rate"], 4),
        "inspection_rate": round(figures["inspection_rate"], 4),
        "hit_rate": round(figures["hit_rate"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=1, help="runs; the fastest is kept")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.rows, args.seed)))
        return

    runs = []
    for _ in range(args.repeat):
        command = [sys.executable, __file__, "--child", "--rows", str(args.rows)]
        command += ["--seed", str(args.seed)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"simulation of {args.rows:,} rows failed:\n{done.stderr}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["seconds"])
    best["peak_rss_gib"] = max(r["peak_rss_gib"] for r in runs)
    print(
        f"simulate {best['rows']:,} rows: {best['seconds']:.1f} s, {best['rows_per_s']:,} rows/s, "
        f"peak RSS {best['peak_rss_gib']:.2f} GiB (after imports {best['baseline_rss_gib']:.2f} "
        f"GiB; frames {best['frames_gib']:.2f} GiB)"
    )
    print(
        f"  fraud rate {best['fraud_rate']:.2%}, inspection rate {best['inspection_rate']:.2%}, "
        f"hit rate {best['hit_rate']:.2%}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    recorded = previous.get("runs", {})
    recorded[str(best["rows"])] = {
        **best,
        "repeat": args.repeat,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    document = {
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
        "runs": dict(sorted(recorded.items(), key=lambda item: int(item[0]))),
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
