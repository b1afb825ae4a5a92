"""The calibrated targeting model: an XGBoost booster, its calibration, an optional revenue model.

Written by `train.fit`, read by `evaluate` and `serve`. It lives in `serve` because a deployment
needs it and must not import `train`. Calibration is stored as plain numbers (isotonic knots or
Platt coefficients) and applied with numpy, so serving needs no scikit-learn.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import xgboost as xgb
from scipy.special import expit

from pipeline.config import Config
from pipeline.plan import RefitPlan, RunPlan, Windows, plan_around

BOOSTER_FILE = "booster.ubj"
REVENUE_FILE = "revenue.ubj"
META_FILE = "model.json"


PROBABILITY_BOUND = 1e-6  # the calibrated probability lies in [bound, 1 - bound]


class ModelFileError(ValueError):
    """A model folder's file is missing or damaged; the message names the file."""


def _load_booster(path: Path) -> xgb.Booster:
    """An XGBoost booster from `path`; XGBoost's native error (a page of C++ stack) becomes one
    line naming the file."""
    if not path.is_file():
        raise ModelFileError(f"model file {path} is missing: the model folder is incomplete")
    booster = xgb.Booster()
    try:
        booster.load_model(path)
    except xgb.core.XGBoostError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"model file {path} is damaged ({first[:200]})") from None
    return booster


@dataclass
class Calibration:
    """Maps the booster's margin to a probability of a hit."""

    method: Literal["isotonic", "platt", "none"] = "none"
    knots_x: list[float] = field(default_factory=list)  # isotonic: raw probability knots
    knots_y: list[float] = field(default_factory=list)  # isotonic: calibrated values
    platt_a: float = 1.0  # platt: sigmoid(a * margin + b)
    platt_b: float = 0.0
    shift: float = 0.0  # added to the calibrated log-odds (anchoring on the random stratum)
    # The anchored level's uncertainty: log-odds shifts, relative to `shift`, at equally spaced
    # quantiles of the random stratum's hit rate (`train.anchor.level_shifts`); None when the
    # level is not anchored on a random stratum (then it has no interval).
    level_shifts: list[float] | None = None

    @property
    def anchored(self) -> bool:
        """Whether the level is anchored on a random stratum (only then is its uncertainty
        known: `level_shifts`)."""
        return self.level_shifts is not None

    def apply(self, margin: np.ndarray) -> np.ndarray:
        """Calibrated probability from the booster's raw margin (log-odds)."""
        raw = 1.0 / (1.0 + np.exp(-margin))
        if self.method == "isotonic":
            p = np.interp(raw, self.knots_x, self.knots_y)
        elif self.method == "platt":
            p = expit(self.platt_a * margin + self.platt_b)
        else:
            p = raw
        p = shift_log_odds(p, self.shift) if self.shift else p
        # Never exactly 0 or 1: no control is certain to find nothing, nor certain to find
        # something, and a 0 would hide a declaration from every expected-hit figure.
        return np.clip(p, PROBABILITY_BOUND, 1.0 - PROBABILITY_BOUND)


def shift_log_odds(p: np.ndarray, shift: float) -> np.ndarray:
    """sigmoid(logit(p) + shift); 0 and 1 stay where they are (monotone, no new ties)."""
    p = np.asarray(p, dtype=float)
    odds = np.exp(shift) * p / np.where(p < 1.0, 1.0 - p, 1.0)
    return np.where(p >= 1.0, 1.0, odds / (1.0 + odds))


@dataclass(frozen=True)
class FamiliesKept:
    """The feature families the model keeps, chosen on validation AP (`train.select`)."""

    kept: list[str]
    ap_all: float  # validation AP with every family
    ap_chosen: float  # validation AP with the families kept
    effects: list[dict[str, object]]  # one record per family: features, AP without it, dropped

    def to_dict(self) -> dict[str, object]:
        """As written in the bundle's info."""
        return {
            "kept": self.kept,
            "ap_all": self.ap_all,
            "ap_chosen": self.ap_chosen,
            "effects": self.effects,
        }

    @classmethod
    def from_dict(cls, families: Mapping[str, Any]) -> FamiliesKept:
        """The families written by `to_dict`."""
        return cls(
            kept=[str(f) for f in families["kept"]],
            ap_all=float(families["ap_all"]),
            ap_chosen=float(families["ap_chosen"]),
            effects=[dict(e) for e in families.get("effects", [])],
        )


