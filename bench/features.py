"""Benchmark of the feature builder, stage by stage, against fair floors, on simulated data.

For each size: one subprocess simulates the declarations and writes them to Parquet; a fresh
subprocess reads them and times, for each stage of the build, the project's code and a floor:
the same statistics computed by the simplest vectorised pandas/numpy code one would write
without the project (a sort and a merge on ids; `merge_asof` of per-key cumulated outcomes;
grouped monthly medians carried forward; grouped counts, `duplicated` and binary searches over
(importer, time); one DataFrame of float32 columns). A floor leaves out what makes the build
safe to serve (one as-of function for training and serving, ties at one instant, shrinkage
towards parent levels, support fallbacks), so a ratio says what that costs, stage by stage.
Each side is timed ``--repeats`` times, alternating, and the best is kept (both under the same
load of a shared machine). Prints the per-stage ratios and writes bench/results/features.json.
Times are CPU seconds of the process (time.process_time); peak memory is ru_maxrss of the
whole process (each size in its own process).

    .venv/bin/python bench/features.py --rows 1000000 4000000
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results" / "features.json"
STAGES = ("prepare", "profiles", "valuation", "history", "assembly")
FLOORS = {
    "prepare": "stable sort by lodging time; outcomes merged on declaration_id",
    "profiles": "per key: grouped cumcount of declarations, merge_asof of cumulated outcomes",
    "valuation": "grouped monthly median and MAD per level, cumulated and merged a month on",
    "history": "grouped window counts by binary search, first lodging, duplicated pairs",
    "assembly": "one DataFrame of float32 columns and the raw categories",
}


def simulate_to(rows: int, folder: Path, seed: int) -> None:
    """Simulate ``rows`` declarations (entities scaled with the size) into ``folder``."""
    from pipeline.simulate import scaled_config, simulate

    config = scaled_config(rows)
    data = simulate(config, seed)
    data.declarations.to_parquet(folder / "declarations.parquet")
    data.outcomes.to_parquet(folder / "outcomes.parquet")


def _cpu(work: Callable[[], Any]) -> tuple[float, Any]:
    start = time.process_time()
    out = work()
    return time.process_time() - start, out


# --------------------------------------------------------------------------------------------
# The project's stages (the steps of `build_feature_set`, timed one by one)


def project_stages(
    declarations: pd.DataFrame, outcomes: pd.DataFrame, config: Any
) -> dict[str, Callable[[], Any]]:
    """One callable per stage; each runs the build's own code for that stage."""
    from pipeline.features import build, history, profiles, valuation

    state: dict[str, Any] = {}

    def prepare() -> None:
        decl = build.sorted_declarations(declarations)
        out, row = build.aligned_outcomes(outcomes, decl, config)
        state.update(decl=decl, out=out, row=row)

    def profile_stage() -> dict[str, np.ndarray]:
        decl = state["decl"]
        events = profiles.outcome_events(decl["lodged_at"], state["out"], state["row"], config)
        stream = build.stream_totals(decl, len(decl), events, config)
        day = decl["lodged_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        return build._profile_block(
            stream,
            day / profiles.NS_PER_DAY,
            config,
        )

    def assembly() -> None:
        decl = state["decl"]
        features = {"profiles": state["profiles"], "valuation": state["valuation"]}
        features["history"] = state["history"]
        categories, floats = build._raw(decl, build.raw_levels(decl, config))
        features["raw"] = floats
        features["calendar"] = build._calendar(decl)
        build._assemble(features, categories, config)
        build.label_columns(decl, state["out"], state["row"])

    return {
        "prepare": prepare,
        "profiles": lambda: state.__setitem__("profiles", profile_stage()),
        "valuation": lambda: state.__setitem__(
            "valuation", build._float32(valuation.valuation_features(state["decl"], config))
        ),
        "history": lambda: state.__setitem__(
            "history", build._float32(history.history_features(state["decl"], config))
        ),
        "assembly": assembly,
    }


# --------------------------------------------------------------------------------------------
# Floors: the same statistics, written the simplest vectorised way


