"""Hostile inputs, one table: each case goes through the CLI (`targeting validate` or
`targeting score`) or the scorer, and must end as expected, with the message named, every row
accounted for (kept + quarantined, or scored + manual) and never a traceback.

One small real model (XGBoost on real features, isotonic calibration) and its exported
thresholds are built once for the whole session; the KCS cases use the first rows of the
public KCS file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers.ingest import KCS_DIR, PROJECT
from helpers.ingest import declarations as user_declarations
from helpers.ingest import outcomes as user_outcomes
from helpers.serve import (
    declarations,
    labelled_training,
    make_snapshot,
    scored_reference,
    serve_config,
    thresholds_document,
    train_model,
    trained,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import FeaturesConfig
from pipeline.ingest.columns import DECLARATION_COLUMNS
from pipeline.serve.model import TargetingModel
from pipeline.serve.scorer import Scorer
from pipeline.serve.selectivity import content_digest
from pipeline.serve.thresholds import Thresholds

CONFIG = str(PROJECT / "configs" / "default.yaml")
KCS_FILE = KCS_DIR / "df_syn_train_eng.csv"
COUNTS = re.compile(r"([\d,]+) rows in, ([\d,]+) kept, ([\d,]+) quarantined")
runner = CliRunner()


@dataclass
class Served:
    """A small trained model with its thresholds file, and one for a KCS-trained model."""

    folder: Path
    scorer: Scorer
    thresholds: Path
    kcs_thresholds: Path
    incoming: pd.DataFrame


def _save_export(
    folder: Path, name: str, model: TargetingModel, reference: pd.DataFrame, snapshot: Any
) -> tuple[Path, dict[str, Any]]:
    model.save(folder / f"{name}-model")
    document = thresholds_document(model, reference, serve_config(), {})
    document["model"]["uri"] = str(folder / f"{name}-model")
    document["snapshot"] = {"path": str(folder / "snapshot"), "uri": None}
    path = Thresholds(document).save(folder / f"{name}.json")
    return path, document


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    folder = tmp_path_factory.mktemp("bad-inputs")
    config = FeaturesConfig()
    world = trained(
        declarations(3_000, seed=21, start=dt.date(2024, 1, 1), days=120), seed=21, rounds=15
    )
    model = world.model
    snapshot = make_snapshot(world.history, world.inspected, config)
    snapshot.save(folder / "snapshot")
    late = (world.feature_set.lodged_at >= pd.Timestamp("2024-03-15")).to_numpy()
    reference = scored_reference(world.history, world.feature_set.subset(late), model)
    path, document = _save_export(folder, "canonical", model, reference, snapshot)
    # A model trained with a KCS extra column: its thresholds cannot score canonical files.
    X, y = labelled_training(world.feature_set)
    kcs_X = X.assign(kcs_process_type=pd.Categorical(np.resize(["A", "B"], len(X))))
    kcs_model = train_model(kcs_X, y, rounds=5)
    kcs_path, _ = _save_export(folder, "kcs", kcs_model, reference, snapshot)
    thresholds = Thresholds.from_document(document, model.booster_sha256())
    scorer = Scorer(model, snapshot, thresholds, config)
    incoming = declarations(30, seed=22, start=dt.date(2024, 5, 1), days=5)
    return Served(folder, scorer, path, kcs_path, incoming)


# --- building the inputs ---------------------------------------------------------------------


Change = Callable[[pd.DataFrame], pd.DataFrame]


def _cell(column: str, value: Any, row: int = 1) -> Change:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        out[column] = out[column].astype(object)
        out.iloc[row, out.columns.get_loc(column)] = value
        return out

    return change


def _column(column: str, values: Callable[[pd.DataFrame], Any]) -> Change:
    return lambda frame: frame.assign(**{column: values(frame)})


def _ambiguous(frame: pd.DataFrame) -> list[str]:
    """Day-first dates whose day and month are both at most 12: either reading is possible."""
    return [f"{i % 12 + 1:02d}/{i * 5 % 12 + 1:02d}/2024 10:00" for i in range(len(frame))]


def _rename(old: str, new: str) -> Change:
    return lambda frame: frame.rename(columns={old: new})


def _user_csv(tmp: Path, change: Change | None = None) -> Path:
    frame = user_declarations(12, seed=3)
    if change is not None:
        frame = change(frame)
    path = tmp / "declarations.csv"
    frame.to_csv(path, index=False)
    return path


def _raw(tmp: Path, content: bytes, name: str = "declarations.csv") -> Path:
    path = tmp / name
    path.write_bytes(content)
    return path


def _valid_csv_text() -> str:
    return user_declarations(12, seed=3).to_csv(index=False)


def _kcs(tmp: Path, column: str | None = None, value: str = "", raw: bytes | None = None) -> Path:
    lines = KCS_FILE.read_bytes().splitlines(keepends=True)[:41]  # header + 40 rows
    if raw is not None:
        lines[3] = raw
    elif column is not None:
        header = lines[0].decode("utf-8-sig").rstrip("\r\n").split(",")
        cells = lines[3].decode("utf-8").rstrip("\r\n").split(",")
        cells[header.index(column)] = value
        lines[3] = (",".join(cells) + "\n").encode("utf-8")
    return _raw(tmp, b"".join(lines), "kcs.csv")


# --- running a case --------------------------------------------------------------------------


def _invoke(
    args: list[str],
    tmp: Path,
    env: dict[str, str] | None = None,
    store: Path | None = None,
    config: str = CONFIG,
    sets: tuple[str, ...] = (),
) -> tuple[int, str]:
    """Run the CLI; `store`: the folder of the MLflow SQLite store (one per session for the
    score cases: creating a store runs its migrations, seconds each); `sets` come last."""
    result = runner.invoke(
        app,
        [
            *args,
            "--config",
            config,
            "--set",
            f"output_dir={tmp / 'out'}",
            "--set",
            f"tracking.uri=sqlite:///{(store or tmp) / 'mlflow.db'}",
            *[part for override in sets for part in ("--set", override)],
        ],
        env=env,
    )
    output = " ".join(result.output.split())  # rich may wrap long lines
    assert "Traceback" not in output, output
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, output


@dataclass(frozen=True)
class Validate:
    """`targeting validate` on a file made by `make` (declarations, and outcomes if given)."""

    make: Callable[[Path], Path]
    outcomes: Callable[[Path], Path] | None = None
    kcs: bool = False
    sets: tuple[str, ...] = ()
    config_text: str | None = None  # a config file of this text instead of the default
    quarantine: str = "quarantine.csv"


@dataclass(frozen=True)
class Score:
    """`targeting score` on a file made by `make`, with the thresholds `thresholds(...)`."""

    make: Callable[[Path, Served], Path]
    thresholds: Callable[[Path, Served], Path] = lambda tmp, s: s.thresholds
    out: str = "scored.csv"
    env: tuple[tuple[str, str], ...] = ()
    sets: tuple[str, ...] = ()
    format: str = "canonical"


@dataclass(frozen=True)
class Direct:
    """`Scorer.score` on a batch made from the incoming declarations (as a REST body is)."""

    change: Change
    bad_rows: tuple[int, ...] = ()


def _bytes_of(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def _run_validate(case: Validate, tmp: Path, expected: str, fragment: str) -> None:
    source = case.make(tmp)
    before = _bytes_of(source)
    quarantine = tmp / case.quarantine
    args = ["validate", "--input", str(source), "--quarantine", str(quarantine)]
    if case.outcomes is not None:
        args += ["--outcomes", str(case.outcomes(tmp))]
    if case.kcs:
        args += ["--format", "kcs"]
    config = CONFIG
    if case.config_text is not None:
        config = str(tmp / "config.yaml")
        Path(config).write_text(case.config_text)
    code, output = _invoke(args, tmp, config=config, sets=case.sets)
    assert _bytes_of(source) == before, "validate changed its input"
    if expected in ("refused", "config refused"):
        assert code == (2 if expected == "config refused" else 1), output
        assert fragment in output, output
        return
    assert code == 0, output
    counts = [tuple(int(n.replace(",", "")) for n in m) for m in COUNTS.findall(output)]
    assert counts, output
    for rows_in, kept, quarantined in counts:
        assert rows_in == kept + quarantined, output
    total = sum(q for _, _, q in counts)
    if expected == "kept":
        assert total == 0, output
        assert fragment in output, output
        return
    assert total >= 1, output
    written = pd.read_csv(quarantine)
    assert len(written) == total
    assert written["reason"].str.contains(fragment, regex=False).any(), written["reason"]


def _run_score(case: Score, tmp: Path, served: Served, expected: str, fragment: str) -> None:
    source = case.make(tmp, served)
    before = _bytes_of(source)
    out = tmp / case.out
    args = ["score", "--input", str(source), "--thresholds", str(case.thresholds(tmp, served))]
    args += ["--format", case.format]
    code, output = _invoke(
        [*args, "--out", str(out)],
        tmp,
        dict(case.env) or None,
        store=served.folder,
        sets=case.sets,
    )
    assert _bytes_of(source) == before, "score changed its input"
    codes = {"scored": 0, "some manual": 4, "all manual": 5, "refused": 1}
    assert code == codes[expected], output
    if expected == "refused":
        assert fragment in output, output
        return
    scored = pd.read_csv(out, dtype={"declaration_id": str}, keep_default_na=False)
    rows_in = len(pd.read_csv(source)) if source.suffix == ".csv" else len(pd.read_parquet(source))
    assert len(scored) == rows_in
    manual = scored["channel"] == "manual"
    assert (manual.sum() == rows_in) == (expected == "all manual")
    text = scored.to_csv(index=False)
    assert fragment in text or fragment in output, text[:2000]


def _run_direct(case: Direct, served: Served, expected: str, fragment: str) -> None:
    batch = case.change(served.incoming.iloc[:12].reset_index(drop=True))
    scored = served.scorer.score(batch)
    assert len(scored) == len(batch)
    assert scored.index.equals(pd.RangeIndex(len(batch)))
    manual = (scored["channel"] == "manual").to_numpy()
    if expected == "scored":
        assert not manual.any(), scored.loc[manual, "error"].tolist()
        assert fragment in " ".join(scored["channel"].astype(str))
        return
    if expected == "all manual":
        assert manual.all()
        assert scored["error"].str.contains(fragment, regex=False).all(), scored["error"]
        return
    bad = np.zeros(len(batch), dtype=bool)
    bad[list(case.bad_rows)] = True
    assert (manual == bad).all(), scored[["channel", "error"]]
    assert scored.loc[bad, "error"].str.contains(fragment, regex=False).all(), scored["error"]


def _score_frame(change: Change | None = None, suffix: str = ".csv") -> Callable[..., Path]:
    def make(tmp: Path, served: Served) -> Path:
        frame = served.incoming.iloc[:10].reset_index(drop=True)
        if change is not None:
            frame = change(frame)
        path = tmp / f"incoming{suffix}"
        if suffix == ".csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path)
        return path

    return make


def _edited(edit: Callable[[dict[str, Any]], None], rebind: bool) -> Callable[..., Path]:
    """A copy of the thresholds file with `edit` applied (and its digest bound again)."""

    def make(tmp: Path, served: Served) -> Path:
        document = json.loads(served.thresholds.read_text())
        edit(document)
        if rebind:
            document["content_sha256"] = content_digest(document)
        path = tmp / "edited.json"
        path.write_text(json.dumps(document))
        return path

    return make


def _outcomes_csv(change: Change) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        frame = change(user_outcomes(user_declarations(12, seed=3)))
        path = tmp / "outcomes.csv"
        frame.to_csv(path, index=False)
        return path

    return make


def _clean_with_existing_quarantine(tmp: Path) -> Path:
    (tmp / "quarantine.csv").write_text("kept from an earlier run\n")
    return _user_csv(tmp)


def _folder(tmp: Path, *_: Any) -> Path:
    (tmp / "a-folder").mkdir(exist_ok=True)
    return tmp / "a-folder"


def _ids_with_blanks(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(declaration_id="  " + frame["declaration_id"] + " ")


def _nan_cutoff(document: dict[str, Any]) -> None:
    document["cutoffs"]["cutoffs"]["red"]["score"] = float("nan")


def _bump_cutoff(document: dict[str, Any]) -> None:
    document["cutoffs"]["cutoffs"]["red"]["score"] = 0.999


# --- the table -------------------------------------------------------------------------------

V, S, D = Validate, Score, Direct
CASES: list[tuple[str, Any, str, str]] = [
    # dates
    (
        "day-first dates, all ambiguous",
        V(lambda t: _user_csv(t, _column("lodged_at", _ambiguous))),
        "refused",
        "day-first or month-first alike",
    ),
    (
        "day-first dates settled by a day > 12",
        V(
            lambda t: _user_csv(
                t, _column("lodged_at", lambda f: [f"{d:02d}/03/2024 10:00" for d in range(10, 22)])
            )
        ),
        "kept",
        "12 rows in, 12 kept",
    ),
    (
        "day-first and month-first mixed",
        V(
            lambda t: _user_csv(
                t, _column("lodged_at", lambda f: ["13/01/2024"] * 6 + ["01/13/2024"] * 6)
            )
        ),
        "refused",
        "mixes day-first",
    ),
    (
        "ambiguous dates with data.date_format",
        V(
            lambda t: _user_csv(t, _column("lodged_at", _ambiguous)),
            sets=("data.date_format=%d/%m/%Y %H:%M",),
        ),
        "kept",
        "12 kept",
    ),
    (
        "a date off data.date_format",
        V(
            lambda t: _user_csv(t, _cell("lodged_at", "2024-03-05")),
            sets=("data.date_format=%Y-%m-%d %H:%M:%S",),
        ),
        "quarantined",
        "not a date in data.date_format",
    ),
    (
        "text in a date",
        V(lambda t: _user_csv(t, _cell("lodged_at", "yesterday"))),
        "quarantined",
        "lodged_at: not a date",
    ),
    (
        "a date in the future",
        V(lambda t: _user_csv(t, _cell("lodged_at", "2100-01-01 10:00"))),
        "quarantined",
        "lodged_at: in the future",
    ),
    (
        "a date before data.earliest_date",
        V(lambda t: _user_csv(t, _cell("lodged_at", "1970-01-01"))),
        "quarantined",
        "before data.earliest_date",
    ),
    # numbers
    (
        "negative net mass",
        V(lambda t: _user_csv(t, _cell("net_mass_kg", -4.0))),
        "quarantined",
        "net_mass_kg: negative",
    ),
    (
        "implausible net mass",
        V(lambda t: _user_csv(t, _cell("net_mass_kg", 5e12))),
        "quarantined",
        "net_mass_kg: implausibly large",
    ),
    (
        "duty rate of 2,500 %",
        V(lambda t: _user_csv(t, _cell("duty_rate", 25.0))),
        "quarantined",
        "duty_rate: implausibly large",
    ),
    (
        "lower max_values bound from the config",
        V(
            lambda t: _user_csv(t, _cell("declared_value", 2e6)),
            sets=("data.max_values={declared_value: 1000000}",),
        ),
        "quarantined",
        "declared_value: implausibly large",
    ),
    (
        "infinite duty rate",
        V(lambda t: _user_csv(t, _cell("duty_rate", "inf"))),
        "quarantined",
        "duty_rate: not finite",
    ),
    (
        "text in a number",
        V(lambda t: _user_csv(t, _cell("declared_value", "abc"))),
        "quarantined",
        "declared_value: not a number",
    ),
    (
        "number with a thousands comma",
        V(lambda t: _user_csv(t, _cell("declared_value", "1,200.50"))),
        "quarantined",
        "declared_value: not a number",
    ),
    (
        "missing net mass",
        V(lambda t: _user_csv(t, _cell("net_mass_kg", None))),
        "quarantined",
        "net_mass_kg: missing",
    ),
    # text, codes, ids
    (
        "aeo neither true nor false",
        V(lambda t: _user_csv(t, _cell("aeo", "maybe"))),
        "quarantined",
        "aeo: not true/false",
    ),
    (
        "HS code with letters",
        V(lambda t: _user_csv(t, _cell("hs_code", "ABC123"))),
        "quarantined",
        "hs_code: not digits",
    ),
    (
        "HS chapter 00",
        V(lambda t: _user_csv(t, _cell("hs_code", "000000"))),
        "quarantined",
        "hs_code: chapter 00",
    ),
    (
        "HS code too short",
        V(lambda t: _user_csv(t, _cell("hs_code", "123"))),
        "quarantined",
        "hs_code: too short",
    ),
    (
        "duplicate declaration id",
        V(lambda t: _user_csv(t, _cell("declaration_id", "D0001", row=5))),
        "quarantined",
        "declaration_id: duplicate",
    ),
    (
        "missing importer",
        V(lambda t: _user_csv(t, _cell("importer", ""))),
        "quarantined",
        "importer: missing",
    ),
    (
        "formula text in an id column",
        V(lambda t: _user_csv(t, _cell("importer", '=HYPERLINK("http://x")'))),
        "kept",
        "12 kept",
    ),
    # the file itself
    ("empty file", V(lambda t: _raw(t, b"")), "refused", "the file is empty"),
    (
        "header only",
        V(lambda t: _raw(t, _valid_csv_text().splitlines()[0].encode() + b"\n")),
        "refused",
        "header only",
    ),
    (
        "no header line",
        V(lambda t: _raw(t, "\n".join(_valid_csv_text().splitlines()[1:]).encode())),
        "refused",
        "looks like data",
    ),
    (
        "duplicate column names",
        V(lambda t: _raw(t, _valid_csv_text().replace("seller", "importer", 1).encode())),
        "refused",
        "more than once",
    ),
    (
        "semicolon-delimited",
        V(lambda t: _raw(t, _valid_csv_text().replace(",", ";").encode())),
        "refused",
        "delimited by ';'",
    ),
    (
        "latin-1 byte",
        V(lambda t: _raw(t, _valid_csv_text().replace("IMP1", "IMP\u00e9").encode("latin-1"))),
        "refused",
        "not UTF-8",
    ),
    ("UTF-16 file", V(lambda t: _raw(t, _valid_csv_text().encode("utf-16"))), "refused", "UTF-16"),
    ("Parquet named .csv", V(lambda t: _raw(t, b"PAR1" + b"\0" * 40)), "refused", "Parquet file"),
    (
        "Excel workbook named .csv",
        V(lambda t: _raw(t, b"PK\x03\x04" + b"\0" * 40)),
        "refused",
        "ZIP archive",
    ),
    ("a folder as --input", V(_folder), "refused", "is a folder"),
    ("a missing file", V(lambda t: t / "nowhere.csv"), "refused", "file not found"),
    (
        "unsupported extension",
        V(lambda t: _raw(t, b"x", "declarations.xlsx")),
        "refused",
        "unsupported file type",
    ),
    (
        "required column missing",
        V(lambda t: _user_csv(t, lambda f: f.drop(columns="office"))),
        "refused",
        "required column(s) missing: office",
    ),
    (
        "column name in another case",
        V(lambda t: _user_csv(t, _rename("lodged_at", "Lodged_At"))),
        "refused",
        "differ only in case",
    ),
    (
        "column names with stray blanks",
        V(lambda t: _user_csv(t, _rename("lodged_at", " lodged_at "))),
        "kept",
        "12 kept",
    ),
    (
        "ragged row",
        V(
            lambda t: _raw(
                t,
                (
                    _valid_csv_text() + "D9,2024-01-01,x,y,z,w,v,u,t,s,r,q,p,o,n,m,l,k,j,i\n"
                ).encode(),
            )
        ),
        "refused",
        "cannot be read as CSV",
    ),
    (
        "clean input keeps an existing --quarantine file",
        V(_clean_with_existing_quarantine),
        "kept",
        "no rows quarantined",
    ),
    # outcomes
    (
        "revenue recovered without a hit",
        V(lambda t: _user_csv(t), _outcomes_csv(_cell("revenue_recovered", 50.0, row=1))),
        "quarantined",
        "revenue_recovered: positive but hit is false",
    ),
    (
        "hit without an inspection",
        V(lambda t: _user_csv(t), _outcomes_csv(_cell("inspected", False, row=0))),
        "quarantined",
        "hit: true but inspected is false",
    ),
    (
        "selection probability above 1",
        V(lambda t: _user_csv(t), _outcomes_csv(_cell("selection_probability", 1.5))),
        "quarantined",
        "outside (0, 1]",
    ),
    (
        "result before selection",
        V(lambda t: _user_csv(t), _outcomes_csv(_cell("result_at", "2020-01-01"))),
        "quarantined",
        "result_at: before selected_at",
    ),
    (
        "outcome of an unknown declaration",
        V(lambda t: _user_csv(t), _outcomes_csv(_cell("declaration_id", "NOPE"))),
        "quarantined",
        "no such declaration",
    ),
    (
        "unknown selection reason",
        V(lambda t: _user_csv(t), _outcomes_csv(_cell("selection_reason", "whim"))),
        "quarantined",
        "selection_reason: unknown value",
    ),
    # KCS
    (
        "KCS Fraud as text",
        V(lambda t: _kcs(t, "Fraud", "yes"), kcs=True),
        "quarantined",
        "KCS Fraud=yes",
    ),
    (
        "KCS Fraud out of range",
        V(lambda t: _kcs(t, "Fraud", "2"), kcs=True),
        "quarantined",
        "KCS Fraud=2",
    ),
    (
        "KCS Tax Rate as text",
        V(lambda t: _kcs(t, "Tax Rate", "eight"), kcs=True),
        "quarantined",
        "duty_rate: not a number",
    ),
    (
        "KCS Tax Rate infinite",
        V(lambda t: _kcs(t, "Tax Rate", "inf"), kcs=True),
        "quarantined",
        "duty_rate: not finite",
    ),
    (
        "KCS Item Price infinite",
        V(lambda t: _kcs(t, "Item Price", "inf"), kcs=True),
        "quarantined",
        "declared_value: not finite",
    ),
    (
        "KCS Item Price as text",
        V(lambda t: _kcs(t, "Item Price", "n/a-price"), kcs=True),
        "quarantined",
        "declared_value: not a number",
    ),
    (
        "KCS latin-1 byte",
        V(lambda t: _kcs(t, raw="caf\u00e9,1\n".encode("latin-1")), kcs=True),
        "refused",
        "on line 4",
    ),
    (
        "KCS file with another header",
        V(lambda t: _user_csv(t), kcs=True),
        "refused",
        "not a KCS declarations file",
    ),
    # scoring through the CLI
    (
        "score: one bad row",
        S(_score_frame(_cell("declared_value", "lots", row=2))),
        "some manual",
        "declared_value: not a number",
    ),
    (
        "score: every row bad",
        S(_score_frame(lambda f: f.drop(columns="office"))),
        "all manual",
        "required column(s) missing",
    ),
    (
        "score: ambiguous day-first dates",
        S(_score_frame(_column("lodged_at", _ambiguous))),
        "all manual",
        "day-first or month-first",
    ),
    ("score: a folder as --input", S(_folder), "refused", "is a folder"),
    (
        "score: a folder as --thresholds",
        S(_score_frame(), thresholds=_folder),
        "refused",
        "is a folder",
    ),
    (
        "score: thresholds edited by hand",
        S(_score_frame(), thresholds=_edited(_bump_cutoff, rebind=False)),
        "refused",
        "edited after export",
    ),
    (
        "score: NaN cut-off",
        S(_score_frame(), thresholds=_edited(_nan_cutoff, rebind=False)),
        "refused",
        "red/score: Input should be a finite number",
    ),
    (
        "score: invalid rows sent green",
        S(
            _score_frame(),
            thresholds=_edited(lambda d: d["serving"].update(invalid_channel="green"), rebind=True),
        ),
        "refused",
        "never be released",
    ),
    (
        "score: random draw to an undefined channel",
        S(
            _score_frame(),
            thresholds=_edited(lambda d: d["random"].update(channel="purple"), rebind=True),
        ),
        "refused",
        "not a defined controlled channel",
    ),
    (
        "score: the key written into the export",
        S(
            _score_frame(),
            thresholds=_edited(lambda d: d["random"].update(key="secret"), rebind=True),
        ),
        "refused",
        "schema",
    ),
    (
        "score: another random-draw key",
        S(_score_frame(), env=(("TARGETING_RANDOM_KEY", "not-the-key"),)),
        "refused",
        "does not match the export's fingerprint",
    ),
    (
        "score: KCS thresholds on canonical data",
        S(_score_frame(), thresholds=lambda t, s: s.kcs_thresholds),
        "refused",
        "made for KCS data",
    ),
    (
        "score: output path under a file",
        S(_score_frame(), out="incoming.csv/scored.csv"),
        "refused",
        "cannot write",
    ),
    (
        "score: output path is a folder",
        S(_score_frame(), out="out-folder.csv"),
        "refused",
        "is a folder",
    ),
    (
        "score: formula text escaped in the CSV",
        S(_score_frame(_cell("declaration_id", '=HYPERLINK("http://x")', row=0))),
        "scored",
        "'=HYPERLINK",
    ),
    ("score: ids keep their blanks", S(_score_frame(_ids_with_blanks)), "scored", "  S22-000000 "),
    # the scorer, as a REST body reaches it
    ("REST aeo 'false'", D(_column("aeo", lambda f: ["false"] * len(f))), "scored", "green"),
    ("REST aeo 'no'", D(_column("aeo", lambda f: ["no"] * len(f))), "scored", "green"),
    (
        "REST aeo 'maybe'",
        D(_cell("aeo", "maybe", row=3), bad_rows=(3,)),
        "manual",
        "aeo: not true/false",
    ),
    (
        "REST lodged_at 'yesterday'",
        D(_cell("lodged_at", "yesterday", row=0), bad_rows=(0,)),
        "manual",
        "lodged_at: not a date",
    ),
    (
        "REST missing value",
        D(_cell("declared_value", None, row=5), bad_rows=(5,)),
        "manual",
        "declared_value: missing",
    ),
    (
        "REST infinite mass",
        D(_cell("net_mass_kg", float("inf"), row=7), bad_rows=(7,)),
        "manual",
        "net_mass_kg: not finite",
    ),
    ("REST number as text", D(_cell("net_mass_kg", "12.5", row=2)), "scored", "green"),
    (
        "REST column missing",
        D(lambda f: f.drop(columns="hs_code")),
        "all manual",
        "required column(s) missing: hs_code",
    ),
    ("REST empty batch", D(lambda f: f.iloc[:0]), "scored", ""),
]


# --- issue 25: dialects, physical types, units, aliasing, infrastructure ------------------------


def _csv_bytes(transform: Callable[[str], str], encoding: str = "utf-8") -> Callable[[Path], Path]:
    return lambda tmp: _raw(tmp, transform(_valid_csv_text()).encode(encoding))


def _cr_only(text: str) -> str:
    return text.replace("\n", "\r")


def _nul_in(column: str, row: int = 1) -> Change:
    return lambda f: _cell(column, f[column].astype(str).iloc[row][:3] + "\0 08756", row)(f)


def _arrow(frame: pd.DataFrame) -> Any:
    import pyarrow as pa

    return pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)


def _retyped(column: str, kind: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A table with `column` replaced by `kind(table[column])` (a pyarrow conversion)."""

    def change(table: Any) -> Any:
        index = table.schema.get_field_index(column)
        return table.set_column(index, column, kind(table.column(column)))

    return change