@dataclass(frozen=True)
class ModelInfo:
    """What a model bundle records about its fit, in both roles, and the run's plan.

    ``evaluated``: the model judged on the test window, fitted on `windows`. ``deployed``: the
    same configuration refit on every label known at the end of the data (`refit`, its windows as
    it used them, and `refit_trees`); `windows` and `best_iteration` are then those of the
    evaluated model it was refit from. An evaluated model records the refit deployed in its place
    too. `plan`: the run's plan (`pipeline.plan`), its ranking resolved against this model; a
    bundle saved before plans were recorded has none (`plan_of` rebuilds it). Older bundles may
    lack any field but the role: a missing one is None.
    """

    role: Literal["evaluated", "deployed"] = "evaluated"
    windows: Windows | None = None  # the evaluated model's four windows
    best_iteration: int | None = None  # the evaluated model's, found by early stopping
    params: dict[str, Any] = field(default_factory=dict)  # XGBoost's, as boosted
    refit: RefitPlan | None = None  # the deployed refit's windows (selection: when modelled)
    refit_trees: int | None = None  # the deployed refit's trees
    imbalance: str | None = None
    objective: str | None = None  # the tuning objective
    calibration: str | None = None  # the calibration method (isotonic, platt, none)
    selection_correction: str | None = None  # how inspected rows stand for every declaration
    anchoring: str | None = None  # the log-odds shift on the random stratum, or why none
    probability_means: str | None = None  # what the calibrated probability is the chance of
    revenue_model: str | None = None  # this model's revenue part, or why it has none
    registered_model: str | None = None  # the registry name the scorer is registered under
    seed: int | None = None
    engine: str | None = None  # train.engine (memory, dask)
    boosted_from: str | None = None  # memory, or the feature-set file the dask workers read
    families: FamiliesKept | None = None
    plan: RunPlan | None = None  # the run's plan, its ranking resolved against this model

    @property
    def trees(self) -> int | None:
        """Trees of this model's booster."""
        if self.role == "deployed" and self.refit is not None:
            return self.refit_trees
        return None if self.best_iteration is None else self.best_iteration + 1

    def windows_dict(self) -> dict[str, dict[str, str]]:
        """This model's own windows as recorded: name -> {start, end}."""
        if self.role == "deployed":
            return self.refit.as_dict() if self.refit is not None else {}
        return self.windows.as_dict() if self.windows is not None else {}

    def to_dict(self) -> dict[str, object]:
        """The info as the bundle's JSON holds it (keys in the order the fit writes them)."""
        deployed = self.role == "deployed" and self.refit is not None
        own: dict[str, object] = {
            "params": self.params,
            "windows": self.windows_dict() or None,
            "best_iteration": self.trees - 1 if self.trees is not None else None,
            "imbalance": self.imbalance,
            "objective": self.objective,
            "calibration": self.calibration,
            "selection_correction": self.selection_correction,
            "anchoring": self.anchoring,
            "probability_means": self.probability_means,
            "revenue_model": self.revenue_model,
            "registered_model": self.registered_model,
            "seed": self.seed,
            "engine": self.engine,
            "boosted_from": self.boosted_from,
            "role": self.role,
            "families": self.families.to_dict() if self.families is not None else None,
            "plan": self.plan.to_dict() if self.plan is not None else None,
        }
        if deployed and self.refit is not None:
            own["labels_known_by"] = self.refit.labels_known_by.isoformat()
            own["evaluated"] = {
                "windows": self.windows.as_dict() if self.windows is not None else None,
                "best_iteration": self.best_iteration,
            }
        elif self.refit is not None:
            own["deployed"] = {
                "windows": self.refit.as_dict(),
                "trees": self.refit_trees,
                "labels_known_by": self.refit.labels_known_by.isoformat(),
            }
        return {k: v for k, v in own.items() if v is not None and (k != "params" or v)}

    @classmethod
    def from_dict(cls, info: Mapping[str, Any]) -> ModelInfo:
        """The info written by `to_dict` (a saved bundle's)."""
        role: Literal["evaluated", "deployed"] = (
            "deployed" if info.get("role") == "deployed" else "evaluated"
        )
        own_windows = info.get("windows") or {}
        evaluated: Mapping[str, Any] = info.get("evaluated") or {}
        refit, trees = None, None
        if role == "deployed":
            windows, best = evaluated.get("windows"), evaluated.get("best_iteration")
            if info.get("labels_known_by") and "best_iteration" in info:
                refit = RefitPlan.from_dict(
                    {"windows": own_windows, "labels_known_by": info["labels_known_by"]}
                )
                trees = int(info["best_iteration"]) + 1
        else:
            windows, best = own_windows, info.get("best_iteration")
            deployed = info.get("deployed")
            if deployed:
                refit, trees = RefitPlan.from_dict(deployed), int(deployed["trees"])
        names = ("train", "valid", "calibration", "test")
        whole = isinstance(windows, Mapping) and all(n in windows for n in names)
        return cls(
            role=role,
            windows=Windows.from_dict(dict(windows)) if whole and windows else None,
            best_iteration=int(best) if best is not None else None,
            params=dict(info.get("params") or {}),
            refit=refit,
            refit_trees=trees,
            imbalance=_text(info, "imbalance"),
            objective=_text(info, "objective"),
            calibration=_text(info, "calibration"),
            selection_correction=_text(info, "selection_correction"),
            anchoring=_text(info, "anchoring"),
            probability_means=_text(info, "probability_means"),
            revenue_model=_text(info, "revenue_model"),
            registered_model=_text(info, "registered_model"),
            seed=int(info["seed"]) if info.get("seed") is not None else None,
            engine=_text(info, "engine"),
            boosted_from=_text(info, "boosted_from"),
            families=FamiliesKept.from_dict(info["families"]) if info.get("families") else None,
            plan=RunPlan.from_dict(info["plan"]) if info.get("plan") else None,
        )


