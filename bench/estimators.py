"""Selection-bias estimators against the simulator's ground truth, over several seeds.

    .venv/bin/python bench/estimators.py [--rows 100000] [--seeds 42 43 44] [--set key=value ...]

For each seed: simulate (in memory), build the point-in-time features, fit the model with the
config's parameters (no tuning) and rank every declaration of the test window (the one ranking
path, `serve.rank_by`). Then estimate the model's precision and recall at each control rate from
the random stratum only (`pipeline.evaluate.estimators`: self-normalised IPW with Clopper-Pearson
intervals, doubly robust with the model's probability) and compare with the truth: precision =
the controlled declarations' fraud rate x the detection rate (the hit rate a control would have),
recall = their share of the window's frauds. Every cell is estimated (min_rows=1) and its stratum
count is kept, so the thin cells the report would call "too few to judge" show what they are worth.
Writes bench/results/estimators.json and prints bias and interval coverage per estimator.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import load  # noqa: E402
from pipeline.evaluate.estimators import Stratum, estimate_at_rates  # noqa: E402
from pipeline.features.build import build_feature_set  # noqa: E402
from pipeline.jobs.train import windows_of  # noqa: E402
from pipeline.plan import RankingPolicy  # noqa: E402
from pipeline.serve.ranking import rank, top_mask  # noqa: E402
from pipeline.simulate import simulate  # noqa: E402
from pipeline.train.fit import fit  # noqa: E402
from pipeline.train.propensity import recorded_propensity  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def one_seed(seed: int, rows: int, overrides: list[str]) -> pd.DataFrame:
    config = load(
        ROOT / "configs" / "default.yaml",
        [f"seed={seed}", f"simulate.rows={rows}", "tune.n_trials=0", *overrides],
    )
    data = simulate(config.simulate, seed)
    fs = build_feature_set(data.declarations, data.outcomes, config.features)
    windows = windows_of(config, fs)
    model = fit(fs, windows, dict(config.train.params), config).model
    test = fs.subset(windows.test.contains(fs.lodged_at))
    ranked = rank(model, test.X, RankingPolicy(config.serve.rank_by, config.serve.revenue_weight))
    priority, probability = ranked.priority, ranked.probability
    propensity = recorded_propensity(test)
    stratum = test.labelled.to_numpy() & np.isfinite(propensity)
    rates = [float(r) for r in config.evaluate.rates]
    table = estimate_at_rates(
        priority,
        Stratum(stratum, test.y.to_numpy(dtype=float), np.where(stratum, propensity, 1.0)),
        rates,
        probability=probability,
        min_rows=1,
    )
    truth = data.ground_truth.set_index("declaration_id").reindex(
        test.declaration_id.astype(str).to_numpy()
    )
    fraud = truth["fraud"].fillna(False).to_numpy(dtype=float)
    true_values = {}
    for rate in rates:
        chosen = top_mask(priority, rate)
        true_values[(rate, "precision")] = fraud[chosen].mean() * config.simulate.detection_rate
        true_values[(rate, "recall")] = fraud[chosen].sum() / fraud.sum()
    table["truth"] = [
        true_values[(r, m)] for r, m in zip(table["rate"], table["metric"], strict=True)
    ]
    table["covered"] = (table["low"] <= table["truth"]) & (table["truth"] <= table["high"])
    table["error"] = table["value"] - table["truth"]
    return table.assign(seed=seed, stratum_in_window=int(stratum.sum()))


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per estimator, metric and rate: mean truth, mean estimate, bias, RMSE, coverage."""
    grouped = frame.groupby(["estimator", "metric", "rate"], sort=True)
    out = grouped.agg(
        truth=("truth", "mean"),
        estimate=("value", "mean"),
        bias=("error", "mean"),
        rmse=("error", lambda e: float(np.sqrt(np.nanmean(np.square(e))))),
        covered=("covered", "sum"),
        seeds=("seed", "nunique"),
        stratum_rows=("stratum_rows", "mean"),
    )
    return out.reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", default=str(RESULTS / "estimators.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    frame = pd.concat([one_seed(s, args.rows, args.overrides) for s in args.seeds])
    table = summary(frame)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    record: dict[str, Any] = {
        "command": "bench/estimators.py " + " ".join(sys.argv[1:]),
        "rows": args.rows,
        "seeds": args.seeds,
        "overrides": args.overrides,
        "seconds": round(time.perf_counter() - started, 1),
        "summary": table.to_dict(orient="records"),
        "cells": frame.to_dict(orient="records"),
    }
    Path(args.out).write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
