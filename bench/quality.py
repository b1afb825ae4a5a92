"""Quality benchmark: `targeting run` on a config, its test-window figures against the baselines.

    .venv/bin/python bench/quality.py [--config configs/default.yaml] [--set key=value ...]

Runs the whole chain (`pipeline.jobs.run.run`) in a folder of its own (outputs/bench-<name>, its
own MLflow SQLite store, so a user's runs are untouched) and records, for the test window:
precision, recall and revenue at each control rate with their bootstrap intervals, for the model
and every baseline, on all declarations (ground truth; simulator) or on the inspected ones (KCS,
where every row was inspected), ROC-AUC and average precision, the two policies at office
capacity, what the incoming stretch really held per channel (simulator), and each stage's
seconds. Writes bench/results/quality_<name>.json, which `tools/readme_figures.py` turns into the
README's quality table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import load  # noqa: E402
from pipeline.jobs.run import run  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    probe = load(ROOT / args.config, args.overrides)
    folder = ROOT / "outputs" / f"bench-{probe.name}"
    overrides = [
        f"output_dir={folder}",
        f"tracking.uri=sqlite:///{folder / 'mlflow.db'}",
        *args.overrides,
    ]
    config = load(ROOT / args.config, overrides)
    started = time.perf_counter()
    summary = run(config)
    seconds = time.perf_counter() - started

    metrics = pd.read_csv(config.paths.report.parent / "metrics.csv")
    kept = metrics  # the paired differences too: the README states whether an edge is real
    records: list[dict[str, Any]] = json.loads(kept.to_json(orient="records"))
    stages = {
        name: figures.get("seconds")
        for name, figures in summary.figures.items()
        if isinstance(figures, dict) and "seconds" in figures
    }
    result = {
        "command": " ".join(["bench/quality.py", "--config", args.config, *args.overrides]),
        "config": args.config,
        "name": config.name,
        "seed": config.seed,
        "rows": summary.figures.get("features", {}).get("rows"),
        "labelled_rows": summary.figures.get("features", {}).get("labelled_rows"),
        "windows": summary.figures.get("train", {}).get("windows"),
        "rates": [float(r) for r in config.evaluate.rates],
        "metrics": records,
        "incoming_truth": summary.figures.get("incoming_truth"),
        "families": summary.figures.get("train", {}).get("families"),
        "refit": summary.figures.get("train", {}).get("refit"),
        "warnings": summary.figures.get("train", {}).get("warnings"),
        "stages_seconds": stages,
        "seconds": round(seconds, 1),
        "machine": {"cpus": _cpus(), "python": platform.python_version()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"quality_{config.name}.json"
    path.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    print(f"{config.name}: {seconds:.0f} s -> {path}")


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