def _as_binary(column: Any) -> Any:
    import pyarrow as pa

    return column.cast(pa.binary())


def _stamps(unit: str, tz: str | None = None, far_row: int | None = None) -> Callable[[Any], Any]:
    """Text timestamps as Parquet timestamp[unit]; `far_row` set to 9999-12-31."""

    def kind(column: Any) -> Any:
        import pyarrow as pa

        stamps = pd.to_datetime(pd.Series(column.to_pylist()))
        counts = stamps.astype(f"datetime64[{unit}]").astype("int64").tolist()
        if far_row is not None:
            counts[far_row] = int(np.datetime64("9999-12-31", unit).astype("int64"))
        return pa.array(counts, pa.int64()).cast(pa.timestamp(unit, tz=tz))

    return kind


def _struct_column(table: Any) -> Any:
    import pyarrow as pa

    return table.append_column(
        "packages", pa.array([{"count": i, "kind": "box"} for i in range(len(table))])
    )


def _list_column(table: Any) -> Any:
    import pyarrow as pa

    return table.append_column("containers", pa.array([["C1", "C2"]] * len(table)))


def _dictionary(column: Any) -> Any:
    return column.dictionary_encode()


def _not_utf8(column: Any) -> Any:
    import pyarrow as pa

    values = [str(v).encode() for v in column.to_pylist()]
    values[2] = b"OFF\xff\xfe"
    return pa.array(values, pa.binary())


