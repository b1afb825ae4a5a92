"""`targeting validate`: check a user's declarations (and outcomes) against the contract.

Reads the files (canonical with `data.column_mapping`, or KCS), validates them, writes the
quarantined rows next to the input (`<stem>.quarantine.csv`) and returns the summary.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Config
from pipeline.ingest import schema
from pipeline.ingest.readers import contract_of, read_table, write_quarantine
from pipeline.jobs import JobResult
from pipeline.jobs.paths import refuse_aliases

FORMATS = ("canonical", "kcs")


def write_next_to_input(
    reports: list[schema.ValidationReport], target: Path, fallback: Path
) -> tuple[int, Path]:
    """Write the quarantine to `target`, or to `fallback` when `target` cannot be written
    (the input sits in a read-only folder, like the shared KCS files)."""
    try:
        return write_quarantine(reports, target), target
    except OSError:
        return write_quarantine(reports, fallback), fallback


def validate(
    config: Config,
    input: Path | None = None,
    outcomes: Path | None = None,
    format: str = "canonical",
    quarantine: Path | None = None,
) -> JobResult:
    """Validate `input` (and `outcomes`); write quarantined rows; summarise what was kept.

    Without `input`, the config's own files are checked (`data.declarations`, `data.outcomes`).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}: expected one of {', '.join(FORMATS)}")
    if input is None:
        if config.data.declarations is None:
            raise ValueError(
                "no --input and no data.declarations in the config: name the declarations file"
            )
        input = config.data.declarations
        if outcomes is None:
            outcomes = config.data.outcomes
    input = Path(input)
    inputs = {"--input": input, "--outcomes": Path(outcomes) if outcomes is not None else None}
    if quarantine is not None:  # refused before reading: nothing is read that would be lost
        refuse_aliases("validate", {"--quarantine": Path(quarantine)}, inputs)
    if format == "kcs":
        if outcomes is not None:
            raise ValueError("--outcomes is not used with --format kcs: KCS files carry outcomes")
        from pipeline.ingest.kcs import read_kcs

        declarations, outcome_frame = read_kcs([input])
        outcome_source = f"{input} (labels)"
    else:
        declarations = read_table(input, config.data.column_mapping)
        outcome_frame = (
            # no controls yet: an outcomes file of a header only, as `run` accepts it
            read_table(Path(outcomes), config.data.column_mapping, allow_empty=True)
            if outcomes is not None
            else None
        )
        outcome_source = str(outcomes)
    tables = schema.validate(
        declarations,
        outcome_frame,
        source_declarations=str(input),
        source_outcomes=outcome_source,
        contract=contract_of(config.data),
    )
    if quarantine is not None:
        target = Path(quarantine)
        if target.is_dir():
            raise ValueError(f"--quarantine {target}: is a folder, expected a CSV file name")
        written = write_quarantine(tables.reports, target, remove_stale=False)
    else:
        name = f"{input.stem}.quarantine.csv"
        refuse_aliases("validate", {"the quarantine": input.with_name(name)}, inputs)
        written, target = write_next_to_input(
            tables.reports, input.with_name(name), config.paths.data / name
        )
    lines = tables.summary().splitlines()
    if written:
        lines.append(f"quarantine: {written:,} rows written to {target}")
    else:
        lines.append("quarantine: no rows quarantined")
    figures = {
        report.table: {
            "rows_in": report.rows_in,
            "rows_kept": report.rows_kept,
            "quarantined": report.rows_quarantined,
        }
        for report in tables.reports
    }
    outputs = {"quarantine": target} if written else {}
    return JobResult(stage="validate", outputs=outputs, figures=figures, lines=lines)
