"""Model + thresholds -> score, channel and reason codes of every declaration; an MLflow pyfunc.

`Scorer.score(declarations)` returns one row per input row, in input order, always:

- ``declaration_id``;
- ``score``: what the channels rank by (`Thresholds.rank_by`): the expected revenue
  P(hit) x E[revenue | hit] when the model has a revenue part and the export ranks by it, else the
  calibrated probability of a hit;
- ``probability``: calibrated probability of a hit;
- ``channel``: red / yellow / ... / green, or the invalid channel (``manual``) for a row that
  failed validation;
- ``selection_reason``: ``random``, a rule's name, ``model``, ``invalid``, or null (green);
- ``selection_probability``: the known probability of the random draw (1 for rules), else null;
- ``reasons``: for red and yellow rows, a JSON list of the top reason codes (feature, value,
  contribution to the log-odds, a short phrase in customs words), from XGBoost's
  ``pred_contribs``: exact TreeSHAP values for the most severe channel and Saabas attributions
  (``approx_contribs``) for the others by default (``serve.reason_method``, recorded in the
  export); null otherwise;
- ``error``: null, or why the row could not be scored.

This module imports neither `pipeline.train` nor `pipeline.evaluate` nor shap.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc.model import PythonModel

from pipeline.compute import cap_thread_count
from pipeline.config import FeaturesConfig, available_cores
from pipeline.features import profiles
from pipeline.features.build import (
    RAW_NAMES,
    Snapshot,
    attach,
    other_settings,
    raw_category_columns,
)
from pipeline.ingest.columns import DECLARATION_COLUMNS, HS_LEVELS
from pipeline.ingest.schema import DEFAULT_CONTRACT, Contract, validate_declarations
from pipeline.serve import ranking
from pipeline.serve.channels import assign_channels
from pipeline.serve.matrix import booster_dmatrix
from pipeline.serve.model import TargetingModel
from pipeline.serve.requests import nested_cells, request_frame
from pipeline.serve.selectivity import ThresholdsError
from pipeline.serve.thresholds import Thresholds

logger = logging.getLogger(__name__)

OUTPUT_COLUMNS = (
    "declaration_id",
    "score",
    "probability",
    "channel",
    "selection_reason",
    "selection_probability",
    "reasons",
    "error",
)
INVALID_REASON = "invalid"
NUMBER_COLUMNS = ("score", "probability", "selection_probability")


# --- reason codes ----------------------------------------------------------------------------


ENTITY_WORDS = {
    "hs6": "HS6",
    "hs4": "HS4",
    "hs2": "HS2",
    "hs": "HS code",
    "origin_country": "origin",
    "origin": "origin",
    "departure_country": "departure country",
    "departure": "departure country",
    "transport_mode": "transport mode",
    "importer": "importer",
    "declarant": "declarant",
    "seller": "seller",
    "office": "office",
}
PROFILE_SUFFIXES = (
    "_hit_rate",
    "_hits",
    "_controls",
    "_declarations",
    "_days_since_hit",
    "_revenue_per_control",
)


def _who(key: str) -> str:
    """'origin_country_x_hs6' -> 'origin x HS6' (the entity a profile is about)."""
    parts = [ENTITY_WORDS.get(part, part.replace("_", " ")) for part in key.split("_x_")]
    return " x ".join(parts)


def _scope(name: str) -> str:
    """'unit_value_log_ratio_hs6_origin' -> 'this HS6 and origin'."""
    tokens = name.split("_")
    found = [ENTITY_WORDS[t] for t in tokens if t in ENTITY_WORDS and t != "hs"]
    unique = list(dict.fromkeys(found))
    return "this " + " and ".join(unique) if unique else "this comparable declarations"


def _number(values: pd.Series, digits: int = 0) -> pd.Series:
    """Rounded values as text; whole numbers without decimals."""
    rounded = values.round(digits)
    whole = bool(((rounded % 1 == 0) | rounded.isna()).all())
    text = rounded.astype("Int64" if digits == 0 or whole else "Float64").astype("string")
    return text.fillna("unknown")


RAW_CATEGORY_WORDS = {
    "office": "office",
    "hs2": "HS chapter",
    "origin_country": "origin",
    "departure_country": "departure country",
    "transport_mode": "transport mode",
}
REFERENCE_SCOPES = {0.0: "this HS6 and origin", 1.0: "this HS6", 2.0: "this HS4"}
CONTEXT_COLUMNS = ("reference_level",)
FLAG_PHRASES = {
    "importer_new": ("new importer (no earlier declaration)", "known importer"),
    "importer_seller_new": ("first goods from this seller for this importer", "known seller"),
    "aeo": ("importer is an AEO", "importer is not an AEO"),
}


def reason_phrases(
    feature: str,
    values: pd.Series,
    description: str | None,
    context: pd.DataFrame | None = None,
) -> pd.Series:
    """A short phrase in customs words for one feature's values (vectorised over declarations).

    Known feature families get a sentence (value gaps to the reference price, risk profiles,
    duty, newness flags); the others read as their manifest description and value. `context`
    (the same rows' ``reference_level``) lets a value gap name its reference.
    """
    name = feature.lower()
    categorical = isinstance(values.dtype, pd.CategoricalDtype) or values.dtype == object
    label = description or feature.replace("_", " ")
    label = "reference price" if name == "reference_level" else label  # not its code legend
    if categorical:
        prefix = RAW_CATEGORY_WORDS.get(name, label + ":")
        return prefix + " " + values.astype("string").fillna("missing")
    x = pd.to_numeric(values, errors="coerce").astype(float)
    phrase = _numeric_phrase(feature, name, x, label, context)
    return phrase.where(x.notna(), label + ": not known")


def _numeric_phrase(
    feature: str, name: str, x: pd.Series, label: str, context: pd.DataFrame | None
) -> pd.Series:
    """`reason_phrases` for a numeric feature (missing values handled by the caller)."""
    if name in FLAG_PHRASES:
        yes, no = FLAG_PHRASES[name]
        return pd.Series(np.where(x > 0, yes, no), index=x.index, dtype=object)
    basis = next((b for b in ("unit_value", "value_per_kg", "value_per_unit") if b in name), None)
    if basis is not None and "ratio" in name:
        gap = pd.Series(np.expm1(x) if "log" in name else x - 1.0, index=x.index)
        side = pd.Series(np.where(gap < 0, "below", "above"), index=x.index)
        scope = pd.Series(_scope(name), index=x.index)
        named = _scope(name) != "this comparable declarations"
        if not named and context is not None and "reference_level" in context.columns:
            level = pd.to_numeric(context["reference_level"], errors="coerce")
            scope = pd.Series(level.to_numpy(), index=x.index).map(REFERENCE_SCOPES)
            scope = scope.fillna("comparable declarations")
        words = basis.replace("_", " ")
        return words + " " + _number(gap.abs() * 100) + " % " + side + " the reference for " + scope
    if basis is not None and name.endswith("_z"):
        side = pd.Series(np.where(x < 0, "below", "above"), index=x.index)
        words = basis.replace("_", " ")
        return words + " " + _number(x.abs(), 1) + " robust deviations " + side + " its reference"
    if name == "duty_declared_ratio":
        return "declared duty " + _number(x * 100) + " % of value x duty rate"
    if name.startswith("duty_rate_gap"):
        where = _scope(name).removeprefix("this ")
        return "duty rate " + _number(x * 100, 1) + " points above the lowest in this " + where
    for suffix in PROFILE_SUFFIXES:
        if name.endswith(suffix):
            who = _who(feature[: -len(suffix)])
            if suffix == "_hit_rate":
                return "past hit rate of this " + who + ": " + _number(x * 100) + " %"
            if suffix == "_days_since_hit":
                return "last hit of this " + who + " " + _number(x) + " days ago"
            if suffix == "_revenue_per_control":
                return "revenue recovered per control of this " + who + ": " + _number(x)
            return _number(x) + " past " + suffix.strip("_").replace("_", " ") + " of this " + who
    if name == "reference_level":  # a code whose legend is its description: named, not numbered
        reference = pd.Series(x.map(REFERENCE_SCOPES), index=x.index, dtype=object)
        return "reference price of " + reference.fillna("comparable declarations")
    if name.endswith("_new") or name.startswith(("new_", "is_new")):
        return label + ": " + pd.Series(np.where(x > 0, "yes", "no"), index=x.index)
    return label + ": " + _number(x, 3)


def reason_codes(
    model: TargetingModel,
    X: pd.DataFrame,
    top: int,
    descriptions: dict[str, str],
    method: str = "treeshap",
) -> pd.Series:
    """JSON list of the `top` features raising each row's risk most (positive contributions).

    Contributions come from XGBoost's `pred_contribs`, in log-odds, the bias column left out:
    exact TreeSHAP values (`method="treeshap"`), or with `method="approximate"` Saabas path
    attributions (`approx_contribs`), about a hundred times cheaper on CPU. Vectorised: one
    contributions call, one sort, phrases built per feature.
    """
    if len(X) == 0 or top <= 0:
        return pd.Series([None] * len(X), index=X.index, dtype=object)
    prepared = ranking.prepare(model, X)
    matrix = booster_dmatrix(model.booster, prepared, model.categories)
    contributions = np.asarray(
        model.booster.predict(matrix, pred_contribs=True, approx_contribs=method == "approximate"),
        dtype=float,
    )[:, :-1]
    # A missing value is never a reason: nothing was declared there for a reviewer to check.
    contributions[prepared.isna().to_numpy()] = -np.inf
    k = min(top, contributions.shape[1])
    order = np.argsort(-contributions, axis=1, kind="stable")[:, :k]
    rows = np.repeat(np.arange(len(X)), k)
    columns = order.reshape(-1)
    contribution = contributions[rows, columns]
    keep = contribution > 0
    rows, columns, contribution = rows[keep], columns[keep], contribution[keep]
    names = np.asarray(model.feature_names, dtype=object)[columns]
    values = np.full(len(rows), None, dtype=object)
    phrases = np.full(len(rows), "", dtype=object)
    # Loop over features (tens), not declarations: each feature's values and phrases at once.
    for j in np.unique(columns):
        at = np.flatnonzero(columns == j)
        feature = model.feature_names[j]
        raw = X[feature].iloc[rows[at]].reset_index(drop=True)
        if isinstance(raw.dtype, pd.CategoricalDtype) or raw.dtype == object:
            value = raw.astype("string").astype(object).where(raw.notna(), None)
        else:
            value = pd.to_numeric(raw, errors="coerce").astype(float).round(6).astype(object)
            value = value.where(pd.notna(value), None)
        values[at] = value.to_numpy(dtype=object)
        context = X[[c for c in CONTEXT_COLUMNS if c in X.columns]].iloc[rows[at]]
        context = context.reset_index(drop=True)
        phrase = reason_phrases(feature, raw, descriptions.get(feature), context)
        phrases[at] = phrase.to_numpy(dtype=object)
    long = pd.DataFrame(
        {
            "feature": names,
            "value": values,
            "contribution": np.round(contribution, 4),
            "phrase": phrases,
        }
    )
    # pandas writes the JSON of every entry at once (escaping included, newlines escaped).
    text = long.to_json(orient="records", lines=True, force_ascii=False).rstrip("\n")
    entries = np.asarray(text.split("\n") if len(long) else [], dtype=object)
    # Entries are sorted by row; lay them out as (declarations x top) and join the columns.
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    grid = np.full((len(X), k), "", dtype=object)
    grid[rows, rank] = np.where(rank > 0, ",", "") + entries
    joined = grid[:, 0]
    for column in range(1, k):
        joined = joined + grid[:, column]
    return pd.Series("[" + joined + "]", index=X.index, dtype=object)


def reason_methods(
    setting: str, controlled: np.ndarray, most_severe: np.ndarray
) -> list[tuple[np.ndarray, str]]:
    """(rows, method) pairs of the reason codes a setting asks for: ``treeshap_red`` pays for
    exact TreeSHAP (a row costs about a hundred approximate ones) only on the most severe
    channel's rows, the ones an officer opens, and explains the others approximately."""
    if setting != "treeshap_red":
        return [(controlled, setting)]
    red = controlled & most_severe
    return [
        (rows, method)
        for rows, method in ((red, "treeshap"), (controlled & ~red, "approximate"))
        if rows.any()
    ]


# --- the scorer ------------------------------------------------------------------------------


def _load_folder(uri: str, tracking_uri: str | None, what: str) -> Path:
    """A local folder for `uri`: the folder itself, or an MLflow artefact downloaded."""
    local = Path(uri)
    if local.is_dir():
        return local
    try:
        return Path(
            mlflow.artifacts.download_artifacts(artifact_uri=uri, tracking_uri=tracking_uri)
        )
    except Exception as exc:
        raise FileNotFoundError(f"cannot load the {what} from {uri!r}: {exc}") from exc


@dataclass
class Scorer:
    """Scores declarations: features from the serving snapshot, the model, the thresholds."""

    model: TargetingModel
    snapshot: Snapshot
    thresholds: Thresholds
    features_config: FeaturesConfig

    contract: Contract = DEFAULT_CONTRACT

    def __post_init__(self) -> None:
        self.thresholds.check_model(self.model.booster_sha256())
        different = other_settings(self.snapshot, self.features_config)
        if different:
            raise ThresholdsError(
                f"the feature snapshot was built with other feature settings than the export's "
                f"model ({', '.join(different)}): pass the snapshot built with the export "
                "(--snapshot), or export again"
            )
        self.snapshot.lookups(self.features_config)  # built once here, not on the first request
        self.random_key = self.thresholds.key  # refused here when it does not match the export
        self.thresholds = Thresholds(self.thresholds.document, self.random_key)
        self.descriptions: dict[str, str] = dict(
            self.thresholds.document["features"].get("descriptions", {})
        )

    @classmethod
    def from_files(
        cls,
        thresholds_path: Path,
        model_uri: str | None = None,
        snapshot_uri: str | None = None,
        random_key: str | None = None,
    ) -> Scorer:
        """Load what a selectivity file names: its model (or `model_uri`) and its snapshot.

        URIs are MLflow artefact URIs (``runs:/<run id>/targeting_model``) or local folders; the
        tracking server is the one named in the file, else MLFLOW_TRACKING_URI.
        """
        thresholds = Thresholds.load(thresholds_path)
        if random_key is not None:
            thresholds = Thresholds(thresholds.document, random_key)
        document = thresholds.document
        tracking_uri = document["model"].get("tracking_uri")
        uri = model_uri or thresholds.model_uri
        if not uri:
            raise ThresholdsError(f"{thresholds_path}: names no model URI; pass one")
        model = TargetingModel.load(_load_folder(uri, tracking_uri, "model"))
        try:
            thresholds.check_model(model.booster_sha256())
        except ThresholdsError as exc:
            raise ThresholdsError(f"{thresholds_path}: {exc}") from None
        snapshot_folder = _snapshot_folder(document, snapshot_uri, tracking_uri)
        features_config = FeaturesConfig.model_validate(document["features"]["config"])
        try:
            return cls(model, Snapshot.load(snapshot_folder), thresholds, features_config)
        except ThresholdsError as exc:
            raise ThresholdsError(f"{snapshot_folder}: {exc}") from None

    def _empty_output(self, frame: pd.DataFrame) -> pd.DataFrame:
        ids = (
            _id_texts(frame["declaration_id"])
            if "declaration_id" in frame.columns
            else pd.Series(pd.NA, index=frame.index, dtype="string")
        )
        return pd.DataFrame(
            {
                "declaration_id": ids.to_numpy(dtype=object),
                "score": np.nan,
                "probability": np.nan,
                "channel": self.thresholds.invalid_channel,
                "selection_reason": INVALID_REASON,
                "selection_probability": np.nan,
                "reasons": pd.Series([None] * len(frame), dtype=object),
                "error": pd.Series([None] * len(frame), dtype=object),
            },
            index=pd.RangeIndex(len(frame)),
        )

    def read_columns(self) -> list[str]:
        """The declaration columns the model's features are computed from: its raw category
        columns and the key columns of its profiles and target statistics (a feature such as
        ``kcs_tax_type_hit_rate`` is computed, its column ``kcs_tax_type`` is read)."""
        names = set(self.model.feature_names)
        config = self.features_config
        read = [c for c in raw_category_columns(config) if RAW_NAMES.get(c, c) in names]
        computed: set[str] = set()
        for key in profiles.profile_keys(config):
            prefix = profiles.key_name(key) + "_"
            if any(n.startswith(prefix) for n in names):
                read += list(key)
                computed |= {n for n in names if n.startswith(prefix)}
        # A KCS column the model takes as it is, whatever the config lists.
        read += [n for n in self.model.feature_names if n.startswith("kcs_") and n not in computed]
        return list(dict.fromkeys(read))

    def missing_columns(self, declarations: pd.DataFrame) -> str | None:
        """Why the model cannot score these declarations at all, or None: the extra columns its
        features are computed from (KCS's ``kcs_*``, beyond the canonical contract) are absent."""
        canonical = {c.name for c in DECLARATION_COLUMNS} | set(HS_LEVELS)
        extras = [c for c in self.read_columns() if c not in canonical]
        missing = [c for c in extras if c not in declarations.columns]
        if not missing:
            return None
        return (
            f"the model was trained on column(s) {', '.join(missing)} that the declarations "
            "lack: these thresholds were made for KCS data (score KCS files with --format kcs)"
        )

    def score(self, declarations: pd.DataFrame) -> pd.DataFrame:
        """Score every row of `declarations` (one row out per row in, in the same order)."""
        frame = declarations.reset_index(drop=True)
        frame.columns = frame.columns.astype(str)
        frame = nested_cells(frame)  # a list or object in one cell costs that row only
        out = self._empty_output(frame)
        if frame.empty:
            return out
        lacking = self.missing_columns(frame)
        if lacking is not None:
            out["error"] = lacking
            return out
        try:
            clean, report = validate_declarations(frame, "declarations to score", self.contract)
        except ValueError as exc:  # the batch as a whole is unusable (e.g. a missing column)
            out["error"] = str(exc)
            return out
        except Exception as exc:  # keep the promise: every row back, with the reason
            logger.exception("validation failed")
            out["error"] = f"cannot validate the declarations: {type(exc).__name__}: {exc}"
            return out
        quarantined = report.quarantined
        if len(quarantined):  # `row` is the 1-based row number in the input
            reasons = quarantined["reason"].astype(str).groupby(quarantined["row"]).agg("; ".join)
            out.loc[reasons.index.to_numpy(dtype=int) - 1, "error"] = reasons.to_numpy()
        if clean.empty:
            return out
        try:
            positions = _positions(clean, report)
            scored = self.score_clean(clean.reset_index(drop=True))
        except Exception as exc:  # keep the promise: every row back, with the reason
            logger.exception("scoring failed")
            out.loc[out["error"].isna(), "error"] = f"scoring failed: {exc}"
            return out
        return _placed(out, positions, scored)

    def features(self, clean: pd.DataFrame) -> pd.DataFrame:
        """Model inputs of validated declarations, row-aligned with `clean` (by declaration id)."""
        feature_set = attach(clean, self.snapshot, self.features_config)
        ids = feature_set.declaration_id.astype(str).to_numpy()
        wanted = clean["declaration_id"].astype(str).to_numpy()
        if np.array_equal(ids, wanted):
            return feature_set.X
        order = pd.Index(ids).get_indexer(wanted)
        if (order < 0).any():
            raise RuntimeError("the feature builder lost declarations")
        return feature_set.X.iloc[order].reset_index(drop=True)

    def score_clean(self, clean: pd.DataFrame) -> pd.DataFrame:
        """Score validated declarations (RangeIndex): features, model, channels, reasons."""
        X = self.features(clean)
        return self.score_features(clean, X)

    def score_features(self, declarations: pd.DataFrame, X: pd.DataFrame) -> pd.DataFrame:
        """Scores, channels and reason codes from the feature matrix of `declarations`."""
        ranked = ranking.rank(self.model, X, self.thresholds.ranking)
        score, margin = ranked.score, ranked.margin
        channels = assign_channels(self.thresholds, declarations, score, margin)
        controlled = channels["channel"].isin(list(self.thresholds.channels)).to_numpy()
        reasons = pd.Series([None] * len(X), index=X.index, dtype=object)
        if controlled.any() and self.thresholds.reasons > 0:
            for rows, method in reason_methods(
                self.thresholds.reason_method,
                controlled,
                channels["channel"].to_numpy() == next(iter(self.thresholds.channels)),
            ):
                reasons[rows] = reason_codes(
                    self.model, X.loc[rows], self.thresholds.reasons, self.descriptions, method
                ).to_numpy()
        return pd.DataFrame(
            {
                "declaration_id": declarations["declaration_id"].to_numpy(),
                "score": score,
                "probability": ranked.probability,
                "channel": channels["channel"].to_numpy(),
                "selection_reason": channels["selection_reason"].to_numpy(),
                "selection_probability": channels["selection_probability"].to_numpy(),
                "reasons": reasons.to_numpy(),
                "error": None,
            },
            index=declarations.index,
        )


def _placed(out: pd.DataFrame, positions: np.ndarray, scored: pd.DataFrame) -> pd.DataFrame:
    """`out` with the scored rows at their input positions and their error cleared, built once
    from arrays (a `.loc` write per column cost a millisecond each on a one-row request); the
    declaration ids stay as the input wrote them (validation strips its copy)."""
    columns: dict[str, np.ndarray] = {}
    for name in OUTPUT_COLUMNS:
        values = out[name].to_numpy(dtype=float if name in NUMBER_COLUMNS else object, copy=True)
        if name == "error":
            values[positions] = None
        elif name != "declaration_id":
            values[positions] = scored[name].to_numpy(dtype=values.dtype)
        columns[name] = values
    return pd.DataFrame(columns, index=out.index)


def _id_texts(ids: pd.Series) -> pd.Series:
    """Declaration ids as text, exactly as given (integral floats without their '.0')."""
    if pd.api.types.is_float_dtype(ids.dtype):
        values = ids.to_numpy(dtype=float)
        whole = np.isfinite(values) & (np.floor(values) == values) & (np.abs(values) < 2.0**63)
        text = ids.astype("string")
        text[whole] = values[whole].astype(np.int64).astype(str)
        return text
    if isinstance(ids.dtype, pd.CategoricalDtype):
        ids = ids.astype(object)
    return ids.astype("string")


def _positions(clean: pd.DataFrame, report: Any) -> np.ndarray:
    """Input positions of the validated rows (validation sorts them by time, and reports the
    1-based input row of each kept row in `kept_rows`)."""
    kept = np.asarray(report.kept_rows, dtype=np.int64) - 1
    if len(kept) != len(clean):
        raise RuntimeError("validation did not report the input row of every kept row")
    return kept


def _snapshot_folder(
    document: dict[str, Any], snapshot_uri: str | None, tracking_uri: str | None
) -> Path:
    """The serving snapshot named by the export: its local path if present, else its URI."""
    if snapshot_uri:
        return _load_folder(snapshot_uri, tracking_uri, "feature snapshot")
    snapshot = document.get("snapshot", {})
    path = snapshot.get("path")
    if path and Path(path).is_dir():
        return Path(path)
    uri = snapshot.get("uri")
    if not uri:
        raise FileNotFoundError(
            f"the feature snapshot is not at {path!r} and the selectivity file names no URI"
        )
    return _load_folder(uri, tracking_uri, "feature snapshot")


# --- MLflow pyfunc ---------------------------------------------------------------------------


class ScorerModel(PythonModel):
    """The scorer as an MLflow pyfunc: `mlflow models serve -m runs:/<run id>/scorer`
    (`tracking.log_scorer` logs it with its artefacts).

    Artefacts: ``model`` (TargetingModel folder), ``snapshot`` (feature snapshot folder),
    ``thresholds`` (selectivity.json). `predict` takes declarations in the canonical columns and
    returns the scored frame (see the module docstring).
    """

    def load_context(self, context: Any) -> None:
        """Load the model, the snapshot and the thresholds from the logged artefacts, and the
        thread count recorded with them (`served_threads`)."""
        artifacts = context.artifacts
        model = TargetingModel.load(Path(artifacts["model"]))
        thresholds = Thresholds.load(Path(artifacts["thresholds"]), model.booster_sha256())
        features_config = FeaturesConfig.model_validate(thresholds.document["features"]["config"])
        snapshot = Snapshot.load(Path(artifacts["snapshot"]))
        self.scorer = Scorer(model, snapshot, thresholds, features_config)
        self.threads = served_threads(context.model_config)
        self.capped = threading.local()  # which threads run capped already

    def _cap_threads(self) -> None:
        """Cap the calling thread at `threads` (`compute.cap_thread_count`), once per thread:
        the scoring server predicts on worker threads (asyncio.to_thread), and XGBoost's and
        OpenMP's thread counts are per thread."""
        if getattr(self.capped, "threads", None) != self.threads:
            cap_thread_count(self.threads)
            self.capped.threads = self.threads

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Score a batch of declarations; the answer as strict JSON carries it (`rest_answer`)."""
        self._cap_threads()
        return rest_answer(
            self.scorer.score(
                request_frame(
                    model_input,
                    [*self.scorer.model.feature_names, *self.scorer.features_config.raw_categories],
                )
            )
        )


def served_threads(model_config: Mapping[str, object] | None) -> int:
    """The threads a served scorer runs on: the ``threads`` recorded when it was logged (the
    export's `compute.threads`; ``SERVING_MODEL_CONFIG='{"threads": N}'`` overrides it at
    `mlflow models serve`), at most the cores this process may use; those cores when none is
    recorded (a scorer logged before threads were)."""
    cores = available_cores()
    recorded = (model_config or {}).get("threads")
    if recorded is None:
        return cores
    if not isinstance(recorded, int) or isinstance(recorded, bool) or recorded < 1:
        raise ValueError(f"the scorer's threads must be a whole number >= 1, got {recorded!r}")
    return min(recorded, cores)


def pyfunc_signature() -> ModelSignature:
    """The pyfunc's signature (`tracking.log_scorer` logs it): no input schema, so that every
    column sent reaches the scorer's own checks (`requests.request_frame`) and an incomplete
    row comes back `manual` instead of failing; the scored columns out."""
    from mlflow.types.schema import AnyType, Array, ColSpec, Object, Property, Schema

    # No input schema: MLflow's enforcement would drop every column it does not list (a KCS
    # model's kcs_* columns, a name in another case), reshape columnar bodies into one row and
    # turn the text "false" into True; `requests.request_frame` checks the request instead and
    # the scorer validates each row, sending the bad ones to the manual channel with the reason.
    reason = Object(
        [
            Property("feature", "string"),
            Property("value", AnyType(), required=False),  # text or number, null when unknown
            Property("contribution", "double"),
            Property("phrase", "string"),
        ]
    )
    outputs = Schema(
        [
            ColSpec("string", "declaration_id"),
            ColSpec("double", "score", required=False),
            ColSpec("double", "probability", required=False),
            ColSpec("string", "channel"),
            ColSpec("string", "selection_reason", required=False),
            ColSpec("double", "selection_probability", required=False),
            ColSpec(Array(reason), "reasons", required=False),
            ColSpec("string", "error", required=False),
        ]
    )
    return ModelSignature(inputs=None, outputs=outputs)


def rest_answer(scored: pd.DataFrame) -> pd.DataFrame:
    """`Scorer.score`'s frame as the REST answer carries it, strict JSON whatever a parser:
    every cell that is missing or not a finite number is None (null, never a bare NaN), and
    ``reasons`` is a list of objects (feature, value, contribution, phrase), not JSON text."""
    cells: dict[str, np.ndarray] = {}
    for name, column in scored.items():  # column by column: no copy of the whole frame
        values = column.to_numpy(dtype=object, copy=True)
        if pd.api.types.is_float_dtype(column.dtype):
            values[~np.isfinite(column.to_numpy(dtype=float))] = None
        else:
            values[pd.isna(values) | column.isin([np.inf, -np.inf]).to_numpy(dtype=bool)] = None
        cells[str(name)] = values
    texts = cells["reasons"]
    # One JSON document for every row's reasons, its NaN and infinities read as None as they are
    # parsed (`strict_json.finite` walked the 27,000 values of 20,000 rows afterwards); cell by
    # cell into the object column (numpy would read equal-length lists as a second dimension).
    lists = iter(
        json.loads(
            "[" + ",".join(t for t in texts if t is not None) + "]",
            parse_constant=_not_finite,
            parse_float=_finite_float,
        )
    )
    reasons = [None if t is None else next(lists) for t in texts]
    answer = pd.DataFrame(cells, index=scored.index)
    answer["reasons"] = pd.Series(reasons, index=scored.index, dtype=object)
    return answer


def _not_finite(_: str) -> None:
    """What a parsed NaN, Infinity or -Infinity becomes in the REST answer: null."""
    return None


def _finite_float(text: str) -> float | None:
    """A parsed number as a float, or None when it overflows to infinity (``1e400``)."""
    value = float(text)
    return value if math.isfinite(value) else None


def document_json(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Scored rows as JSON-ready records (NaN -> None), e.g. to compare with a REST answer."""
    records: list[dict[str, Any]] = json.loads(frame.to_json(orient="records"))
    return records


REASON_FIELDS = ("feature", "value", "contribution", "phrase")  # one reason code's entries


def reason_columns(scored: pd.DataFrame, top: int) -> pd.DataFrame:
    """`scored` with its JSON `reasons` laid out flat for systems without JSON (CSV output):
    reason_1, reason_1_feature, reason_1_value, reason_1_contribution, ... up to `top`."""
    long = reasons_table(scored.assign(declaration_id=np.arange(len(scored))))
    out = scored.drop(columns="reasons")
    wide: dict[str, pd.Series] = {}
    for rank in range(1, top + 1):
        at = long.loc[long["rank"] == rank]
        rows = at["declaration_id"].to_numpy(dtype=np.int64)
        for suffix, field in (
            ("", "phrase"),
            ("_feature", "feature"),
            ("_value", "value"),
            ("_contribution", "contribution"),
        ):
            column = pd.Series([None] * len(scored), index=scored.index, dtype=object)
            column.iloc[rows] = at[field].to_numpy(dtype=object)
            wide[f"reason_{rank}{suffix}"] = column
    return pd.concat([out, pd.DataFrame(wide, index=scored.index)], axis=1)


def reasons_table(scored: pd.DataFrame) -> pd.DataFrame:
    """The reason codes of scored declarations, one row per reason.

    `scored` is `Scorer.score`'s output; rows without reasons (green, manual) are left out.
    Columns: declaration_id, channel, score, rank (1 = the strongest reason), feature, value,
    contribution (to the log-odds), phrase.
    """
    columns = ["declaration_id", "channel", "score", "rank", *REASON_FIELDS]
    rows = scored.loc[scored["reasons"].notna(), ["declaration_id", "channel", "score", "reasons"]]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    # one JSON document for all rows: a list of each row's reasons
    lists = json.loads("[" + ",".join(rows["reasons"].astype(str)) + "]")
    long = (
        rows.drop(columns="reasons")
        .assign(reason=lists)
        .explode("reason", ignore_index=True)
        .dropna(subset=["reason"])
        .reset_index(drop=True)
    )
    details = pd.DataFrame.from_records(long["reason"].tolist(), columns=list(REASON_FIELDS))
    long = pd.concat([long.drop(columns="reason"), details], axis=1)
    long["rank"] = long.groupby("declaration_id", sort=False).cumcount() + 1
    return long[columns]
