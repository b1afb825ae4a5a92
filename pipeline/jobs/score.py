"""`targeting score`: score a file of declarations with a selectivity export and its model.

Reads CSV or Parquet in the canonical format (with `data.column_mapping`) or the KCS format, and
writes one scored row per input row, as CSV or Parquet by the output file's extension.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.config import Config
from pipeline.jobs import JobResult, catalog, step
from pipeline.jobs.paths import refuse_aliases
from pipeline.jobs.publish import finish_pending
from pipeline.serve.scorer import Scorer

TOP_MANUAL_REASONS = 5
EXIT_SOME_MANUAL = 4  # `targeting score`: some rows could not be scored (channel manual)
EXIT_ALL_MANUAL = 5  # `targeting score`: no row could be scored
STALE_DAYS = 365  # declarations older than this before the snapshot get a note


def manual_exit_code(rows: int, manual: int) -> int:
    """The CLI's exit status for a scored file: 0 all scored, 4 some rows manual, 5 all."""
    if manual == 0:
        return 0
    return EXIT_ALL_MANUAL if manual >= rows else EXIT_SOME_MANUAL


def read_declarations(config: Config, path: Path, format: str) -> pd.DataFrame:
    """Declarations to score, in the canonical columns (unvalidated: the scorer validates)."""
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"{path}: is a folder, expected a declarations file (CSV/Parquet)")
    if path.exists() and not path.is_file():
        raise ValueError(
            f"{path}: not a regular file (a pipe or a device such as /dev/stdin); save the "
            "declarations to a .csv or .parquet file and name it"
        )
    if not path.is_file():
        raise FileNotFoundError(f"declarations file not found: {path}")
    if format == "kcs":
        from pipeline.ingest.kcs import read_kcs

        declarations, _ = read_kcs([path])
        return declarations
    if format == "canonical":
        from pipeline.ingest.readers import read_table

        return read_table(path, config.data.column_mapping)
    raise ValueError(f"unknown format {format!r}: expected canonical or kcs")


def summarise(scored: pd.DataFrame, targets: dict[str, float], manual: str) -> list[str]:
    """Channel shares against their targets, and why rows went to the manual channel."""
    n = len(scored)
    counts = scored["channel"].value_counts()
    valid = n - int(counts.get(manual, 0))
    lines = [f"{n:,} declarations scored ({valid:,} valid); channel shares of valid rows:"]
    for name in [*targets, *[c for c in counts.index if c not in targets and c != manual]]:
        share = counts.get(name, 0) / valid if valid else 0.0
        target = f"  target {targets[name]:.1%}" if name in targets else ""
        lines.append(f"  {name:<8} {int(counts.get(name, 0)):>9,}  {share:6.2%}{target}")
    if manual in counts.index:
        errors = scored.loc[scored["channel"] == manual, "error"].astype(str)
        # A reason's variable part sits in its final parentheses: count reasons by kind.
        kinds = errors.str.split(";").str[0].str.replace(r"\s*\([^()]*\)$", "", regex=True)
        reasons = kinds.value_counts().head(TOP_MANUAL_REASONS)
        lines.append(f"  {manual:<8} {int(counts[manual]):>9,}  most common reasons:")
        lines.extend(f"    {count:>7,}  {reason}" for reason, count in reasons.items())
    return lines


def _refuse_kcs_with_another_export(scorer: Scorer, format: str, input: Path) -> None:
    """KCS declarations need an export made on KCS data: a model that never saw them (the
    simulator's) would score them without a word, channels and all."""
    if format != "kcs":
        return
    read = [*scorer.model.feature_names, *scorer.features_config.raw_categories]
    if not any(str(name).startswith("kcs_") for name in read):
        raise ValueError(
            f"{input}: KCS declarations, but the export's model was trained on other data (it "
            "reads no kcs_* column): score KCS files with the export of a KCS run "
            "(targeting export --config configs/kcs.yaml)"
        )


