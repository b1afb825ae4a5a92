"""Readers: CSV (with or without BOM) and Parquet round trips, column mapping, whole-file errors."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pytest
from helpers.ingest import declarations, outcomes, write_simulated_tables
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import Config, DataConfig
from pipeline.ingest.readers import (
    TEXT_NULLS,
    load_inputs,
    read_table,
    write_quarantine,
    write_table,
)
from pipeline.ingest.schema import DataError, validate_declarations, validate_outcomes


def _write_csv(frame: pd.DataFrame, path: Path, *, bom: bool = False, sep: str = ",") -> Path:
    frame.to_csv(path, index=False, sep=sep, encoding="utf-8-sig" if bom else "utf-8")
    return path


@pytest.mark.parametrize("name", ["plain.csv", "bom.csv", "table.parquet"])
def test_round_trip_gives_the_same_validated_table(tmp_path: Path, name: str) -> None:
    frame = declarations()
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        _write_csv(frame, path, bom=name.startswith("bom"))
    if name == "bom.csv":
        assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    read = read_table(path)
    assert read.columns.tolist() == frame.columns.tolist()  # the BOM is not in the first name
    expected, _ = validate_declarations(frame)
    clean, report = validate_declarations(read, str(path))
    assert report.rows_quarantined == 0
    pd.testing.assert_frame_equal(clean.drop(columns="aeo"), expected.drop(columns="aeo"))
    assert clean["aeo"].tolist() == expected["aeo"].tolist()


def test_write_table_round_trip_of_validated_tables(tmp_path: Path) -> None:
    clean, _ = validate_declarations(declarations())
    for name in ("out.parquet", "out.csv"):
        path = tmp_path / "nested" / name
        write_table(clean, path)
        again, report = validate_declarations(read_table(path))
        assert report.rows_quarantined == 0
        pd.testing.assert_frame_equal(again, clean, check_categorical=False)
    assert sorted(p.name for p in (tmp_path / "nested").iterdir()) == ["out.csv", "out.parquet"]


def test_text_columns_keep_leading_zeros_and_namibia(tmp_path: Path) -> None:
    frame = declarations(4).assign(hs_code="0710807000", origin_country="NA", office="007")
    read = read_table(_write_csv(frame, tmp_path / "d.csv"))
    assert set(read["hs_code"]) == {"0710807000"}
    assert set(read["origin_country"]) == {"NA"}
    assert set(read["office"]) == {"007"}


def test_column_mapping_renames_user_columns(tmp_path: Path) -> None:
    mapping = {"DeclNo": "declaration_id", "Datum": "lodged_at", "Zollstelle": "office"}
    frame = declarations().rename(columns={v: k for k, v in mapping.items()})
    path = _write_csv(frame, tmp_path / "export.csv")
    with pytest.raises(DataError, match="declaration_id, lodged_at, office"):
        validate_declarations(read_table(path), str(path))
    read = read_table(path, {**mapping, "NotInThisFile": "seller"})
    clean, report = validate_declarations(read)
    assert report.rows_quarantined == 0 and len(clean) == len(frame)


def test_column_mapping_onto_an_existing_column_is_refused(tmp_path: Path) -> None:
    path = _write_csv(declarations(), tmp_path / "d.csv")
    with pytest.raises(DataError, match=r"'importer' -> 'office'"):
        read_table(path, {"importer": "office"})


def _file(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def _csv_text(rows: int = 3) -> str:
    return declarations(rows).to_csv(index=False)


def _cases() -> list[tuple[str, str, bytes, str]]:
    text = _csv_text()
    header = text.splitlines()[0] + "\n"
    latin = text.replace("D0002", "Dé0002").encode("latin-1")
    ragged = text + "D9,2024-01-01,KRPUS,too,many,fields,,,,,,,,,,,,,,,,\n"
    return [
        ("empty file", "d.csv", b"", r"d\.csv: the file is empty"),
        ("blank first line", "d.csv", b"\n\n", r"d\.csv: the file is empty"),
        ("header only", "d.csv", header.encode(), r"d\.csv: header only, no data rows"),
        (
            "wrong delimiter",
            "d.csv",
            declarations(3).to_csv(index=False, sep=";").encode(),
            r"d\.csv: everything is in one column .* delimited by ';'",
        ),
        (
            "tab delimiter",
            "d.csv",
            declarations(3).to_csv(index=False, sep="\t").encode(),
            r"delimited by '\\t'",
        ),
        ("not UTF-8", "d.csv", latin, r"d\.csv: not UTF-8 text \(byte 0xe9 on line \d\)"),
        ("ragged row", "d.csv", ragged.encode(), r"d\.csv: cannot be read as CSV: .*line 5"),
        (
            "damaged parquet",
            "d.parquet",
            b"PAR1 not really",
            r"d\.parquet: cannot be read as Parquet",
        ),
        ("empty parquet", "d.parquet", b"", r"d\.parquet: the file is empty"),
        ("spreadsheet", "d.xlsx", b"PK", r"d\.xlsx: unsupported file type '\.xlsx'"),
    ]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [case[1:] for case in _cases()],
    ids=[case[0] for case in _cases()],
)
def test_whole_file_problems_raise_one_clear_error(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = _file(tmp_path, name, content)
    with pytest.raises(DataError, match=message):
        read_table(path)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"file not found: .*nowhere\.csv"):
        read_table(tmp_path / "nowhere.csv")
    with pytest.raises(DataError, match="is a folder"):
        read_table(tmp_path)


def test_write_quarantine_collects_both_tables(tmp_path: Path) -> None:
    decls = declarations()
    decls.iloc[1, decls.columns.get_loc("net_mass_kg")] = -1.0
    outs = outcomes(declarations())
    outs.iloc[0, outs.columns.get_loc("selection_reason")] = "hunch"
    clean, decl_report = validate_declarations(decls, "d.csv")
    _, out_report = validate_outcomes(outs, clean, "o.csv")
    path = tmp_path / "q.csv"
    assert write_quarantine([decl_report, out_report], path) == 2
    written = pd.read_csv(path)
    assert written.columns.tolist()[:4] == ["table", "source", "row", "reason"]
    assert written["table"].tolist() == ["declarations", "outcomes"]
    assert written["row"].tolist() == [2, 1]
    assert written["reason"].iloc[0] == "net_mass_kg: negative (-1.0)"
    # Nothing to quarantine: a stale file from an earlier run goes away.
    _, clean_report = validate_declarations(declarations())
    assert write_quarantine([clean_report], path) == 0
    assert not path.exists()


def _files_config(tmp_path: Path, **data: object) -> Config:
    return Config(output_dir=tmp_path / "out", data=DataConfig(source="files", **data))


def test_load_inputs_from_canonical_files(tmp_path: Path) -> None:
    decls = declarations()
    decls.iloc[0, decls.columns.get_loc("hs_code")] = "12AB56"
    d = _write_csv(decls.rename(columns={"lodged_at": "Datum"}), tmp_path / "d.csv", bom=True)
    outs = outcomes(declarations()).iloc[1:]
    o = tmp_path / "o.parquet"
    outs.to_parquet(o, index=False)
    config = _files_config(
        tmp_path, declarations=d, outcomes=o, column_mapping={"Datum": "lodged_at"}
    )
    inputs = load_inputs(config)
    assert len(inputs.declarations) == len(decls) - 1
    assert len(inputs.outcomes) == len(outs)
    assert inputs.ground_truth is None
    assert [r.rows_quarantined for r in inputs.reports] == [1, 0]
    assert "hs_code: not digits" in inputs.summary()
    assert not (tmp_path / "out").exists()  # loading writes nothing


def test_load_inputs_without_outcomes_or_declarations(tmp_path: Path) -> None:
    d = _write_csv(declarations(), tmp_path / "d.csv")
    inputs = load_inputs(_files_config(tmp_path, declarations=d))
    assert inputs.outcomes.empty and len(inputs.reports) == 1
    with pytest.raises(DataError, match=r"data\.declarations is not set"):
        load_inputs(_files_config(tmp_path))


def test_load_inputs_of_simulated_tables(tmp_path: Path) -> None:
    config = Config(output_dir=tmp_path / "sim")
    with pytest.raises(DataError, match=r"Run `targeting simulate --config") as caught:
        load_inputs(config)
    assert "declarations.parquet" in str(caught.value)
    decls = declarations()
    write_simulated_tables(config.paths, decls)
    inputs = load_inputs(config)
    assert len(inputs.declarations) == len(decls)
    assert inputs.ground_truth is not None and len(inputs.ground_truth) == len(decls)
    assert "ground truth: 12 rows" in inputs.summary()


def test_an_outcomes_file_without_rows_means_no_controls_yet(tmp_path: Path) -> None:
    d = _write_csv(declarations(), tmp_path / "d.csv")
    o = tmp_path / "o.parquet"
    outcomes(declarations()).iloc[:0].to_parquet(o, index=False)
    with pytest.raises(DataError, match="header only, no data rows"):
        read_table(o)
    inputs = load_inputs(_files_config(tmp_path, declarations=d, outcomes=o))
    assert inputs.outcomes.empty and len(inputs.declarations) == 12
    assert [r.rows_in for r in inputs.reports] == [12, 0]


@settings(max_examples=25)
@given(
    names=st.lists(
        st.text(
            alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12
        ).filter(lambda t: t.strip() == t and t not in TEXT_NULLS),
        min_size=3,
        max_size=3,
    ),
    bom=st.booleans(),
)
def test_text_survives_a_csv_round_trip(names: list[str], bom: bool) -> None:
    frame = declarations(3).assign(importer=names, seller=["0012", "NA", 'a,b "c"'])
    with tempfile.TemporaryDirectory() as folder:
        path = _write_csv(frame, Path(folder) / "d.csv", bom=bom)
        read = read_table(path)
    assert read["importer"].tolist() == names
    assert read["seller"].tolist() == ["0012", "NA", 'a,b "c"']
