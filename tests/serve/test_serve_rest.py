"""The scorer as an MLflow pyfunc, served over REST by `mlflow models serve` on loopback."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers.serve import declarations, logged_scorer, trained
from helpers.servers import mlflow_store, models_serve

from pipeline.config import FeaturesConfig
from pipeline.serve.scorer import Scorer, rest_answer

pytestmark = pytest.mark.slow


@pytest.fixture
def tracking(tmp_path: Path) -> Iterator[str]:
    """A real MLflow SQLite store in tmp_path, artefacts beside it; the old URI restored after."""
    with mlflow_store(tmp_path, "serve") as uri:
        yield uri


def _not_json(constant: str) -> Any:
    raise ValueError(f"not strict JSON: a bare {constant} in the answer (RFC 8259 has none)")


def strict_json(text: bytes | str) -> Any:
    """Parse as a strict parser (Node's JSON.parse) would: a bare NaN or Infinity is an error."""
    return json.loads(text, parse_constant=_not_json)


def _post(url: str, payload: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return strict_json(answer.read())


def test_the_strict_parser_refuses_what_python_writes_by_default() -> None:
    with pytest.raises(ValueError, match="bare NaN"):
        strict_json(json.dumps({"score": float("nan")}))
    with pytest.raises(ValueError, match="bare -Infinity"):
        strict_json(json.dumps([float("-inf")]))


def _comparable(frame: pd.DataFrame) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(frame.to_json(orient="records"))
    return records


def test_mlflow_models_serve_answers_like_the_in_process_scorer(tmp_path: Path, tracking: str):
    config = FeaturesConfig()
    world = trained(
        declarations(3_000, seed=21, start=dt.date(2024, 1, 1), days=90), seed=21, rounds=15
    )
    logged = logged_scorer(world, tmp_path)
    model, snapshot, thresholds, uri = world.model, logged.snapshot, logged.thresholds, logged.uri
    assert uri == f"runs:/{logged.run_id}/scorer"

    batch = declarations(40, seed=22, start=dt.date(2024, 4, 1), days=3)
    batch.loc[3, "declared_value"] = -1.0  # invalid: must come back manual, not vanish
    batch.loc[5, "office"] = "NEW-OFFICE"
    in_process = Scorer(model, snapshot, thresholds, config).score(batch)
    loaded = mlflow.pyfunc.load_model(uri).predict(batch)
    pd.testing.assert_frame_equal(loaded.reset_index(drop=True), rest_answer(in_process))

    with models_serve(uri, tracking, tmp_path / "serve.log") as url:
        split = json.loads(batch.to_json(orient="split", date_format="iso", index=False))
        answer = _post(f"{url}/invocations", {"dataframe_split": split})
        # Text booleans are read as written, and one bad cell costs its row only.
        subset = batch.iloc[6:12].reset_index(drop=True)
        records = json.loads(subset.to_json(orient="records", date_format="iso"))
        for record in records:
            record["aeo"] = "false"
        records[2]["lodged_at"] = "yesterday"
        hostile = _post(f"{url}/invocations", {"dataframe_records": records})
    served = pd.DataFrame(answer["predictions"])
    assert len(served) == len(batch)
    expected = pd.DataFrame(_comparable(in_process))
    assert served["declaration_id"].tolist() == expected["declaration_id"].tolist()
    assert served["channel"].tolist() == expected["channel"].tolist()
    assert served["channel"].iloc[3] == "manual"
    np.testing.assert_allclose(
        served["probability"].astype(float), expected["probability"].astype(float), rtol=1e-6
    )
    for column in ("selection_reason", "error"):
        assert served[column].tolist() == expected[column].tolist(), column
    # reasons: a JSON array of objects, not JSON text inside the JSON; null where none
    assert served["reasons"].tolist() == [
        None if text is None else json.loads(text) for text in expected["reasons"]
    ]
    listed = [r for r in answer["predictions"] if r["reasons"] is not None]
    assert listed and all(isinstance(r["reasons"], list) for r in listed)
    assert {"feature", "value", "contribution", "phrase"} == set(listed[0]["reasons"][0])
    # what was NaN in the frame is null in the answer (the manual row has no score)
    assert answer["predictions"][3]["score"] is None
    drawn = [r["selection_probability"] for r in answer["predictions"]]
    assert None in drawn and all(p is None or 0 < p <= 1 for p in drawn)
    rows = pd.DataFrame(hostile["predictions"])
    assert (
        len(rows) == 6
        and (rows["channel"] == "manual").tolist() == [False] * 2 + [True] + [False] * 3
    )
    assert "lodged_at: not a date ('yesterday')" in rows["error"].iloc[2]
    as_false = pd.DataFrame(
        _comparable(
            Scorer(model, snapshot, thresholds, config).score(
                subset.assign(aeo=False).drop(index=2)
            )
        )
    )
    assert rows.drop(index=2)["channel"].tolist() == as_false["channel"].tolist()
