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

from pipeline.config import Config, SimulateConfig
from pipeline.ingest.simulate import SimulatedData, summary
from pipeline.ingest.simulate import simulate as simulate_stream
from pipeline.jobs import JobResult


def write(data: SimulatedData, folder: Path) -> dict[str, Path]:
    """Write the three tables to `folder` as Parquet (and the scenario's known answers as
    scenario.json, for research only, like the ground truth); returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    outputs = {
        "declarations": folder / "declarations.parquet",
        "outcomes": folder / "outcomes.parquet",
        "ground_truth": folder / "ground_truth.parquet",
    }
    data.declarations.to_parquet(outputs["declarations"], index=False)
    data.outcomes.to_parquet(outputs["outcomes"], index=False)
    data.ground_truth.to_parquet(outputs["ground_truth"], index=False)
    if data.scenario:
        outputs["scenario"] = folder / "scenario.json"
        outputs["scenario"].write_text(json.dumps(data.scenario, indent=2) + "\n")
    return outputs


def simulate(
    config: Config, rows: int | None = None, seed: int | None = None, out: Path | None = None
) -> JobResult:
    """Simulate with the config's `simulate` section (overridden by `rows`, `seed`) and write."""
    settings = config.simulate.model_dump()
    if rows is not None:
        settings["rows"] = rows
    section = SimulateConfig.model_validate(settings)  # validates the override (rows > 0)
    data = simulate_stream(section, config.seed if seed is None else seed)
    folder = config.paths.data if out is None else Path(out)
    outputs = write(data, folder)
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
