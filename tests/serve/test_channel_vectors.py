"""The export's test vectors, and a second implementation of the channel assignment
(docs/channel_assignment.js, written from docs/selectivity.md) that agrees with every one."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers.serve import serve_config, watch_list_rules

from pipeline.config import PROJECT_ROOT
from pipeline.serve.cutoffs import compute_cutoffs
from pipeline.serve.vectors import NEW_OFFICE, TIES, VECTORS_KEY, channel_vectors

REFERENCE_JS = PROJECT_ROOT / "docs" / "channel_assignment.js"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(
    NODE is None, reason="node is not installed: the JavaScript reference cannot run here"
)


def _policy(rows: int = 4_000, seed: int = 3) -> dict[str, Any]:
    """Cut-offs set on a reference window whose scores sit on plateaus (ties on score and
    margin), with offices, AEO traders, two rules and a 2 % random draw."""
    rng = np.random.default_rng(seed)
    score = np.round(rng.beta(1, 12, rows), 2)  # few distinct scores: isotonic-like plateaus
    reference = pd.DataFrame(
        {
            "declaration_id": [f"SD{i:07d}" for i in range(rows)],
            "office": rng.choice(["OFF001", "OFF002", "OFF003"], rows),
            "aeo": rng.random(rows) < 0.15,
            "importer": rng.choice([f"IMP{i}" for i in range(400)], rows),
            "hs_code": rng.choice(["930100", "847130", "610910"], rows, p=[0.002, 0.5, 0.498]),
            "score": score,
            "margin": np.round(np.log(score + 1e-3), 1),  # ties on the margin too
        }
    )
    serve = serve_config(
        per_office=True,
        office_capacity={"OFF001": 3.0},
        rules=watch_list_rules(),
        random_rate=0.02,
    )
    return compute_cutoffs(reference, serve, days=30.0)


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    return json.loads(json.dumps(channel_vectors(_policy()), allow_nan=False))


def test_the_vectors_probe_every_step_of_the_assignment(vectors: dict[str, Any]) -> None:
    assert vectors["key"] == VECTORS_KEY and set(vectors["policy"]["offices"]) == {"OFF001"}
    rows = pd.DataFrame(
        [
            {**v["input"], **{f"expected_{k}": e for k, e in v["expected"].items()}}
            for v in vectors["vectors"]
        ]
    )
    reasons = set(rows["expected_selection_reason"].dropna())
    assert {"random", "model", "watch-listed importer", "prohibited chapter 93"} <= reasons
    assert rows["expected_channel"].nunique() == 3  # red, yellow and green all reached
    assert (rows["office"] == NEW_OFFICE).any() and (rows["office"] == "OFF001").any()
    assert rows["aeo"].any()
    # a tie on (score, margin) goes either way on the keyed tie-break: both outcomes present
    probe = rows["declaration_id"].str.extract(r"^((?:DECL|AEO)-.+)-(\d\d)$")
    ties = rows.loc[probe[1].astype(float) < TIES].assign(group=probe[0])
    split = ties.groupby("group")["expected_channel"].nunique()
    assert (split > 1).sum() >= 2, split
    assert rows["declaration_id"].map(lambda d: len(d.encode()) > 16 and not d.isascii()).any()


def _node(path: Path) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    return subprocess.run(
        [NODE, str(REFERENCE_JS), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@needs_node
def test_the_javascript_reference_agrees_with_every_vector(
    vectors: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "selectivity_vectors.json"
    path.write_text(json.dumps(vectors, ensure_ascii=False), encoding="utf-8")
    done = _node(path)
    count = len(vectors["vectors"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{count} of {count} vectors agree" in done.stdout


@needs_node
def test_the_javascript_check_fails_on_a_wrong_expectation(
    vectors: dict[str, Any], tmp_path: Path
) -> None:
    wrong = json.loads(json.dumps(vectors))
    entry = next(v for v in wrong["vectors"] if v["expected"]["channel"] == "green")
    entry["expected"]["channel"] = "red"
    path = tmp_path / "wrong.json"
    path.write_text(json.dumps(wrong), encoding="utf-8")
    done = _node(path)
    assert done.returncode == 1
    assert f"{entry['input']['declaration_id']}: expected" in done.stdout
