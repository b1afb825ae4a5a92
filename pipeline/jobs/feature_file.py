"""The feature-set file as dask workers read a window of it: the I/O adapter the train job hands
to the final fit on train.engine=dask (`train.dask_engine.WindowFile`), so that the fit itself
reads nothing.

A window's rows are those `train.split.rows_in` selects (lodged in the window, labelled, the label
known in time); only the row groups whose lodging times overlap the window are opened, and each
worker reads its own block of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.timeaxis import Window


def _window_filters(
    window: Window, labels_known_by: pd.Timestamp | None
) -> list[tuple[str, str, Any]]:
    """Parquet filters selecting what `rows_in` selects: lodged in the window, labelled, the
    label known before ``labels_known_by``."""
    filters: list[tuple[str, str, Any]] = [
        ("lodged_at", ">=", window.start),
        ("lodged_at", "<", window.end),
        ("y", ">=", 0.0),  # labelled: a missing label is null in the file
    ]
    if labels_known_by is not None:
        filters.append(("label_known_at", "<", labels_known_by))
    return filters


def _row_group_starts(file: Any) -> np.ndarray:
    """The first row of each row group of a ParquetFile, and the number of rows at the end."""
    sizes = [file.metadata.row_group(g).num_rows for g in range(file.num_row_groups)]
    return np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])


def window_positions(
    path: Path, window: Window, labels_known_by: pd.Timestamp | None
) -> np.ndarray:
    """Row numbers in the feature-set file of the rows `rows_in` selects, in file order; only the
    row groups whose lodging times overlap the window are read, three metadata columns of them."""
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)
    starts = _row_group_starts(file)
    lodged = file.schema_arrow.get_field_index("lodged_at")
    found = [np.empty(0, dtype=np.int64)]
    # A loop over row groups (a handful), not over declarations.
    for group in range(file.num_row_groups):
        stats = file.metadata.row_group(group).column(lodged).statistics
        if stats is not None and stats.has_min_max:
            low, high = pd.Timestamp(stats.min), pd.Timestamp(stats.max)
            if high < window.start or low >= window.end:
                continue
        columns = ["lodged_at", "y", "label_known_at"]
        part = file.read_row_group(group, columns=columns).to_pandas()
        mask = window.contains(part["lodged_at"]) & part["y"].notna().to_numpy()
        if labels_known_by is not None:
            known = pd.to_datetime(part["label_known_at"])
            mask &= np.asarray((known < labels_known_by).fillna(False), dtype=bool)
        found.append(starts[group] + np.flatnonzero(mask))
    return np.concatenate(found)


def read_rows(path: Path, positions: np.ndarray, dtypes: pd.Series, weighted: bool) -> pd.DataFrame:
    """The rows at ``positions`` (sorted) of the feature-set file, read one row group at a time
    from the groups that hold them: the model's features (``dtypes``, categories cast to their
    levels), ``y`` and, when ``weighted``, ``sample_weight`` (missing -> 1). Run by a worker."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)
    starts = _row_group_starts(file)
    features = [str(c) for c in dtypes.index]
    columns = [*features, "y", *(["sample_weight"] if weighted else [])]
    if len(positions) == 0:
        return empty_rows(dtypes, weighted)
    groups = np.searchsorted(starts, positions, side="right") - 1
    bounds = np.flatnonzero(np.diff(groups)) + 1
    # A loop over the row groups holding the rows (a handful): one group's rows are held at a
    # time besides those taken.
    tables = [
        file.read_row_group(int(group[0]), columns=columns).take(rows - starts[group[0]])
        for group, rows in zip(np.split(groups, bounds), np.split(positions, bounds), strict=True)
    ]
    frame = pa.concat_tables(tables).to_pandas()
    categories = {c: t for c, t in dtypes.items() if isinstance(t, pd.CategoricalDtype)}
    frame = frame.astype(categories)
    if weighted:
        frame["sample_weight"] = frame["sample_weight"].fillna(1.0)
    return frame


def empty_rows(dtypes: pd.Series, weighted: bool) -> pd.DataFrame:
    """What `read_rows` gives for no rows (the dask frame's meta)."""
    columns = {str(c): pd.Series(dtype=t) for c, t in dtypes.items()}
    columns["y"] = pd.Series(dtype=float)
    if weighted:
        columns["sample_weight"] = pd.Series(dtype=float)
    return pd.DataFrame(columns)


@dataclass(frozen=True)
class FeatureFile:
    """The feature-set Parquet file the train job read: what dask workers read a window from."""

    path: Path

    def labels(self, window: Window, labels_known_by: pd.Timestamp | None) -> np.ndarray:
        """The labels of a window's rows that the workers read (`rows_in`'s rows)."""
        filters = _window_filters(window, labels_known_by)
        frame = pd.read_parquet(self.path, columns=["y"], filters=filters)
        return frame["y"].to_numpy(dtype=float)

    def lodged(self, window: Window) -> int:
        """Declarations lodged in a window, counted in the file (no column is read)."""
        import pyarrow.dataset as ds

        lodged_at = ds.field("lodged_at")
        start, end = window.start.to_datetime64(), window.end.to_datetime64()
        return int(
            ds.dataset(self.path).count_rows(filter=(lodged_at >= start) & (lodged_at < end))
        )

    def window_frame(
        self,
        client: Any,
        window: Window,
        labels_known_by: pd.Timestamp | None,
        dtypes: pd.Series,
        partitions: int,
        weighted: bool,
    ) -> Any:
        """A dask frame of one window's labelled rows (features, ``y``, ``sample_weight`` when
        ``weighted``), read by the workers: the rows are cut into `partitions` consecutive blocks
        dealt round the workers, so every worker holds a non-empty part (XGBoost refuses a worker
        an empty one when features are categories)."""
        import dask.dataframe as dd

        positions = window_positions(self.path, window, labels_known_by)
        workers = sorted(client.scheduler_info()["workers"])
        if len(positions) < len(workers):
            raise ValueError(
                f"{window} has {len(positions)} labelled declarations in {self.path}: fewer than "
                f"the {len(workers)} dask workers"
            )
        blocks = np.array_split(positions, min(max(partitions, len(workers)), len(positions)))
        parts = [
            client.submit(read_rows, self.path, block, dtypes, weighted, workers=[w], pure=False)
            for block, w in zip(blocks, workers * len(blocks), strict=False)
        ]
        return dd.from_delayed(parts, meta=empty_rows(dtypes, weighted), verify_meta=False)
