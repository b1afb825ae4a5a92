"""Strict JSON for everything other systems read: no NaN and no infinity (RFC 8259 has neither;
`JSON.parse` in Node and most strict parsers refuse them), null instead.

Python's `json` writes bare ``NaN`` and ``Infinity`` by default; `dumps` here writes null for
them and refuses anything else it cannot write, so a file or an answer is valid JSON or is not
written at all.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def finite(value: Any) -> Any:
    """`value` with every float that is not finite (NaN, infinity) replaced by None, through
    dicts, lists and tuples; numpy scalars become Python numbers."""
    if isinstance(value, Mapping):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, **options: Any) -> str:
    """`json.dumps` that writes null for NaN and infinity and never a bare ``NaN``."""
    return json.dumps(finite(value), allow_nan=False, **options)
