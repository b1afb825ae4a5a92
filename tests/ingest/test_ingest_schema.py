"""The canonical schema: bad rows go to quarantine with the reason they must give."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from helpers.ingest import declarations, outcomes
from hypothesis import given
from hypothesis import strategies as st

from pipeline.ingest.columns import DECLARATION_COLUMNS, HS_LEVELS, OUTCOME_COLUMNS
from pipeline.ingest.schema import (
    DataError,
    add_hs_levels,
    empty_outcomes,
    validate,
    validate_declarations,
    validate_outcomes,
)

Edit = Callable[[pd.DataFrame], None]


def _set(column: str, value: object, position: int = 3) -> Edit:
    def edit(frame: pd.DataFrame) -> None:
        frame[column] = frame[column].astype(object)
        frame.iloc[position, frame.columns.get_loc(column)] = value

    return edit


def _copy_id(source: int, target: int) -> Edit:
    def edit(frame: pd.DataFrame) -> None:
        frame.iloc[target, 0] = frame.iloc[source, 0]

    return edit


BAD_DECLARATIONS: list[tuple[str, Edit, int, str]] = [
    (
        "unparseable date",
        _set("lodged_at", "2024-13-45"),
        4,
        "lodged_at: not a date ('2024-13-45')",
    ),
    ("missing date", _set("lodged_at", None), 4, "lodged_at: missing"),
    ("negative mass", _set("net_mass_kg", -3.0), 4, "net_mass_kg: negative (-3.0)"),
    ("negative value", _set("declared_value", -10.0), 4, "declared_value: negative (-10.0)"),
    ("mass not a number", _set("net_mass_kg", "heavy"), 4, "net_mass_kg: not a number ('heavy')"),
    ("infinite value", _set("declared_value", np.inf), 4, "declared_value: not finite (inf)"),
    ("duplicate id", _copy_id(1, 5), 6, "declaration_id: duplicate ('D0002', first at row 2)"),
    ("missing id", _set("declaration_id", None), 4, "declaration_id: missing"),
    ("hs code with letters", _set("hs_code", "12AB56"), 4, "hs_code: not digits ('12AB56')"),
    (
        "too-short hs code",
        _set("hs_code", "1234"),
        4,
        "hs_code: too short, expected 6-10 digits ('1234')",
    ),
    (
        "too-long hs code",
        _set("hs_code", "123456789012"),
        4,
        "hs_code: too long, expected 6-10 digits ('123456789012')",
    ),
    ("null importer", _set("importer", None), 4, "importer: missing"),
    ("blank office", _set("office", "  "), 4, "office: missing"),
    ("aeo not boolean", _set("aeo", "maybe"), 4, "aeo: not true/false ('maybe')"),
]


@pytest.mark.parametrize(
    ("edit", "row", "reason"),
    [case[1:] for case in BAD_DECLARATIONS],
    ids=[case[0] for case in BAD_DECLARATIONS],
)
def test_bad_declaration_is_quarantined_with_its_reason(edit: Edit, row: int, reason: str) -> None:
    frame = declarations()
    edit(frame)
    clean, report = validate_declarations(frame, "decl.csv")
    assert report.quarantined["reason"].tolist() == [reason]
    assert report.quarantined["row"].tolist() == [row]
    assert report.rows_kept + report.rows_quarantined == report.rows_in == len(frame)
    # The bad row's original values are kept for the user to fix.
    assert report.quarantined["declaration_id"].iloc[0] == frame["declaration_id"].iloc[row - 1]
    assert len(clean) == len(frame) - 1


def _outcome_set(column: str, value: object, position: int = 1) -> Edit:
    return _set(column, value, position)


def _outcome_copy(source: int, target: int) -> Edit:
    def edit(frame: pd.DataFrame) -> None:
        frame.iloc[target] = frame.iloc[source]

    return edit


BAD_OUTCOMES: list[tuple[str, Edit, int, str]] = [
    (
        "unknown declaration",
        _outcome_set("declaration_id", "X999"),
        2,
        "declaration_id: no such declaration ('X999')",
    ),
    (
        "result before selection",
        _outcome_set("result_at", "2000-01-01"),
        2,
        "result_at: before selected_at (2000-01-01 < ",
    ),
    (
        "selected before lodged",
        _outcome_set("selected_at", "2000-01-01"),
        2,
        "selected_at: before the declaration was lodged (2000-01-01 < ",
    ),
    (
        "hit without inspection",
        _outcome_set("inspected", False, 0),
        1,
        "hit: true but inspected is false",
    ),
    (
        "bad selection reason",
        _outcome_set("selection_reason", "hunch"),
        2,
        "selection_reason: unknown value ('hunch'; expected rule, model, random, intelligence, "
        "unknown)",
    ),
    (
        "missing selection reason",
        _outcome_set("selection_reason", None),
        2,
        "selection_reason: missing",
    ),
    (
        "probability above 1",
        _outcome_set("selection_probability", 1.5),
        2,
        "selection_probability: outside (0, 1] (1.5)",
    ),
    (
        "probability zero",
        _outcome_set("selection_probability", 0.0),
        2,
        "selection_probability: outside (0, 1] (0.0)",
    ),
    (
        "negative revenue",
        _outcome_set("revenue_recovered", -5.0),
        2,
        "revenue_recovered: negative (-5.0)",
    ),
    ("hit not boolean", _outcome_set("hit", "perhaps"), 2, "hit: not true/false ('perhaps')"),
    (
        "two outcomes for one declaration",
        _outcome_copy(1, 4),
        5,
        "declaration_id: second outcome for the declaration ('D0003', first at row 2)",
    ),
]


@pytest.mark.parametrize(
    ("edit", "row", "reason"),
    [case[1:] for case in BAD_OUTCOMES],
    ids=[case[0] for case in BAD_OUTCOMES],
)
def test_bad_outcome_is_quarantined_with_its_reason(edit: Edit, row: int, reason: str) -> None:
    decls, _ = validate_declarations(declarations())
    frame = outcomes(declarations())
    edit(frame)
    clean, report = validate_outcomes(frame, decls, "out.csv")
    assert len(report.quarantined) == 1
    assert report.quarantined["reason"].iloc[0].startswith(reason)
    assert report.quarantined["row"].tolist() == [row]
    assert report.rows_kept + report.rows_quarantined == report.rows_in == len(frame)
    assert len(clean) == len(frame) - 1


@pytest.mark.parametrize("table", ["declarations", "outcomes"])
def test_missing_required_column_names_source_and_column(table: str) -> None:
    decls = declarations()
    if table == "declarations":
        with pytest.raises(
            DataError,
            match=r"decl\.csv: declarations required column\(s\) "
            r"missing: office, hs_code",
        ):
            validate_declarations(decls.drop(columns=["office", "hs_code"]), "decl.csv")
    else:
        clean, _ = validate_declarations(decls)
        with pytest.raises(
            DataError, match=r"out\.csv: outcomes required column\(s\) missing: hit"
        ):
            validate_outcomes(outcomes(decls).drop(columns=["hit"]), clean, "out.csv")


def test_everything_in_one_column_suggests_the_delimiter() -> None:
    decls = declarations()
    header = ";".join(decls.columns)
    frame = pd.DataFrame({header: decls.astype(str).agg(";".join, axis=1)})
    with pytest.raises(DataError, match=r"x\.csv: everything is in one column .* delimited by ';'"):
        validate_declarations(frame, "x.csv")


def test_canonical_dtypes_order_and_extras() -> None:
    frame = declarations()
    before = frame.copy()
    clean, report = validate_declarations(frame)
    pd.testing.assert_frame_equal(frame, before)  # the input is not mutated
    assert report.rows_quarantined == 0
    expected = [c.name for c in DECLARATION_COLUMNS] + list(HS_LEVELS) + ["procedure_code"]
    assert clean.columns.tolist() == expected
    kinds = {c.name: c.kind for c in DECLARATION_COLUMNS}
    for name, kind in kinds.items():
        dtype = clean[name].dtype
        if kind == "category":
            assert isinstance(dtype, pd.CategoricalDtype), name
            assert all(isinstance(v, str) for v in dtype.categories), name
        elif kind == "timestamp":
            assert dtype == np.dtype("datetime64[ns]"), name
        elif kind == "float":
            assert dtype == np.float64, name
        elif kind == "bool":
            assert dtype == np.dtype(bool), name
        else:
            assert dtype == np.dtype(object) and all(isinstance(v, str) for v in clean[name]), name
    for level in HS_LEVELS:
        assert isinstance(clean[level].dtype, pd.CategoricalDtype)
    assert isinstance(clean.index, pd.RangeIndex) and clean.index.start == 0
    keys = list(zip(clean["lodged_at"], clean["declaration_id"], strict=True))
    assert keys == sorted(keys)
    # kept_rows maps each validated row back to its source row.
    source = frame.reset_index(drop=True).iloc[report.kept_rows - 1]
    assert source["declaration_id"].tolist() == clean["declaration_id"].tolist()
    assert clean["procedure_code"].tolist() == source["procedure_code"].tolist()
    assert "NA" in set(clean["origin_country"])  # Namibia is not a missing value


def test_ties_in_time_are_ordered_by_declaration_id() -> None:
    frame = declarations(20)
    frame["lodged_at"] = np.resize(["2024-01-02", "2024-01-01"], len(frame))
    frame["declaration_id"] = frame["declaration_id"].to_numpy()[::-1]
    clean, _ = validate_declarations(frame)
    expected = frame.assign(lodged_at=pd.to_datetime(frame["lodged_at"])).sort_values(
        ["lodged_at", "declaration_id"]
    )
    assert clean["declaration_id"].tolist() == expected["declaration_id"].tolist()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("710807000", "0710807000"),  # a 10-digit code stored as an integer lost its zero
        (71080, "071080"),
        (71080.0, "071080"),
        ("8703.23.19", "87032319"),
        (" 870323 ", "870323"),
        ("62082200", "62082200"),
    ],
)
def test_hs_codes_keep_or_regain_leading_zeros(given: object, expected: str) -> None:
    frame = declarations(3)
    frame["hs_code"] = pd.Series([given] * 3, index=frame.index, dtype=object)
    clean, report = validate_declarations(frame)
    assert report.rows_quarantined == 0
    assert set(clean["hs_code"]) == {expected}
    assert set(clean["hs2"]) == {expected[:2]} and set(clean["hs6"]) == {expected[:6]}


def test_types_are_coerced_from_other_spellings() -> None:
    frame = declarations(4)
    frame["lodged_at"] = [
        "2024-01-01T09:00:00+02:00",
        "2024-01-01 08:00",
        "Jan 5 2024",
        "2024-01-03",
    ]
    frame["aeo"] = ["Yes", "no", "TRUE", "0"]
    frame["net_mass_kg"] = [" 2.5 ", "3", 4, "5e1"]
    frame["office"] = [30, 30.0, "30", " 30"]
    clean, report = validate_declarations(frame)
    assert report.rows_quarantined == 0
    by_id = clean.set_index("declaration_id")
    assert by_id.loc["D0001", "lodged_at"] == pd.Timestamp("2024-01-01 07:00")  # UTC, naive
    assert by_id.loc["D0003", "lodged_at"] == pd.Timestamp("2024-01-05")
    in_order = by_id.loc[["D0001", "D0002", "D0003", "D0004"]]
    assert in_order["aeo"].tolist() == [True, False, True, False]
    assert in_order["net_mass_kg"].tolist() == [2.5, 3.0, 4.0, 50.0]
    assert list(clean["office"].cat.categories) == ["30"]


@given(
    rows=st.integers(5, 40),
    bad=st.sets(st.integers(0, 39), max_size=10),
    column=st.sampled_from(["net_mass_kg", "declared_value", "duty_rate"]),
)
def test_exactly_the_corrupted_rows_are_quarantined(rows: int, bad: set[int], column: str) -> None:
    frame = declarations(rows)
    positions = sorted(p for p in bad if p < rows)
    frame.iloc[positions, frame.columns.get_loc(column)] = -1.0
    clean, report = validate_declarations(frame)
    assert report.quarantined["row"].tolist() == [p + 1 for p in positions]
    assert set(report.quarantined["reason"]) <= {f"{column}: negative (-1.0)"}
    assert report.rows_kept + report.rows_quarantined == rows
    kept = set(frame["declaration_id"]) - set(frame["declaration_id"].iloc[positions])
    assert set(clean["declaration_id"]) == kept


def test_outcomes_canonical_with_optional_columns_absent() -> None:
    decls, _ = validate_declarations(declarations())
    frame = outcomes(declarations()).drop(
        columns=["selection_probability", "fraud_type", "revenue_recovered", "result_at"]
    )
    frame["selection_reason"] = np.resize(["Rule", "RANDOM", "model"], len(frame))
    clean, report = validate_outcomes(frame, decls)
    assert report.rows_quarantined == 0
    assert clean.columns.tolist() == [c.name for c in OUTCOME_COLUMNS]
    pd.testing.assert_series_equal(clean.dtypes, empty_outcomes().dtypes)
    assert clean["selection_probability"].isna().all() and clean["result_at"].isna().all()
    assert set(clean["selection_reason"]) == {"rule", "random", "model"}
    assert list(clean["selection_reason"].cat.categories) == [
        "rule",
        "model",
        "random",
        "intelligence",
        "unknown",
    ]


def test_outcomes_of_a_quarantined_declaration_are_quarantined() -> None:
    frame = declarations()
    frame.iloc[0, frame.columns.get_loc("net_mass_kg")] = -1.0
    tables = validate(frame, outcomes(declarations()))
    assert tables.reports[1].quarantined["reason"].tolist() == [
        "declaration_id: its declaration was quarantined ('D0001')"
    ]
    assert "1 quarantined" in tables.summary()


def test_validate_without_outcomes_gives_empty_canonical_outcomes() -> None:
    tables = validate(declarations())
    assert tables.outcomes.empty
    assert tables.outcomes.columns.tolist() == [c.name for c in OUTCOME_COLUMNS]
    assert len(tables.reports) == 1


def test_summary_counts_reasons_by_kind() -> None:
    frame = declarations()
    frame["net_mass_kg"] = frame["net_mass_kg"].astype(object)
    frame.iloc[[1, 2], frame.columns.get_loc("net_mass_kg")] = [-1.0, -2.0]
    frame.iloc[3, frame.columns.get_loc("importer")] = None
    _, report = validate_declarations(frame, "decl.csv")
    text = report.summary()
    assert text.splitlines()[0] == "declarations (decl.csv): 12 rows in, 9 kept, 3 quarantined"
    assert "2  net_mass_kg: negative" in text and "1  importer: missing" in text
    assert report.reason_counts().to_dict() == {"net_mass_kg: negative": 2, "importer: missing": 1}


def test_add_hs_levels_returns_a_new_frame() -> None:
    frame = pd.DataFrame({"hs_code": ["0710807000", "870323", None]})
    levels = add_hs_levels(frame)
    assert "hs2" not in frame.columns
    assert levels["hs2"].tolist()[:2] == ["07", "87"] and pd.isna(levels["hs2"].iloc[2])
    assert levels["hs4"].tolist()[:2] == ["0710", "8703"]
    assert levels["hs6"].tolist()[:2] == ["071080", "870323"]


def test_a_whole_column_in_another_date_format_is_parsed() -> None:
    frame = declarations(30)
    expected = pd.to_datetime(frame["lodged_at"]).dt.floor("min")
    frame["lodged_at"] = expected.dt.strftime("%d.%m.%Y %H:%M")
    clean, report = validate_declarations(frame)
    assert report.rows_quarantined == 0
    by_id = clean.set_index("declaration_id")["lodged_at"]
    assert by_id.loc[frame["declaration_id"]].tolist() == expected.tolist()


def test_empty_tables_keep_the_canonical_dtypes() -> None:
    clean, report = validate_declarations(declarations().iloc[:0])
    full, _ = validate_declarations(declarations())
    assert report.rows_in == 0 and clean.empty
    assert clean.columns.tolist() == full.columns.tolist()
    for name in full.columns:
        assert type(clean[name].dtype) is type(full[name].dtype), name
    outs, out_report = validate_outcomes(outcomes(declarations()).iloc[:0], full)
    pd.testing.assert_series_equal(outs.dtypes, empty_outcomes().dtypes)
    assert out_report.rows_kept == 0


def test_dates_without_times_are_compared_by_day() -> None:
    decls = declarations().assign(lodged_at=lambda f: pd.to_datetime(f["lodged_at"]))
    decls["lodged_at"] = decls["lodged_at"].dt.normalize() + pd.Timedelta(hours=15)
    clean, _ = validate_declarations(decls)
    outs = outcomes(decls)
    day = pd.to_datetime(outs["selected_at"]).dt.normalize()
    outs["selected_at"] = day.dt.strftime("%Y-%m-%d")  # same day, recorded without a time
    outs["result_at"] = outs["selected_at"]
    outs.iloc[1, outs.columns.get_loc("selected_at")] = (
        day.iloc[1] - pd.Timedelta(days=1)
    ).strftime("%Y-%m-%d")
    kept, report = validate_outcomes(outs, clean)
    assert report.quarantined["row"].tolist() == [2]
    assert (
        report.quarantined["reason"]
        .iloc[0]
        .startswith("selected_at: before the declaration was lodged")
    )
    assert len(kept) == len(outs) - 1
