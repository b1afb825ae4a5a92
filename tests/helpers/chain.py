"""The small simulated stream the whole-chain tests (targeting run, the notebooks) run on."""

from __future__ import annotations

# Small, yet with enough controls in the training window for the trees to split (at 8,000 rows
# the booster can stay one leaf, and channels would then come from the tie-breaking hash alone).
SMALL_CHAIN = [
    "simulate.rows=12000",
    "simulate.days=300",
    "simulate.importers=500",
    "simulate.sellers=400",
    "simulate.declarants=40",
    "simulate.offices=4",
    "split.calibration_days=20",
    "split.valid_days=30",
    "split.test_days=40",
    "split.gap_days=7",
    "split.folds=1",
    "tune.n_trials=2",
    "train.num_boost_round=30",
    "compute.threads=1",
    "serve.reference_days=40",
    "serve.score_last_days=20",
]
