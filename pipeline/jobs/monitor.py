"""`targeting monitor`: drift of features and score, and the random stratum, for a scheduler.

Reference window: the last `monitor.reference_days` of the model's training window, as the run
plan records it (`RunPlan.drift_reference`). Recent window: the last `monitor.recent_days` before
`monitor.recent_end` (default: the end of the data). Both are rows of the FeatureSet written by
`targeting features`; the score is the model's calibrated probability. Writes under
`config.paths.monitor`: ``drift.csv`` (tidy, one row per variable), ``monitor.md`` (the human
report) and ``monitor.json`` (level, windows, random stratum), logs them to an MLflow run, and
exits with code 3 when the level reaches `monitor.fail_on`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from pipeline.config import Config
from pipeline.evaluate.monitor import (
    MonitorReport,
    RecentOutcomes,
    Watched,
    monitor_report,
    reaches,
    window_bounds,
)
from pipeline.features.featureset import FeatureSet
from pipeline.jobs import JobResult
from pipeline.serve import strict_json
from pipeline.serve.model import TargetingModel, plan_of

ALARM_EXIT_CODE = 3
LEVEL_CODE = {"ok": 0, "warn": 1, "alarm": 2}


def monitor_feature_set(fs: FeatureSet, model: TargetingModel, config: Config) -> MonitorReport:
    """The monitoring report of a feature set against a model (no I/O)."""
    plan = plan_of(model, config, fs.lodged_at)
    reference = plan.drift_reference(model.info.role, config.monitor.reference_days)
    end = pd.Timestamp(config.monitor.recent_end) if config.monitor.recent_end else None
    recent = window_bounds(pd.to_datetime(fs.lodged_at), config.monitor.recent_days, end)
    ref_rows, rec_rows = reference.contains(fs.lodged_at), recent.contains(fs.lodged_at)
    for name, rows, window in (("reference", ref_rows, reference), ("recent", rec_rows, recent)):
        if not rows.any():
            raise ValueError(
                f"the {name} window {window.start:%Y-%m-%d}..{window.end:%Y-%m-%d} holds no "
                f"declaration of {config.paths.features}"
            )
    columns = [c for c in model.feature_names if c in fs.X.columns]
    X_ref = fs.X.loc[ref_rows, columns].reset_index(drop=True)
    X_rec = fs.X.loc[rec_rows, columns].reset_index(drop=True)
    known = pd.to_datetime(fs.label_known_at[rec_rows]) < recent.end
    manifest = fs.manifest
    stages = dict(zip(manifest["name"].astype(str), manifest["stage"].astype(str), strict=True))
    outcomes = RecentOutcomes(
        hit=fs.y[rec_rows].to_numpy(dtype=float),
        stratum=fs.stratum[rec_rows],
        known=known.fillna(False).to_numpy(dtype=bool),
    )
    return monitor_report(
        Watched(reference, X_ref, model.predict_proba(X_ref)),
        Watched(recent, X_rec, model.predict_proba(X_rec)),
        outcomes,
        config.monitor,
        stages,
    )


def monitor(config: Config, run_id: str | None = None) -> JobResult:
    """Monitor the model of `run_id` (default: the last `train` run) on the latest data."""
    from pipeline import tracking
    from pipeline.jobs import catalog

    fs = catalog.feature_set(config)
    loaded = catalog.load_run(config, run_id, "deployed")
    model_run, model = loaded.run_id, loaded.model
    report = monitor_feature_set(fs, model, config)

    folder = config.paths.monitor
    folder.mkdir(parents=True, exist_ok=True)
    outputs = {
        "drift": folder / "drift.csv",
        "report": folder / "monitor.md",
        "summary": folder / "monitor.json",
    }
    report.drift.to_csv(outputs["drift"], index=False)
    outputs["report"].write_text(report.to_markdown(), encoding="utf-8")
    judged = report.drift.loc[report.drift["judged"] & (report.drift["role"] == "feature")]
    score = report.drift.loc[report.drift["role"] == "score"]
    summary: dict[str, Any] = {
        "level": report.level,
        "model_run_id": model_run,
        "reference": [str(report.reference.start), str(report.reference.end)],
        "recent": [str(report.recent.start), str(report.recent.end)],
        "score_psi": float(score["psi"].iloc[0]) if len(score) else None,
        "features_alarm": int((judged["level"] == "alarm").sum()),
        "features_warn": int((judged["level"] == "warn").sum()),
        "random_stratum": report.stratum.as_dict(),
    }
    outputs["summary"].write_text(
        strict_json.dumps(summary, indent=2, default=str), encoding="utf-8"
    )

    with tracking.start_parent_run(
        config, run_name=tracking.run_name(config, "monitor")
    ) as monitor_run:
        tracking.set_tags(
            monitor_run, {"stage": "monitor", "model_run_id": model_run, "level": report.level}
        )
        s = report.stratum
        tracking.log_metrics(
            monitor_run,
            {
                "level": LEVEL_CODE[report.level],
                "score_psi": summary["score_psi"],
                "features_alarm": summary["features_alarm"],
                "features_warn": summary["features_warn"],
                "random_rows": s.rows,
                "random_hit_rate": s.hit_rate,
                "random_low": s.low,
                "random_high": s.high,
                "expected_hit_rate": s.expected_hit_rate,
            },
        )
        tracking.log_artifacts(monitor_run, folder, "monitor")

    exit_code = ALARM_EXIT_CODE if reaches(report.level, config.monitor.fail_on) else 0
    lines = [report.headline(), f"report: {outputs['report']}"]
    if exit_code:
        lines.append(f"level {report.level} reaches monitor.fail_on={config.monitor.fail_on}")
    return JobResult(
        stage="monitor",
        outputs=outputs,
        figures={**summary, "monitor_run_id": monitor_run},
        lines=lines,
        exit_code=exit_code,
    )
