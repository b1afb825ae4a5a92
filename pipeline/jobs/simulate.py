"""`targeting simulate`: the synthetic declaration stream -> three Parquet tables.

Writes declarations.parquet, outcomes.parquet and ground_truth.parquet (names as in
`config.Paths`) to `out` (default: `config.paths.data`), and scenario.json (the emerging scheme's
source, transit country and chapters, the historical rules). Training must never read the ground
truth or the scenario; evaluation uses them for true figures.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Literal

from pipeline.config import Config, SimulateConfig
from pipeline.jobs import JobResult
from pipeline.jobs.paths import refuse_aliases
from pipeline.simulate import SimulatedData, summary
from pipeline.simulate import simulate as simulate_stream

TableFormat = Literal["parquet", "csv"]
TABLES = ("declarations", "outcomes", "ground_truth")


def write(data: SimulatedData, folder: Path, fmt: TableFormat = "parquet") -> dict[str, Path]:
    """Write the three tables to `folder` as Parquet, or as CSV files shaped like an
    administration's own extract (`configs/own-data.example.yaml` reads them), and the scenario's
    known answers as scenario.json (research only, like the ground truth); returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = {
        "declarations": data.declarations,
        "outcomes": data.outcomes,
        "ground_truth": data.ground_truth,
    }
    outputs = {name: folder / f"{name}.{fmt}" for name in tables}
    for name, table in tables.items():
        if fmt == "csv":
            table.to_csv(outputs[name], index=False, date_format="%Y-%m-%dT%H:%M:%S")
        else:
            table.to_parquet(outputs[name], index=False)
    if data.scenario:
        outputs["scenario"] = folder / "scenario.json"
        outputs["scenario"].write_text(json.dumps(data.scenario, indent=2) + "\n")
    return outputs


def simulate(
    config: Config,
    rows: int | None = None,
    seed: int | None = None,
    out: Path | None = None,
    fmt: TableFormat = "parquet",
) -> JobResult:
    """Simulate with the config's `simulate` section (overridden by `rows`, `seed`) and write
    (Parquet, or CSV with `fmt`)."""
    settings = config.simulate.model_dump()
    if rows is not None:
        settings["rows"] = rows
    section = SimulateConfig.model_validate(settings)  # validates the override (rows > 0)
    folder = config.paths.data if out is None else Path(out)
    refuse_aliases(
        "simulate",
        {f"--out {name}": folder / f"{name}.{fmt}" for name in TABLES},
        {"data.declarations": config.data.declarations, "data.outcomes": config.data.outcomes},
    )
    data = simulate_stream(section, config.seed if seed is None else seed)
    outputs = write(data, folder, fmt)
    figures = summary(data)
    lodged = data.declarations["lodged_at"]
    drift_day = section.start + dt.timedelta(days=section.drift_start * section.days)
    lines = [
        f"rows: {len(data.declarations):,} declarations,"
        f" {len(data.outcomes):,} outcomes -> {folder}",
        f"period: {lodged.min():%Y-%m-%d} .. {lodged.max():%Y-%m-%d}"
        f" (emerging scheme from {drift_day:%Y-%m-%d})",
        f"fraud rate (truth): {figures['fraud_rate']:.2%}"
        f" (AEO {figures['fraud_rate_aeo']:.2%}, others {figures['fraud_rate_non_aeo']:.2%})",
        f"inspection rate: {figures['inspection_rate']:.2%}",
        f"hit rate of the historical policy: {figures['hit_rate']:.2%}"
        f" (random stratum {figures['hit_rate_random']:.2%})",
        f"emerging scheme: {figures['emerging_share_of_frauds_after_start']:.1%} of frauds after"
        f" its start; the historical policy finds {figures['recall_emerging']:.1%} of it"
        f" ({figures['recall']:.1%} of all frauds)",
        f"random-stratum share: {figures['random_stratum_rate']:.3%} of declarations",
        f"revenue recovered: {figures['revenue_recovered']:,.0f}"
        f" of {figures['revenue_recoverable']:,.0f} recoverable"
        f" ({figures['revenue_recovered_share']:.1%})",
    ]
    return JobResult(stage="simulate", outputs=outputs, figures=figures, lines=lines)
