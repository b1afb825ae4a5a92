"""The features job on simulated files, and the builder on the KCS files (no revenue, no dates)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from helpers.features import KCS_FILES, kcs_sample, same_values, small_config

from pipeline.config import PROJECT_ROOT, Config, load
from pipeline.features.build import Snapshot, attach, build_feature_set, build_snapshot
from pipeline.features.featureset import FeatureSet
from pipeline.jobs.features import features


def test_features_job_writes_the_feature_set_and_a_snapshot_that_serves(
    simulated_project: Callable[..., Config],
) -> None:
    config = simulated_project(rows=3000, days=120, importers=300, sellers=200, declarants=30)
    result = features(config)
    assert result.figures["rows"] == 3000 and result.figures["labelled_rows"] > 0
    assert any(line.startswith("time taken") for line in result.lines)
    written = FeatureSet.read_parquet(config.paths.features, config.paths.manifest)
    assert len(written) == 3000 and written.X.shape[1] == result.figures["features"]
    snapshot = Snapshot.load(config.paths.snapshot)
    assert snapshot.as_of > written.lodged_at.max()
    new = pd.read_parquet(config.paths.declarations).head(20)
    new["lodged_at"] = snapshot.as_of + pd.Timedelta(hours=1)
    served = attach(new, snapshot, config.features)
    assert list(served.X.columns) == list(written.X.columns)
    assert list(served.X.dtypes.astype(str)) == list(written.X.dtypes.astype(str))
    for column in served.X.select_dtypes("category"):
        assert list(served.X[column].cat.categories) == list(written.X[column].cat.categories)


@pytest.mark.skipif(not KCS_FILES.is_dir(), reason="KCS files not available")
def test_kcs_without_revenue_or_result_dates() -> None:
    declarations, outcomes = kcs_sample(4000)
    kcs = load(PROJECT_ROOT / "configs" / "kcs.yaml").features.raw_categories
    config = small_config(missing_result_delay_days=30.0, raw_categories=kcs)
    fs = build_feature_set(declarations, outcomes, config)
    assert len(fs) == len(declarations) and fs.y.notna().all()
    # Dates only: a label counts 30 days after lodging, so the first month sees no controls.
    first_month = (fs.lodged_at < fs.lodged_at.min() + pd.Timedelta(days=30)).to_numpy()
    assert (fs.X.loc[first_month, "importer_controls"] == 0).all()
    assert (fs.X.loc[~first_month, "office_controls"] > 0).any()
    assert fs.X["importer_revenue_per_control"].isna().all()
    assert fs.revenue_recovered.isna().all()
    assert (fs.label_known_at - fs.lodged_at == pd.Timedelta(days=30)).all()
    kcs_columns = [c for c in fs.X.columns if c.startswith("kcs_")]
    assert kcs_columns and "kcs_critical_fraud" not in fs.X.columns
    # Same-day declarations (every one, here) do not count each other.
    one_day = fs.lodged_at == fs.lodged_at.min()
    assert (fs.X.loc[one_day, "importer_declarations"] == 0).all()

    as_of = fs.lodged_at[fs.lodged_at > fs.lodged_at.min() + pd.Timedelta(days=40)].iloc[0]
    snapshot = build_snapshot(declarations, outcomes, config, as_of)
    served = attach(declarations.loc[declarations["lodged_at"] == as_of], snapshot, config)
    at = (fs.lodged_at == as_of).to_numpy()
    assert same_values(fs.X[at], served.X)
    assert np.isfinite(served.X["importer_declarations"]).all()