def _floor_prepare(
    declarations: pd.DataFrame, outcomes: pd.DataFrame, config: Any
) -> dict[str, Any]:
    """The declarations in lodging order with their row, and the labelled ones with the time
    their outcome is known."""
    decl = declarations.sort_values("lodged_at", kind="stable", ignore_index=True)
    decl["row"] = np.arange(len(decl))
    labelled = decl[["declaration_id", "row", "lodged_at"]].merge(
        outcomes, on="declaration_id", how="inner"
    )
    labelled["known_at"] = labelled["result_at"].fillna(
        labelled["lodged_at"] + pd.Timedelta(days=config.missing_result_delay_days)
    ) + pd.Timedelta(days=config.reporting_delay_days)
    return {"decl": decl, "labelled": labelled}


def _floor_profiles(
    decl: pd.DataFrame, labelled: pd.DataFrame, keys: list[tuple[str, ...]], config: Any
) -> dict[str, np.ndarray]:
    """The profiles' statistics: cumulative sums per key, joined as of each lodging time."""
    controls = labelled.loc[labelled["inspected"]].copy()
    controls["controls"] = 1.0
    controls["hits"] = controls["hit"].astype(float)
    revenue = controls["revenue_recovered"]
    controls["revenue"] = revenue.fillna(0.0)
    controls["revenue_known"] = revenue.notna().astype(float)
    controls["last_hit"] = np.where(controls["hit"], controls["lodged_at"].astype("int64"), 0)
    controls = controls.sort_values("known_at", kind="stable")
    sums = ["controls", "hits", "revenue", "revenue_known"]
    out: dict[str, np.ndarray] = {}
    left = decl[["lodged_at", "row"]]
    for key in keys:
        names = list(key)
        key_frame = decl[names]
        events = controls[["known_at", "row", *sums, "last_hit"]].join(key_frame, on="row")
        if names:
            grouped = events.groupby(names, observed=True, sort=False)
            events[sums] = grouped[sums].cumsum()
            events["last_hit"] = grouped["last_hit"].cummax()
        else:
            events[sums] = events[sums].cumsum()
            events["last_hit"] = events["last_hit"].cummax()
        queries = left.join(key_frame)
        joined = pd.merge_asof(
            queries,
            events.drop(columns="row"),
            left_on="lodged_at",
            right_on="known_at",
            by=names or None,
            allow_exact_matches=False,
        )
        declared = (
            decl.groupby(names, observed=True, sort=False).cumcount()
            if names
            else pd.Series(np.arange(len(decl)))
        )
        name = "_x_".join(names) or "global"
        hits, tried = joined["hits"].to_numpy(), joined["controls"].to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"{name}_hit_rate"] = (hits / (tried + config.prior_strength)).astype("f4")
            out[f"{name}_revenue_per_control"] = (
                joined["revenue"].to_numpy() / joined["revenue_known"].to_numpy()
            ).astype("f4")
        out[f"{name}_declarations"] = declared.to_numpy("f4")
        out[f"{name}_controls"] = tried.astype("f4")
        out[f"{name}_hits"] = hits.astype("f4")
        out[f"{name}_last_hit"] = joined["last_hit"].to_numpy("f4")
    return out