def _decimal(column: Any) -> Any:
    import pyarrow as pa

    return column.cast(pa.decimal128(6, 4))


def _with_nul(column: Any) -> Any:
    import pyarrow as pa

    values = [str(v) for v in column.to_pylist()]
    values[4] = values[4][:3] + "\x00 08756"
    return pa.array(values, pa.string())


def _far_dates(column: Any) -> Any:
    import pyarrow as pa

    days = pd.to_datetime(pd.Series(column.to_pylist())).dt.date.tolist()
    days[3] = dt.date(9999, 12, 31)
    return pa.array(days, pa.date32())


def _integers(column: Any) -> Any:
    import pyarrow as pa

    return pa.array([int(v) for v in column.to_pylist()], pa.int64())


def _user_parquet(change: Callable[[Any], Any]) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        import pyarrow.parquet as pq

        path = tmp / "declarations.parquet"
        pq.write_table(change(_arrow(user_declarations(12, seed=3))), path)
        return path

    return make


def _score_parquet(change: Callable[[Any], Any]) -> Callable[..., Path]:
    def make(tmp: Path, served: Served) -> Path:
        import pyarrow.parquet as pq

        frame = served.incoming.iloc[:10].reset_index(drop=True)
        frame = frame.assign(lodged_at=frame["lodged_at"].astype(str))
        path = tmp / "incoming.parquet"
        pq.write_table(change(_arrow(frame)), path)
        return path

    return make


