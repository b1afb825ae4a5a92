"""The run catalog: validated inputs saved once and read back unchanged, re-validated when a raw
file or the data config changes; the loader's "run `targeting X` first" errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from helpers.ingest import declarations, outcomes, write_simulated_tables

from pipeline import tracking
from pipeline.config import Config, DataConfig
from pipeline.ingest import readers
from pipeline.ingest.readers import Inputs
from pipeline.jobs import catalog


def _files_config(tmp_path: Path, **data: object) -> Config:
    return Config(
        output_dir=tmp_path / "out",
        data=DataConfig(source="files", **data),
        tracking={"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    )


def _with_bad_row(tmp_path: Path) -> Config:
    """A declarations CSV with one row quarantined (hs_code not digits), outcomes as Parquet."""
    frame = declarations()
    frame.iloc[0, frame.columns.get_loc("hs_code")] = "12AB56"
    d = tmp_path / "d.csv"
    frame.to_csv(d, index=False)
    o = tmp_path / "o.parquet"
    outcomes(declarations()).iloc[1:].to_parquet(o, index=False)
    return _files_config(tmp_path, declarations=d, outcomes=o)


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    """Every call of the real `load_inputs` the catalog makes (a spy: it still validates)."""
    calls: list[Config] = []

    def counted(config: Config) -> Inputs:
        calls.append(config)
        return readers.load_inputs(config)

    monkeypatch.setattr(catalog, "load_inputs", counted)
    return calls


def _assert_same(first: Inputs, second: Inputs) -> None:
    for name in ("declarations", "outcomes", "ground_truth"):
        a, b = getattr(first, name), getattr(second, name)
        if a is None:
            assert b is None
            continue
        pd.testing.assert_frame_equal(a, b, check_exact=True, check_categorical=True)
        assert list(a.dtypes) == list(b.dtypes)
    assert first.summary() == second.summary()
    for a_report, b_report in zip(first.reports, second.reports, strict=True):
        pd.testing.assert_frame_equal(a_report.quarantined, b_report.quarantined)
        assert a_report.kept_rows.tolist() == b_report.kept_rows.tolist()


def test_inputs_are_validated_once_and_read_back_unchanged(
    tmp_path: Path, validations: list[Config], caplog: pytest.LogCaptureFixture
) -> None:
    config = _with_bad_row(tmp_path)
    with caplog.at_level(logging.WARNING, logger="pipeline.ingest.readers"):
        first = catalog.validated_inputs(config)
    assert len(validations) == 1
    assert (catalog.catalog_folder(config) / catalog.CATALOG_FILE).is_file()
    first_warnings = caplog.text
    assert "1 quarantined" in first_warnings
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipeline.ingest.readers"):
        again = catalog.validated_inputs(config)
    assert len(validations) == 1  # read from the catalog, not validated again
    assert caplog.text == first_warnings  # the same quarantine report, logged the same way
    _assert_same(first, again)
    _assert_same(readers.load_inputs(config), again)


def test_a_changed_raw_file_is_validated_afresh(tmp_path: Path, validations: list[Config]) -> None:
    config = _with_bad_row(tmp_path)
    catalog.validated_inputs(config)
    fixed = declarations()  # the bad row corrected: the same file name, other bytes
    fixed.to_csv(config.data.declarations, index=False)
    inputs = catalog.validated_inputs(config)
    assert len(validations) == 2
    assert [r.rows_quarantined for r in inputs.reports] == [0, 0]
    assert len(inputs.declarations) == len(fixed)
    catalog.validated_inputs(config)
    assert len(validations) == 2


def test_a_changed_data_config_is_validated_afresh(
    tmp_path: Path, validations: list[Config]
) -> None:
    config = _with_bad_row(tmp_path)
    catalog.validated_inputs(config)
    stricter = config.model_copy(
        update={"data": config.data.model_copy(update={"max_values": {"quantity": 1.0}})}
    )
    inputs = catalog.validated_inputs(stricter)
    assert len(validations) == 2
    assert inputs.reports[0].rows_quarantined > 1  # the new limit applies


def test_a_removed_raw_file_gives_the_readers_error(tmp_path: Path) -> None:
    config = _with_bad_row(tmp_path)
    catalog.validated_inputs(config)
    Path(str(config.data.declarations)).unlink()
    with pytest.raises(readers.DataError, match="file not found"):
        catalog.validated_inputs(config)


def test_simulated_tables_round_trip_with_their_ground_truth(tmp_path: Path) -> None:
    config = Config(output_dir=tmp_path / "sim")
    decls = declarations()
    write_simulated_tables(config.paths, decls, decls.index % 3 == 0, 0.5)
    first = catalog.validated_inputs(config)
    assert first.ground_truth is not None
    _assert_same(first, catalog.validated_inputs(config))


# --- the loader's errors --------------------------------------------------------------------


def test_without_a_training_run_the_loader_says_to_train_first(tmp_path: Path) -> None:
    config = _files_config(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"last_run\.json not found: run `targeting train`"):
        catalog.resolve_run_id(config)
    with pytest.raises(FileNotFoundError, match=r"last_run\.json not found: run `targeting train`"):
        catalog.load_run(config, None, "deployed")


def test_a_run_absent_from_the_store_is_named_with_the_store(tmp_path: Path) -> None:
    config = _files_config(tmp_path)
    config.paths.root.mkdir(parents=True)
    config.paths.last_run.write_text(json.dumps({"run_id": "0" * 32}), encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="run `targeting train` first") as caught:
        catalog.load_run(config, None, "evaluated")
    assert "0" * 32 in str(caught.value)
    assert tracking.tracking_uri(config.tracking) in str(caught.value)
    assert catalog.last_run_id(config) is None


def test_missing_feature_artefacts_say_to_build_features_first(tmp_path: Path) -> None:
    config = _files_config(tmp_path)
    with pytest.raises(FileNotFoundError, match="run `targeting features` first") as caught:
        catalog.feature_set(config)
    assert str(config.paths.features) in str(caught.value)
    with pytest.raises(FileNotFoundError, match="run `targeting features` first") as caught:
        catalog.snapshot_folder(config)
    assert str(config.paths.snapshot) in str(caught.value)


def test_a_missing_export_says_to_export_first(tmp_path: Path) -> None:
    config = _files_config(tmp_path)
    with pytest.raises(FileNotFoundError, match="run `targeting export` first") as caught:
        catalog.selectivity_file(config)
    assert str(config.paths.thresholds) in str(caught.value)
    given = tmp_path / "elsewhere.json"
    assert catalog.selectivity_file(config, given) == given  # the scorer's own error applies
