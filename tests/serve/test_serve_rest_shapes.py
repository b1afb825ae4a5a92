"""REST shapes against a real `mlflow models serve`: one row back per row sent, or a 400 that
names the problem (issue 25). MLflow's own schema enforcement used to reshape these bodies: a
columnar body came back as one row, a split body without columns or upper-case names as an empty
answer, and a KCS model never received its `kcs_*` columns."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers.serve import declarations, logged_scorer, trained
from helpers.servers import mlflow_store, models_serve

from pipeline.config import FeaturesConfig
from pipeline.serve.scorer import Scorer

pytestmark = pytest.mark.slow
KCS_COLUMN = "kcs_process_type"


@dataclass
class Server:
    """A served scorer: its URL, the in-process scorer it must agree with, a batch to send."""

    url: str
    scorer: Scorer
    batch: pd.DataFrame


def _post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, Any]:
    request = urllib.request.Request(f"{url}/invocations", body, {"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read() or b"{}")


def _with_kcs(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(**{KCS_COLUMN: np.resize(["A", "B", "C"], len(frame))})


def _log(folder: Path, kcs: bool) -> tuple[str, Scorer, pd.DataFrame]:
    """Train a small model (with a KCS column when `kcs`), export it and log the scorer."""
    extra = [KCS_COLUMN] if kcs else []
    config = FeaturesConfig(raw_categories=[*FeaturesConfig().raw_categories, *extra])
    history = declarations(3_000, seed=21, start=dt.date(2024, 1, 1), days=90)
    history = _with_kcs(history) if kcs else history
    world = trained(history, seed=21, rounds=10, config=config)
    logged = logged_scorer(world, folder)
    batch = declarations(20, seed=22, start=dt.date(2024, 4, 1), days=3)
    batch = _with_kcs(batch) if kcs else batch
    return logged.uri, Scorer(world.model, logged.snapshot, logged.thresholds, config), batch


@pytest.fixture(scope="module", params=["canonical", "kcs"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp(f"rest-{request.param}")
    with mlflow_store(folder, "rest") as store:
        uri, scorer, batch = _log(folder, kcs=request.param == "kcs")
    with models_serve(uri, store, folder / "serve.log") as url:
        yield Server(url, scorer, batch)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(frame.to_json(orient="records", date_format="iso"))
    return records


def _split(frame: pd.DataFrame) -> dict[str, Any]:
    split: dict[str, Any] = json.loads(
        frame.to_json(orient="split", date_format="iso", index=False)
    )
    return split


def _body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def _by_column(frame: pd.DataFrame) -> dict[str, list[Any]]:
    split = _split(frame)
    return {c: [row[i] for row in split["data"]] for i, c in enumerate(split["columns"])}


def _upper(frame: pd.DataFrame) -> bytes:
    return _body({"dataframe_records": _records(frame.rename(columns=str.upper))})


def _no_columns(frame: pd.DataFrame) -> bytes:
    return _body({"dataframe_split": {"data": _split(frame)["data"]}})


def _twice(frame: pd.DataFrame) -> bytes:
    split = _split(frame)
    split["columns"][1] = split["columns"][2]
    return _body({"dataframe_split": split})


def _unknown(frame: pd.DataFrame) -> bytes:
    return _body({"dataframe_records": [{"ref": i, "amount": 1.0} for i in range(len(frame))]})


def _instances(frame: pd.DataFrame) -> bytes:
    return _body({"instances": _records(frame)})


REFUSED = [
    ("columnar inputs", lambda f: _body({"inputs": _by_column(f)}), "not a table of declarations"),
    ("instances", _instances, "not a table of declarations"),
    ("dataframe_split without columns", _no_columns, "the columns have no names"),
    ("upper-case column names", _upper, "'LODGED_AT' for 'lodged_at'"),
    ("a column named twice", _twice, "sent more than once"),
    ("no declaration column", _unknown, "none of the columns is a declaration column"),
]


@pytest.mark.parametrize(("name", "make", "fragment"), REFUSED, ids=[r[0] for r in REFUSED])
def test_a_body_the_scorer_cannot_answer_row_for_row_is_refused_with_400(
    server: Server, name: str, make: Any, fragment: str
):
    status, answer = _post(server.url, make(server.batch))
    assert status == 400, (name, answer)
    assert fragment in answer["message"], answer
    assert len(answer["message"]) < 600  # the problem named, not the request body echoed


def _cell_objects(frame: pd.DataFrame) -> bytes:
    records = _records(frame)
    records[3]["office"] = {"code": "KRPUS"}
    records[5]["importer"] = ["IMP1", "IMP2"]
    return _body({"dataframe_records": records})


ANSWERED = [
    ("dataframe_split", lambda f: _body({"dataframe_split": _split(f)}), ()),
    ("dataframe_records", lambda f: _body({"dataframe_records": _records(f)}), ()),
    ("a dict and a list in two cells", _cell_objects, (3, 5)),
    (
        "names with stray blanks",
        lambda f: _body({"dataframe_records": _records(f.rename(columns=lambda c: f" {c} "))}),
        (),
    ),
]


@pytest.mark.parametrize(("name", "make", "bad"), ANSWERED, ids=[a[0] for a in ANSWERED])
def test_one_row_back_per_row_sent_and_a_bad_cell_costs_its_row(
    server: Server, name: str, make: Any, bad: tuple[int, ...]
):
    status, answer = _post(server.url, make(server.batch))
    assert status == 200, answer
    rows = pd.DataFrame(answer["predictions"])
    assert len(rows) == len(server.batch)  # rows in = rows out
    manual = (rows["channel"] == "manual").to_numpy()
    assert np.flatnonzero(manual).tolist() == list(bad), rows[["channel", "error"]]
    assert all("a nested value" in rows["error"].iloc[i] for i in bad)
    expected = server.scorer.score(server.batch)
    good = ~manual
    assert rows["channel"][good].tolist() == expected["channel"][good].tolist()


def test_text_csv_as_the_server_advertises(server: Server):
    body = server.batch.to_csv(index=False).encode()
    status, answer = _post(server.url, body, "text/csv")
    assert status == 200, answer
    rows = pd.DataFrame(answer["predictions"])
    assert len(rows) == len(server.batch)
    assert (rows["channel"] != "manual").all(), rows["error"].tolist()


def test_the_model_receives_every_column_it_reads(server: Server):
    """A KCS model scores KCS rows over REST (its kcs_* column reaches it); the canonical model
    ignores an extra column."""
    status, answer = _post(server.url, _body({"dataframe_split": _split(server.batch)}))
    assert status == 200, answer
    rows = pd.DataFrame(answer["predictions"])
    assert (rows["channel"] != "manual").all(), rows["error"].tolist()
    if KCS_COLUMN in server.batch.columns:
        status, answer = _post(
            server.url, _body({"dataframe_split": _split(server.batch.drop(columns=KCS_COLUMN))})
        )
        rows = pd.DataFrame(answer["predictions"])
        assert status == 200 and (rows["channel"] == "manual").all()
        assert "made for KCS data" in rows["error"].iloc[0]


def test_kcs_rows_to_a_model_that_never_saw_them_are_refused(server: Server):
    if KCS_COLUMN in server.batch.columns:
        pytest.skip("this server's model was trained on KCS rows")
    status, answer = _post(
        server.url, _body({"dataframe_records": _records(_with_kcs(server.batch))})
    )
    assert status == 400, answer
    assert "trained on other data" in answer["message"]