def _score_bytes(transform: Callable[[str], str]) -> Callable[..., Path]:
    def make(tmp: Path, served: Served) -> Path:
        text = served.incoming.iloc[:10].to_csv(index=False)
        return _raw(tmp, transform(text).encode(), "incoming.csv")

    return make


def _with_link(make: Callable[..., Path], name: str) -> Callable[..., Path]:
    """`make`'s file, and a symbolic link `name` beside it pointing at it."""

    def made(tmp: Path, *served: Any) -> Path:
        source = make(tmp, *served)
        (tmp / name).symlink_to(source)
        return source

    return made


def _with_hard_link(make: Callable[..., Path], name: str) -> Callable[..., Path]:
    def made(tmp: Path, *served: Any) -> Path:
        source = make(tmp, *served)
        os.link(source, tmp / name)
        return source

    return made


def _model_copy(tmp: Path, served: Served, damage: Callable[[Path], None]) -> Path:
    folder = tmp / "model"
    shutil.copytree(served.folder / "canonical-model", folder)
    damage(folder)
    return folder


def _damaged_model(damage: Callable[[Path], None]) -> Callable[..., Path]:
    """The export pointing at a copy of its model folder with `damage` done to it."""

    def make(tmp: Path, served: Served) -> Path:
        folder = _model_copy(tmp, served, damage)
        document = json.loads(served.thresholds.read_text())
        document["model"]["uri"] = str(folder)
        document["content_sha256"] = content_digest(document)
        path = tmp / "edited.json"
        path.write_text(json.dumps(document))
        return path

    return make


def _damaged_snapshot(damage: Callable[[Path], None]) -> Callable[..., Path]:
    def make(tmp: Path, served: Served) -> Path:
        folder = tmp / "snapshot"
        shutil.copytree(served.folder / "snapshot", folder)
        damage(folder)
        document = json.loads(served.thresholds.read_text())
        document["snapshot"] = {"path": str(folder), "uri": None}
        document["content_sha256"] = content_digest(document)
        path = tmp / "edited.json"
        path.write_text(json.dumps(document))
        return path

    return make


