"""The KCS adapter on the real Customs Import Declaration Datasets (shared/data/external)."""

from __future__ import annotations

import shutil
from functools import cache
from pathlib import Path

import pandas as pd
import pytest
from helpers.ingest import KCS_DIR

from pipeline.config import Config, DataConfig
from pipeline.ingest.kcs import read_kcs
from pipeline.ingest.readers import load_inputs
from pipeline.ingest.schema import DataError, validate

TRAIN_ENG = KCS_DIR / "df_syn_train_eng.csv"
VALID_ENG = KCS_DIR / "df_syn_valid_eng.csv"
TRAIN_KO = KCS_DIR / "df_syn_train.csv"

needs_files = pytest.mark.skipif(
    not TRAIN_ENG.is_file() or not TRAIN_KO.is_file(), reason="KCS files not in shared/data"
)


@cache
def _validated(*paths: Path) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    declarations, outcomes = read_kcs(list(paths))
    tables = validate(declarations, outcomes)
    quarantined = sum(report.rows_quarantined for report in tables.reports)
    return tables.declarations, tables.outcomes, quarantined


@needs_files
def test_eng_train_and_valid_counts_and_labels() -> None:
    declarations, outcomes, quarantined = _validated(TRAIN_ENG, VALID_ENG)
    assert quarantined == 0
    assert len(declarations) == 37_385 + 8_134 == len(outcomes)
    train = declarations["lodged_at"] < pd.Timestamp("2021-01-01")
    assert int(train.sum()) == 37_385
    by_id = outcomes.set_index("declaration_id")
    hits = by_id.loc[declarations.loc[train, "declaration_id"], "hit"]
    assert int(hits.sum()) == 8_114
    assert outcomes["inspected"].all()
    assert set(outcomes["selection_reason"]) == {"unknown"}
    assert outcomes["revenue_recovered"].isna().all() and outcomes["result_at"].isna().all()
    lodged = declarations.set_index("declaration_id")["lodged_at"]
    selected = outcomes["selected_at"].to_numpy()
    assert (selected == lodged.loc[outcomes["declaration_id"]].to_numpy()).all()
    fraud_types = outcomes["fraud_type"].value_counts().to_dict()
    assert fraud_types == {"fraud": 7_720 + 1_626, "critical": 394 + 78}
    assert (outcomes["fraud_type"].notna() == outcomes["hit"]).all()


@needs_files
def test_eng_columns_dtypes_and_extras() -> None:
    declarations, outcomes, _ = _validated(TRAIN_ENG, VALID_ENG)
    assert declarations["hs_code"].str.len().eq(6).all()
    assert declarations["quantity"].isna().all() and not declarations["aeo"].any()
    row = declarations.set_index("declaration_id").loc["85945189"]  # second row of the file
    assert row["hs_code"] == "690722" and row["office"] == "40"
    assert row["duty_rate"] == pytest.approx(0.08)
    assert row["declared_duty"] == pytest.approx(375751.2 * 0.08)
    assert row["net_mass_kg"] == 11352.0 and row["origin_country"] == "CN"
    extras = {
        "kcs_process_type",
        "kcs_import_type",
        "kcs_import_use",
        "kcs_payment_type",
        "kcs_courier_id",
        "kcs_tax_type",
        "kcs_origin_indicator",
    }
    assert extras <= set(declarations.columns)
    # The label stays with the outcomes: a declaration column would leak it into features.
    assert "kcs_critical_fraud" not in declarations.columns
    assert set(outcomes["kcs_critical_fraud"]) == {0, 1, 2}
    assert declarations["seller"].isna().sum() > 0  # Seller ID is empty in some rows


@needs_files
def test_korean_file_has_the_same_rows_and_labels_with_hs10() -> None:
    eng, eng_outcomes, _ = _validated(TRAIN_ENG)
    ko, ko_outcomes, quarantined = _validated(TRAIN_KO)
    assert quarantined == 0
    assert ko["declaration_id"].tolist() == eng["declaration_id"].tolist()
    assert ko["hs_code"].str.len().eq(10).all()
    assert (ko["hs_code"].str[:6] == eng["hs_code"]).all()
    assert (ko["hs6"].astype(str) == eng["hs6"].astype(str)).all()
    by_id = ko.set_index("declaration_id")
    padded = by_id["hs_code"][by_id["hs_code"].str.startswith("0")]
    assert len(padded) > 1_000  # chapters 01-09 lost their leading zero in the file
    raw_ko = pd.read_csv(TRAIN_KO, encoding="utf-8-sig", dtype=str)
    hs_raw = raw_ko.set_index("신고번호")["HS10단위부호"]
    assert (hs_raw.loc[padded.index].str.len() == 9).all()
    assert "0710807000" in set(ko["hs_code"]) and "710807000" in set(hs_raw)
    pd.testing.assert_series_equal(ko_outcomes["hit"], eng_outcomes["hit"])
    pd.testing.assert_series_equal(ko_outcomes["declaration_id"], eng_outcomes["declaration_id"])
    pd.testing.assert_series_equal(ko["net_mass_kg"], eng["net_mass_kg"])
    pd.testing.assert_series_equal(ko["declared_value"], eng["declared_value"], rtol=1e-9)


def test_missing_file_gives_one_clear_message(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        read_kcs([tmp_path / "df_syn_train_eng.csv", tmp_path / "df_syn_valid_eng.csv"])
    message = str(caught.value)
    assert message.startswith("KCS file(s) not found: df_syn_train_eng.csv, df_syn_valid_eng.csv")
    assert f"expected in {tmp_path}" in message and "data.kcs_dir" in message
    assert "https://github.com/Seondong/Customs-Declaration-Datasets" in message
    config = Config(data=DataConfig(source="files", format="kcs", kcs_dir=tmp_path))
    with pytest.raises(DataError, match=r"KCS file\(s\) not found"):
        load_inputs(config)


def test_a_file_with_other_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("Declaration ID,Date,Price\n1,2020-01-01,3\n", encoding="utf-8")
    with pytest.raises(
        DataError,
        match=r"other\.csv: not a KCS declarations file; unexpected "
        r"column\(s\): Price; missing: Office ID",
    ):
        read_kcs([path])


@needs_files
def test_ids_repeated_across_files_are_quarantined_and_counted(tmp_path: Path) -> None:
    head = pd.read_csv(TRAIN_ENG, dtype=str, nrows=200, keep_default_na=False)
    first = tmp_path / "a_eng.csv"
    second = tmp_path / "b_eng.csv"
    head.iloc[:150].to_csv(first, index=False)
    head.iloc[140:].to_csv(second, index=False)  # 10 rows in both files
    declarations, outcomes = read_kcs([first, second])
    tables = validate(declarations, outcomes)
    assert len(tables.declarations) == 200 == len(tables.outcomes)
    decl_report, out_report = tables.reports
    assert decl_report.rows_quarantined == 10 == out_report.rows_quarantined
    assert decl_report.quarantined["row"].tolist() == list(range(151, 161))
    assert decl_report.reason_counts().to_dict() == {"declaration_id: duplicate": 10}


@needs_files
def test_load_inputs_reads_the_configured_kcs_files(tmp_path: Path) -> None:
    shutil.copy(VALID_ENG, tmp_path / VALID_ENG.name)
    config = Config(
        data=DataConfig(source="files", format="kcs", kcs_dir=tmp_path, kcs_files=[VALID_ENG.name])
    )
    inputs = load_inputs(config)
    assert len(inputs.declarations) == 8_134 == len(inputs.outcomes)
    assert int(inputs.outcomes["hit"].sum()) == 1_704
    assert inputs.ground_truth is None