def _text(info: Mapping[str, Any], key: str) -> str | None:
    """A recorded note, None when the bundle predates it."""
    value = info.get(key)
    return None if value is None else str(value)


def level_positions(frame: pd.DataFrame, ordered: Collection[str]) -> pd.DataFrame:
    """`frame` with each `ordered` category column replaced by its level's position among its
    categories (NaN for a missing level, and for a rare or unseen one cast to missing): the
    number a model fitted with train.category_order hit_rate splits on, at training and at
    serving alike."""
    positions = {
        c: pd.Series(np.where(codes >= 0, codes, np.nan), index=frame.index)
        for c in ordered
        if c in frame.columns
        for codes in [frame[c].cat.codes.to_numpy()]
    }
    return frame.assign(**positions) if positions else frame


@dataclass
class TargetingModel:
    """What is served: P(hit), and expected revenue when a revenue model exists."""

    booster: xgb.Booster
    calibration: Calibration
    feature_names: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)  # training levels per column
    # Category columns whose levels are in hit-rate order and reach the trees as their position
    # (train.category_order hit_rate); the others are XGBoost categories.
    ordered: list[str] = field(default_factory=list)
    revenue_booster: xgb.Booster | None = None
    info: ModelInfo = field(default_factory=ModelInfo)

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
        return level_positions(frame.assign(**cast) if cast else frame, self.ordered)

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
            "ordered": self.ordered,
            "info": self.info.to_dict(),
            "has_revenue": self.revenue_booster is not None,
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> TargetingModel:
        """Read a model written by `save`; a missing or damaged file is named (ModelFileError)."""
        meta_path = folder / META_FILE
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelFileError(f"model file {meta_path} is missing") from None
        except ValueError as exc:
            raise ModelFileError(
                f"model file {meta_path} is damaged (not valid JSON: {exc})"
            ) from None
        booster = _load_booster(folder / BOOSTER_FILE)
        revenue = _load_booster(folder / REVENUE_FILE) if meta.get("has_revenue") else None
        return cls(
            booster=booster,
            calibration=Calibration(**meta["calibration"]),
            feature_names=list(meta["feature_names"]),
            categories={k: list(v) for k, v in meta.get("categories", {}).items()},
            ordered=[str(c) for c in meta.get("ordered", [])],
            revenue_booster=revenue,
            info=ModelInfo.from_dict(meta.get("info", {})),
        )


def plan_of(model: TargetingModel, config: Config, lodged_at: pd.Series) -> RunPlan:
    """The run plan the model records (its ranking resolved against it when recorded).

    A model saved before plans were recorded has its plan rebuilt from the windows it recorded
    (the evaluated model's four and the refit's), the rest laid by the functions `targeting train`
    lays them with (`plan.plan_around`) on `config` and the feature set's `lodged_at`. One that
    recorded no evaluated windows cannot be placed on the time axis: it is refused, by name.
    """
    info = model.info
    if info.plan is not None:
        return info.plan
    if info.windows is None:
        raise ValueError(
            "the model records neither a run plan nor the evaluated model's windows (a bundle "
            "saved before both were recorded): retrain it with `targeting train`"
        )
    rebuilt = plan_around(config, lodged_at, info.windows, info.refit)
    return rebuilt.for_model(model.revenue_booster is not None)