def _truncate(name: str) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        content = (folder / name).read_bytes()
        (folder / name).write_bytes(content[: len(content) // 2])

    return damage


def _remove(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).unlink()


def _claims_revenue(folder: Path) -> None:
    meta = json.loads((folder / "model.json").read_text())
    meta["has_revenue"] = True
    (folder / "model.json").write_text(json.dumps(meta))


def _other_feature_settings(document: dict[str, Any]) -> None:
    document["features"]["config"]["reporting_delay_days"] = 99.0


def _config_with(extra: str) -> str:
    return (PROJECT / "configs" / "default.yaml").read_text() + "\n" + extra


def _kcs_lines(
    tmp: Path, change: Callable[[list[bytes]], list[bytes]], name: str = "kcs.csv"
) -> Path:
    lines = KCS_FILE.read_bytes().splitlines(keepends=True)[:41]
    return _raw(tmp, b"".join(change(lines)), name)


def _kcs_repeat_after_bad_first(lines: list[bytes]) -> list[bytes]:
    """Row 3 repeats row 2's id; row 2 has a Tax Rate that is no number (quarantined)."""
    header = lines[0].decode("utf-8-sig").rstrip("\r\n").split(",")
    first = lines[2].decode().rstrip("\r\n").split(",")
    second = lines[3].decode().rstrip("\r\n").split(",")
    second[0] = first[0]
    first[header.index("Tax Rate")] = "eight"
    lines[2] = (",".join(first) + "\n").encode()
    lines[3] = (",".join(second) + "\n").encode()
    return lines


def _kcs_field(column: str, value: str, row: int = 3) -> Callable[[list[bytes]], list[bytes]]:
    def change(lines: list[bytes]) -> list[bytes]:
        header = lines[0].decode("utf-8-sig").rstrip("\r\n").split(",")
        cells = lines[row].decode().rstrip("\r\n").split(",")
        cells[header.index(column)] = value
        lines[row] = (",".join(cells) + "\n").encode()
        return lines

    return change


def _kcs_short(lines: list[bytes]) -> list[bytes]:
    lines[3] = b",".join(lines[3].split(b",")[:10]) + b"\n"
    return lines


def _kcs_cr_only(lines: list[bytes]) -> list[bytes]:
    return [line.replace(b"\r\n", b"\n").replace(b"\n", b"\r") for line in lines]


def _kcs_nul(lines: list[bytes]) -> list[bytes]:
    lines[3] = lines[3].replace(b",", b",\0", 1)
    return lines


def _mixed_zones(frame: pd.DataFrame) -> list[str]:
    stamps = pd.to_datetime(frame["lodged_at"]).dt.strftime("%Y-%m-%d %H:%M:%S").tolist()
    return [s + ("+09:00" if i % 2 else "") for i, s in enumerate(stamps)]


def _zone_word(word: str, row: int = 1) -> Change:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        stamp = pd.to_datetime(frame["lodged_at"]).dt.strftime("%Y-%m-%d %H:%M:%S").iloc[row]
        return _cell("lodged_at", f"{stamp} {word}", row)(frame)

    return change


def _percent_duty(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(duty_rate=np.resize([8.0, 13.0, 5.2, 0.0], len(frame)))


def _object_cell(column: str, value: Any, row: int) -> Change:
    """A cell holding a Python object (a JSON body's object or array)."""

    def change(frame: pd.DataFrame) -> pd.DataFrame:
        values = frame[column].astype(object).tolist()
        values[row] = value
        return frame.assign(**{column: pd.Series(values, index=frame.index, dtype=object)})

    return change


def _percent_row(row: int, rate: float = 8.0, factor: float = 0.01) -> Change:
    """Row `row` with duty_rate `rate` and the declared duty of value x rate x `factor`."""

    def change(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        value = float(out["declared_value"].iloc[row])
        out.iloc[row, out.columns.get_loc("duty_rate")] = rate
        out.iloc[row, out.columns.get_loc("declared_duty")] = round(value * rate * factor, 2)
        return out

    return change


def _dict_cell(column: str, row: int) -> Change:
    return _object_cell(column, {"code": "KRPUS"}, row)


def _list_cell(column: str, row: int) -> Change:
    return _object_cell(column, ["KRPUS", "KRINC"], row)


UNREACHABLE = "tracking.uri=http://127.0.0.1:9"

ISSUE_25_CASES: list[tuple[str, Any, str, str]] = [
    # CSV dialects
    ("CR-only line endings", V(_csv_bytes(_cr_only)), "kept", "12 kept"),
    ("CRLF line endings", V(_csv_bytes(lambda t: t.replace("\n", "\r\n"))), "kept", "12 kept"),
    (
        "BOM and CR-only line endings",
        V(_csv_bytes(lambda t: "\ufeff" + _cr_only(t))),
        "kept",
        "12 kept",
    ),
    (
        "every field quoted",
        V(lambda t: _raw(t, user_declarations(12, seed=3).to_csv(index=False, quoting=1).encode())),
        "kept",
        "12 kept",
    ),
    (
        "NUL byte in a text field",
        V(lambda t: _user_csv(t, _nul_in("importer"))),
        "quarantined",
        "importer: a NUL byte in the value",
    ),
    (
        "NUL byte in a number",
        V(lambda t: _user_csv(t, _nul_in("declared_value", 4))),
        "quarantined",
        "declared_value: a NUL byte",
    ),
    (
        "NUL byte in an id",
        V(lambda t: _user_csv(t, _nul_in("declaration_id", 7))),
        "quarantined",
        "declaration_id: a NUL byte",
    ),
    (
        "NUL byte in the header",
        V(_csv_bytes(lambda t: t.replace("office", "off\0ice", 1))),
        "refused",
        "header line holds a NUL byte",
    ),
    (
        "tab-delimited",
        V(_csv_bytes(lambda t: t.replace(",", "\t"))),
        "refused",
        "delimited by '\\t'",
    ),
    ("pipe-delimited", V(_csv_bytes(lambda t: t.replace(",", "|"))), "refused", "delimited by '|'"),
    ("score: CR-only line endings", S(_score_bytes(_cr_only)), "scored", "green"),
    (
        "score: NUL byte in a field",
        S(_score_frame(_nul_in("importer", 3))),
        "some manual",
        "importer: a NUL byte",
    ),
    # Parquet physical types
    (
        "Parquet text stored as binary",
        V(_user_parquet(_retyped("office", _as_binary))),
        "kept",
        "12 kept",
    ),
    (
        "Parquet ids and codes stored as binary",
        V(
            _user_parquet(
                lambda t: _retyped("hs_code", _as_binary)(_retyped("declaration_id", _as_binary)(t))
            )
        ),
        "kept",
        "12 kept",
    ),
    (
        "Parquet binary that is not UTF-8",
        V(_user_parquet(_retyped("office", _not_utf8))),
        "quarantined",
        "office: not UTF-8 text",
    ),
    ("Parquet struct column", V(_user_parquet(_struct_column)), "refused", "packages (struct"),
    ("Parquet list column", V(_user_parquet(_list_column)), "refused", "containers (list"),
    (
        "Parquet dictionary-encoded text",
        V(_user_parquet(_retyped("office", _dictionary))),
        "kept",
        "12 kept",
    ),
    (
        "Parquet decimal duty rate",
        V(_user_parquet(_retyped("duty_rate", _decimal))),
        "kept",
        "12 kept",
    ),
    (
        "Parquet timestamp[s]",
        V(_user_parquet(_retyped("lodged_at", _stamps("s")))),
        "kept",
        "12 kept",
    ),
    (
        "Parquet timestamp[us] with a zone",
        V(_user_parquet(_retyped("lodged_at", _stamps("us", "Asia/Seoul")))),
        "kept",
        "12 kept",
    ),
    (
        "Parquet timestamp[ms] beyond nanoseconds",
        V(_user_parquet(_retyped("lodged_at", _stamps("ms", far_row=2)))),
        "quarantined",
        "lodged_at: outside the years 1678-2261",
    ),
    (
        "Parquet timestamp[us] beyond nanoseconds",
        V(_user_parquet(_retyped("lodged_at", _stamps("us", far_row=5)))),
        "quarantined",
        "9999-12-31",
    ),
    (
        "score: Parquet text stored as binary",
        S(_score_parquet(_retyped("office", _as_binary))),
        "scored",
        "green",
    ),
    ("score: Parquet struct column", S(_score_parquet(_struct_column)), "refused", "nested values"),
    (
        "score: Parquet timestamp beyond nanoseconds",
        S(_score_parquet(_retyped("lodged_at", _stamps("ms", far_row=1)))),
        "some manual",
        "outside the years",
    ),
    # timestamps
    (
        "naive and offset timestamps mixed",
        V(lambda t: _user_csv(t, _column("lodged_at", _mixed_zones))),
        "kept",
        "12 kept",
    ),
    (
        "zone abbreviation PST",
        V(lambda t: _user_csv(t, _zone_word("PST"))),
        "quarantined",
        "lodged_at: a time zone abbreviation is ambiguous",
    ),
    (
        "zone abbreviation KST",
        V(lambda t: _user_csv(t, _zone_word("KST", 4))),
        "quarantined",
        "KST",
    ),
    (
        "zone abbreviation CET",
        V(lambda t: _user_csv(t, _zone_word("CET", 6))),
        "quarantined",
        "write the offset",
    ),
    (
        "zone abbreviation in lower case",
        V(lambda t: _user_csv(t, _zone_word("pst", 2))),
        "quarantined",
        "time zone abbreviation",
    ),
    ("zone word UTC", V(lambda t: _user_csv(t, _zone_word("UTC"))), "kept", "12 kept"),
    ("zone word GMT", V(lambda t: _user_csv(t, _zone_word("GMT"))), "kept", "12 kept"),
    (
        "outcome dates with a zone abbreviation",
        V(
            lambda t: _user_csv(t),
            _outcomes_csv(_cell("selected_at", "2024-03-05 10:00:00 EST", 1)),
        ),
        "quarantined",
        "selected_at: a time zone abbreviation",
    ),
    (
        "score: zone abbreviation",
        S(_score_frame(_zone_word("PST", 2))),
        "some manual",
        "time zone abbreviation",
    ),
    # numeric-looking codes in their text form
    (
        "HS code written as a float",
        V(lambda t: _user_csv(t, _cell("hs_code", "62082200.0"))),
        "kept",
        "12 kept",
    ),
    (
        "HS6 code written as a float",
        V(lambda t: _user_csv(t, _cell("hs_code", "870323.0"))),
        "kept",
        "12 kept",
    ),
    (
        "HS code lost its zero and written as a float",
        V(lambda t: _user_csv(t, _cell("hs_code", "710807000.0"))),
        "kept",
        "12 kept",
    ),
    (
        "HS code in scientific notation",
        V(lambda t: _user_csv(t, _cell("hs_code", "6.2082200E7"))),
        "quarantined",
        "hs_code: not digits",
    ),
    (
        "HS code with two decimals",
        V(lambda t: _user_csv(t, _cell("hs_code", "6208.22.00"))),
        "kept",
        "12 kept",
    ),
    (
        "score: HS code written as a float",
        S(_score_frame(_cell("hs_code", "62082200.0", 1))),
        "scored",
        "green",
    ),
    # units
    (
        "duty_rate in percent",
        V(lambda t: _user_csv(t, _percent_duty)),
        "quarantined",
        "duty_rate: the column is written in percent",
    ),
    (
        "duty_rate in percent with some zeros",
        V(
            lambda t: _user_csv(
                t, lambda f: f.assign(duty_rate=np.resize([8.0, 0.0, 0.0, 13.0, 8.0], len(f)))
            )
        ),
        "quarantined",
        "values above 1",
    ),
    (
        "one duty_rate above 100 %",
        V(lambda t: _user_csv(t, _cell("duty_rate", 1.5))),
        "kept",
        "12 kept",
    ),
    (
        "lower duty_rate bound from the config",
        V(
            lambda t: _user_csv(t, _cell("duty_rate", 0.9)),
            sets=("data.max_values={duty_rate: 0.5}",),
        ),
        "quarantined",
        "duty_rate: implausibly large",
    ),
    (
        "score: duty_rate in percent",
        S(_score_frame(_percent_duty)),
        "all manual",
        "written in percent",
    ),
    # KCS
    (
        "KCS duplicate id after an invalid first row",
        V(lambda t: _kcs_lines(t, _kcs_repeat_after_bad_first), kcs=True),
        "quarantined",
        "declaration_id: duplicate",
    ),
    (
        "KCS Critical Fraud=2 with Fraud=0",
        V(lambda t: _kcs_lines(t, _kcs_field("Critical Fraud", "2")), kcs=True),
        "quarantined",
        "KCS labels disagree",
    ),
    (
        "KCS short row",
        V(lambda t: _kcs_lines(t, _kcs_short), kcs=True),
        "quarantined",
        "row has 10 of 22 fields",
    ),
    (
        "KCS CR-only line endings",
        V(lambda t: _kcs_lines(t, _kcs_cr_only), kcs=True),
        "kept",
        "40 kept",
    ),
    ("KCS NUL byte", V(lambda t: _kcs_lines(t, _kcs_nul), kcs=True), "quarantined", "a NUL byte"),
    (
        "KCS HS code written as a float",
        V(lambda t: _kcs_lines(t, _kcs_field("HS6 Code", "620822.0")), kcs=True),
        "kept",
        "40 kept",
    ),
    # config
    (
        "config: a key given twice",
        V(lambda t: _user_csv(t), config_text=_config_with("data:\n  future_days: 2\n")),
        "config refused",
        "given twice",
    ),
    (
        "config: data.future_days=.inf",
        V(lambda t: _user_csv(t), sets=("data.future_days=.inf",)),
        "config refused",
        "data.future_days",
    ),
    (
        "config: a negative max_values bound",
        V(lambda t: _user_csv(t), sets=("data.max_values={declared_value: -1}",)),
        "config refused",
        "positive, finite",
    ),
    (
        "config: date_format %Q",
        V(lambda t: _user_csv(t), sets=("data.date_format=%Q",)),
        "config refused",
        "data.date_format",
    ),
    # paths never alias
    (
        "validate: --quarantine is --input",
        V(lambda t: _user_csv(t), quarantine="declarations.csv"),
        "refused",
        "is the same file as --input",
    ),
    (
        "validate: --quarantine is --outcomes",
        V(lambda t: _user_csv(t), _outcomes_csv(lambda f: f), quarantine="outcomes.csv"),
        "refused",
        "is the same file as --outcomes",
    ),
    (
        "validate: --quarantine through a link",
        V(_with_link(lambda t: _user_csv(t), "link.csv"), quarantine="link.csv"),
        "refused",
        "same file",
    ),
    (
        "validate: --quarantine through '..'",
        V(lambda t: _user_csv(t), quarantine="out/../declarations.csv"),
        "refused",
        "same file",
    ),
    (
        "validate: --input /dev/stdin",
        V(lambda t: Path("/dev/stdin")),
        "refused",
        "not a regular file",
    ),
    (
        "score: --out is --input",
        S(_score_frame(), out="incoming.csv"),
        "refused",
        "is the same file as --input",
    ),
    (
        "score: --out through a link",
        S(_with_link(_score_frame(), "link.csv"), out="link.csv"),
        "refused",
        "same file",
    ),
    (
        "score: --out through a hard link",
        S(_with_hard_link(_score_frame(), "hard.csv"), out="hard.csv"),
        "refused",
        "same file",
    ),
    (
        "score: --out through '..'",
        S(_score_frame(), out="out-folder.csv/../incoming.csv"),
        "refused",
        "same file",
    ),
    (
        "score: Parquet --out is --input",
        S(_score_frame(suffix=".parquet"), out="incoming.parquet"),
        "refused",
        "same file",
    ),
    (
        "score: --input /dev/stdin",
        S(lambda t, s: Path("/dev/stdin")),
        "refused",
        "not a regular file",
    ),
    # infrastructure
    (
        "score: unreachable tracking server",
        S(_score_frame(), sets=(UNREACHABLE,)),
        "refused",
        "http://127.0.0.1:9 does not answer",
    ),
    (
        "score: booster.ubj missing",
        S(_score_frame(), thresholds=_damaged_model(_remove("booster.ubj"))),
        "refused",
        "booster.ubj is missing",
    ),
    (
        "score: booster.ubj truncated",
        S(_score_frame(), thresholds=_damaged_model(_truncate("booster.ubj"))),
        "refused",
        "booster.ubj is damaged",
    ),
    (
        "score: revenue.ubj missing",
        S(_score_frame(), thresholds=_damaged_model(_claims_revenue)),
        "refused",
        "revenue.ubj is missing",
    ),
    (
        "score: model.json truncated",
        S(_score_frame(), thresholds=_damaged_model(_truncate("model.json"))),
        "refused",
        "model.json is damaged",
    ),
    (
        "score: snapshot.json truncated",
        S(_score_frame(), thresholds=_damaged_snapshot(_truncate("snapshot.json"))),
        "refused",
        "snapshot.json is damaged",
    ),
    (
        "score: a snapshot table missing",
        S(_score_frame(), thresholds=_damaged_snapshot(_remove("importers.parquet"))),
        "refused",
        "importers.parquet is damaged or missing",
    ),
    (
        "score: snapshot with other feature settings",
        S(_score_frame(), thresholds=_edited(_other_feature_settings, rebind=True)),
        "refused",
        "other feature settings",
    ),
    (
        "score: old declarations and a newer snapshot",
        S(_score_frame(_column("lodged_at", lambda f: ["1995-06-01 10:00"] * len(f)))),
        "scored",
        "before the snapshot's date",
    ),
    # the scorer, as a REST body reaches it
    (
        "REST a dict in one cell",
        D(_dict_cell("office", 4), bad_rows=(4,)),
        "manual",
        "office: a nested value",
    ),
    (
        "REST a list in one cell",
        D(_list_cell("importer", 6), bad_rows=(6,)),
        "manual",
        "importer: a nested value",
    ),
    (
        "REST zone abbreviation",
        D(_zone_word("KST", 3), bad_rows=(3,)),
        "manual",
        "time zone abbreviation",
    ),
    ("REST HS code written as a float", D(_cell("hs_code", "62082200.0", 2)), "scored", "green"),
    ("REST naive and offset timestamps", D(_column("lodged_at", _mixed_zones)), "scored", "green"),
    ("REST duty_rate in percent", D(_percent_duty), "all manual", "written in percent"),
    (
        "REST bytes that are not UTF-8",
        D(_object_cell("office", b"OFF\xff\xfe", 2), bad_rows=(2,)),
        "manual",
        "office: not UTF-8 text",
    ),
    (
        "day-first dates with and without offsets",
        V(
            lambda t: _user_csv(
                t,
                _column(
                    "lodged_at",
                    lambda f: [
                        f"{d:02d}/03/2024 10:00" + ("+09:00" if d % 2 else "")
                        for d in range(13, 25)
                    ],
                ),
            )
        ),
        "kept",
        "12 kept",
    ),
    (
        "KCS office code written as a float",
        V(lambda t: _kcs_lines(t, _kcs_field("Office ID", "30.0")), kcs=True),
        "kept",
        "40 kept",
    ),
    (
        "Parquet date32 beyond nanoseconds",
        V(_user_parquet(_retyped("lodged_at", _far_dates))),
        "quarantined",
        "lodged_at: outside the years 1678-2261",
    ),
    (
        "Parquet HS code stored as an integer",
        V(_user_parquet(_retyped("hs_code", _integers))),
        "kept",
        "12 kept",
    ),
    (
        "one duty_rate in percent, its declared duty says so",
        V(lambda t: _user_csv(t, _percent_row(5))),
        "quarantined",
        "declared_duty is that percentage of declared_value",
    ),
    (
        "one duty_rate of 150 %, its declared duty says so",
        V(lambda t: _user_csv(t, _percent_row(5, rate=1.5, factor=1.0))),
        "kept",
        "12 kept",
    ),
    (
        "score: one duty_rate in percent",
        S(_score_frame(_percent_row(4))),
        "some manual",
        "duty_rate: written in percent",
    ),
    (
        "REST one duty_rate in percent",
        D(_percent_row(7), bad_rows=(7,)),
        "manual",
        "duty_rate: written in percent",
    ),
    (
        "Parquet text with a NUL byte",
        V(_user_parquet(_retyped("importer", _with_nul))),
        "quarantined",
        "importer: a NUL byte in the value",
    ),
    (
        "REST a NUL byte in an id",
        D(_cell("declaration_id", "S22\x00 0001", 5), bad_rows=(5,)),
        "manual",
        "declaration_id: a NUL byte",
    ),
    (
        "score: KCS declarations with the simulator's export",
        S(lambda t, s: _kcs_lines(t, lambda lines: lines), format="kcs"),
        "refused",
        "the export's model was trained on other data",
    ),
    (
        "an outcomes file of a header only",
        V(lambda t: _user_csv(t), _outcomes_csv(lambda f: f.iloc[:0])),
        "kept",
        "0 rows in, 0 kept",
    ),
    (
        "config: serve.random_rate above the red share",
        V(lambda t: _user_csv(t), sets=("serve.random_rate=0.05",)),
        "kept",
        "12 kept",
    ),
    (
        "outcomes in CR-only line endings",
        V(
            lambda t: _user_csv(t),
            lambda t: _raw(
                t,
                _cr_only(user_outcomes(user_declarations(12, seed=3)).to_csv(index=False)).encode(),
                "outcomes.csv",
            ),
        ),
        "kept",
        "6 kept",
    ),
    (
        "outcomes with a NUL byte",
        V(lambda t: _user_csv(t), _outcomes_csv(_nul_in("selection_reason", 2))),
        "quarantined",
        "selection_reason: a NUL byte",
    ),
    (
        "outcome dates with offsets and without",
        V(
            lambda t: _user_csv(t),
            _outcomes_csv(_cell("result_at", "2024-06-30 10:00:00+02:00", 0)),
        ),
        "kept",
        "6 kept",
    ),
]
CASES += ISSUE_25_CASES


def test_a_random_draw_above_its_channel_is_warned_about(caplog: pytest.LogCaptureFixture):
    from pipeline.config import load

    with caplog.at_level("WARNING"):
        load(None, ["serve.random_rate=0.05"])
    assert "serve.random_rate 0.05 is above serve.channels.red 0.02" in caplog.text


def test_simulate_never_overwrites_the_configured_data(tmp_path: Path):
    from pipeline.config import load
    from pipeline.jobs.simulate import simulate

    mine = tmp_path / "declarations.parquet"
    mine.write_bytes(b"the administration's own declarations")
    config = load(None, [f"output_dir={tmp_path / 'out'}", f"data.declarations={mine}"])
    with pytest.raises(ValueError, match=r"is the same file as data\.declarations"):
        simulate(config, rows=50, out=tmp_path)
    assert mine.read_bytes() == b"the administration's own declarations"


def test_features_never_overwrite_the_configured_data(tmp_path: Path):
    from pipeline.config import load
    from pipeline.jobs.features import features

    config = load(None, [f"output_dir={tmp_path}"])
    target = config.paths.features
    target.parent.mkdir(parents=True)
    target.write_bytes(b"declarations kept where the features go")
    config = load(
        None, [f"output_dir={tmp_path}", "data.source=files", f"data.declarations={target}"]
    )
    with pytest.raises(
        ValueError, match=r"the feature set .* is the same file as data\.declarations"
    ):
        features(config)
    assert target.read_bytes() == b"declarations kept where the features go"


@pytest.mark.parametrize(
    ("case", "expected", "fragment"),
    [pytest.param(case, expected, fragment, id=name) for name, case, expected, fragment in CASES],
)
def test_bad_input(served: Served, tmp_path: Path, case: Any, expected: str, fragment: str):
    if isinstance(case, Validate):
        if case.kcs and not KCS_FILE.is_file():
            pytest.skip(f"{KCS_FILE} is not here")
        _run_validate(case, tmp_path, expected, fragment)
    elif isinstance(case, Score):
        if case.format == "kcs" and not KCS_FILE.is_file():
            pytest.skip(f"{KCS_FILE} is not here")
        (tmp_path / "out-folder.csv").mkdir()
        _run_score(case, tmp_path, served, expected, fragment)
    else:
        _run_direct(case, served, expected, fragment)


def test_the_table_holds_at_least_fifty_cases():
    assert len(CASES) >= 50
    assert len({name for name, *_ in CASES}) == len(CASES)


def test_a_clean_run_keeps_an_existing_quarantine_file(tmp_path: Path):
    source = _clean_with_existing_quarantine(tmp_path)
    code, _ = _invoke(
        ["validate", "--input", str(source), "--quarantine", str(tmp_path / "quarantine.csv")],
        tmp_path,
    )
    assert code == 0
    assert (tmp_path / "quarantine.csv").read_text() == "kept from an earlier run\n"


def test_day_first_dates_are_read_day_first(tmp_path: Path):
    from pipeline.ingest.schema import validate_declarations

    frame = user_declarations(12, seed=3)
    frame["lodged_at"] = [f"{d:02d}/03/2024 10:00" for d in range(1, 13)]
    frame.loc[frame.index[-1], "lodged_at"] = "13/03/2024 10:00"
    clean, report = validate_declarations(frame)
    assert report.rows_quarantined == 0
    assert clean["lodged_at"].dt.month.eq(3).all()
    assert sorted(clean["lodged_at"].dt.day) == [*range(1, 12), 13]


def test_rest_aeo_text_is_read_as_written(served: Served):
    batch = served.incoming.iloc[:12].reset_index(drop=True)
    as_bool = served.scorer.score(batch.assign(aeo=False))
    as_text = served.scorer.score(batch.assign(aeo="false"))
    pd.testing.assert_frame_equal(as_bool, as_text)
    pd.testing.assert_frame_equal(as_bool, served.scorer.score(batch.assign(aeo="no")))
    as_true = served.scorer.score(batch.assign(aeo=True))
    pd.testing.assert_frame_equal(as_true, served.scorer.score(batch.assign(aeo="TRUE")))


# --- property: the scorer never raises and returns one row per row, in order --------------------

JUNK = st.one_of(
    st.none(),
    st.text(max_size=6),
    st.sampled_from(["", " ", "nan", "inf", "-inf", "NULL", "=1+1", "yes", "01/12/2024", "Ω"]),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1)),
)
NAMES = [c.name for c in DECLARATION_COLUMNS]


@given(data=st.data())
def test_the_scorer_never_raises_and_keeps_every_row_in_order(served: Served, data: Any):
    rows = data.draw(st.integers(0, 8), label="rows")
    start = data.draw(st.integers(0, 20), label="start")
    batch = served.incoming.iloc[start : start + rows].reset_index(drop=True).astype(object)
    rows = len(batch)
    junk_columns = data.draw(st.lists(st.sampled_from(NAMES), max_size=5, unique=True))
    for name in junk_columns:
        kind = data.draw(st.sampled_from(["cells", "floats", "ints", "bools", "missing"]))
        if kind == "cells":
            batch[name] = pd.Series(data.draw(st.lists(JUNK, min_size=rows, max_size=rows)))
        elif kind == "floats":
            batch[name] = np.asarray(
                data.draw(st.lists(st.floats(), min_size=rows, max_size=rows)), dtype=float
            )
        elif kind == "ints":
            batch[name] = np.arange(rows, dtype=np.int64)
        elif kind == "bools":
            batch[name] = np.arange(rows) % 2 == 0
        else:
            batch = batch.drop(columns=name)
    scored = served.scorer.score(batch)
    assert len(scored) == rows
    assert scored.index.equals(pd.RangeIndex(rows))
    manual = scored["channel"] == "manual"
    assert scored.loc[manual, "error"].notna().all()
    if "declaration_id" in batch.columns and rows:
        sent = batch["declaration_id"]
        kept = sent.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        assert scored.loc[kept, "declaration_id"].tolist() == sent[kept].tolist()


# --- the rest of the defects that are not one input ---------------------------------------------


def test_a_trial_left_running_by_a_killed_process_is_failed_on_rerun(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    from pipeline.config import load
    from pipeline.train.tune import (
        fail_abandoned_trials,
        finished_trials,
        load_study,
        storage_url,
    )

    config = load(None, [f"output_dir={tmp_path}"])
    killed = load_study(config)
    killed.ask()  # the process dies here: the trial stays RUNNING in the SQLite study
    rerun = load_study(config)
    with caplog.at_level("WARNING"):
        assert fail_abandoned_trials(storage_url(config), rerun) == [0]
    assert "left RUNNING by a process that stopped; marked FAIL" in caplog.text
    trial = load_study(config).trials[0]
    assert trial.state.name == "FAIL" and "fail_reason" in trial.system_attrs
    assert finished_trials(rerun) == 0
    assert (
        fail_abandoned_trials(storage_url(config), load_study(config)) == []
    )  # nothing left to fail


def test_each_config_registers_its_own_model_name():
    from pipeline.config import load

    default = load(PROJECT / "configs" / "default.yaml")
    kcs = load(PROJECT / "configs" / "kcs.yaml")
    assert default.tracking.registered_model == "customs-targeting-default"
    assert kcs.tracking.registered_model == "customs-targeting-kcs"
    named = load(None, ["tracking.registered_model=my-model"])
    assert named.tracking.registered_model == "my-model"


def test_the_export_file_is_readable_by_the_serving_user(served: Served):
    assert served.thresholds.stat().st_mode & 0o777 == 0o644


def test_a_missing_value_is_never_a_reason(served: Served):
    batch = served.incoming.reset_index(drop=True).assign(seller=None, quantity=np.nan)
    scored = served.scorer.score(batch)
    reasons = scored["reasons"].dropna()
    assert len(reasons)
    values = [entry["value"] for text in reasons for entry in json.loads(text)]
    assert None not in values


# --- issue 25: what the table's "kept" cases must also read right -------------------------------


def test_hs_codes_written_as_floats_keep_their_chapter():
    from pipeline.ingest.schema import validate_declarations

    frame = user_declarations(4, seed=3)
    frame["hs_code"] = ["62082200.0", "870323.0", "710807000.0", "6208.22.00"]
    clean, report = validate_declarations(frame)
    assert report.rows_quarantined == 0
    by_id = clean.set_index("declaration_id").loc[frame["declaration_id"]]
    assert by_id["hs_code"].tolist() == ["62082200", "870323", "0710807000", "62082200"]
    assert by_id["hs2"].astype(str).tolist() == ["62", "87", "07", "62"]


def test_naive_and_offset_timestamps_read_the_same_in_any_order():
    from pipeline.ingest.schema import validate_declarations

    frame = user_declarations(12, seed=3).reset_index(drop=True)
    frame["lodged_at"] = _mixed_zones(frame)
    forward, _ = validate_declarations(frame)
    backward, _ = validate_declarations(frame.iloc[::-1])
    read = forward.set_index("declaration_id")["lodged_at"]
    pd.testing.assert_series_equal(
        read, backward.set_index("declaration_id")["lodged_at"].loc[read.index]
    )
    naive = frame["lodged_at"].str.len() == len("2024-03-01 10:00:00")
    written = pd.to_datetime(frame["lodged_at"].str[:19])
    expected = written.where(naive, written - pd.Timedelta(hours=9))  # +09:00 is 9 h ahead of UTC
    assert read.loc[frame["declaration_id"]].tolist() == expected.tolist()


def test_a_parquet_file_with_binary_text_reads_as_its_text_twin(tmp_path: Path):
    from pipeline.ingest.readers import read_table

    text = _user_parquet(lambda t: t)(tmp_path)
    text_frame = read_table(text)
    binary_folder = tmp_path / "binary"
    binary_folder.mkdir()
    columns = ("declaration_id", "office", "importer", "hs_code", "origin_country")
    binary = _user_parquet(lambda t: [t := _retyped(c, _as_binary)(t) for c in columns][-1])(
        binary_folder
    )
    pd.testing.assert_frame_equal(read_table(binary), text_frame)


@pytest.mark.skipif(not KCS_FILE.is_file(), reason="the KCS file is not here")
def test_a_kcs_label_never_moves_to_another_row(tmp_path: Path):
    from pipeline.ingest.kcs import read_kcs
    from pipeline.ingest.schema import validate

    path = _kcs_lines(tmp_path, _kcs_repeat_after_bad_first)
    repeated = path.read_bytes().splitlines()[2].split(b",")[0].decode()
    tables = validate(*read_kcs([path]))
    assert repeated not in set(tables.declarations["declaration_id"])
    assert repeated not in set(tables.outcomes["declaration_id"])
    declarations, outcomes = tables.reports
    assert declarations.rows_in == declarations.rows_kept + declarations.rows_quarantined == 40
    assert outcomes.rows_in == outcomes.rows_kept + outcomes.rows_quarantined == 40
    assert set(tables.outcomes["declaration_id"]) <= set(tables.declarations["declaration_id"])


# --- property: one logical table in any CSV dialect or Parquet physical type, the same channels --

LINE_ENDINGS = st.sampled_from(["\n", "\r\n", "\r"])
TEXT_TYPES = st.sampled_from(["string", "binary", "dictionary"])
STAMP_TYPES = st.sampled_from(["text", "s", "ms", "us", "us-utc"])


def _written_csv(frame: pd.DataFrame, path: Path, ending: str, bom: bool, quote_all: bool) -> None:
    text = frame.to_csv(index=False, quoting=1 if quote_all else 0, lineterminator="\n")
    path.write_bytes((("\ufeff" if bom else "") + text.replace("\n", ending)).encode())


def _written_parquet(frame: pd.DataFrame, path: Path, text_type: str, stamp_type: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = _arrow(frame)
    for name in ("declaration_id", "office", "importer", "declarant", "hs_code", "origin_country"):
        if text_type == "binary":
            table = _retyped(name, _as_binary)(table)
        elif text_type == "dictionary":
            table = _retyped(name, _dictionary)(table)
    if stamp_type != "text":
        unit, _, zone = stamp_type.partition("-")
        table = _retyped("lodged_at", _stamps(unit, "UTC" if zone else None))(table)
    assert isinstance(table, pa.Table)
    pq.write_table(table, path)


@given(
    data=st.data(),
    ending=LINE_ENDINGS,
    bom=st.booleans(),
    quote_all=st.booleans(),
    text_type=TEXT_TYPES,
    stamp_type=STAMP_TYPES,
)
@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_every_dialect_and_physical_type_gives_the_same_channels(
    served: Served,
    tmp_path: Path,
    data: Any,
    ending: str,
    bom: bool,
    quote_all: bool,
    text_type: str,
    stamp_type: str,
):
    from pipeline.ingest.readers import read_table

    start = data.draw(st.integers(0, 20), label="start")
    frame = served.incoming.iloc[start : start + 10].reset_index(drop=True)
    frame = frame.assign(lodged_at=frame["lodged_at"].dt.strftime("%Y-%m-%d %H:%M:%S"))
    expected = served.scorer.score(frame)[["declaration_id", "channel", "probability"]]
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    as_csv, as_parquet = folder / "incoming.csv", folder / "incoming.parquet"
    _written_csv(frame, as_csv, ending, bom, quote_all)
    _written_parquet(frame, as_parquet, text_type, stamp_type)
    for path in (as_csv, as_parquet):
        scored = served.scorer.score(read_table(path))[["declaration_id", "channel", "probability"]]
        assert len(scored) == len(frame), path.name  # rows in = rows out
        assert scored["channel"].tolist() == expected["channel"].tolist(), path.name
        np.testing.assert_allclose(
            scored["probability"].astype(float), expected["probability"].astype(float), rtol=1e-9
        )


def test_codes_written_as_floats_read_as_their_numbers():
    from pipeline.ingest.schema import validate_declarations

    frame = user_declarations(4, seed=3)
    frame["office"] = ["30.0", "30", "40.0", "SEL.0"]
    clean, _ = validate_declarations(frame)
    offices = clean.set_index("declaration_id").loc[frame["declaration_id"], "office"]
    assert offices.astype(str).tolist() == ["30", "30", "40", "SEL.0"]


def test_day_first_dates_with_offsets_read_the_same_in_any_order():
    from pipeline.ingest.schema import validate_declarations

    frame = user_declarations(12, seed=3).reset_index(drop=True)
    frame["lodged_at"] = [
        f"{d:02d}/03/2024 10:00" + ("+09:00" if d % 2 else "") for d in range(13, 25)
    ]
    forward = validate_declarations(frame)[0].set_index("declaration_id")["lodged_at"]
    backward = validate_declarations(frame.iloc[::-1])[0].set_index("declaration_id")["lodged_at"]
    assert (
        forward.loc[frame["declaration_id"]].tolist()
        == backward.loc[frame["declaration_id"]].tolist()
    )
    assert forward.loc["D0001"] == pd.Timestamp("2024-03-13 01:00")  # 10:00+09:00
    assert forward.loc["D0002"] == pd.Timestamp("2024-03-14 10:00")  # naive: UTC


def test_bytes_sent_as_text_score_as_the_text(served: Served):
    batch = served.incoming.iloc[:12].reset_index(drop=True)
    as_bytes = batch.assign(
        office=[v.encode() for v in batch["office"].astype(str)],
        importer=[v.encode() for v in batch["importer"].astype(str)],
    )
    pd.testing.assert_frame_equal(served.scorer.score(as_bytes), served.scorer.score(batch))


def test_a_damaged_tracking_store_is_named(tmp_path: Path):
    from pipeline import tracking
    from pipeline.config import load

    store = tmp_path / "mlflow.db"
    store.write_bytes(b"not a database" * 100)
    config = load(None, [f"tracking.uri=sqlite:///{store}"])
    with pytest.raises(ValueError, match=r"tracking store sqlite:///.*mlflow\.db cannot be used"):
        tracking.configure(config)


def test_a_tracking_server_that_never_answers_is_named_within_ten_seconds(tmp_path: Path):
    """A host that accepts the connection and then says nothing (a hung server, a firewall that
    swallows packets) used to hang for minutes before a traceback."""
    import socket
    import time

    from pipeline import tracking
    from pipeline.config import load

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nothing ever reads or answers
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        config = load(None, [f"tracking.uri={uri}", f"output_dir={tmp_path}"])
        started = time.monotonic()
        with pytest.raises(ValueError, match=f"tracking server {uri} does not answer"):
            tracking.configure(config)
        assert time.monotonic() - started < 10.0
