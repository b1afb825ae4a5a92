"""`targeting validate` through the real CLI: the summary printed and the quarantine written."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from helpers.ingest import KCS_DIR, PROJECT, declarations, outcomes
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import load
from pipeline.ingest.schema import validate_declarations
from pipeline.jobs.validate import validate, write_next_to_input

CONFIG = str(PROJECT / "configs" / "default.yaml")
runner = CliRunner()


def _files(tmp_path: Path) -> tuple[Path, Path]:
    decls = declarations()
    decls["net_mass_kg"] = decls["net_mass_kg"].astype(object)
    decls.iloc[1, decls.columns.get_loc("net_mass_kg")] = -3.0
    decls.iloc[4, decls.columns.get_loc("hs_code")] = "12AB56"
    outs = outcomes(declarations())
    outs.iloc[0, outs.columns.get_loc("selection_reason")] = "hunch"
    d, o = tmp_path / "export.csv", tmp_path / "outcomes.csv"
    decls.to_csv(d, index=False)
    outs.to_csv(o, index=False)
    return d, o


def _invoke(*args: str, tmp_path: Path) -> tuple[int, str]:
    result = runner.invoke(
        app, ["validate", *args, "--config", CONFIG, "--set", f"output_dir={tmp_path / 'out'}"]
    )
    return result.exit_code, " ".join(result.output.split())  # rich may wrap long lines


def test_validate_prints_the_summary_and_writes_the_quarantine(tmp_path: Path) -> None:
    d, o = _files(tmp_path)
    code, output = _invoke("--input", str(d), "--outcomes", str(o), tmp_path=tmp_path)
    assert code == 0, output
    assert "declarations" in output and "12 rows in, 10 kept, 2 quarantined" in output
    assert "1 net_mass_kg: negative" in output and "1 hs_code: not digits" in output
    # D0005's outcome goes with its quarantined declaration; D0001's has a bad reason.
    assert "6 rows in, 4 kept, 2 quarantined" in output
    assert "1 declaration_id: its declaration was quarantined" in output
    assert "1 selection_reason: unknown value" in output
    target = tmp_path / "export.quarantine.csv"
    assert "quarantine: 4 rows written to" in output
    written = pd.read_csv(target)
    assert written["table"].tolist() == ["declarations"] * 2 + ["outcomes"] * 2
    assert written["row"].tolist() == [2, 5, 1, 3]
    assert written["reason"].iloc[0] == "net_mass_kg: negative (-3.0)"


def test_validate_with_an_explicit_quarantine_path_and_clean_input(tmp_path: Path) -> None:
    d = tmp_path / "clean.csv"
    declarations().to_csv(d, index=False)
    target = tmp_path / "q" / "bad.csv"
    code, output = _invoke("--input", str(d), "--quarantine", str(target), tmp_path=tmp_path)
    assert code == 0, output
    assert "12 rows in, 12 kept, 0 quarantined" in output
    assert "no rows quarantined" in output and not target.exists()


def test_validate_column_mapping_from_the_config(tmp_path: Path) -> None:
    d = tmp_path / "mine.csv"
    declarations().rename(columns={"lodged_at": "Datum"}).to_csv(d, index=False)
    code, output = _invoke("--input", str(d), tmp_path=tmp_path)
    assert code == 1 and "required column(s) missing: lodged_at" in output
    code, output = _invoke(
        "--input", str(d), "--set", "data.column_mapping={Datum: lodged_at}", tmp_path=tmp_path
    )
    assert code == 0, output
    assert "12 kept" in output


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        # the CLI knows the choices: refused before the job runs, with the choices named
        (["--format", "xml"], 2, "'xml' is not one of 'canonical', 'kcs'"),
        (["--input", "nowhere.csv"], 1, "file not found: nowhere.csv"),
    ],
)
def test_validate_refuses_clearly(
    tmp_path: Path, args: list[str], exit_code: int, message: str
) -> None:
    d = tmp_path / "d.csv"
    declarations().to_csv(d, index=False)
    code, output = _invoke("--input", str(d), *args, tmp_path=tmp_path)
    assert code == exit_code
    assert message in " ".join(output.replace("│", " ").split())  # without the error box


@pytest.mark.skipif(not (KCS_DIR / "df_syn_valid_eng.csv").is_file(), reason="no KCS files")
def test_validate_kcs_format(tmp_path: Path) -> None:
    head = pd.read_csv(KCS_DIR / "df_syn_valid_eng.csv", dtype=str, nrows=50)
    head.loc[3, "Net Mass"] = "-1.0"
    path = tmp_path / "kcs_eng.csv"
    head.to_csv(path, index=False)
    code, output = _invoke("--input", str(path), "--format", "kcs", tmp_path=tmp_path)
    assert code == 0, output
    assert "50 rows in, 49 kept, 1 quarantined" in output
    assert "its declaration was quarantined" in output  # the label of the bad declaration
    assert (tmp_path / "kcs_eng.quarantine.csv").is_file()


def test_quarantine_falls_back_to_the_output_folder_when_the_input_folder_is_unwritable(
    tmp_path: Path,
) -> None:
    decls = declarations()
    decls.iloc[0, decls.columns.get_loc("importer")] = None
    _, report = validate_declarations(decls, "export.csv")
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where a folder should be")
    fallback = tmp_path / "out" / "export.quarantine.csv"
    written, target = write_next_to_input([report], blocker / "export.quarantine.csv", fallback)
    assert (written, target) == (1, fallback)
    assert pd.read_csv(fallback)["reason"].tolist() == ["importer: missing"]
    written, target = write_next_to_input([report], tmp_path / "q.csv", fallback)
    assert (written, target) == (1, tmp_path / "q.csv")


def test_job_result_figures(tmp_path: Path) -> None:
    d, o = _files(tmp_path)
    config = load(CONFIG, [f"output_dir={tmp_path / 'out'}"])
    result = validate(config, d, o)
    assert result.figures["declarations"] == {"rows_in": 12, "rows_kept": 10, "quarantined": 2}
    assert result.figures["outcomes"] == {"rows_in": 6, "rows_kept": 4, "quarantined": 2}
    assert result.outputs == {"quarantine": tmp_path / "export.quarantine.csv"}
    with pytest.raises(ValueError, match="--outcomes is not used with --format kcs"):
        validate(config, d, o, format="kcs")


def test_committed_samples_show_each_kind_of_problem(tmp_path: Path) -> None:
    samples = PROJECT / "data" / "samples"
    target = tmp_path / "q.csv"
    code, output = _invoke(
        "--input",
        str(samples / "declarations.csv"),
        "--outcomes",
        str(samples / "outcomes.csv"),
        "--quarantine",
        str(target),
        tmp_path=tmp_path,
    )
    assert code == 0, output
    assert "20 rows in, 18 kept, 2 quarantined" in output
    assert "7 rows in, 6 kept, 1 quarantined" in output
    assert pd.read_csv(target)["reason"].tolist() == [
        "net_mass_kg: negative (-12.5)",
        "hs_code: not digits ('87O323')",
        "selection_reason: unknown value ('tip-off'; expected rule, model, random, intelligence, "
        "unknown)",
    ]


def test_validate_checks_the_configs_own_files_without_input(tmp_path: Path) -> None:
    """`targeting validate --config my.yaml` checks data.declarations and data.outcomes."""
    d, o = _files(tmp_path)
    code, output = _invoke(
        "--set", f"data.declarations={d}", "--set", f"data.outcomes={o}", tmp_path=tmp_path
    )
    assert code == 0, output
    assert "12 rows in, 10 kept, 2 quarantined" in output
    assert "6 rows in, 4 kept, 2 quarantined" in output
    code, output = _invoke(tmp_path=tmp_path)
    assert code == 1 and "no --input and no data.declarations" in output
