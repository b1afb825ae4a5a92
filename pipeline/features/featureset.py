"""The FeatureSet: model inputs and the training metadata of declarations, row-aligned.

Produced by `features.build`; consumed by `train`, `evaluate` and `serve`. Every Series and `X`
share one RangeIndex, in the order of `lodged_at` (ties by `declaration_id`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.ingest.columns import random_stratum

META_COLUMNS = (
    "declaration_id",
    "lodged_at",
    "office",
    "y",
    "revenue_recovered",
    "sample_weight",
    "selection_reason",
    "label_known_at",
    "selection_probability",
)


@dataclass(frozen=True)
class FeatureSet:
    """Features and labels of declarations.

    Attributes:
        X: model inputs: float columns and pandas ``category`` columns (XGBoost native).
        declaration_id: identifier, string.
        lodged_at: lodging time.
        office: customs office (for per-office metrics and capacities).
        y: 1.0 hit, 0.0 inspected without finding, NaN when no outcome is known.
        revenue_recovered: revenue of the control; NaN where unknown or absent from the data.
        sample_weight: inverse selection probability where known (random stratum), else 1.0.
        selection_reason: why the declaration was selected; NaN when it was not.
        label_known_at: when the label became usable (result_at + reporting delay); NaT if none.
        manifest: one row per column of X: name, dtype, stage, description.
        selection_probability: the recorded probability of selection, NaN where none was
            recorded (a draw at p = 1 stays 1, never confused with an unknown one); when not
            given (an older file), read back from `sample_weight`.
    """

    X: pd.DataFrame
    declaration_id: pd.Series
    lodged_at: pd.Series
    office: pd.Series
    y: pd.Series
    revenue_recovered: pd.Series
    sample_weight: pd.Series
    selection_reason: pd.Series
    label_known_at: pd.Series
    manifest: pd.DataFrame
    selection_probability: pd.Series | None = None

    def __post_init__(self) -> None:
        if self.selection_probability is None:  # written before the column existed
            weight = self.sample_weight.to_numpy(dtype=float)
            known = np.isfinite(weight) & (weight > 1.0)
            recorded = pd.Series(np.where(known, 1.0 / np.where(known, weight, 1.0), np.nan))
            object.__setattr__(self, "selection_probability", recorded)
        n = len(self.X)
        for f in fields(self):
            if f.name in ("X", "manifest"):
                continue
            value = getattr(self, f.name)
            if len(value) != n:
                raise ValueError(f"FeatureSet.{f.name} has {len(value)} rows, X has {n}")

    def __len__(self) -> int:
        return len(self.X)

    @property
    def labelled(self) -> pd.Series:
        """Rows whose outcome is known."""
        return self.y.notna()

    @property
    def probability(self) -> pd.Series:
        """The recorded selection probability (NaN where none was recorded)."""
        assert self.selection_probability is not None  # set in __post_init__
        return self.selection_probability

    @property
    def stratum(self) -> np.ndarray:
        """The random stratum's rows (`ingest.columns.random_stratum`), labelled or not."""
        return random_stratum(self.selection_reason, self.probability)

    def subset(self, mask: pd.Series | np.ndarray) -> FeatureSet:
        """Rows where `mask` is true, re-indexed from 0."""
        keep = np.asarray(mask, dtype=bool)

        def take(s: pd.Series) -> pd.Series:
            return s[keep].reset_index(drop=True)

        return FeatureSet(
            X=self.X[keep].reset_index(drop=True),
            declaration_id=take(self.declaration_id),
            lodged_at=take(self.lodged_at),
            office=take(self.office),
            y=take(self.y),
            revenue_recovered=take(self.revenue_recovered),
            sample_weight=take(self.sample_weight),
            selection_reason=take(self.selection_reason),
            label_known_at=take(self.label_known_at),
            manifest=self.manifest,
            selection_probability=take(self.probability),
        )

    def select(self, columns: list[str]) -> FeatureSet:
        """The same rows with only ``columns`` of X (in that order) and their manifest rows."""
        missing = [c for c in columns if c not in self.X.columns]
        if missing:
            raise KeyError(f"features not in this feature set: {missing[:5]}")
        manifest = self.manifest.set_index("name").loc[columns].reset_index()
        return replace(self, X=self.X[columns], manifest=manifest)

    def meta(self) -> pd.DataFrame:
        """The metadata columns as one frame."""
        return pd.DataFrame({name: getattr(self, name) for name in META_COLUMNS})

    def to_parquet(self, path: Path, manifest_path: Path, rows_per_group: int = 500_000) -> None:
        """Write X and the metadata to one Parquet file, and the manifest to CSV.

        Rows are converted and written one row group at a time: concatenating and converting the
        whole frame at once tripled the peak memory of the features job at millions of rows.
        """
        with FeatureSetWriter(path, rows_per_group) as writer:
            writer.write(self.meta(), self.X)
        self.manifest.to_csv(manifest_path, index=False)

    @classmethod
    def read_parquet(cls, path: Path, manifest_path: Path) -> FeatureSet:
        """Read what `to_parquet` wrote (categories and dtypes are kept by Parquet)."""
        frame = pd.read_parquet(path)
        manifest = pd.read_csv(manifest_path)
        X = frame[list(manifest["name"])]
        meta = {name: frame[name] for name in META_COLUMNS if name in frame.columns}
        return cls(X=X, manifest=manifest, **meta)


