"""Test vectors of the channel assignment: declarations, their score and margin, and the channel
`assign_channels` gives them, for a second implementation of docs/selectivity.md (such as
docs/channel_assignment.js) to check itself against.

The vectors are built on an export's own cut-offs, offices, rules and random draw, and probe the
edges of the algorithm: scores just above and below each cut-off, ties on (score, margin) that
only the keyed tie-break settles, office and AEO cut-offs, offices the export does not know,
rules (the first one listed wins), declarations the random draw takes, identifiers longer than a
SipHash block and outside ASCII. They are computed with a public key (`VECTORS_KEY`, written in
the file), never the deployment's secret: a vector names which declarations the draw takes, and
with the secret key that would help guess it.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd

from pipeline.serve.channels import assign_channels
from pipeline.serve.draw import key_fingerprint, random_draw
from pipeline.serve.thresholds import Thresholds

VECTORS_KEY = "customs-targeting public test-vector key"  # public: for the vectors only
POLICY_KEYS = ("channels", "cutoffs", "offices", "random", "rules", "serving")
NEW_OFFICE = "OFFICE-NOT-IN-THE-EXPORT"
TIES = 6  # declarations per tie: enough that the tie-break sends some either way
DRAWN = 3  # declarations taken by the random draw


def _policy(document: dict[str, Any], office: str | None) -> dict[str, Any]:
    """The parts of the export the assignment reads, keyed with `VECTORS_KEY`; of the offices,
    only `office` (the one the vectors use)."""
    policy = {key: copy.deepcopy(document[key]) for key in POLICY_KEYS}
    policy["offices"] = {office: policy["offices"][office]} if office else {}
    policy["random"]["key_sha256"] = key_fingerprint(VECTORS_KEY)
    return policy


def _around(cut: dict[str, Any], prefix: str, office: str, aeo: bool) -> list[dict[str, Any]]:
    """Declarations on, just above and just below one cut-off (score, margin)."""
    score, margin = float(cut["score"]), float(cut["margin"])
    up, down = np.nextafter(score, np.inf), np.nextafter(score, -np.inf)
    probes = [(score, margin)] * TIES + [
        (score, np.nextafter(margin, np.inf)),
        (score, np.nextafter(margin, -np.inf)),
        (float(up), margin),
        (float(down), margin),
    ]
    return [
        {
            "declaration_id": f"{prefix}-{i:02d}",
            "office": office,
            "aeo": aeo,
            "score": s,
            "margin": m,
        }
        for i, (s, m) in enumerate(probes)
    ]


def _cutoff_rows(policy: dict[str, Any], office: str | None) -> list[dict[str, Any]]:
    """Probes around every cut-off that selects someone: global (for an office the export does
    not know), the office's own, each for AEO and other traders."""
    groups = [(NEW_OFFICE, policy["cutoffs"])]
    if office:
        groups.append((office, policy["offices"][office]))
    rows: list[dict[str, Any]] = []
    for where, group in groups:
        for kind, aeo in (("cutoffs", False), ("aeo_cutoffs", True)):
            for channel, cut in group[kind].items():
                if cut.get("score") is not None:
                    prefix = f"{'AEO' if aeo else 'DECL'}-{where}-{channel}"
                    rows += _around(cut, prefix, where, aeo)
    return rows


def _forced_rows(policy: dict[str, Any], top: float) -> list[dict[str, Any]]:
    """Declarations a rule matches (the first rule wins) and declarations the draw takes."""
    rows: list[dict[str, Any]] = []
    for i, rule in enumerate(policy["rules"]):
        for value in [*rule["values"][:1], *(f"{p}0123" for p in rule["prefix"][:1])]:
            rows.append(
                {
                    "declaration_id": f"RULE-{i}-{value}",
                    "office": NEW_OFFICE,
                    "aeo": False,
                    "score": top,
                    "margin": 0.0,
                    rule["column"]: value,
                }
            )
    rate = float(policy["random"]["rate"])
    if rate > 0:
        candidates = pd.Series([f"DRAW-{i:07d}" for i in range(max(2_000, int(40 * DRAWN / rate)))])
        drawn = candidates[random_draw(candidates, VECTORS_KEY, rate)].head(DRAWN)
        rows += [
            {"declaration_id": d, "office": NEW_OFFICE, "aeo": False, "score": 0.0, "margin": -9.0}
            for d in drawn
        ]
    return rows


def channel_vectors(document: dict[str, Any]) -> dict[str, Any]:
    """Test vectors for an export `document`: the policy they were made with (the export's own
    fields, keyed with `VECTORS_KEY`) and, per declaration, its inputs and expected channel,
    selection reason and selection probability."""
    office = min(document["offices"], default=None)  # the first by name: reproducible
    policy = _policy(document, office)
    scores = [c["score"] for c in policy["cutoffs"]["cutoffs"].values() if c["score"] is not None]
    top = float(max(scores, default=1.0))
    rows = _cutoff_rows(policy, office) + _forced_rows(policy, top)
    rows.append(  # beyond one SipHash block and outside ASCII: the id's UTF-8 bytes are hashed
        {
            "declaration_id": "DÉCLARATION-ÉTÉ-Ω-0001",
            "office": NEW_OFFICE,
            "aeo": False,
            "score": top,
            "margin": 0.0,
        }
    )
    frame = pd.DataFrame(rows)
    for rule in policy["rules"]:
        if rule["column"] not in frame:
            frame[rule["column"]] = None
    columns = [c for c in frame.columns if c not in ("score", "margin")]
    frame[columns] = frame[columns].astype(object).where(frame[columns].notna(), None)
    assigned = assign_channels(
        Thresholds(policy, VECTORS_KEY),
        frame,
        frame["score"].to_numpy(),
        frame["margin"].to_numpy(),
    )
    probability = assigned["selection_probability"].astype(float)
    expected = assigned.assign(
        selection_probability=probability.astype(object).where(probability.notna(), None)
    )
    return {
        "about": "channel assignment test vectors: docs/selectivity.md, 'Assigning a channel'",
        "key": VECTORS_KEY,
        "policy": policy,
        "vectors": [
            {"input": inputs, "expected": outcome}
            for inputs, outcome in zip(
                frame.to_dict(orient="records"), expected.to_dict(orient="records"), strict=True
            )
        ],
    }
