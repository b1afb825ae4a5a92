"""`targeting features`: canonical inputs -> the FeatureSet (Parquet + manifest) and the snapshot.

Reads what `config.data` points at (validated by `ingest.readers.load_inputs`), builds the
features of every declaration as of its lodging time (in memory, or over chunks of
``features.chunk_months`` months when set, the snapshot then carried out of the last chunk),
writes them to `config.paths.features` with the manifest at `config.paths.manifest`, and saves
the serving snapshot as of the end of the data (the last lodging + 1 second) to
`config.paths.snapshot`.
"""

from __future__ import annotations

import time

import pandas as pd

from pipeline.config import Config
from pipeline.features.build import build_feature_set, build_snapshot
from pipeline.features.chunked import build_chunked
from pipeline.jobs import JobResult


def features(config: Config) -> JobResult:
    """Build and write the training FeatureSet and the serving snapshot."""
    from pipeline.ingest.readers import load_inputs

    start = time.perf_counter()
    inputs = load_inputs(config)
    declarations, outcomes = inputs.declarations, inputs.outcomes
    if declarations.empty:
        raise ValueError("no declarations left after validation: nothing to build features from")
    as_of = pd.Timestamp(declarations["lodged_at"].max()) + pd.Timedelta(seconds=1)
    months = config.features.chunk_months
    if months:  # the snapshot is the state carried out of the last chunk
        feature_set, carried = build_chunked(
            declarations, outcomes, config.features, months, snapshot_as_of=as_of
        )
        assert carried is not None
        snapshot = carried
    else:
        feature_set = build_feature_set(declarations, outcomes, config.features)
        snapshot = build_snapshot(declarations, outcomes, config.features, as_of)
    paths = config.paths
    feature_set.to_parquet(paths.features, paths.manifest)
    snapshot.save(paths.snapshot)
    seconds = time.perf_counter() - start
    labelled = int(feature_set.labelled.sum())
    hits = int((feature_set.y == 1).sum())
    figures = {
        "rows": len(feature_set),
        "labelled_rows": labelled,
        "hits": hits,
        "features": feature_set.X.shape[1],
        "seconds": round(seconds, 2),
        "chunk_months": months,
        "snapshot_as_of": as_of.isoformat(),
    }
    lines = [
        f"rows: {len(feature_set):,} declarations, {labelled:,} labelled ({hits:,} hits)"
        + (f", built over {months}-month chunks" if months else ""),
        f"features: {feature_set.X.shape[1]} -> {paths.features} (manifest {paths.manifest})",
        f"snapshot as of {as_of:%Y-%m-%d %H:%M:%S} -> {paths.snapshot}",
        f"time taken: {seconds:.1f} s",
    ]
    return JobResult(
        stage="features",
        outputs={
            "features": paths.features,
            "manifest": paths.manifest,
            "snapshot": paths.snapshot,
        },
        figures=figures,
        lines=lines,
    )
