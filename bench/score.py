"""Scoring throughput against a bare `Booster.inplace_predict` on the same prepared matrix.

    .venv/bin/python bench/score.py [--rows 1000000] [--model pipeline] [--threads 2]

The model is the pipeline's (`--model pipeline`, default): `train.fit.fit` with the default
parameters on the FeatureSet of `--rows` simulated declarations (the project's simulator and
feature builder: its real features), with its revenue model, ranking by expected revenue as
`serve.rank_by=auto` does; the matrix scored is that FeatureSet. `--model synthetic` keeps the
older figure: a `--trees`-tree booster on a synthetic 62-column matrix, ranked by probability.
Measures, on the same feature matrix (best of `--repeat` runs, wall seconds):
- bare: `booster.inplace_predict(prepared, predict_type="margin")` on the already prepared matrix
  (the targeting booster only: the floor of any scoring);
- scores + channels: `Scorer.score_features` without reason codes (preparation, margin,
  calibration, expected revenue, random draw, rules, per-office/AEO cut-offs);
- + reasons (approximate / treeshap_red / treeshap): the same with reason codes for every
  controlled row by Saabas attributions (`approx_contribs`), exact TreeSHAP for red rows and
  Saabas for the others (the default), or exact TreeSHAP (`pred_contribs`) for all.
Targets: scores + channels >= 0.7x bare; with reason codes >= 0.3x bare. Also the share of the
CPU time of `pred_contribs` spent off the calling thread (0.5 with 2 threads sharing the work).
Also, with `--full-rows`, the full path from raw declarations (`Scorer.score`: validation, features
from the serving snapshot, scores, channels, approximate reasons) on a simulated stream.
Prints the figures and writes bench/results/score.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import FeaturesConfig, ServeConfig  # noqa: E402
from pipeline.plan import RankingPolicy, resolve_rank_by  # noqa: E402
from pipeline.serve.cutoffs import Provenance, compute_cutoffs, new_document  # noqa: E402
from pipeline.serve.model import Calibration, TargetingModel  # noqa: E402
from pipeline.serve.ranking import prepare, rank  # noqa: E402
from pipeline.serve.scorer import Scorer  # noqa: E402
from pipeline.serve.thresholds import Thresholds  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "score.json"


def synthetic(rows: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Declarations (id, office, AEO, importer, HS code), a feature matrix and labels."""
    rng = np.random.default_rng(seed)
    numeric = 56
    X = pd.DataFrame(
        rng.normal(size=(rows, numeric)).astype(np.float32),
        columns=[f"feature_{i:02d}" for i in range(numeric)],
    )
    X["unit_value_log_ratio_hs6_origin"] = rng.normal(0, 0.6, rows)
    X["importer_hit_rate"] = rng.beta(1, 20, rows)
    offices = np.array([f"OFF{i:02d}" for i in range(12)])
    office = offices[rng.integers(0, 12, rows)]
    X["office"] = pd.Categorical(office)
    X["origin_country"] = pd.Categorical(rng.integers(0, 60, rows).astype(str))
    X["hs2"] = pd.Categorical(rng.integers(1, 98, rows).astype(str))
    X["transport_mode"] = pd.Categorical(rng.choice(["sea", "air", "road", "rail", "post"], rows))
    logit = (
        -3.5
        - 2.0 * X["unit_value_log_ratio_hs6_origin"]
        + 8.0 * X["importer_hit_rate"]
        + 0.5 * X["feature_00"] * X["feature_01"]
        + (X["hs2"].cat.codes.to_numpy() % 7 == 0) * 0.8
    )
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(float)
    declarations = pd.DataFrame(
        {
            "declaration_id": pd.Series(np.arange(rows)).map("D{:010d}".format),
            "office": office,
            "aeo": rng.random(rows) < 0.06,
            "importer": rng.integers(0, 8000, rows).astype(str),
            "hs_code": rng.integers(10_000_000, 99_999_999, rows).astype(str),
        }
    )
    return declarations, X, y.to_numpy()


def train(X: pd.DataFrame, y: np.ndarray, trees: int, threads: int, seed: int) -> TargetingModel:
    """A booster of `trees` trees (depth 6) with an isotonic-style calibration."""
    sample = min(len(X), 200_000)
    matrix = xgb.DMatrix(X.iloc[:sample], y[:sample], enable_categorical=True)
    booster = xgb.train(
        {
            "objective": "binary:logistic",
            "max_depth": 6,
            "learning_rate": 0.1,
            "tree_method": "hist",
            "nthread": threads,
            "seed": seed,
        },
        matrix,
        num_boost_round=trees,
    )
    knots = np.linspace(0, 1, 21)
    return TargetingModel(
        booster=booster,
        calibration=Calibration("isotonic", list(knots), list(np.round(knots, 1))),
        feature_names=list(X.columns),
        categories=TargetingModel.categories_of(X),
    )