def _floor_valuation(decl: pd.DataFrame) -> dict[str, np.ndarray]:
    """The valuation statistics: running monthly medians per goods and origin, the duty gap."""
    month = decl["lodged_at"].to_numpy().astype("datetime64[M]").astype(np.int64)
    frame = pd.DataFrame(
        {
            "hs6": decl["hs6"],
            "hs4": decl["hs4"],
            "origin_country": decl["origin_country"],
            "month": month,
            "kg": np.log(decl["declared_value"] / decl["net_mass_kg"]),
            "unit": np.log(decl["declared_value"] / decl["quantity"]),
            "duty_rate": decl["duty_rate"],
        }
    )
    out: dict[str, np.ndarray] = {}
    for level in (["hs6", "origin_country"], ["hs6"], ["hs4"]):
        by = [*level, "month"]
        grouped = frame.groupby(by, observed=True)
        monthly = grouped[["kg", "unit"]].median().add_suffix("_median")
        for kind in ("kg", "unit"):
            count = grouped[kind].count()
            mad = (frame[kind] - grouped[kind].transform("median")).abs()
            monthly[f"{kind}_mad"] = mad.groupby([frame[c] for c in by], observed=True).median()
            monthly[f"{kind}_count"] = count
            monthly[f"{kind}_weighted"] = count * monthly[f"{kind}_median"]
        running = monthly.groupby(level=list(range(len(level))), observed=True).cumsum()
        running = running.reset_index().sort_values("month", kind="stable")
        queries = frame[by].assign(row=np.arange(len(frame))).sort_values("month")
        joined = pd.merge_asof(  # months that ended before the declaration's month
            queries, running, on="month", by=level, allow_exact_matches=False
        ).sort_values("row")
        name = "_x_".join(level)
        for kind in ("kg", "unit"):
            reference = (joined[f"{kind}_weighted"] / joined[f"{kind}_count"]).to_numpy()
            out[f"{name}_{kind}_ratio"] = (frame[kind].to_numpy() - reference).astype("f4")
    lowest = frame.groupby(["hs4", "month"], observed=True)["duty_rate"].min()
    lowest = lowest.groupby(level=0, observed=True).cummin().rename("lowest").reset_index()
    lowest = lowest.sort_values("month", kind="stable")
    queries = frame[["hs4", "month"]].assign(row=np.arange(len(frame)))
    gap = pd.merge_asof(
        queries, lowest, on="month", by="hs4", allow_exact_matches=False
    ).sort_values("row")
    out["duty_rate_gap_hs4"] = (frame["duty_rate"] - gap["lowest"].to_numpy()).to_numpy("f4")
    return out


def _floor_history(decl: pd.DataFrame, config: Any) -> dict[str, np.ndarray]:
    """The importers' history: declarations in windows, tenure, distinct partners."""
    importer = decl["importer"].cat.codes.to_numpy().astype(np.int64)
    times = decl["lodged_at"].to_numpy().astype(np.int64)
    out: dict[str, np.ndarray] = {}
    keyed = importer * 2**40 + (times - times.min()) // 10**6  # (importer, ms) sortable
    ordered = np.sort(keyed)
    now = np.searchsorted(ordered, keyed, side="left")
    for days in config.history_windows_days:
        window = keyed - days * 86_400_000
        out[f"importer_declarations_{days}d"] = (
            now - np.searchsorted(ordered, window, side="left")
        ).astype("f4")
    first = decl.groupby("importer", observed=True)["lodged_at"].transform("min")
    out["importer_tenure_days"] = (
        (decl["lodged_at"] - first).dt.total_seconds().to_numpy() / 86_400
    ).astype("f4")
    for partner in ("hs6", "origin_country", "seller", "declarant"):
        new = ~decl.duplicated(["importer", partner])
        out[f"importer_distinct_{partner}"] = (
            new.groupby(decl["importer"], observed=True).cumsum().to_numpy("f4")
        )
        if partner == "seller":
            out["importer_seller_new"] = new.to_numpy("f4")
    return out


def _floor_assembly(state: dict[str, Any]) -> None:
    """The columns of every stage in one frame."""
    decl = state["decl"]
    columns = {**state["profiles"], **state["valuation"], **state["history"]}
    for name in ("office", "transport_mode", "origin_country", "departure_country", "hs2"):
        columns[f"raw_{name}"] = decl[name].array
    pd.DataFrame(columns)


def floor_stages(
    declarations: pd.DataFrame, outcomes: pd.DataFrame, config: Any
) -> dict[str, Callable[[], Any]]:
    """One callable per stage computing that stage's statistics the plain pandas way."""
    from pipeline.features.profiles import profile_keys

    state: dict[str, Any] = {}
    keys = [(), *profile_keys(config)]
    return {
        "prepare": lambda: state.update(_floor_prepare(declarations, outcomes, config)),
        "profiles": lambda: state.__setitem__(
            "profiles", _floor_profiles(state["decl"], state["labelled"], keys, config)
        ),
        "valuation": lambda: state.__setitem__("valuation", _floor_valuation(state["decl"])),
        "history": lambda: state.__setitem__("history", _floor_history(state["decl"], config)),
        "assembly": lambda: _floor_assembly(state),
    }


