"""The feature-set file written chunk by chunk reads back as the in-memory FeatureSet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers.features import simulated, small_config, tiny_tables

from pipeline.features.build import build_feature_set
from pipeline.features.chunked import Chunks, chunk_starts, write_chunked
from pipeline.features.featureset import FeatureSet, FeatureSetWriter

pytestmark = pytest.mark.slow


def assert_reads_back_as(written: FeatureSet, base: FeatureSet) -> None:
    """Same rows, metadata, manifest, columns, dtypes and category levels; X's counts and
    categories exact, summed money within 1e-6 (float32, summed in another order)."""
    pd.testing.assert_frame_equal(written.meta(), base.meta())
    pd.testing.assert_frame_equal(written.manifest, base.manifest)
    assert list(written.X.columns) == list(base.X.columns)
    assert written.X.dtypes.equals(base.X.dtypes)  # category levels and their order included
    for name in base.X.columns:
        left, right = written.X[name], base.X[name]
        if isinstance(right.dtype, pd.CategoricalDtype):
            assert np.array_equal(left.cat.codes.to_numpy(), right.cat.codes.to_numpy()), name
        else:
            np.testing.assert_allclose(
                left.to_numpy(np.float64), right.to_numpy(np.float64), rtol=1e-6, err_msg=name
            )


@pytest.mark.parametrize("chunk_months", [1, 5])
def test_chunks_written_as_built_read_back_as_the_in_memory_feature_set(
    chunk_months: int, tmp_path: Path
) -> None:
    declarations, outcomes = simulated()
    config = small_config(reporting_delay_days=20.0)
    as_of = declarations["lodged_at"].max() + pd.Timedelta(seconds=1)
    path, manifest = tmp_path / "features.parquet", tmp_path / "manifest.csv"
    written, snapshot = write_chunked(
        declarations, outcomes, config, path, manifest, Chunks(chunk_months, snapshot_as_of=as_of)
    )
    base = build_feature_set(declarations, outcomes, config)
    assert snapshot is not None and snapshot.as_of == as_of
    assert (written.rows, written.labelled, written.hits, written.features) == (
        len(base),
        int(base.y.notna().sum()),
        int((base.y == 1).sum()),
        base.X.shape[1],
    )
    # One row group per chunk: the rows went out as each chunk was built.
    chunks = len(chunk_starts(declarations["lodged_at"], chunk_months))
    assert chunks > 1 and pq.ParquetFile(path).metadata.num_row_groups == chunks
    from_chunks = FeatureSet.read_parquet(path, manifest)
    assert_reads_back_as(from_chunks, base)
    # ... and exactly what the in-memory build's own file reads back as.
    base.to_parquet(tmp_path / "whole.parquet", tmp_path / "whole.csv")
    whole = FeatureSet.read_parquet(tmp_path / "whole.parquet", tmp_path / "whole.csv")
    pd.testing.assert_frame_equal(from_chunks.meta(), whole.meta())
    assert from_chunks.X.dtypes.equals(whole.X.dtypes)


def test_a_category_level_first_seen_in_a_later_chunk_keeps_its_code(tmp_path: Path) -> None:
    """Levels absent from the first chunk (the schema's) still read back with their codes."""
    declarations, outcomes = tiny_tables(400, seed=6)
    months = declarations["lodged_at"].dt.to_period("M")
    late = months > months.min()
    declarations = declarations.assign(
        transport_mode=declarations["transport_mode"].astype(object).where(~late, "rail-late")
    )
    config = small_config(reporting_delay_days=10.0)
    path, manifest = tmp_path / "features.parquet", tmp_path / "manifest.csv"
    write_chunked(declarations, outcomes, config, path, manifest, Chunks(months=1))
    base = build_feature_set(declarations, outcomes, config)
    assert "rail-late" in base.X["transport_mode"].cat.categories
    assert_reads_back_as(FeatureSet.read_parquet(path, manifest), base)


def test_the_writer_refuses_rows_that_do_not_line_up(tmp_path: Path) -> None:
    declarations, outcomes = tiny_tables(200, seed=7)
    fs = build_feature_set(declarations, outcomes, small_config())
    with (
        FeatureSetWriter(tmp_path / "f.parquet") as writer,
        pytest.raises(ValueError, match="index of X"),
    ):
        writer.write(fs.meta().iloc[1:], fs.X)
    clash = fs.X.assign(y=0.0)
    with (
        FeatureSetWriter(tmp_path / "g.parquet") as writer,
        pytest.raises(ValueError, match="clash"),
    ):
        writer.write(fs.meta(), clash)
