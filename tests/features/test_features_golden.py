"""The feature build gives bit-for-bit the output recorded before its speed-ups (issue 16).

`tests/golden/feature_digests.json` holds one SHA-256 per column of X, per metadata series and
of the manifest, recorded from the build as it was before its internal speed-ups, on three
streams: the tiny frames (ties, odd indexes, random stratum), a small simulated stream (and a
snapshot attached to its later declarations), and the KCS sample. A speed-up that changes one bit
of one feature fails here. Re-record only for a change meant to alter features:

    PYTHONPATH=tests .venv/bin/python tests/features/test_features_golden.py --record
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.features import KCS_FILES, kcs_sample, simulated, small_config, tiny_tables

from pipeline.config import FeaturesConfig
from pipeline.features.build import attach, build_feature_set, build_snapshot
from pipeline.features.featureset import META_COLUMNS, FeatureSet

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "feature_digests.json"


def _column_digest(values: pd.Series) -> str:
    """SHA-256 of a column: dtype, then its bytes (category codes and levels for categories)."""
    digest = hashlib.sha256(str(values.dtype).encode())
    if isinstance(values.dtype, pd.CategoricalDtype):
        digest.update(np.ascontiguousarray(values.cat.codes.to_numpy()).tobytes())
        digest.update("\x1f".join(map(str, values.cat.categories)).encode())
    elif values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        text = ("<NA>" if v is None or v != v else str(v) for v in values)
        digest.update("\x1f".join(text).encode())
    else:
        digest.update(np.ascontiguousarray(values.to_numpy()).tobytes())
    return digest.hexdigest()


def digests(feature_set: FeatureSet) -> dict[str, str]:
    """One digest per X column, per metadata column and of the manifest (in column order)."""
    out = {f"X.{name}": _column_digest(feature_set.X[name]) for name in feature_set.X.columns}
    for name in META_COLUMNS:
        out[name] = _column_digest(getattr(feature_set, name))
    manifest = feature_set.manifest.to_csv(index=False).encode()
    out["manifest"] = hashlib.sha256(manifest).hexdigest()
    return out


def _tiny() -> FeatureSet:
    declarations, outcomes = tiny_tables(400, seed=5)
    return build_feature_set(declarations, outcomes, small_config(random_stratum_only=True))


def _simulated() -> FeatureSet:
    declarations, outcomes = simulated()
    return build_feature_set(declarations, outcomes, FeaturesConfig())


def _simulated_attached() -> FeatureSet:
    declarations, outcomes = simulated()
    config = FeaturesConfig()
    as_of = declarations["lodged_at"].quantile(0.8)
    snapshot = build_snapshot(declarations, outcomes, config, as_of)
    later = declarations.loc[declarations["lodged_at"] >= as_of]
    return attach(later, snapshot, config)


def _kcs() -> FeatureSet:
    declarations, outcomes = kcs_sample(4000)
    return build_feature_set(declarations, outcomes, small_config(missing_result_delay_days=30.0))


CASES: dict[str, Callable[[], FeatureSet]] = {
    "tiny_random_stratum": _tiny,
    "simulated_6000": _simulated,
    "simulated_attached": _simulated_attached,
    "kcs_4000": _kcs,
}


def _recorded() -> dict[str, dict[str, str]]:
    recorded: dict[str, dict[str, str]] = json.loads(GOLDEN.read_text(encoding="utf-8"))
    return recorded


@pytest.mark.parametrize("case", sorted(CASES))
def test_features_equal_the_recorded_build_bit_for_bit(case: str) -> None:
    if case == "kcs_4000" and not KCS_FILES.is_dir():
        pytest.skip("KCS files not available")
    expected = _recorded()[case]
    actual = digests(CASES[case]())
    assert list(actual) == list(expected), "columns or their order changed"
    changed = [name for name in expected if actual[name] != expected[name]]
    assert not changed, f"{case}: columns no longer bit for bit: {changed}"


def test_the_digest_sees_one_changed_bit() -> None:
    feature_set = _tiny()
    before = digests(feature_set)
    X = feature_set.X.copy()
    column = X.columns[0]
    values = X[column].to_numpy().copy()
    values[3] = np.nextafter(values[3], np.float32(np.inf), dtype=np.float32)
    X[column] = values
    after = digests(FeatureSet(**{**feature_set.__dict__, "X": X}))
    assert [k for k in before if before[k] != after[k]] == [f"X.{column}"]


if __name__ == "__main__" and "--record" in sys.argv:
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    cases = {name: digests(make()) for name, make in CASES.items()}
    GOLDEN.write_text(json.dumps(cases, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN}")
