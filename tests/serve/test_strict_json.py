"""Strict JSON: files and answers other systems read hold null where Python would write NaN."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.serve.strict_json import dumps, finite


def _refuse(constant: str) -> None:
    raise ValueError(f"bare {constant}")


def test_not_finite_numbers_become_null_at_any_depth() -> None:
    document = {
        "score": float("nan"),
        "shares": [np.float64(0.25), np.float32(np.inf), -float("inf")],
        "nested": {"rows": np.int64(3), "rate": (1.5, float("nan"))},
        "text": "NaN",
    }
    assert finite(document) == {
        "score": None,
        "shares": [0.25, None, None],
        "nested": {"rows": 3, "rate": [1.5, None]},
        "text": "NaN",
    }
    text = dumps(document, indent=2)
    assert json.loads(text, parse_constant=_refuse)["shares"] == [0.25, None, None]
    with pytest.raises(ValueError, match="bare NaN"):  # what json.dumps writes by default
        json.loads(json.dumps(document, default=float), parse_constant=_refuse)