def _older_than_snapshot(declarations: pd.DataFrame, as_of: pd.Timestamp) -> list[str]:
    """A note when declarations were lodged well before the snapshot's date: their features hold
    what was learned after them (a 1995 file scored with a 2024 snapshot)."""
    if "lodged_at" not in declarations.columns or len(declarations) == 0:
        return []
    lodged = pd.to_datetime(declarations["lodged_at"], errors="coerce", format="ISO8601", utc=True)
    stamp = pd.Timestamp(as_of)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    cutoff = stamp - pd.Timedelta(days=STALE_DAYS)
    early = lodged < cutoff
    if not early.any():
        return []
    return [
        f"note: {int(early.sum()):,} declarations were lodged more than {STALE_DAYS} days before "
        f"the snapshot's date {pd.Timestamp(as_of):%Y-%m-%d} (earliest {lodged.min():%Y-%m-%d}): "
        "their features hold what was learned after them; score them with a snapshot of their "
        "time (--snapshot)"
    ]


def score(
    config: Config,
    input: Path,
    thresholds: Path | None = None,
    out: Path | None = None,
    format: str = "canonical",
    model: str | None = None,
    snapshot: str | None = None,
) -> JobResult:
    """Score every declaration of `input`; write the scored rows to `out` (CSV or Parquet).

    `model` and `snapshot` (MLflow URIs or local folders) override what the thresholds file
    names, e.g. a snapshot as of the start of a held-out stretch when replaying it.
    """
    import pipeline.tracking as tracking
    from pipeline.ingest.readers import contract_of, write_table

    tracking.configure(config)
    target = Path(out) if out is not None else config.paths.scored
    if target.suffix.lower() not in (".csv", ".parquet"):
        raise ValueError(f"--out {target}: the scored file must end in .csv or .parquet")
    if target.is_dir():
        raise ValueError(f"--out {target}: is a folder, expected a .csv or .parquet file name")
    selectivity = catalog.selectivity_file(config, thresholds)
    finish_pending(selectivity.parent, None)  # an export stopped after its commit: complete it
    refuse_aliases(
        "score",
        {"--out": target},
        {
            "--input": Path(input),
            "--thresholds": selectivity,
            "data.declarations": config.data.declarations,
            "data.outcomes": config.data.outcomes,
        },
    )
    from pipeline.serve.draw import serve_random_key

    scorer = Scorer.from_files(
        selectivity,
        model_uri=model,
        snapshot_uri=snapshot,
        random_key=serve_random_key(config.serve),
    )
    scorer.contract = contract_of(config.data)
    _refuse_kcs_with_another_export(scorer, format, Path(input))
    declarations = read_declarations(config, Path(input), format)
    lacking = scorer.missing_columns(declarations)
    if lacking is not None:
        raise ValueError(f"{input}: {lacking}")
    step(f"scoring {len(declarations):,} declarations")
    scored = scorer.score(declarations)
    from pipeline.serve.scorer import reason_columns

    flat = target.suffix.lower() == ".csv"  # CSV readers get one column per reason part
    write_table(reason_columns(scored, scorer.thresholds.reasons) if flat else scored, target)
    counts = scored["channel"].value_counts(normalize=False)
    manual = scorer.thresholds.invalid_channel
    valid = len(scored) - int(counts.get(manual, 0))
    shares = {str(k): int(v) / valid for k, v in counts.items() if k != manual and valid}
    return JobResult(
        stage="score",
        outputs={"scored": target},
        figures={
            "rows": len(scored),
            "manual": int(counts.get(manual, 0)),
            "exit_code": manual_exit_code(len(scored), int(counts.get(manual, 0))),
            "shares": shares,
            "targets": scorer.thresholds.channels,
        },
        lines=[
            *summarise(scored, scorer.thresholds.channels, manual),
            *_older_than_snapshot(declarations, scorer.snapshot.as_of),
            f"scored file: {target}",
        ],
    )
