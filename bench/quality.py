"""Quality benchmark: `targeting run` on a config, its test-window figures against the baselines.

    .venv/bin/python bench/quality.py [--config configs/default.yaml] [--set key=value ...]
    .venv/bin/python bench/quality.py ... --seeds 42 43 44

Runs the whole chain (`pipeline.jobs.run.run`) in a folder of its own (outputs/bench-<name>, its
own MLflow SQLite store, so a user's runs are untouched) and records, for the test window:
precision, recall and revenue at each control rate with their bootstrap intervals, for the model
and every baseline, on all declarations (ground truth; simulator) or on the inspected ones (KCS,
where every row was inspected), ROC-AUC and average precision, the two policies at office
capacity, what the incoming stretch really held per channel (simulator), the walk-forward
replay of the deployment procedure (`targeting evaluate --walk-forward`, on by default: the
deployed procedure against the evaluated model on past stretches, and each channel's realised
hit rate against the export's range), and each stage's seconds. Each reference learner is fitted
twice, side by side: at its conventional parameters and tuned with the model's budget
(`evaluate.tune_references`, turned on here; `--set evaluate.tune_references=false` turns it
off), so the model's edge cannot come from a tuning advantage alone. Writes
bench/results/quality_<name>.json, which `tools/readme.py` turns into the
README's quality table.

With two or more `--seeds`, the same run is repeated once per seed (the config's `seed` drives the
simulated data, the splits, the sampling and the learners' randomness; each seed in
outputs/bench-<name>-seed<seed>), and bench/results/quality_<name>_seeds.json records per seed the
model's differences from each reference learner and from the best one (both rankings, the
deployed one first; precision, recall and revenue at 5 %, average precision), each reference's
health, the feature-family effects measured out of sample (the report's ablation on the test
window; the selection's in-sample figures kept as a diagnostic) and which families were kept,
then their means over the seeds with a 95 % t-interval over the seeds, unadjusted for
multiplicity (each interval is 95 % on its own). One seed's
paired bootstrap says how sure that seed's test window is; only the spread over seeds says whether
the claim survives a different draw of the data. quality_<name>.json stays the single-seed detail.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import Config, load  # noqa: E402
from pipeline.evaluate.reference import NAMES, TUNED  # noqa: E402
from pipeline.jobs.run import run  # noqa: E402

RESULTS = ROOT / "bench" / "results"

# What the multi-seed summary compares: the reference learners the report trains, both rankings,
# the figures at this control rate and the threshold-free average precision.
REFERENCES = (*NAMES.values(), *TUNED.values())  # conventional, then tuned with the model's budget
TUNE_REFERENCES = "evaluate.tune_references=true"  # before the command's own --set: they win
RANKINGS = ("probability", "expected revenue")
RATE = 0.05
METRICS = ("precision", "recall", "revenue", "average_precision")
BEST = "best reference learner"
FAMILIES_MEASURED = "test window"  # out of sample: the frozen choice refitted without / with each


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="two or more: one run per seed and a summary over them (quality_<name>_seeds.json)",
    )
    args = parser.parse_args()
    seeds: list[int] = args.seeds or []
    if len(seeds) >= 2:
        over_seeds(args.config, args.overrides, seeds)
        return
    overrides = [*args.overrides, *(f"seed={s}" for s in seeds)]
    command = ["bench/quality.py", "--config", args.config, *_set(args.overrides)]
    if seeds:
        command += ["--seeds", str(seeds[0])]
    result, config = one_run(args.config, overrides, suffix="")
    result["command"] = " ".join(command)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"quality_{config.name}.json"
    path.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    print(f"{config.name}: {result['seconds']:.0f} s -> {path}")


def _set(overrides: list[str]) -> list[str]:
    return [part for o in overrides for part in ("--set", o)]


def settings(overrides: list[str]) -> list[str]:
    """The benchmark's own settings (the tuned reference learners on), then the command's
    `--set` overrides, which win."""
    return [TUNE_REFERENCES, *overrides]


def one_run(config_file: str, overrides: list[str], suffix: str) -> tuple[dict[str, Any], Config]:
    """One `targeting run` in outputs/bench-<name><suffix>; its figures and the config it used."""
    overrides = settings(overrides)
    probe = load(ROOT / config_file, overrides)
    folder = ROOT / "outputs" / f"bench-{probe.name}{suffix}"
    config = load(
        ROOT / config_file,
        [f"output_dir={folder}", f"tracking.uri=sqlite:///{folder / 'mlflow.db'}", *overrides],
    )
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
        "config": config_file,
        "name": config.name,
        "seed": config.seed,
        "rows": summary.figures.get("features", {}).get("rows"),
        "labelled_rows": summary.figures.get("features", {}).get("labelled_rows"),
        "windows": summary.figures.get("train", {}).get("windows"),
        "rates": [float(r) for r in config.evaluate.rates],
        "tune_references": config.evaluate.tune_references,
        "metrics": records,
        "incoming_truth": summary.figures.get("incoming_truth"),
        "families": summary.figures.get("train", {}).get("families"),
        "family_ablation": _csv_records(config.paths.report.parent / "family_ablation.csv"),
        "references": _csv_records(config.paths.report.parent / "references.csv"),
        "walk_forward": {
            "summary": json.loads(
                (config.paths.report.parent / "metrics.json").read_text(encoding="utf-8")
            ).get("walk_forward"),
            "metrics": _csv_records(config.paths.report.parent / "walk_forward_metrics.csv"),
            "channels": _csv_records(config.paths.report.parent / "walk_forward_channels.csv"),
        },
        "deployed_ranking": deployed_ranking(config.serve.rank_by, records),
        "refit": summary.figures.get("train", {}).get("refit"),
        "warnings": summary.figures.get("train", {}).get("warnings"),
        "stages_seconds": stages,
        "seconds": round(seconds, 1),
        "machine": {"cpus": _cpus(), "python": platform.python_version()},
    }
    return result, config


def _csv_records(path: Path) -> list[dict[str, Any]]:
    """A report table written by the evaluate job as records (none when it is absent or empty)."""
    if not path.exists() or path.stat().st_size <= 1:
        return []
    records: list[dict[str, Any]] = json.loads(pd.read_csv(path).to_json(orient="records"))
    return records


def deployed_ranking(rank_by: str, records: list[dict[str, Any]]) -> str:
    """The ranking the export deploys (`serve.rank_by`) in the words of RANKINGS; auto is
    expected revenue when the model has a revenue part (the report then ranks it that way)."""
    if rank_by == "auto":
        has_revenue = any(str(r["model"]) == "model by expected revenue" for r in records)
        return "expected revenue" if has_revenue else "probability"
    return {"expected_revenue": "expected revenue"}.get(rank_by, rank_by)


# --- several seeds ---------------------------------------------------------------------------


def over_seeds(config_file: str, overrides: list[str], seeds: list[int]) -> None:
    """One run per seed, each seed's differences and family effects, their means and intervals."""
    started = time.perf_counter()
    per_seed = []
    name = ""
    for seed in seeds:
        result, config = one_run(config_file, [*overrides, f"seed={seed}"], f"-seed{seed}")
        name = config.name
        per_seed.append(seed_record(result))
        print(f"  seed {seed}: {result['seconds']:.0f} s", flush=True)
    seconds = time.perf_counter() - started
    doc = {
        "command": " ".join(
            [
                "bench/quality.py",
                "--config",
                config_file,
                *_set(overrides),
                "--seeds",
                *map(str, seeds),
            ]
        ),
        "config": config_file,
        "name": name,
        "seeds": seeds,
        "rate": RATE,
        "interval": "95 % t-interval over the seeds: mean +- t(0.975, n-1) * sd / sqrt(n)",
        "multiplicity": "unadjusted: each interval is 95 % on its own, over many comparisons",
        "deployed_ranking": per_seed[0]["deployed_ranking"] if per_seed else None,
        "families_measured": FAMILIES_MEASURED,
        "per_seed": per_seed,
        "differences": summarise_differences(per_seed),
        "families": summarise_families(per_seed),
        "seconds": round(seconds, 1),
        "machine": {"cpus": _cpus(), "python": platform.python_version()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"quality_{name}_seeds.json"
    path.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
    print(f"{name}, seeds {' '.join(map(str, seeds))}: {seconds:.0f} s -> {path}")


def _population(records: list[dict[str, Any]]) -> str:
    populations = [str(r["population"]) for r in records]
    return next((p for p in populations if "ground truth" in p), populations[0])


def _row(
    records: list[dict[str, Any]], population: str, model: str, metric: str
) -> dict[str, Any] | None:
    """The record of `model`'s `metric` at RATE (average precision: at no rate)."""
    for r in records:
        if r["population"] != population or r["model"] != model or r["metric"] != metric:
            continue
        if metric == "average_precision" or (
            r["rate"] is not None and abs(float(r["rate"]) - RATE) < 1e-9
        ):
            return r
    return None


def _best(records: list[dict[str, Any]]) -> str | None:
    for r in records:
        name = str(r["model"])
        if name.startswith("model - ") and name.removeprefix("model - ") in REFERENCES:
            return name.removeprefix("model - ")
    return None


def seed_record(result: dict[str, Any]) -> dict[str, Any]:
    """One seed: the levels, the model's differences (paired interval where the report has one:
    against the best reference learner), the family effects and which families were kept."""
    records = result["metrics"]
    population = _population(records)
    best = _best(records)
    levels: dict[str, dict[str, float | None]] = {}
    differences = []
    for ranking in RANKINGS:
        for selection in ("model", *REFERENCES):
            name = f"{selection} by {ranking}"
            levels[name] = {
                m: (None if (row := _row(records, population, name, m)) is None else row["value"])
                for m in METRICS
            }
        for comparator in (BEST, *REFERENCES):
            learner = best if comparator == BEST else comparator
            for metric in METRICS:
                model = levels[f"model by {ranking}"][metric]
                other = None if learner is None else levels[f"{learner} by {ranking}"][metric]
                paired = (  # the report pairs the model with every healthy reference
                    _row(
                        records, population, f"model by {ranking} - {learner} by {ranking}", metric
                    )
                    if learner is not None
                    else None
                )
                value = (
                    paired["value"]
                    if paired is not None
                    else (None if model is None or other is None else model - other)
                )
                differences.append(
                    {
                        "ranking": ranking,
                        "comparator": comparator,
                        "learner": learner,
                        "metric": metric,
                        "value": value,
                        "low": None if paired is None else paired["low"],
                        "high": None if paired is None else paired["high"],
                    }
                )
    families = result.get("families") or {}
    return {
        "seed": result["seed"],
        "rows": result["rows"],
        "labelled_rows": result["labelled_rows"],
        "population": population,
        "deployed_ranking": result.get("deployed_ranking"),
        "best_reference": best,
        "references": result.get("references") or [],
        "levels": levels,
        "differences": differences,
        "families_kept": families.get("kept"),
        "family_effects": family_effects(result.get("family_ablation") or [], population),
        "family_effects_in_sample": [
            {k: e[k] for k in ("family", "features", "effect", "dropped")}
            for e in families.get("effects", [])
        ],
        "seconds": result["seconds"],
    }


def family_effects(ablation: list[dict[str, Any]], population: str) -> list[dict[str, Any]]:
    """Each family's out-of-sample effect (the report's family ablation on the test window) on
    `population`, else on the inspected declarations: effect, paired interval, dropped."""
    rows = [r for r in ablation if r["population"] == population] or [
        r for r in ablation if r["population"] == "inspected"
    ]
    return [
        {
            "family": r["family"],
            "features": r["features"],
            "effect": r["test AP it adds"],
            "low": r["low (95 %)"],
            "high": r["high (95 %)"],
            "dropped": r["in the model"] == "no",
        }
        for r in rows
    ]


def t_interval(values: list[float]) -> dict[str, Any]:
    """Mean, standard deviation and 95 % t-interval over the seeds (no interval below 2)."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n if n else None
    if n < 2 or mean is None:
        return {"n": n, "mean": mean, "sd": None, "low": None, "high": None, "t": None}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    t = float(stats.t.ppf(0.975, n - 1))
    half = t * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "low": mean - half, "high": mean + half, "t": t}


def _excluding_zero(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many seeds' own (paired bootstrap) interval lies above or below zero."""
    judged = [r for r in rows if r.get("low") is not None and r.get("high") is not None]
    return {
        "seeds_with_interval": len(judged),
        "seeds_above_zero": sum(float(r["low"]) > 0 for r in judged),
        "seeds_below_zero": sum(float(r["high"]) < 0 for r in judged),
    }


def summarise_differences(per_seed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each (ranking, comparator, metric) difference: per-seed values, mean and t-interval."""
    out = []
    for ranking in RANKINGS:
        for comparator in (BEST, *REFERENCES):
            for metric in METRICS:
                rows = [
                    next(
                        d
                        for d in s["differences"]
                        if (d["ranking"], d["comparator"], d["metric"])
                        == (ranking, comparator, metric)
                    )
                    for s in per_seed
                ]
                values = [float(r["value"]) for r in rows if r["value"] is not None]
                out.append(
                    {
                        "ranking": ranking,
                        "comparator": comparator,
                        "metric": metric,
                        "learners": [r["learner"] for r in rows],
                        "values": [r["value"] for r in rows],
                        **t_interval(values),
                        **_excluding_zero(rows),
                    }
                )
    return out


def summarise_families(per_seed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each feature family: its effect per seed, mean and t-interval, and how often kept."""
    names = [e["family"] for e in per_seed[0]["family_effects"]] if per_seed else []
    out = []
    for family in names:
        rows = [
            next((e for e in s["family_effects"] if e["family"] == family), None) for s in per_seed
        ]
        present = [r for r in rows if r is not None]
        out.append(
            {
                "family": family,
                "features": present[0]["features"] if present else None,
                "kept": sum(not r["dropped"] for r in present),
                "seeds": len(present),
                "values": [None if r is None else r["effect"] for r in rows],
                **t_interval([float(r["effect"]) for r in present]),
                **_excluding_zero(present),
            }
        )
    return out


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
