"""`targeting features`: canonical inputs -> the FeatureSet (Parquet + manifest) and the snapshot.

Reads what `config.data` points at (validated once per run and saved in the run catalog,
`jobs.catalog.validated_inputs`), builds the features of every declaration as of its lodging time
(in memory, or over chunks of ``features.chunk_months`` months when set, each chunk written as it
is built and the snapshot carried out of the last chunk), writes them to `config.paths.features`
with the manifest at `config.paths.manifest`, and saves the serving snapshot as of the end of the
data (the last lodging + 1 second, `timeaxis.after_last`) to `config.paths.snapshot`.
"""

from __future__ import annotations

import time

from pipeline.config import Config
from pipeline.features.build import build_feature_set, build_snapshot
from pipeline.features.chunked import Chunks, WrittenFeatures, write_chunked
from pipeline.features.featureset import record_fingerprint
from pipeline.jobs import JobResult, step
from pipeline.jobs.paths import refuse_aliases
from pipeline.timeaxis import after_last


def features(config: Config) -> JobResult:
    """Build and write the training FeatureSet and the serving snapshot."""
    from pipeline.jobs.catalog import validated_inputs

    start = time.perf_counter()
    paths = config.paths
    refuse_aliases(
        "features",
        {"the feature set": paths.features, "the feature manifest": paths.manifest},
        {"data.declarations": config.data.declarations, "data.outcomes": config.data.outcomes},
    )
    inputs = validated_inputs(config)
    declarations, outcomes = inputs.declarations, inputs.outcomes
    if declarations.empty:
        raise ValueError("no declarations left after validation: nothing to build features from")
    as_of = after_last(declarations["lodged_at"])
    months = config.features.chunk_months
    step("point-in-time features and the serving snapshot")
    if months:  # written chunk by chunk; the snapshot is the state carried out of the last chunk
        written, carried = write_chunked(
            declarations,
            outcomes,
            config.features,
            paths.features,
            paths.manifest,
            Chunks(months, snapshot_as_of=as_of),
        )
        assert carried is not None
        snapshot = carried
    else:
        feature_set = build_feature_set(declarations, outcomes, config.features)
        snapshot = build_snapshot(declarations, outcomes, config.features, as_of)
        feature_set.to_parquet(paths.features, paths.manifest)
        y = feature_set.y
        written = WrittenFeatures(
            rows=len(feature_set),
            labelled=int(y.notna().sum()),
            hits=int((y == 1).sum()),
            features=feature_set.X.shape[1],
        )
        del feature_set
    # Fingerprinted once here: every train and tune of this feature set reads it.
    record_fingerprint(paths.features, paths.manifest)
    snapshot.save(paths.snapshot)
    seconds = time.perf_counter() - start
    figures = {
        "rows": written.rows,
        "labelled_rows": written.labelled,
        "hits": written.hits,
        "features": written.features,
        "seconds": round(seconds, 2),
        "chunk_months": months,
        "snapshot_as_of": as_of.isoformat(),
    }
    lines = [
        f"rows: {written.rows:,} declarations, {written.labelled:,} labelled "
        f"({written.hits:,} hits)" + (f", built over {months}-month chunks" if months else ""),
        f"features: {written.features} -> {paths.features} (manifest {paths.manifest})",
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
