"""Adapter for the Customs Import Declaration Datasets (Jeong et al., 2022; KCS, MIT licence).

Reads the `_eng` files (HS6 codes, English headers) and the Korean-header files (UTF-8 BOM,
10-digit HS codes stored as integers, so chapters 01-09 lost their leading zero) into raw frames
with canonical column names; `readers.load_inputs` validates them. Every KCS row was inspected:
each declaration gets one outcome whose `hit` is the `Fraud` label.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.ingest.schema import DataError

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


def _dialect(path: Path) -> str:
    """'eng' or 'ko' from the header line; anything else is not a KCS file."""
    with path.open("rb") as handle:
        first = handle.readline(1 << 16)
    try:
        header = tuple(first.decode("utf-8-sig").strip().split(","))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; is this a KCS file?") from None
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


def _read_one(path: Path) -> pd.DataFrame:
    """One KCS file with English column names; text kept as text, HS codes left-padded."""
    from pipeline.ingest.readers import not_utf8_error

    dialect = _dialect(path)
    try:  # every column as text: numbers are checked row by row in `read_kcs`
        frame = pd.read_csv(
            path,
            encoding="utf-8-sig",
            header=0,
            names=list(ENG_HEADER),
            dtype=str,
            keep_default_na=False,
            na_values={c: [""] for c in ENG_HEADER},
        )
    except UnicodeDecodeError:
        raise not_utf8_error(path) from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as a KCS CSV file: {exc}") from None
    if frame.empty:
        raise DataError(f"{path}: header only, no data rows")
    digits = HS_DIGITS[dialect]
    frame["HS6 Code"] = frame["HS6 Code"].str.strip().str.zfill(digits)
    return frame


def _number(column: pd.Series) -> pd.Series:
    """A KCS text column as float; what is not a number becomes NaN (the caller decides)."""
    return pd.to_numeric(column.astype("string").str.strip(), errors="coerce").astype(float)


def read_kcs(paths: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw (declarations, outcomes) in canonical column names from KCS files (not validated).

    Declaration ids are unique within and across the published train and validation files;
    should files repeat an id, validation keeps the first row and quarantines the rest.
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
            "%d KCS rows repeat a declaration id of an earlier row (%s); validation keeps the "
            "first and quarantines the rest",
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
    outcomes = pd.DataFrame(
        {
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
