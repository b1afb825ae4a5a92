"""Tuning on quantised matrices built once per window gives the trials of plain matrices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import xgboost as xgb
from helpers.train import feature_set, train_config

from pipeline.config import Config
from pipeline.plan import make_windows
from pipeline.train import tune
from pipeline.train.engine import dmatrix
from pipeline.train.rebalance import rebalance


class PlainObjective(tune.Objective):
    """The objective as it was before issue 16: a plain DMatrix per fold, no shared cuts."""

    def _train_matrix(
        self, fold: int, imbalance: str, order: str = "native"
    ) -> tuple[Any, dict[str, Any]]:
        rows, extra = rebalance(self.fold(fold, order)[0], imbalance, self.config.seed)
        return dmatrix(rows), extra

    def _valid_matrix(self, fold: int, order: str = "native") -> xgb.DMatrix:
        return dmatrix(self.fold(fold, order)[1], weighted=False)


def _trials(config: Config, objective: type[tune.Objective]) -> list[tuple[Any, ...]]:
    fs = feature_set(rows=2_500, seed=3)
    windows = make_windows(fs.lodged_at, config.split)
    study = tune.load_study(config)
    study.optimize(objective(fs, windows, config), n_trials=config.tune.n_trials)
    return [
        (t.state, t.value, t.user_attrs["trees"], t.user_attrs["fold_values"], t.params)
        for t in study.trials
    ]


@pytest.mark.parametrize("tune_imbalance", [False, True])
def test_quantised_matrices_give_the_trials_of_plain_ones(
    tmp_path: Path, tune_imbalance: bool
) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = {"n_trials": 4, "tune_imbalance": tune_imbalance}
    shared = train_config(tmp_path / "shared", tune=settings, split={"folds": 2})
    plain = train_config(tmp_path / "plain", tune=settings, split={"folds": 2})
    assert _trials(shared, tune.Objective) == _trials(plain, PlainObjective)


def test_one_matrix_per_window_serves_every_trial(tmp_path: Path) -> None:
    config = train_config(tmp_path, tune={"n_trials": 1}, split={"folds": 2})
    fs = feature_set(rows=2_500, seed=3)
    objective = tune.Objective(fs, make_windows(fs.lodged_at, config.split), config)
    dtrain, _ = objective._train_matrix(0, "none")
    dvalid = objective._valid_matrix(0)
    assert isinstance(dtrain, xgb.QuantileDMatrix)
    # The validation rows, predicted every round, stay raw (faster to predict than bins).
    assert not isinstance(dvalid, xgb.QuantileDMatrix)
    assert objective._train_matrix(0, "none")[0] is dtrain
    assert objective._valid_matrix(0) is dvalid
