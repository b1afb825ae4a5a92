"""GPU against CPU, in one script: boosting (`train.device=cuda`) and exact TreeSHAP reason codes.

    .venv/bin/python bench/gpu.py [--rows 200000] [--rounds 200] [--explain-rows 20000]

On the FeatureSet of `--rows` simulated declarations (the project's simulator and feature
builder), the labelled rows of its training window: `xgboost.train` with the default parameters
for `--rounds` rounds on the CPU (`--threads` threads) and on the GPU (`device=cuda`), then
`pred_contribs` (exact TreeSHAP, as the scorer's reason codes) and `approx_contribs` of
`--explain-rows` rows with each device, wall seconds, best of `--repeat`. The GPU's TreeSHAP
values are checked against the CPU's. Nothing in the project needs a GPU: without one (no CUDA
build of XGBoost, or no device) the script says so, records why in bench/results/gpu.json and
exits 0.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import Config, SimulateConfig  # noqa: E402
from pipeline.features.build import build_feature_set  # noqa: E402
from pipeline.plan import make_windows  # noqa: E402
from pipeline.simulate import simulate  # noqa: E402
from pipeline.train.engine import split_params  # noqa: E402
from pipeline.train.rows import window_rows  # noqa: E402
from pipeline.train.split import rows_in  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "gpu.json"


def gpu_missing() -> str | None:
    """Why XGBoost cannot boost on a GPU here, or None when it can."""
    if not xgb.build_info().get("USE_CUDA", False):
        return "this XGBoost build has no CUDA support"
    probe = xgb.DMatrix(np.arange(8, dtype=np.float32).reshape(4, 2), label=[0, 1, 0, 1])
    # Without a device XGBoost warns and boosts on the CPU: the warning is the answer.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            xgb.train({"device": "cuda", "tree_method": "hist"}, probe, num_boost_round=1)
        except xgb.core.XGBoostError as error:
            return f"no usable CUDA device: {str(error).splitlines()[0]}"
    fallback = [str(w.message) for w in caught if "GPU" in str(w.message)]
    if fallback:
        return f"no usable CUDA device ({fallback[0].split('WARNING: ')[-1].strip()})"
    return None


def best_of(repeat: int, action: Callable[[], Any]) -> tuple[float, Any]:
    """Fastest wall time of `repeat` runs, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - started)
    return min(times), result


def _arguments() -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--explain-rows", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    result: dict[str, Any] = {
        "machine": platform.platform(),
        "xgboost": xgb.__version__,
        "rows": args.rows,
        "rounds": args.rounds,
    }
    missing = gpu_missing()
    if missing is not None:
        print(f"skipped: {missing}; nothing in the project needs a GPU")
        result["skipped"] = missing
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        return

    config = Config.model_validate({"seed": args.seed, "compute": {"threads": args.threads}})
    data = simulate(SimulateConfig(rows=args.rows), args.seed)
    fs = build_feature_set(data.declarations, data.outcomes, config.features)
    windows = make_windows(fs.lodged_at, config.split)
    train = window_rows(fs, rows_in(fs, windows.train, windows.valid.start))
    params, _ = split_params(dict(config.train.params), config)
    matrix = xgb.QuantileDMatrix(train.X, label=train.y, enable_categorical=True)
    explain = xgb.DMatrix(
        fs.X.iloc[: args.explain_rows], enable_categorical=True, nthread=args.threads
    )
    boosters: dict[str, xgb.Booster] = {}
    figures: dict[str, dict[str, float]] = {}
    contributions: dict[str, np.ndarray] = {}
    for device in ("cpu", "cuda"):
        device_params = {**params, "device": device, "nthread": args.threads}

        def boost(p: dict[str, Any] = device_params) -> xgb.Booster:
            return xgb.train(p, matrix, args.rounds)

        seconds, booster = best_of(args.repeat, boost)
        boosters[device] = booster

        def explained(approximate: bool, b: xgb.Booster = booster) -> np.ndarray:
            return np.asarray(b.predict(explain, pred_contribs=True, approx_contribs=approximate))

        exact, values = best_of(args.repeat, lambda: explained(False))
        approx, _ = best_of(args.repeat, lambda: explained(True))
        contributions[device] = values
        figures[device] = {"train_s": seconds, "treeshap_s": exact, "approximate_s": approx}
    # The CPU booster explained on the GPU: the same model, so the values must agree.
    boosters["cpu"].set_param({"device": "cuda"})
    on_gpu = np.asarray(boosters["cpu"].predict(explain, pred_contribs=True))
    agree = float(np.max(np.abs(on_gpu - contributions["cpu"])))
    result.update(
        {
            "train_rows": len(train),
            "explain_rows": explain.num_row(),
            "threads": args.threads,
            "devices": figures,
            "train_speedup_x": figures["cpu"]["train_s"] / figures["cuda"]["train_s"],
            "treeshap_speedup_x": figures["cpu"]["treeshap_s"] / figures["cuda"]["treeshap_s"],
            "treeshap_gpu_vs_cpu_max_abs_diff": agree,
        }
    )
    for device, cost in figures.items():
        print(
            f"{device:>4}: train {cost['train_s']:.2f} s ({args.rounds} rounds, {len(train):,} "
            f"rows), TreeSHAP {cost['treeshap_s']:.2f} s, approximate {cost['approximate_s']:.2f}"
            f" s ({explain.num_row():,} rows)"
        )
    print(
        f"GPU over CPU: training {result['train_speedup_x']:.1f}x, TreeSHAP "
        f"{result['treeshap_speedup_x']:.1f}x; TreeSHAP GPU vs CPU max |diff| {agree:.2e}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
