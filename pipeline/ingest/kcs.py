"""Adapter for the Customs Import Declaration Datasets (Jeong et al., 2022; KCS, MIT licence).

Reads the `_eng` files (HS6 codes, English headers) and the Korean-header files (UTF-8 BOM,
10-digit HS codes stored as integers, so chapters 01-09 lost their leading zero) into raw frames
with canonical column names; `readers.load_inputs` validates them. Every KCS row was inspected:
each declaration gets one outcome whose `hit` is the `Fraud` label.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.ingest.schema import ROW_PROBLEM, DataError
from pipeline.ingest.text import NUL_MARK, csv_text, nul_problems

logger = logging.getLogger(__name__)

DOWNLOAD = "https://github.com/Seondong/Customs-Declaration-Datasets"
KCS_FILES = ("df_syn_train_eng.csv", "df_syn_valid_eng.csv", "df_syn_test_eng.csv")

ENG_HEADER: tuple[str, ...] = (
    "Declaration ID",
    "Date",
    "Office ID",
    "Process Type",
    "Import Type",
    "Import Use",
    "Payment Type",
    "Mode of Transport",
    "Declarant ID",
    "Importer ID",
    "Seller ID",
    "Courier ID",
    "HS6 Code",
    "Country of Departure",
    "Country of Origin",
    "Tax Rate",
    "Tax Type",
    "Country of Origin Indicator",
    "Net Mass",
    "Item Price",
    "Fraud",
    "Critical Fraud",
)
# Same columns, same order, in the Korean files (which carry 10-digit HS codes).
KO_HEADER: tuple[str, ...] = (
    "신고번호",
    "신고일자",
    "신고세관부호",
    "수입신고구분코드",
    "수입거래구분코드",
    "수입종류코드",
    "징수형태코드",
    "운송수단유형코드",
    "신고인부호",
    "수입자",
    "해외거래처부호",
    "특송업체부호",
    "HS10단위부호",
    "적출국가코드",
    "원산지국가코드",
    "관세율",
    "관세율구분코드",
    "원산지표시유무코드",
    "신고중량(KG)",
    "과세가격원화금액",
    "우범여부",
    "핵심적발",
)
HS_DIGITS = {"eng": 6, "ko": 10}
RENAME = {
    "Declaration ID": "declaration_id",
    "Date": "lodged_at",
    "Office ID": "office",
    "Declarant ID": "declarant",
    "Importer ID": "importer",
    "Seller ID": "seller",
    "HS6 Code": "hs_code",
    "Country of Departure": "departure_country",
    "Country of Origin": "origin_country",
    "Mode of Transport": "transport_mode",
    "Net Mass": "net_mass_kg",
    "Item Price": "declared_value",
}
EXTRAS = {
    "Process Type": "kcs_process_type",
    "Import Type": "kcs_import_type",
    "Import Use": "kcs_import_use",
    "Payment Type": "kcs_payment_type",
    "Courier ID": "kcs_courier_id",
    "Tax Type": "kcs_tax_type",
    "Country of Origin Indicator": "kcs_origin_indicator",
}
NUMBERS = ("Tax Rate", "Net Mass", "Item Price", "Fraud", "Critical Fraud")


def _missing_message(missing: list[Path]) -> str:
    folders = sorted({str(path.parent) for path in missing})
    return (
        f"KCS file(s) not found: {', '.join(path.name for path in missing)} "
        f"(expected in {', '.join(folders)}, the config key data.kcs_dir). Download them from "
        f"{DOWNLOAD} (folder data/: {', '.join(KCS_FILES)}; the Korean-header files are on the "
        "`ko` branch) and put them in that folder, or point data.kcs_dir at yours."
    )


def _dialect(path: Path, text: str) -> str:
    """'eng' or 'ko' from the header line; anything else is not a KCS file."""
    header = tuple(text.split("\n", 1)[0].strip().split(","))
    if header == ENG_HEADER:
        return "eng"
    if header == KO_HEADER:
        return "ko"
    expected = set(ENG_HEADER) if header and header[0] == ENG_HEADER[0] else set(KO_HEADER)
    unexpected = [c for c in header if c not in expected] or ["(columns out of order)"]
    missing = [
        c for c in (ENG_HEADER if expected == set(ENG_HEADER) else KO_HEADER) if c not in header
    ]
    raise DataError(
        f"{path}: not a KCS declarations file; unexpected column(s): {', '.join(unexpected)}; "
        f"missing: {', '.join(missing) or 'none'} (expected the 22 columns of {DOWNLOAD})"
    )


def _short_rows(text: str) -> pd.Series:
    """Per data row: 'row has 10 of 22 fields' for a row cut short, else None (pandas would
    fill the missing fields with nulls and report the first one as missing)."""
    lengths = [len(row) for row in csv.reader(io.StringIO(text)) if row][1:]
    width = len(ENG_HEADER)
    return pd.Series(
        [None if n >= width else f"row has {n} of {width} fields" for n in lengths], dtype=object
    )


def _read_one(path: Path) -> pd.DataFrame:
    """One KCS file with English column names; text kept as text, HS codes left-padded; rows
    the reader finds broken (short, NUL bytes) named in `ROW_PROBLEM`."""

    text = csv_text(path)
    dialect = _dialect(path, text)
    try:  # every column as text: numbers are checked row by row in `read_kcs`
        frame = pd.read_csv(
            io.StringIO(text),
            header=0,
            names=list(ENG_HEADER),
            dtype=str,
            keep_default_na=False,
            na_values={c: [""] for c in ENG_HEADER},
        )
    except (pd.errors.ParserError, ValueError, csv.Error) as exc:
        raise DataError(f"{path}: cannot be read as a KCS CSV file: {exc}") from None
    if frame.empty:
        raise DataError(f"{path}: header only, no data rows")
    if NUL_MARK in text:
        frame = nul_problems(path, frame)
    short = _short_rows(text)
    if short.notna().any() and len(short) == len(frame):
        frame[ROW_PROBLEM] = _first_problem(frame, short.to_numpy(dtype=object))
    digits = HS_DIGITS[dialect]
    frame["HS6 Code"] = frame["HS6 Code"].str.strip().str.zfill(digits)
    return frame


def _first_problem(frame: pd.DataFrame, problems: np.ndarray) -> np.ndarray:
    """The row problems already named in `frame`, else `problems` (one per row)."""
    if ROW_PROBLEM not in frame.columns:
        return problems
    earlier = frame[ROW_PROBLEM].to_numpy(dtype=object)
    return np.where(pd.notna(earlier), earlier, problems)


def _row_problems(raw: pd.DataFrame, fraud: np.ndarray, critical: np.ndarray) -> np.ndarray:
    """What makes a KCS row unusable whole, settled before labels are attached: a repeated id
    (the first row keeps it, whatever its validity, so a label never moves to another row) and
    labels that disagree (Critical Fraud set with Fraud=0)."""
    ids = raw["Declaration ID"]
    first = pd.Series(np.arange(1, len(raw) + 1)).groupby(ids.to_numpy(), sort=False)
    first_row = first.transform("first").to_numpy()
    repeated = ids.duplicated().to_numpy()
    problems = np.full(len(raw), None, dtype=object)
    problems[repeated] = [
        f"declaration_id: duplicate ('{value}', first at row {row})"
        for row, value in zip(first_row[repeated], ids[repeated], strict=True)
    ]
    disagree = (fraud == 0) & np.isin(critical, (1, 2))
    problems[disagree & ~repeated] = [
        f"KCS labels disagree: Critical Fraud set with Fraud=0 (Critical Fraud={c:g})"
        for c in critical[disagree & ~repeated]
    ]
    return _first_problem(raw, problems)


def _number(column: pd.Series) -> pd.Series:
    """A KCS text column as float; what is not a number becomes NaN (the caller decides)."""
    return pd.to_numeric(column.astype("string").str.strip(), errors="coerce").astype(float)


def read_kcs(paths: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw (declarations, outcomes) in canonical column names from KCS files (not validated).

    Declaration ids are unique within and across the published train and validation files;
    should files repeat an id, the first row keeps it (with its own label) and the rest are
    quarantined, whether the first row is valid or not.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise DataError("no KCS files given (config key data.kcs_files)")
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise DataError(_missing_message(missing))
    raw = pd.concat([_read_one(path) for path in paths], ignore_index=True)
    repeated = int(raw["Declaration ID"].duplicated().sum())
    if repeated:
        logger.warning(
            "%d KCS rows repeat a declaration id of an earlier row (%s); the first row keeps "
            "the id and the rest are quarantined",
            repeated,
            ", ".join(path.name for path in paths),
        )

    declarations = raw[list(RENAME)].rename(columns=RENAME)
    declarations["quantity"] = np.nan
    tax_rate = _number(raw["Tax Rate"])
    # A Tax Rate that is not a number stays as text, so validation quarantines its row.
    declarations["duty_rate"] = (
        (tax_rate / 100.0)
        .astype(object)
        .where(tax_rate.notna() | raw["Tax Rate"].isna(), raw["Tax Rate"])
    )
    # KCS declares no duty amount; the ad valorem duty implied by the declaration stands in.
    declarations["declared_duty"] = _number(raw["Item Price"]) * tax_rate / 100.0
    declarations["aeo"] = False  # AEO status is not in the KCS files
    for source, target in EXTRAS.items():
        declarations[target] = raw[source]

    fraud_number = _number(raw["Fraud"])
    fraud = fraud_number.to_numpy()
    critical = _number(raw["Critical Fraud"]).to_numpy()
    # Fraud must be 0 or 1: anything else reaches validation as a text it refuses (quarantine).
    label_text = "KCS Fraud=" + raw["Fraud"].astype("string").fillna("").str.strip()
    hit = np.where(fraud == 1, "true", np.where(fraud == 0, "false", label_text.to_numpy()))
    problems = _row_problems(raw, fraud, critical)
    declarations[ROW_PROBLEM] = problems
    outcomes = pd.DataFrame(
        {
            ROW_PROBLEM: problems,
            "declaration_id": raw["Declaration ID"],
            "selected_at": raw["Date"],
            "selection_reason": "unknown",
            "selection_probability": np.nan,
            "inspected": True,
            "hit": hit,
            "fraud_type": pd.Series(
                np.select([critical == 2, critical == 1], ["critical", "fraud"], default="")
            ).replace("", None),
            "revenue_recovered": np.nan,
            # No result dates: features.missing_result_delay_days stands in downstream.
            "result_at": pd.NaT,
            # A label, so it lives with the outcomes, never with the declarations (leakage).
            "kcs_critical_fraud": critical,
        }
    )
    return declarations, outcomes