def measure(folder: Path, repeats: int) -> dict[str, Any]:
    """Time each stage of the build and of its floor (best of ``repeats``, alternating)."""
    from pipeline.config import FeaturesConfig
    from pipeline.features.build import build_feature_set

    declarations = pd.read_parquet(folder / "declarations.parquet")
    outcomes = pd.read_parquet(folder / "outcomes.parquet")
    config = FeaturesConfig()
    best: dict[str, dict[str, float]] = {"build": {}, "floor": {}}
    whole = np.inf
    for _ in range(repeats):
        wall = time.perf_counter()
        seconds, feature_set = _cpu(lambda: build_feature_set(declarations, outcomes, config))
        whole_wall = time.perf_counter() - wall
        whole = min(whole, seconds)
        features = feature_set.X.shape[1]
        del feature_set
        for side, stages in (
            ("build", project_stages(declarations, outcomes, config)),
            ("floor", floor_stages(declarations, outcomes, config)),
        ):
            for stage in STAGES:
                seconds, _ = _cpu(stages[stage])
                best[side][stage] = min(best[side].get(stage, np.inf), seconds)
    per_stage = {
        stage: {
            "build_s": best["build"][stage],
            "floor_s": best["floor"][stage],
            "ratio_to_floor": best["build"][stage] / best["floor"][stage],
            "floor": FLOORS[stage],
        }
        for stage in STAGES
    }
    floor_total = sum(best["floor"].values())
    return {
        "rows": len(declarations),
        "outcomes": len(outcomes),
        "features": features,
        "build_s": whole,
        "build_wall_s": whole_wall,
        "floor_s": floor_total,
        "ratio_to_floor": whole / floor_total,
        "declarations_per_s": len(declarations) / whole,
        "stages": per_stage,
        "repeats": repeats,
        "peak_memory_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--_simulate", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._simulate:
        simulate_to(args.rows[0], args._simulate, args.seed)
        return
    if args._measure:
        print(json.dumps(measure(args._measure, args.repeats)))
        return

    runs = []
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            me = [sys.executable, __file__, "--rows", str(rows), "--seed", str(args.seed)]
            subprocess.run([*me, "--_simulate", str(folder)], check=True)
            out = subprocess.run(
                [*me, "--repeats", str(args.repeats), "--_measure", str(folder)],
                check=True,
                capture_output=True,
                text=True,
            )
        run = json.loads(out.stdout.strip().splitlines()[-1])
        runs.append(run)
        print(
            f"{run['rows']:>10,} declarations  {run['features']} features  "
            f"build {run['build_s']:.2f} s CPU  {run['declarations_per_s']:,.0f} declarations/s  "
            f"floors {run['floor_s']:.2f} s  ratio {run['ratio_to_floor']:.2f}  "
            f"peak memory {run['peak_memory_gb']:.2f} GB"
        )
        for stage, cost in run["stages"].items():
            print(
                f"    {stage:<10} build {cost['build_s']:6.2f} s  floor {cost['floor_s']:6.2f} s"
                f"  ratio {cost['ratio_to_floor']:5.2f}  (floor: {cost['floor']})"
            )
    result: dict[str, object] = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "shared_machine": "2 cores shared with other work; both sides timed alternately",
        "runs": runs,
        "targets": {"ratio_to_floor": 3.0, "scaling_4x": 4.5, "peak_memory_gb_at_4m": 6.0},
    }
    if len(runs) >= 2:
        small, large = runs[0], runs[-1]
        scaling = large["build_s"] / small["build_s"]
        result["scaling"] = {"rows": [small["rows"], large["rows"]], "time_ratio": scaling}
        print(f"time at {large['rows']:,} / time at {small['rows']:,}: {scaling:.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
