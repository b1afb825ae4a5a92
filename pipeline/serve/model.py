"""The calibrated targeting model: an XGBoost booster, its calibration, an optional revenue model.

Written by `train.fit`, read by `evaluate` and `serve`. It lives in `serve` because a deployment
needs it and must not import `train`. Calibration is stored as plain numbers (isotonic knots or
Platt coefficients) and applied with numpy, so serving needs no scikit-learn.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import xgboost as xgb

BOOSTER_FILE = "booster.ubj"
REVENUE_FILE = "revenue.ubj"
META_FILE = "model.json"


@dataclass
class Calibration:
    """Maps the booster's margin to a probability of a hit."""

    method: Literal["isotonic", "platt", "none"] = "none"
    knots_x: list[float] = field(default_factory=list)  # isotonic: raw probability knots
    knots_y: list[float] = field(default_factory=list)  # isotonic: calibrated values
    platt_a: float = 1.0  # platt: sigmoid(a * margin + b)
    platt_b: float = 0.0
    shift: float = 0.0  # added to the calibrated log-odds (anchoring on the random stratum)

    def apply(self, margin: np.ndarray) -> np.ndarray:
        """Calibrated probability from the booster's raw margin (log-odds)."""
        raw = 1.0 / (1.0 + np.exp(-margin))
        if self.method == "isotonic":
            p = np.interp(raw, self.knots_x, self.knots_y)
        elif self.method == "platt":
            p = 1.0 / (1.0 + np.exp(-(self.platt_a * margin + self.platt_b)))
        else:
            p = raw
        return shift_log_odds(p, self.shift) if self.shift else p


def shift_log_odds(p: np.ndarray, shift: float) -> np.ndarray:
    """sigmoid(logit(p) + shift); 0 and 1 stay where they are (monotone, no new ties)."""
    p = np.asarray(p, dtype=float)
    odds = np.exp(shift) * p / np.where(p < 1.0, 1.0 - p, 1.0)
    return np.where(p >= 1.0, 1.0, odds / (1.0 + odds))


@dataclass
class TargetingModel:
    """What is served: P(hit), and expected revenue when a revenue model exists."""

    booster: xgb.Booster
    calibration: Calibration
    feature_names: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)  # training levels per column
    revenue_booster: xgb.Booster | None = None
    info: dict[str, Any] = field(default_factory=dict)  # params, windows, best_iteration...

    @staticmethod
    def categories_of(X: pd.DataFrame) -> dict[str, list[str]]:
        """The levels of each category column, as the booster saw them in training."""
        return {
            str(c): [str(v) for v in X[c].cat.categories]
            for c in X.columns
            if isinstance(X[c].dtype, pd.CategoricalDtype)
        }

    def prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        """Model columns in training order, categories cast to the training levels.

        XGBoost >= 3.1 re-codes pandas categories by name but raises on a level it never saw;
        an unseen office, country or HS chapter becomes missing instead, which the trees route
        along their learned default branch.
        """
        frame = X[self.feature_names]
        cast = {
            c: pd.Categorical(frame[c].astype("string").astype(object), categories=levels)
            for c, levels in self.categories.items()
        }
        return frame.assign(**cast) if cast else frame

    def margin(self, X: pd.DataFrame) -> np.ndarray:
        """Raw log-odds of the booster (already sliced at its best iteration)."""
        return np.asarray(
            self.booster.inplace_predict(self.prepare(X), predict_type="margin"), dtype=float
        )

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of a hit for each row."""
        return self.calibration.apply(self.margin(X))

    def revenue_if_hit(self, X: pd.DataFrame) -> np.ndarray | None:
        """E[revenue | hit] of each row (clipped at 0); None when the model has no revenue part."""
        if self.revenue_booster is None:
            return None
        revenue = np.asarray(self.revenue_booster.inplace_predict(self.prepare(X)), dtype=float)
        return np.clip(revenue.reshape(-1), 0.0, None)

    def expected_revenue(self, X: pd.DataFrame, proba: np.ndarray | None = None) -> np.ndarray:
        """P(hit) x E[revenue | hit]; NaN when the model has no revenue part."""
        p = self.predict_proba(X) if proba is None else proba
        if self.revenue_booster is None:
            return np.full(len(X), np.nan)
        revenue = self.revenue_booster.inplace_predict(self.prepare(X))
        return p * np.clip(np.asarray(revenue, dtype=float), 0.0, None)

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        """Per-feature contributions to the margin (TreeSHAP, pred_contribs); last column: bias."""
        matrix = xgb.DMatrix(self.prepare(X), enable_categorical=True)
        return np.asarray(self.booster.predict(matrix, pred_contribs=True))

    def booster_sha256(self) -> str:
        """Fingerprint of the served booster (the export file must match it)."""
        return hashlib.sha256(bytes(self.booster.save_raw("ubj"))).hexdigest()

    def save(self, folder: Path) -> None:
        """Write the booster(s) and the calibration to a folder."""
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(folder / BOOSTER_FILE)
        if self.revenue_booster is not None:
            self.revenue_booster.save_model(folder / REVENUE_FILE)
        meta = {
            "calibration": self.calibration.__dict__,
            "feature_names": self.feature_names,
            "categories": self.categories,
            "info": self.info,
            "has_revenue": self.revenue_booster is not None,
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> TargetingModel:
        """Read a model written by `save`."""
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        booster = xgb.Booster()
        booster.load_model(folder / BOOSTER_FILE)
        revenue = None
        if meta.get("has_revenue"):
            revenue = xgb.Booster()
            revenue.load_model(folder / REVENUE_FILE)
        return cls(
            booster=booster,
            calibration=Calibration(**meta["calibration"]),
            feature_names=list(meta["feature_names"]),
            categories={k: list(v) for k, v in meta.get("categories", {}).items()},
            revenue_booster=revenue,
            info=dict(meta.get("info", {})),
        )