def pipeline_model(rows: int, threads: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    """The pipeline's model on `rows` simulated declarations: declarations, X and the model."""
    from pipeline.config import Config, SimulateConfig
    from pipeline.features.build import build_feature_set
    from pipeline.plan import make_windows
    from pipeline.simulate import simulate
    from pipeline.train.fit import fit

    config = Config.model_validate({"seed": seed, "compute": {"threads": threads}})
    data = simulate(SimulateConfig(rows=rows), seed)
    fs = build_feature_set(data.declarations, data.outcomes, config.features)
    windows = make_windows(fs.lodged_at, config.split)
    model = fit(fs, windows, dict(config.train.params), config).model
    by_id = data.declarations.set_index("declaration_id").loc[fs.declaration_id.astype(str)]
    return by_id.reset_index(), fs.X, model


def contribution_threads(model: TargetingModel, X: pd.DataFrame) -> float:
    """Share of `pred_contribs`' CPU time spent on threads other than the caller's."""
    import resource

    def own_thread() -> float:
        usage = resource.getrusage(resource.RUSAGE_THREAD)
        return usage.ru_utime + usage.ru_stime

    matrix = xgb.DMatrix(prepare(model, X), enable_categorical=True)
    mine, total = own_thread(), time.process_time()
    model.booster.predict(matrix, pred_contribs=True)
    return 1.0 - (own_thread() - mine) / max(time.process_time() - total, 1e-9)


def thresholds_for(
    model: TargetingModel,
    declarations: pd.DataFrame,
    X: pd.DataFrame,
    method: str,
    reasons: int,
    rank_by: str = "probability",
) -> Thresholds:
    """Cut-offs set on the benchmark matrix itself (red 2 %, yellow 6 %, random 0.5 %)."""
    serve = ServeConfig(reasons=reasons, reason_method=method)
    scores = rank(model, X, RankingPolicy(rank_by)).frame(X.index)
    policy = compute_cutoffs(pd.concat([declarations, scores], axis=1), serve, days=30.0)
    document = new_document(
        policy,
        Provenance(
            model={
                "name": "bench",
                "version": "0",
                "uri": None,
                "booster_sha256": model.booster_sha256(),
            },
            rank_by=rank_by,
            manifest_sha256="0" * 64,
            windows={},
            features={"config": {}, "descriptions": {}},
            snapshot={},
        ),
    )
    return Thresholds.from_document(document)


def best_of(repeat: int, action: Callable[[], Any]) -> tuple[float, Any]:
    """Fastest wall time of `repeat` runs, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - started)
    return min(times), result


def full_path(rows: int, trees: int, threads: int, seed: int) -> dict[str, Any]:
    """Rows/s of `Scorer.score` from raw declarations: validation, snapshot features, scores,
    channels and approximate reason codes, on the last 20 % of a simulated stream."""
    from pipeline.config import SimulateConfig
    from pipeline.features.build import build_feature_set, build_snapshot
    from pipeline.ingest.schema import validate_declarations
    from pipeline.simulate import simulate

    data = simulate(SimulateConfig(rows=rows, days=365), seed)
    declarations, _ = validate_declarations(data.declarations)
    cut = declarations["lodged_at"].quantile(0.8)
    history = declarations.loc[declarations["lodged_at"] < cut]
    incoming = data.declarations.loc[data.declarations["lodged_at"] >= cut].reset_index(drop=True)
    features = FeaturesConfig()
    feature_set = build_feature_set(history, data.outcomes, features)
    labelled = feature_set.y.notna().to_numpy()
    model = train(
        feature_set.X.loc[labelled], feature_set.y[labelled].to_numpy(), trees, threads, seed
    )
    model.booster.set_param({"nthread": threads})
    snapshot = build_snapshot(history, data.outcomes, features, cut)
    X = feature_set.X.loc[~labelled].reset_index(drop=True)
    ids = feature_set.declaration_id[~labelled].reset_index(drop=True)
    reference = pd.DataFrame(
        {"declaration_id": ids, "office": feature_set.office[~labelled].to_numpy(), "aeo": False}
    )
    thresholds = thresholds_for(model, reference, X, "approximate", 3)
    scorer = Scorer(model, snapshot, thresholds, features)
    seconds, scored = best_of(1, lambda: scorer.score(incoming))
    return {
        "rows": len(incoming),
        "seconds": seconds,
        "rows_per_second": len(incoming) / seconds,
        "manual": int((scored["channel"] == "manual").sum()),
        "channel_shares": scored["channel"].value_counts(normalize=True).round(4).to_dict(),
    }


def _arguments() -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--trees", type=int, default=200, help="synthetic model's trees")
    parser.add_argument("--model", choices=["pipeline", "synthetic"], default="pipeline")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--treeshap-repeat",
        type=int,
        default=1,
        help="runs of the (slow) exact TreeSHAP case (0: skip it)",
    )
    parser.add_argument(
        "--full-rows",
        type=int,
        default=200_000,
        help="simulated declarations for the full-path figure (0: skip)",
    )
    return parser.parse_args()


def _rate(cases: dict[str, dict[str, Any]], rows: int, bare_seconds: float) -> None:
    """Each case's rows per second, its ratio to the bare predict and whether it meets its
    target ratio, set in place."""
    for case in cases.values():
        case["rows_per_second"] = rows / case["seconds"]
        case["ratio_to_bare"] = bare_seconds / case["seconds"]
        if "target" in case:
            case["meets_target"] = case["ratio_to_bare"] >= case["target"]


def _print_cases(cases: dict[str, dict[str, Any]]) -> None:
    """The cases as a table: seconds, rows per second, ratio to the bare predict, target."""
    print(f"{'case':<28}{'seconds':>9}{'rows/s':>14}{'x bare':>9}  target")
    for name, case in cases.items():
        target = case.get("target")
        verdict = (
            "" if target is None else f">= {target} {'ok' if case['meets_target'] else 'MISSED'}"
        )
        print(
            f"{name:<28}{case['seconds']:>9.3f}{case['rows_per_second']:>14,.0f}"
            f"{case['ratio_to_bare']:>9.2f}  {verdict}"
        )


def main() -> None:
    args = _arguments()

    if args.model == "pipeline":
        declarations, X, model = pipeline_model(args.rows, args.threads, args.seed)
    else:
        declarations, X, y = synthetic(args.rows, args.seed)
        model = train(X, y, args.trees, args.threads, args.seed)
    model.booster.set_param({"nthread": args.threads})
    if model.revenue_booster is not None:
        model.revenue_booster.set_param({"nthread": args.threads})
    rank_by = resolve_rank_by(model.revenue_booster is not None, "auto")
    trees = model.booster.num_boosted_rounds()
    prepared = prepare(model, X)
    scorer = Scorer(
        model,
        None,  # type: ignore[arg-type]  # score_features takes built features: no snapshot
        thresholds_for(model, declarations, X, "treeshap", 0, rank_by),
        FeaturesConfig(),
    )

    def bare() -> Any:
        return model.booster.inplace_predict(prepared, predict_type="margin")

    cases: dict[str, dict[str, Any]] = {}
    t_bare, _ = best_of(args.repeat, bare)
    cases["bare inplace_predict"] = {"seconds": t_bare}
    t_scores, scored = best_of(args.repeat, lambda: scorer.score_features(declarations, X))
    cases["scores + channels"] = {"seconds": t_scores, "target": 0.7}
    shares = scored["channel"].value_counts(normalize=True).round(4).to_dict()
    methods = [
        ("approximate", args.repeat),
        ("treeshap_red", args.treeshap_repeat),
        ("treeshap", args.treeshap_repeat),
    ]
    for method, repeat in [m for m in methods if m[1] > 0]:
        scorer.thresholds = thresholds_for(model, declarations, X, method, 3, rank_by)
        seconds, with_reasons = best_of(repeat, lambda: scorer.score_features(declarations, X))
        explained = int(with_reasons["reasons"].notna().sum())
        cases[f"+ reasons ({method})"] = {
            "seconds": seconds,
            "target": 0.3,
            "rows_with_reasons": explained,
        }
    _rate(cases, len(X), t_bare)

    off_thread = contribution_threads(model, X.iloc[: min(len(X), 2_000)])
    print(
        f"{len(X):,} declarations, {X.shape[1]} features, {args.model} model of {trees} trees "
        f"(revenue model: {model.revenue_booster is not None}), ranked by {rank_by}, "
        f"{args.threads} threads; pred_contribs CPU off the calling thread: {off_thread:.0%}"
    )
    print(f"channel shares: {shares}")
    _print_cases(cases)
    full = full_path(args.full_rows, args.trees, args.threads, args.seed) if args.full_rows else {}
    if full:
        print(
            f"full path (validation + snapshot features + scores + approximate reasons): "
            f"{full['rows']:,} new declarations in {full['seconds']:.2f} s = "
            f"{full['rows_per_second']:,.0f} rows/s"
        )
    result = {
        "full_path": full,
        "rows": len(X),
        "model": args.model,
        "trees": trees,
        "revenue_model": model.revenue_booster is not None,
        "rank_by": rank_by,
        "pred_contribs_off_thread_share": off_thread,
        "threads": args.threads,
        "features": X.shape[1],
        "channel_shares": shares,
        "cases": cases,
        "xgboost": xgb.__version__,
        "machine": platform.platform(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
