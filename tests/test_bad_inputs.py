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
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers_ingest import KCS_DIR, PROJECT
from helpers_ingest import declarations as user_declarations
from helpers_ingest import outcomes as user_outcomes
from helpers_serve import (
    declarations,
    labelled_training,
    make_snapshot,
    outcomes,
    serve_config,
    thresholds_document,
    train_model,
)
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import FeaturesConfig
from pipeline.features import build
from pipeline.ingest.columns import DECLARATION_COLUMNS
from pipeline.serve.model import TargetingModel
from pipeline.serve.ranking import rank
from pipeline.serve.scorer import Scorer
from pipeline.serve.thresholds import Thresholds, content_digest

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
    history = declarations(3_000, seed=21, start=dt.date(2024, 1, 1), days=120)
    inspected = outcomes(history, seed=21)
    feature_set = build.build_feature_set(history, inspected, config)
    snapshot = make_snapshot(history, inspected, config)
    snapshot.save(folder / "snapshot")
    X, y = labelled_training(feature_set)
    model = train_model(X, y, rounds=15)
    late = (feature_set.lodged_at >= pd.Timestamp("2024-03-15")).to_numpy()
    by_id = history.set_index("declaration_id").loc[feature_set.declaration_id[late].astype(str)]
    reference = pd.concat(
        [
            by_id.reset_index(),
            rank(model, feature_set.X.loc[late].reset_index(drop=True), "probability").frame(),
        ],
        axis=1,
    )
    path, document = _save_export(folder, "canonical", model, reference, snapshot)
    # A model trained with a KCS extra column: its thresholds cannot score canonical files.
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
    args: list[str], tmp: Path, env: dict[str, str] | None = None, store: Path | None = None
) -> tuple[int, str]:
    """Run the CLI; `store`: the folder of the MLflow SQLite store (one per session for the
    score cases: creating a store runs its migrations, seconds each)."""
    result = runner.invoke(
        app,
        [
            *args,
            "--config",
            CONFIG,
            "--set",
            f"output_dir={tmp / 'out'}",
            "--set",
            f"tracking.uri=sqlite:///{(store or tmp) / 'mlflow.db'}",
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


@dataclass(frozen=True)
class Score:
    """`targeting score` on a file made by `make`, with the thresholds `thresholds(...)`."""

    make: Callable[[Path, Served], Path]
    thresholds: Callable[[Path, Served], Path] = lambda tmp, s: s.thresholds
    out: str = "scored.csv"
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Direct:
    """`Scorer.score` on a batch made from the incoming declarations (as a REST body is)."""

    change: Change
    bad_rows: tuple[int, ...] = ()


def _run_validate(case: Validate, tmp: Path, expected: str, fragment: str) -> None:
    source = case.make(tmp)
    quarantine = tmp / "quarantine.csv"
    args = ["validate", "--input", str(source), "--quarantine", str(quarantine)]
    if case.outcomes is not None:
        args += ["--outcomes", str(case.outcomes(tmp))]
    if case.kcs:
        args += ["--format", "kcs"]
    for override in case.sets:
        args += ["--set", override]
    code, output = _invoke(args, tmp)
    if expected == "refused":
        assert code == 1, output
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
    out = tmp / case.out
    args = ["score", "--input", str(source), "--thresholds", str(case.thresholds(tmp, served))]
    code, output = _invoke(
        [*args, "--out", str(out)], tmp, dict(case.env) or None, store=served.folder
    )
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
        "not finite",
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
    from pipeline.train.tune import fail_abandoned_trials, finished_trials, load_study

    config = load(None, [f"output_dir={tmp_path}"])
    killed = load_study(config)
    killed.ask()  # the process dies here: the trial stays RUNNING in the SQLite study
    rerun = load_study(config)
    with caplog.at_level("WARNING"):
        assert fail_abandoned_trials(config, rerun) == [0]
    assert "left RUNNING by a process that stopped; marked FAIL" in caplog.text
    trial = load_study(config).trials[0]
    assert trial.state.name == "FAIL" and "fail_reason" in trial.system_attrs
    assert finished_trials(rerun) == 0
    assert fail_abandoned_trials(config, load_study(config)) == []  # nothing left to fail


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
