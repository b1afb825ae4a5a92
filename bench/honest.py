"""Honesty benchmark: do the export's expected hit rates hold on the declarations that follow?

    .venv/bin/python bench/honest.py [--rows 200000] [--seeds 42 43 44] [--set key=value ...]

For each seed: simulate, build the features, train (no tuning unless asked), export the
thresholds and score the held-out incoming days (`serve.score_last_days`, never seen by
training), as `targeting run` does, in a folder of its own (outputs/bench-honest-<seed>, its own
MLflow SQLite store). Then, per channel: the export's expected hit rate (its reference window)
against what the incoming declarations really held: the simulator's fraud rate times its
detection rate (the chance that a control of a fraud finds it), i.e. the hit rate a control of
every declaration of the channel would have had. Writes bench/results/honest.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import Config, load  # noqa: E402
from pipeline.jobs.export import export  # noqa: E402
from pipeline.jobs.features import features  # noqa: E402
from pipeline.jobs.run import incoming_declarations  # noqa: E402
from pipeline.jobs.score import score  # noqa: E402
from pipeline.jobs.simulate import simulate  # noqa: E402
from pipeline.jobs.train import train  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def channel_table(config: Config) -> pd.DataFrame:
    """Per channel: expected hit rate of the export against the incoming days' truth."""
    paths = config.paths
    document = json.loads(paths.thresholds.read_text(encoding="utf-8"))
    expected = {
        name: entry["expected_hit_rate"] for name, entry in document["kpis"]["channels"].items()
    }
    scored = pd.read_parquet(paths.scored, columns=["declaration_id", "channel", "probability"])
    truth = pd.read_parquet(paths.ground_truth, columns=["declaration_id", "fraud"])
    merged = scored.merge(truth, on="declaration_id", how="left", validate="one_to_one")
    merged["fraud"] = merged["fraud"].fillna(False).astype(float)
    table = merged.groupby("channel", sort=False).agg(
        declarations=("declaration_id", "size"),
        frauds=("fraud", "sum"),
        scored_probability=("probability", "mean"),
    )
    table["true_hit_rate"] = (
        table["frauds"] / table["declarations"] * config.simulate.detection_rate
    )
    table["expected_hit_rate"] = pd.Series(expected)
    table["expected_over_true"] = table["expected_hit_rate"] / table["true_hit_rate"]
    order = [c for c in (*config.serve.channels, "green") if c in table.index]
    return table.reindex(order)


def one_seed(seed: int, rows: int, overrides: list[str]) -> dict[str, Any]:
    folder = ROOT / "outputs" / f"bench-honest-{seed}"
    config = load(
        ROOT / "configs" / "default.yaml",
        [
            f"seed={seed}",
            f"simulate.rows={rows}",
            "tune.n_trials=0",
            f"output_dir={folder}",
            f"tracking.uri=sqlite:///{folder}/mlflow.db",
            *overrides,
        ],
    )
    started = time.perf_counter()
    simulate(config)
    features(config)
    trained = train(config)
    export(config, run_id=str(trained.figures["run_id"]))
    incoming, snapshot = incoming_declarations(config)
    score(config, input=incoming, snapshot=str(snapshot))
    table = channel_table(config)
    return {
        "seed": seed,
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
        "channels": table.reset_index().to_dict(orient="records"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", default=str(RESULTS / "honest.json"))
    args = parser.parse_args()
    records = [one_seed(seed, args.rows, args.overrides) for seed in args.seeds]
    frame = pd.DataFrame([{"seed": r["seed"], **c} for r in records for c in r["channels"]])
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    Path(args.out).write_text(
        json.dumps(
            {
                "command": "bench/honest.py " + " ".join(sys.argv[1:]),
                "overrides": args.overrides,
                "records": records,
            },
            indent=2,
            default=str,
        ),
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
