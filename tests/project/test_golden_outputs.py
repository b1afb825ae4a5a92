"""Golden outputs of both configs on small data: a restructuring must leave every output unchanged.

`targeting run` on the default config (the small simulated stream) and on the KCS config (fewer
trees, fewer reference learners), then `targeting backtest` on the default one; the digests of
what they wrote are compared exactly with those recorded in `tests/golden/` (see helpers/golden.py).
This is also the reproducibility check: the same config and seed, run in a new process and a new
folder, give the model (its booster digest), the metrics and the thresholds recorded earlier.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.chain import SMALL_CHAIN
from helpers.golden import check_golden, run_digests, strip_volatile

from pipeline.config import Config, load
from pipeline.jobs.backtest import backtest
from pipeline.jobs.run import run

pytestmark = [pytest.mark.slow]

DEFAULT = [
    *SMALL_CHAIN,
    "evaluate.bootstrap=20",
    "evaluate.shap_sample=300",
    "evaluate.reference_rounds=30",
    "evaluate.reference_min_trees=20",
    "backtest.warmup_days=150",
    "backtest.weeks=6",
    "backtest.retrain_every_steps=3",
]
KCS = [
    "tune.n_trials=0",  # the tuning path is the default config's; the KCS chain's cost is bounded
    "train.num_boost_round=40",
    "train.select_families=false",
    "compute.threads=1",
    "evaluate.reference_learners=[xgboost,lightgbm]",
    "evaluate.reference_rounds=40",
    "evaluate.reference_min_trees=20",
    "evaluate.bootstrap=20",
    "evaluate.shap_sample=200",
]


def _config(path: str, folder: Path, settings: list[str]) -> Config:
    return load(
        path,
        [
            f"output_dir={folder / 'out'}",
            f"tracking.uri=sqlite:///{folder / 'mlflow.db'}",
            *settings,
        ],
    )


def _outputs(config: Config) -> dict[str, Path]:
    paths = config.paths
    root = paths.thresholds.parent
    named = {
        "features": paths.features,
        "metrics": paths.report.parent / "metrics.csv",
        "thresholds": paths.thresholds,
        "offices": root / "selectivity_offices.csv",
        "scored": paths.scored,
        "incoming": paths.incoming,
        "importance": paths.explanations / "importance.csv",
        "families": paths.explanations / "families.csv",
    }
    data = root / "data"
    for table in ("declarations", "outcomes", "ground_truth"):
        if (data / f"{table}.parquet").exists():
            named[f"data/{table}"] = data / f"{table}.parquet"
    return named


def _decision(config: Config) -> object:
    return strip_volatile(json.loads((config.paths.report.parent / "metrics.json").read_text()))


def test_default_config_outputs_match_the_golden_record(tmp_path: Path) -> None:
    config = _config("configs/default.yaml", tmp_path, DEFAULT)
    run(config)
    digests = run_digests(_outputs(config))
    digests["metrics.json"] = _decision(config)
    backtest(config)
    for table in ("kpis.parquet", "summary.csv", "schemes.csv"):
        digests[f"backtest/{table}"] = run_digests({"t": config.paths.backtest / table})["t"]
    check_golden("outputs_default", digests)


def test_kcs_config_outputs_match_the_golden_record(tmp_path: Path) -> None:
    pytest.importorskip("lightgbm")
    config = _config("configs/kcs.yaml", tmp_path, KCS)
    if not config.data.kcs_dir.exists():
        pytest.skip(f"the KCS files are not here: {config.data.kcs_dir}")
    run(config)
    digests = run_digests(_outputs(config))
    digests["metrics.json"] = _decision(config)
    check_golden("outputs_kcs", digests)
