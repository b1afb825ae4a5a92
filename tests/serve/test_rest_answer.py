"""The REST answer is strict JSON whatever the scored frame holds: a missing or non-finite
number, in a column or inside a reason code, is null; everything else is kept as it is."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from pipeline.serve.scorer import OUTPUT_COLUMNS, rest_answer


def _scored() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "declaration_id": pd.array(["D1", None, "D3", "D4"], dtype="string").astype(object),
            "score": [np.inf, 0.25, np.nan, 0.5],
            "probability": [0.1, -np.inf, 0.2, 0.3],
            "channel": ["red", "manual", "green", "yellow"],
            "selection_reason": ["model", "invalid", None, "random"],
            "selection_probability": [np.nan, np.nan, np.nan, 0.05],
            "reasons": [
                '[{"feature":"a","value":NaN,"contribution":1e400,"phrase":"NaN days"}]',
                None,
                np.nan,
                '[{"feature":"b","value":"x","contribution":0.5,"phrase":"p"},'
                '{"feature":"c","value":-Infinity,"contribution":Infinity,"phrase":"q"}]',
            ],
            "error": [None, "lodged_at: missing", pd.NA, float("inf")],
        },
        columns=list(OUTPUT_COLUMNS),
    )


def test_the_answer_is_strict_json_with_null_for_what_is_not_a_finite_number() -> None:
    records = rest_answer(_scored()).to_dict(orient="records")
    json.dumps(records, allow_nan=False)  # raises on a NaN or an infinity left anywhere
    assert [r["score"] for r in records] == [None, 0.25, None, 0.5]
    assert [r["probability"] for r in records] == [0.1, None, 0.2, 0.3]
    assert [r["declaration_id"] for r in records] == ["D1", None, "D3", "D4"]
    assert [r["error"] for r in records] == [None, "lodged_at: missing", None, None]
    assert records[0]["reasons"] == [
        {"feature": "a", "value": None, "contribution": None, "phrase": "NaN days"}
    ]
    assert records[1]["reasons"] is None and records[2]["reasons"] is None
    assert records[3]["reasons"] == [
        {"feature": "b", "value": "x", "contribution": 0.5, "phrase": "p"},
        {"feature": "c", "value": None, "contribution": None, "phrase": "q"},
    ]


def test_equal_length_reason_lists_stay_one_cell_each() -> None:
    scored = _scored().iloc[[3, 3]].reset_index(drop=True)
    answer = rest_answer(scored)
    assert answer.shape == (2, len(OUTPUT_COLUMNS))
    assert all(isinstance(cell, list) and len(cell) == 2 for cell in answer["reasons"])