class FeatureSetWriter:
    """Appends declarations (metadata + X) to one feature-set Parquet file as they are built.

    Each `write` is converted and written in row groups of at most ``rows_per_group`` rows; the
    schema (category levels included) is the first write's, so every write must carry the same
    columns and dtypes. What `FeatureSet.read_parquet` reads back is what one `to_parquet` of all
    the rows gives.
    """

    def __init__(self, path: Path, rows_per_group: int = 500_000) -> None:
        self.path = path
        self.rows_per_group = rows_per_group
        self.rows = 0
        self._writer: Any = None

    def write(self, meta: pd.DataFrame, X: pd.DataFrame) -> None:
        """Append the rows of ``meta`` (the `META_COLUMNS`) and ``X``, row-aligned."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        overlap = set(X.columns) & set(META_COLUMNS)
        if overlap:
            raise ValueError(f"feature names clash with metadata columns: {sorted(overlap)}")
        if list(meta.columns) != list(META_COLUMNS) or not meta.index.equals(X.index):
            raise ValueError("meta must hold the META_COLUMNS on the index of X")
        # A loop over row groups (a handful), not over declarations.
        for start in range(0, max(len(X), 1), self.rows_per_group):
            rows = slice(start, start + self.rows_per_group)
            part = pd.concat([meta.iloc[rows], X.iloc[rows]], axis=1)
            table = pa.Table.from_pandas(part, preserve_index=False)
            if self._writer is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._writer = pq.ParquetWriter(self.path, table.schema)
            self._writer.write_table(table.cast(self._writer.schema))
        self.rows += len(X)

    def close(self) -> None:
        """Finish the file (its footer); nothing is written after."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> FeatureSetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# The data fingerprint of a written feature set, taken once by the features job


def file_fingerprint(path: Path, manifest_path: Path, batch_rows: int = 200_000) -> str:
    """sha256 of the feature-set file as `tracking.data_fingerprint([X, meta])` takes it
    on the FeatureSet read back (dtypes, then row hashes with the index), a batch at a time."""
    import hashlib
    import json

    import pyarrow.parquet as pq

    manifest = pd.read_csv(manifest_path)
    digest = hashlib.sha256()
    for columns in (list(manifest["name"]), list(META_COLUMNS)):
        first, offset = True, 0
        # A loop over batches (a handful), not over declarations.
        for batch in pq.ParquetFile(path).iter_batches(batch_rows, columns=columns):
            part = batch.to_pandas()
            part.index = pd.RangeIndex(offset, offset + len(part))
            offset += len(part)
            if first:
                dtypes = [[str(c), str(t)] for c, t in part.dtypes.items()]
                digest.update(json.dumps(dtypes).encode())
                first = False
            digest.update(pd.util.hash_pandas_object(part, index=True).to_numpy().tobytes())
    return digest.hexdigest()


def fingerprint_path(path: Path) -> Path:
    """Where the features job records the fingerprint of the feature set at ``path``."""
    return path.with_name(path.name + ".fingerprint.json")


def _stamp(path: Path, manifest_path: Path) -> list[int]:
    """Size and modification time of the file and its manifest (a rewrite changes them)."""
    return [v for p in (path, manifest_path) for v in (p.stat().st_size, p.stat().st_mtime_ns)]


def record_fingerprint(path: Path, manifest_path: Path) -> str:
    """Fingerprint the written feature set and record it beside the file (the features job)."""
    import json

    digest = file_fingerprint(path, manifest_path)
    document = {"sha256": digest, "stamp": _stamp(path, manifest_path)}
    fingerprint_path(path).write_text(json.dumps(document), encoding="utf-8")
    return digest


def recorded_fingerprint(path: Path, manifest_path: Path) -> str | None:
    """The fingerprint the features job recorded, or None when there is none or the file or
    its manifest changed since (then the reader fingerprints the file itself)."""
    import json

    record = fingerprint_path(path)
    if not record.is_file() or not path.is_file() or not manifest_path.is_file():
        return None
    try:
        document = json.loads(record.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    if document.get("stamp") != _stamp(path, manifest_path):
        return None
    digest = document.get("sha256")
    return digest if isinstance(digest, str) else None
