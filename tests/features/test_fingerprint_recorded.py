"""The data fingerprint is taken once by the features job and read by train (issue 16)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from helpers.train import feature_set, train_config
from mlflow.tracking import MlflowClient

from pipeline import tracking
from pipeline.config import Config
from pipeline.features.featureset import (
    FeatureSet,
    fingerprint_path,
    record_fingerprint,
    recorded_fingerprint,
)
from pipeline.jobs.features import features
from pipeline.jobs.train import train


def test_the_features_job_records_the_fingerprint_train_would_take(
    simulated_project: Callable[..., Config],
) -> None:
    config = simulated_project(rows=2000, days=90, importers=200, sellers=150, declarants=20)
    features(config)
    paths = config.paths
    written = FeatureSet.read_parquet(paths.features, paths.manifest)
    expected = tracking.data_fingerprint([written.X, written.meta()])
    assert recorded_fingerprint(paths.features, paths.manifest) == expected


def test_a_changed_file_or_a_broken_record_is_fingerprinted_again(tmp_path: Path) -> None:
    fs = feature_set(rows=500, seed=2)
    path, manifest = tmp_path / "features.parquet", tmp_path / "manifest.csv"
    fs.to_parquet(path, manifest)
    digest = record_fingerprint(path, manifest)
    assert recorded_fingerprint(path, manifest) == digest
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert recorded_fingerprint(path, manifest) is None  # rewritten since: not trusted
    record_fingerprint(path, manifest)
    fingerprint_path(path).write_text("{not json", encoding="utf-8")
    assert recorded_fingerprint(path, manifest) is None


def test_train_reads_the_recorded_fingerprint_instead_of_hashing(tmp_path: Path) -> None:
    config = train_config(tmp_path)
    fs = feature_set(rows=2_000, seed=5)
    fs.to_parquet(config.paths.features, config.paths.manifest)
    record_fingerprint(config.paths.features, config.paths.manifest)
    # A record whose digest train cannot have computed: the tag shows which one it used.
    record = json.loads(fingerprint_path(config.paths.features).read_text(encoding="utf-8"))
    record["sha256"] = "recorded-by-the-features-job"
    fingerprint_path(config.paths.features).write_text(json.dumps(record), encoding="utf-8")
    result = train(config)
    tracking.configure(config)
    tags = MlflowClient().get_run(result.figures["run_id"]).data.tags
    assert tags["data_fingerprint"] == "recorded-by-the-features-job"
