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


def test_one_random_stratum_a_draw_at_p_1_included(tmp_path: Path) -> None:
    """The recorded selection probability is kept as it is: a draw at p = 1 is in the random
    stratum (it was 1 / p = 1, the weight of an unknown probability, and dropped out), an
    unknown probability is not, and a file written before the column reads back the same."""
    import numpy as np
    import pandas as pd

    from pipeline.features.featureset import FeatureSet
    from pipeline.ingest.columns import random_stratum

    reason = pd.Series(["random", "random", "random", "rule", None], dtype=object)
    probability = pd.Series([0.005, 1.0, np.nan, 0.5, np.nan])
    assert random_stratum(reason, probability).tolist() == [True, True, False, False, False]
    n = len(reason)
    fs = FeatureSet(
        X=pd.DataFrame({"f": np.arange(n, dtype=float)}),
        declaration_id=pd.Series([f"D{i}" for i in range(n)]),
        lodged_at=pd.Series(pd.date_range("2024-01-01", periods=n, freq="D")),
        office=pd.Series(["A"] * n),
        y=pd.Series([1.0, 0.0, 0.0, 1.0, np.nan]),
        revenue_recovered=pd.Series([np.nan] * n),
        sample_weight=pd.Series([200.0, 1.0, 1.0, 2.0, 1.0]),
        selection_reason=reason,
        label_known_at=pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns]"),
        manifest=pd.DataFrame({"name": ["f"], "dtype": ["float64"], "stage": ["raw"]}),
        selection_probability=probability,
    )
    assert fs.stratum.tolist() == [True, True, False, False, False]
    assert fs.subset(np.array([False, True, True, True, True])).stratum.tolist()[0]
    fs.to_parquet(tmp_path / "fs.parquet", tmp_path / "manifest.csv")
    back = FeatureSet.read_parquet(tmp_path / "fs.parquet", tmp_path / "manifest.csv")
    assert back.stratum.tolist() == fs.stratum.tolist()
    # an older file (no selection_probability column): read back from the weights
    frame = pd.read_parquet(tmp_path / "fs.parquet").drop(columns="selection_probability")
    frame.to_parquet(tmp_path / "old.parquet")
    old = FeatureSet.read_parquet(tmp_path / "old.parquet", tmp_path / "manifest.csv")
    assert old.stratum.tolist() == [True, False, False, False, False]
