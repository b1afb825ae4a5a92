"""FeatureSet Parquet round trip written in several row groups."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.config import load
from pipeline.features.build import build_feature_set
from pipeline.features.featureset import FeatureSet
from pipeline.simulate import simulate


def test_row_groups_round_trip_like_one_frame(tmp_path: Path) -> None:
    """Written 700 rows at a time, X and the metadata read back exactly, categories included."""
    config = load(None, ["simulate.rows=3000", "simulate.days=120"])
    data = simulate(config.simulate, 3)
    features = build_feature_set(data.declarations, data.outcomes, config.features)
    features.to_parquet(tmp_path / "fs.parquet", tmp_path / "manifest.csv", rows_per_group=700)
    back = FeatureSet.read_parquet(tmp_path / "fs.parquet", tmp_path / "manifest.csv")
    pd.testing.assert_frame_equal(back.X, features.X)
    pd.testing.assert_frame_equal(back.meta(), features.meta())
