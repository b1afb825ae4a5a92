"""Feature rebuilds and refits inside the replay: the same code as `targeting features` and
`targeting train` (fixed parameters, no tuning), on what a policy has revealed, timed per phase."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from pipeline.backtest.stream import Stream, canonical_outcomes
from pipeline.config import BacktestConfig, Config, SplitConfig
from pipeline.features.build import build_feature_set
from pipeline.features.featureset import FeatureSet
from pipeline.plan import Windows, make_windows
from pipeline.serve.model import TargetingModel
from pipeline.train.fit import fit

PHASES = ("features_s", "training_s", "scoring_s", "selection_s")


def retrain_windows(
    fs: FeatureSet, at: pd.Timestamp, horizon: pd.Timestamp, bt: BacktestConfig
) -> Windows:
    """Train | valid | calibration windows ending at `at`; test: the following step."""
    split = SplitConfig(
        valid_days=bt.valid_days,
        calibration_days=bt.calibration_days,
        gap_days=bt.gap_days,
        test_days=max(1, bt.step_days),
        test_start=at.date(),
        test_end=horizon.date(),
        folds=1,
    )
    return make_windows(fs.lodged_at, split)


class Fitter:
    """Feature building and fitting with fixed parameters, timed per phase."""

    def __init__(self, config: Config) -> None:
        threads = min(config.backtest.n_jobs, config.compute.threads)
        compute = config.compute.model_copy(update={"threads": threads})
        self.config = config.model_copy(update={"compute": compute})
        self.params = dict(config.backtest.params or config.train.params)
        self.seconds = dict.fromkeys(PHASES, 0.0)

    def features(self, declarations: pd.DataFrame, outcomes: pd.DataFrame) -> FeatureSet:
        """The same point-in-time feature build as `targeting features`."""
        tick = time.perf_counter()
        fs = build_feature_set(declarations, outcomes, self.config.features)
        self.seconds["features_s"] += time.perf_counter() - tick
        return fs

    def fit(
        self, fs: FeatureSet, at: pd.Timestamp, horizon: pd.Timestamp
    ) -> tuple[TargetingModel, dict[str, Any]]:
        """The same fit as `targeting train`, on labels known before `at`."""
        tick = time.perf_counter()
        try:
            windows = retrain_windows(fs, at, horizon, self.config.backtest)
            result = fit(fs, windows, self.params, self.config)
        finally:
            self.seconds["training_s"] += time.perf_counter() - tick
        return result.model, result.log.to_dict()


def features_at(
    stream: Stream, fitter: Fitter, outcomes: list[pd.DataFrame], horizon: pd.Timestamp
) -> tuple[FeatureSet, np.ndarray]:
    """Feature set of every declaration lodged before `horizon`, and its rows' stream positions."""
    upto = int(np.searchsorted(stream.lodged_at.to_numpy(dtype="datetime64[ns]"), horizon.asm8))
    fs = fitter.features(stream.declarations.iloc[:upto], canonical_outcomes(outcomes))
    ids = pd.Index(stream.declarations["declaration_id"].iloc[:upto].astype("string"))
    positions = ids.get_indexer(fs.declaration_id.astype("string"))
    return fs, positions
