"""Honesty benchmark: do the export's expected hit rates hold on the declarations that follow?

    .venv/bin/python bench/honest.py [--rows 200000] [--seeds 48 ... 53] [--set key=value ...]
        [--no-walk-forward]

The default seeds are held out: seeds 42-47 chose `train.anchor_days` (a year against two).

For each seed: simulate, build the features, train (no tuning unless asked), export the
thresholds and score the held-out incoming days (`serve.score_last_days`, never seen by
training), as `targeting run` does, in a folder of its own (outputs/bench-honest-<seed>, its own
MLflow SQLite store). Then, per channel: the export's expected hit rate (its reference window)
against what the incoming declarations really held: the simulator's fraud rate times its
detection rate (the chance that a control of a fraud finds it), i.e. the hit rate a control of
every declaration of the channel would have had; and whether that truth lies inside the
export's 95 % interval of the expected hit rate and its 95 % range for the hit rate of a stretch
like the reference window (`serve.thresholds.hit_rate_bounds`: the level's uncertainty from the
random stratum, plus the luck of that many controls). Also per seed: how the deployed model's
probabilities of the incoming declarations spread (the share exactly 0 or 1, the largest share
one value holds), and the walk-forward replay of the deployment procedure at past cut-offs
(`targeting evaluate --walk-forward`): the deployed procedure's precision at 5 % against the
evaluated model's on the same stretches, and the channels' realised hit rate against each
cut-off's export range, both against the simulator's truth. Writes bench/results/honest.json.
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
WALK_RATE = 0.05  # the walk-forward's precision is read at this control rate


def channel_table(config: Config, document: dict[str, Any]) -> pd.DataFrame:
    """Per channel: expected hit rate of the export (`document`) against the incoming days'
    truth."""
    paths = config.paths
    # the channels' KPIs leave the random draw out (kpis.random): so does their truth
    entries = {**document["kpis"]["channels"], "random": document["kpis"].get("random", {})}
    expected = {name: entry.get("expected_hit_rate") for name, entry in entries.items()}
    columns = ["declaration_id", "channel", "probability", "selection_reason"]
    scored = pd.read_parquet(paths.scored, columns=columns)
    drawn = scored["selection_reason"].astype("string").eq("random").fillna(False)
    scored["channel"] = scored["channel"].astype(object).where(~drawn, "random")
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
    for key, column in (("expected_hit_rate_interval", "interval"), ("hit_rate_range", "range")):
        bounds = {n: e.get(key) or [float("nan")] * 2 for n, e in entries.items()}
        table[f"{column}_low"] = pd.Series({n: b[0] for n, b in bounds.items()})
        table[f"{column}_high"] = pd.Series({n: b[1] for n, b in bounds.items()})
        table[f"truth_in_{column}"] = (table[f"{column}_low"] <= table["true_hit_rate"]) & (
            table["true_hit_rate"] <= table[f"{column}_high"]
        )
    order = [c for c in (*config.serve.channels, "green", "random") if c in table.index]
    return table.reindex(order)


def coverage(frame: pd.DataFrame) -> dict[str, Any]:
    """How often the export's figure held: within 15 % of the truth, and the truth inside the
    interval of the expected hit rate and inside the range, over every seed and channel."""
    within = (frame["expected_over_true"] - 1.0).abs() <= 0.15
    cells = len(frame)
    return {
        "cells": cells,
        "within_15_percent": int(within.sum()),
        "truth_in_interval": int(frame["truth_in_interval"].sum()),
        "truth_in_range": int(frame["truth_in_range"].sum()),
        "median_range_width_over_expected": float(
            ((frame["range_high"] - frame["range_low"]) / frame["expected_hit_rate"]).median()
        ),
    }


def one_seed(
    seed: int, rows: int, overrides: list[str], walk_forward: bool = True
) -> dict[str, Any]:
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
    document = json.loads(config.paths.thresholds.read_text(encoding="utf-8"))
    table = channel_table(config, document)
    walk = walk_record(config, str(trained.figures["run_id"])) if walk_forward else None
    return {
        "seed": seed,
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
        "level_basis": document["kpis"]["hit_rate_uncertainty"],
        "channels": table.reset_index().to_dict(orient="records"),
        "incoming_probability": probability_ties(config),
        "walk_forward": walk,
    }


def probability_ties(config: Config) -> dict[str, float]:
    """How the deployed model's probabilities of the incoming declarations spread: the share
    exactly 0 or 1, the largest share held by one value, the number of distinct values."""
    p = pd.read_parquet(config.paths.scored, columns=["probability"])["probability"].dropna()
    shares = p.value_counts(normalize=True)
    return {
        "declarations": len(p),
        "exactly_0_or_1": float(((p == 0) | (p == 1)).mean()),
        "largest_share_of_one_value": float(shares.iloc[0]) if len(shares) else 0.0,
        "distinct_values": int(p.nunique()),
    }


def walk_record(config: Config, run_id: str) -> dict[str, Any]:
    """The walk-forward replay of the deployment (`targeting evaluate --walk-forward`): per
    stretch, precision at 5 % of the deployed procedure and of the evaluated model against the
    truth, and each channel's realised hit rate against the export's range."""
    from pipeline.evaluate.walkforward import DEPLOYED, EVALUATED
    from pipeline.jobs import catalog
    from pipeline.jobs.evaluate import replay_deployment

    model = catalog.load_run(config, run_id, "evaluated").model
    walk = replay_deployment(
        config, model, catalog.feature_set(config), catalog.validated_inputs(config)
    )
    inside, cells = walk.coverage()
    at = walk.metrics.loc[
        (walk.metrics["metric"] == "precision") & (walk.metrics["rate"] == WALK_RATE)
    ].set_index("model")
    return {
        "population": walk.population,
        "stretches": walk.stretches.to_dict(orient="records"),
        "channels": walk.channels.to_dict(orient="records"),
        "channels_inside_range": inside,
        "channel_cells": cells,
        f"precision_at_{WALK_RATE:g}": {
            name: at.loc[name, ["value", "low", "high"]].astype(float).to_dict()
            for name in (DEPLOYED, EVALUATED, f"{DEPLOYED} - {EVALUATED}")
            if name in at.index
        },
    }


def walk_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Over the seeds: the walk-forward's channel cells inside the range, the stretches where
    the deployed procedure's precision at 5 % reached the evaluated model's, and the worst
    probability ties of the incoming declarations."""
    walks = [r["walk_forward"] for r in records if r.get("walk_forward")]
    key = f"precision_at_{WALK_RATE:g}"
    ties = [r["incoming_probability"] for r in records]
    return {
        "walk_channel_cells": sum(w["channel_cells"] for w in walks),
        "walk_channels_inside_range": sum(w["channels_inside_range"] for w in walks),
        "walk_deployed_minus_evaluated": [
            w[key].get("deployed procedure - evaluated model") for w in walks
        ],
        "incoming_exactly_0_or_1_max": max((t["exactly_0_or_1"] for t in ties), default=None),
        "incoming_largest_share_of_one_value_max": max(
            (t["largest_share_of_one_value"] for t in ties), default=None
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[48, 49, 50, 51, 52, 53])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", default=str(RESULTS / "honest.json"))
    parser.add_argument(
        "--no-walk-forward", dest="walk_forward", action="store_false", help="skip the replay"
    )
    args = parser.parse_args()
    records = [one_seed(seed, args.rows, args.overrides, args.walk_forward) for seed in args.seeds]
    frame = pd.DataFrame([{"seed": r["seed"], **c} for r in records for c in r["channels"]])
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    summary = {**coverage(frame), **walk_summary(records)}
    print(json.dumps(summary, indent=2))
    Path(args.out).write_text(
        json.dumps(
            {
                "command": "bench/honest.py " + " ".join(sys.argv[1:]),
                "overrides": args.overrides,
                "summary": summary,
                "records": records,
            },
            indent=2,
            default=str,
        ),
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
