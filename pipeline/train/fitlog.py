"""What happened while fitting: the fit's and the refit's logs, typed.

`train.fit` writes them, `tracking` turns them into MLflow params, metrics and the
``fit_log.json`` / ``refit_log.json`` artefacts (`to_dict`), and the train job prints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.plan import RefitPlan, Windows
from pipeline.serve.model import FamiliesKept


def validation_curve(history: dict[str, Any]) -> dict[str, list[float]]:
    """XGBoost's evaluation history (``evals_result``) as ``<set>.<metric>`` -> value per round."""
    return {
        f"{name}.{metric}": [float(v) for v in values]
        for name, metrics in history.items()
        for metric, values in metrics.items()
    }


@dataclass(frozen=True)
class WindowCounts:
    """Declarations of one window: lodged in it, labelled (as the boosting sees them), fitted
    (after the imbalance treatment, on the training window)."""

    lodged: int
    labelled: int
    fitted: int

    def to_dict(self) -> dict[str, int]:
        return {"lodged": self.lodged, "labelled": self.labelled, "fitted": self.fitted}


@dataclass(frozen=True)
class Timings:
    """Seconds spent in each step of the fit."""

    prepare_s: float  # the windows' rows, their weights and the imbalance treatment
    boost_s: float
    calibrate_s: float  # calibration and anchoring
    revenue_s: float
    total_s: float  # with the held-out windows' metrics

    def to_dict(self) -> dict[str, float]:
        return {
            "prepare_s": self.prepare_s,
            "boost_s": self.boost_s,
            "calibrate_s": self.calibrate_s,
            "revenue_s": self.revenue_s,
            "total_s": self.total_s,
        }


@dataclass(frozen=True)
class FitLog:
    """The evaluated model's fit: parameters as boosted, row counts, the held-out windows'
    figures (inspected declarations ranked by margin), notes, timings and warnings."""

    params: dict[str, Any]  # XGBoost's, the imbalance treatment's included
    imbalance: str
    best_iteration: int
    windows: Windows
    rows: dict[str, WindowCounts]
    metrics: dict[str, dict[str, float]]  # window -> figure -> value (`fit.window_metrics`)
    revenue_model: str
    selection_correction: str
    anchoring: str
    boosted_from: str
    timings: Timings
    warnings: list[str] = field(default_factory=list)
    families: FamiliesKept | None = None  # chosen before the fit (`train.select`)
    # the validation metric of every boosted round (`validation_curve`); MLflow metrics with
    # a step each (`tracked_curves`), not in fit_log.json
    curve: dict[str, list[float]] = field(default_factory=dict)
    category_order: str = "native"  # train.category_order as fitted (tuned or configured)

    def to_dict(self) -> dict[str, Any]:
        """The log as ``fit_log.json`` holds it."""
        out: dict[str, Any] = {
            "params": self.params,
            "imbalance": self.imbalance,
            "category_order": self.category_order,
            "best_iteration": self.best_iteration,
            "windows": self.windows.as_dict(),
            "rows": {name: counts.to_dict() for name, counts in self.rows.items()},
            "metrics": self.metrics,
            "revenue_model": self.revenue_model,
            "selection_correction": self.selection_correction,
            "anchoring": self.anchoring,
            "boosted_from": self.boosted_from,
            "timings": self.timings.to_dict(),
            "warnings": self.warnings,
        }
        if self.families is not None:
            out["families"] = self.families.to_dict()
        return out

    def tracked_params(self) -> dict[str, object]:
        """MLflow params: the boosted parameters as ``fit.<name>`` and the imbalance treatment."""
        params: dict[str, object] = {f"fit.{k}": v for k, v in self.params.items()}
        params["fit.imbalance"] = self.imbalance
        params["fit.category_order"] = self.category_order
        return params

    def tracked_metrics(self) -> dict[str, float]:
        """MLflow metrics; a window's figures are named ``<window>.inspected.<name>``: its
        inspected declarations ranked among themselves by margin (the report's ``eval.*`` rank
        every declaration)."""
        out: dict[str, float] = {}
        for window, values in self.metrics.items():
            out.update({f"{window}.inspected.{k}": float(v) for k, v in values.items()})
        for window, counts in self.rows.items():
            out.update({f"rows.{window}.{k}": float(v) for k, v in counts.to_dict().items()})
        out.update(
            {f"seconds.{k.removesuffix('_s')}": v for k, v in self.timings.to_dict().items()}
        )
        out["best_iteration"] = float(self.best_iteration)
        return out

    def tracked_curves(self) -> dict[str, list[float]]:
        """MLflow metrics logged per boosting round (step = round): ``curve.<set>.<metric>``."""
        return {f"curve.{name}": values for name, values in self.curve.items()}


@dataclass(frozen=True)
class RefitCounts:
    """Labelled declarations of one refit window and their hits."""

    labelled: int
    hits: int

    def to_dict(self) -> dict[str, int]:
        return {"labelled": self.labelled, "hits": self.hits}


@dataclass(frozen=True)
class RefitLog:
    """The deployed refit: its windows, trees, row counts and notes."""

    windows: RefitPlan
    trees: int
    rows: dict[str, RefitCounts]
    calibration: str
    selection_correction: str
    anchoring: str
    revenue_model: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The log as ``refit_log.json`` holds it."""
        return {
            "windows": self.windows.as_dict(),
            "labels_known_by": self.windows.labels_known_by.isoformat(),
            "trees": self.trees,
            "rows": {name: counts.to_dict() for name, counts in self.rows.items()},
            "calibration": self.calibration,
            "selection_correction": self.selection_correction,
            "anchoring": self.anchoring,
            "revenue_model": self.revenue_model,
            "seconds": self.seconds,
        }

    def tracked_metrics(self) -> dict[str, float]:
        """MLflow metrics: ``refit.rows.<window>.<count>`` and ``refit.trees``."""
        rows = {
            f"refit.rows.{window}.{k}": float(v)
            for window, counts in self.rows.items()
            for k, v in counts.to_dict().items()
        }
        return {**rows, "refit.trees": float(self.trees)}
