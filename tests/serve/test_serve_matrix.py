"""The codes matrix XGBoost reads in place of the frame: the same predictions and contributions,
unseen levels and missing values included, and the frame itself when the codes would differ."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from helpers.serve import declarations, trained

from pipeline.plan import BY_PROBABILITY
from pipeline.serve import ranking
from pipeline.serve.matrix import (
    booster_dmatrix,
    booster_input,
    codes_matrix,
    same_levels,
    training_dtypes,
)
from pipeline.serve.model import TargetingModel


@pytest.fixture(scope="module")
def world() -> tuple[TargetingModel, pd.DataFrame]:
    """A small real model on real features, and features to score with levels it never saw."""
    found = trained(declarations(3_000, seed=5), seed=5)
    X = found.feature_set.X.iloc[:400].copy()
    for column, values in found.model.categories.items():
        unseen = pd.Categorical(["NEVER-SEEN"] * 40, categories=["NEVER-SEEN"])
        column_values = X[column].astype(object).to_numpy()
        column_values[:40] = unseen.astype(object)
        column_values[40:60] = None
        X[column] = pd.Categorical(column_values, categories=[*values, "NEVER-SEEN"])
    numbers = [c for c in X.columns if c not in found.model.categories]
    X.loc[X.index[60:80], numbers[:3]] = np.nan
    return found.model, ranking.prepare(found.model, X)


def test_the_codes_matrix_predicts_what_the_frame_predicts(
    world: tuple[TargetingModel, pd.DataFrame],
) -> None:
    model, prepared = world
    assert same_levels(model.booster, model.categories)
    matrix = booster_input(model.booster, prepared, model.categories)
    assert isinstance(matrix, np.ndarray) and matrix.dtype == np.float32
    assert np.isnan(matrix[:60, list(prepared.columns).index(next(iter(model.categories)))]).all()
    for kind in ("margin", "value"):
        np.testing.assert_array_equal(
            model.booster.inplace_predict(matrix, predict_type=kind),
            model.booster.inplace_predict(prepared, predict_type=kind),
        )


@pytest.mark.parametrize("approximate", [False, True])
def test_contributions_from_the_codes_are_the_frames(
    world: tuple[TargetingModel, pd.DataFrame], approximate: bool
) -> None:
    model, prepared = world
    ours = booster_dmatrix(model.booster, prepared, model.categories)
    theirs = xgb.DMatrix(prepared, enable_categorical=True)
    np.testing.assert_array_equal(
        model.booster.predict(ours, pred_contribs=True, approx_contribs=approximate),
        model.booster.predict(theirs, pred_contribs=True, approx_contribs=approximate),
    )


def test_a_booster_trained_on_other_levels_gets_the_frame() -> None:
    levels = ["a", "b", "c"]
    frame = pd.DataFrame(
        {
            "kind": pd.Categorical(["c", "a", "b", "c"] * 25, categories=["c", "b", "a"]),
            "value": np.arange(100, dtype=np.float32),
        }
    )
    booster = xgb.train(
        {"max_depth": 2, "nthread": 1},
        xgb.DMatrix(frame, np.arange(100) % 2, enable_categorical=True),
        num_boost_round=3,
    )
    assert not same_levels(booster, {"kind": levels})
    assert booster_input(booster, frame, {"kind": levels}) is frame
    assert same_levels(booster, {"kind": ["c", "b", "a"]})


def test_codes_matrix_holds_codes_and_numbers_as_float32() -> None:
    frame = pd.DataFrame(
        {
            "kind": pd.Categorical(["b", None, "a"], categories=["a", "b"]),
            "value": [1.5, np.nan, 3.0],
        }
    )
    np.testing.assert_array_equal(
        codes_matrix(frame), np.array([[1.0, 1.5], [np.nan, np.nan], [0.0, 3.0]], np.float32)
    )


def test_the_ranking_reads_the_codes_and_ranks_as_the_frame_would(
    world: tuple[TargetingModel, pd.DataFrame],
) -> None:
    model, prepared = world
    ranked = ranking.rank(model, prepared, BY_PROBABILITY)
    margin = model.booster.inplace_predict(prepared, predict_type="margin")
    np.testing.assert_array_equal(ranked.margin, np.asarray(margin, dtype=float))
    np.testing.assert_array_equal(ranked.probability, model.calibration.apply(ranked.margin))


def test_the_training_levels_dtypes_are_built_once_per_model(
    world: tuple[TargetingModel, pd.DataFrame],
) -> None:
    model, prepared = world
    dtypes = training_dtypes(model.booster, model.categories)
    again = ranking.prepare(model, prepared.astype({c: "object" for c in model.categories}))
    for column, levels in model.categories.items():
        assert list(dtypes[column].categories) == list(levels)
        assert prepared[column].dtype == dtypes[column]
        assert again[column].astype(object).equals(prepared[column].astype(object))
    assert training_dtypes(model.booster, model.categories) is dtypes
    assert training_dtypes(model.booster, dict(model.categories)) is not dtypes  # others: rebuilt
