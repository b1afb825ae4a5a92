"""The final fit's boosting on a dask.distributed cluster (train.engine=dask).

The training window is spread over the workers, which build one histogram together
(xgboost.dask.train). The windows are either shipped from the client's memory, or read by the
workers from the feature-set file through the adapter the train job passes in (`WindowFile`,
`jobs.feature_file.FeatureFile`): this module reads no file itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import xgboost as xgb

from pipeline.config import TrainConfig
from pipeline.plan import Windows
from pipeline.timeaxis import Window
from pipeline.train.fitlog import validation_curve
from pipeline.train.rows import WindowRows


class WindowFile(Protocol):
    """Where dask workers read a window's labelled rows (those `train.split.rows_in` selects)."""

    def labels(self, window: Window, labels_known_by: pd.Timestamp | None) -> np.ndarray:
        """The window's labels, in the order the workers read its rows."""
        ...

    def lodged(self, window: Window) -> int:
        """Declarations lodged in the window."""
        ...

    def window_frame(
        self,
        client: Any,
        window: Window,
        labels_known_by: pd.Timestamp | None,
        dtypes: pd.Series,
        partitions: int,
        weighted: bool,
    ) -> Any:
        """A dask frame of the window's rows: features, ``y`` and ``sample_weight`` if weighted."""
        ...


@dataclass(frozen=True)
class FileReads:
    """What the workers read from the feature-set file: the final fit's training and validation
    windows, with the model's feature dtypes; the training rows carry their inverse-propensity
    weight when ``weighted``."""

    file: WindowFile
    windows: Windows
    dtypes: pd.Series
    weighted: bool

    def labels(self, window: Window) -> np.ndarray:
        """A window's labels as the workers read them."""
        return self.file.labels(window, self.windows.labels_known_by(window))

    def matrix(self, client: Any, window: Window, partitions: int, weighted: bool) -> Any:
        """A DaskDMatrix of a window's rows, read by the workers (categories kept)."""
        from xgboost import dask as dxgb

        frame = self.file.window_frame(
            client, window, self.windows.labels_known_by(window), self.dtypes, partitions, weighted
        )
        features = [str(c) for c in self.dtypes.index]
        weight = frame["sample_weight"] if weighted else None
        return dxgb.DaskDMatrix(
            client, frame[features], frame["y"], weight=weight, enable_categorical=True
        )


@contextmanager
def dask_client(train: TrainConfig) -> Iterator[Any]:
    """A dask.distributed client: on `train.dask_scheduler`, else on a LocalCluster of
    `train.dask_workers` single-threaded worker processes that lives for the fit."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - the `scale` extra is in the lock file
        raise ValueError(
            "train.engine=dask needs dask.distributed: install the `scale` extra"
        ) from exc
    if train.dask_scheduler:
        with Client(train.dask_scheduler) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=train.dask_workers,
            threads_per_worker=1,
            processes=True,
            # Any free port: with None, distributed still tries 8787 and warns when it is taken.
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _dask_matrix(client: Any, rows: WindowRows, partitions: int, weighted: bool) -> Any:
    """A DaskDMatrix over `partitions` row blocks of a window held in memory (categories kept)."""
    import dask.dataframe as dd
    from xgboost import dask as dxgb

    parts = max(1, min(partitions, len(rows)))
    X = dd.from_pandas(rows.X, npartitions=parts, sort=False)
    y = dd.from_pandas(pd.Series(rows.y), npartitions=parts, sort=False)
    weight = (
        dd.from_pandas(pd.Series(rows.weight), npartitions=parts, sort=False) if weighted else None
    )
    return dxgb.DaskDMatrix(client, X, y, weight=weight, enable_categorical=True)


def _boost_on_cluster(
    client: Any,
    dtrain: Any,
    dvalid: Any,
    params: dict[str, Any],
    num_boost_round: int,
    early_stopping_rounds: int,
) -> tuple[xgb.Booster, int, dict[str, list[float]]]:
    """xgboost.dask.train with early stopping on ``dvalid``; the booster sliced at its best, its
    best iteration and its validation curve."""
    from xgboost import dask as dxgb

    # Each worker runs with its own threads; the in-process thread count does not apply.
    on_cluster = {k: v for k, v in params.items() if k != "nthread"}
    output = dxgb.train(
        client,
        on_cluster,
        dtrain,
        num_boost_round=num_boost_round,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=early_stopping_rounds,
        verbose_eval=False,
    )
    booster: xgb.Booster = output["booster"]
    best = int(booster.best_iteration)
    return booster[: best + 1], best, validation_curve(output["history"])


@dataclass(frozen=True)
class DaskEngine:
    """xgboost.dask.train on the configured cluster; given ``reads``, the workers read the
    training and validation windows from the feature-set file, and `fs` may then hold only the
    training window's hits (see `jobs.train.read_around_training`)."""

    reads: FileReads | None = None

    @property
    def boosted_from(self) -> str:
        return "memory" if self.reads is None else "feature-set file"

    def category_min_count(self, configured: int) -> int:
        # The file's categories are whole: every level the workers read must be known.
        return configured if self.reads is None else 1

    def training_labels(self, train: WindowRows, window: Window) -> np.ndarray:
        return train.y if self.reads is None else self.reads.labels(window)

    def lodged(self, lodged_at: pd.Series, window: Window) -> int:
        if self.reads is None:
            return int(window.contains(lodged_at).sum())
        return self.reads.file.lodged(window)

    def resamples(self) -> bool:
        # Read from the file, weights and labels are the file's: nothing is resampled.
        return self.reads is None

    def memory_from(self) -> pd.Timestamp | None:
        # Boosted from the file, `fs` may hold only the training window's hits: the anchor then
        # looks no further back than the validation window.
        return None if self.reads is None else self.reads.windows.valid.start

    def boost(
        self,
        train: WindowRows,
        valid: WindowRows,
        params: dict[str, Any],
        settings: TrainConfig,
        weighted_valid: bool,
    ) -> tuple[xgb.Booster, int, dict[str, list[float]]]:
        """Early stopping on the validation window, always unweighted on the cluster."""
        with dask_client(settings) as client:
            workers = len(client.scheduler_info()["workers"])
            partitions = workers * settings.dask_partitions_per_worker
            if self.reads is None:
                dtrain = _dask_matrix(client, train, partitions, weighted=True)
                dvalid = _dask_matrix(client, valid, partitions, weighted=False)
            else:
                windows = self.reads.windows
                dtrain = self.reads.matrix(client, windows.train, partitions, self.reads.weighted)
                dvalid = self.reads.matrix(client, windows.valid, partitions, weighted=False)
            return _boost_on_cluster(
                client,
                dtrain,
                dvalid,
                params,
                settings.num_boost_round,
                settings.early_stopping_rounds,
            )
