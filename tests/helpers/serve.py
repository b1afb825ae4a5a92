"""Shared builders for the serving tests: small declaration streams, scored reference windows,
and a small real TargetingModel (XGBoost, isotonic calibration) trained on real features."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import FeaturesConfig, RuleConfig, ServeConfig
from pipeline.plan import BY_PROBABILITY

OFFICES = ("ICN01", "PUS02", "SEL03", "GMP04")
PRICES = {"850440": 40.0, "610910": 12.0, "940360": 8.0, "300490": 90.0, "870323": 30.0}


def reference_frame(rows: int = 20_000, seed: int = 0, ties: bool = True) -> pd.DataFrame:
    """A scored reference window: ids, office, AEO flag, rule columns, score and margin.

    With `ties`, scores are rounded to two decimals, as isotonic calibration's plateaus make them.
    """
    rng = np.random.default_rng(seed)
    margin = rng.normal(-3.0, 1.5, rows)
    probability = 1.0 / (1.0 + np.exp(-margin))
    if ties:
        probability = np.round(probability, 2)
    revenue = probability * rng.lognormal(6.0, 1.0, rows)
    return pd.DataFrame(
        {
            "declaration_id": [f"D{seed}-{i:07d}" for i in range(rows)],
            "lodged_at": pd.Timestamp("2024-03-01")
            + pd.to_timedelta(rng.uniform(0, 60, rows), unit="D"),
            "office": rng.choice(OFFICES, rows, p=[0.4, 0.3, 0.2, 0.1]),
            "aeo": rng.random(rows) < 0.1,
            "importer": [f"IMP{i}" for i in rng.integers(0, 500, rows)],
            "hs_code": [f"{c:06d}" for c in rng.integers(10_000, 999_999, rows)],
            "margin": margin,
            "probability": probability,
            "expected_revenue": revenue,
            "score": probability,
        },
        index=pd.RangeIndex(rows) * 3 + 7,  # odd index on purpose
    )


def serve_config(**changes: Any) -> ServeConfig:
    """The default serving config with some values changed."""
    return ServeConfig().model_copy(update=changes)


def watch_list_rules() -> list[RuleConfig]:
    """A watch-listed importer and a prohibited HS chapter."""
    return [
        RuleConfig(name="watch-listed importer", column="importer", values=["IMP7", "IMP11"]),
        RuleConfig(name="prohibited chapter 93", column="hs_code", prefix=["93"]),
    ]


def siphash24(key: bytes, message: bytes) -> int:
    """Reference SipHash-2-4 (Aumasson & Bernstein), written independently of pandas."""
    mask = (1 << 64) - 1

    def rotl(x: int, b: int) -> int:
        return ((x << b) | (x >> (64 - b))) & mask

    k0 = int.from_bytes(key[:8], "little")
    k1 = int.from_bytes(key[8:16], "little")
    v0, v1 = k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D
    v2, v3 = k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573

    def rounds(n: int) -> None:
        nonlocal v0, v1, v2, v3
        for _ in range(n):
            v0 = (v0 + v1) & mask
            v1 = rotl(v1, 13) ^ v0
            v0 = rotl(v0, 32)
            v2 = (v2 + v3) & mask
            v3 = rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & mask
            v3 = rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & mask
            v1 = rotl(v1, 17) ^ v2
            v2 = rotl(v2, 32)

    tail = len(message) % 8
    for i in range(0, len(message) - tail, 8):
        m = int.from_bytes(message[i : i + 8], "little")
        v3 ^= m
        rounds(2)
        v0 ^= m
    last = (len(message) & 0xFF) << 56 | int.from_bytes(message[len(message) - tail :], "little")
    v3 ^= last
    rounds(2)
    v0 ^= last
    v2 ^= 0xFF
    rounds(4)
    return (v0 ^ v1 ^ v2 ^ v3) & mask


def splitmix_finaliser(h: int) -> int:
    """The 64-bit finaliser the documented draw applies after SipHash."""
    mask = (1 << 64) - 1
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & mask
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & mask
    h ^= h >> 31
    return h


def declarations(rows: int, seed: int, start: dt.date = dt.date(2024, 1, 1), days: int = 120):
    """Canonical declarations (every column of the contract) with a planted undervaluation."""
    rng = np.random.default_rng(seed)
    lodged = pd.Timestamp(start) + pd.to_timedelta(np.sort(rng.uniform(0, days, rows)), unit="D")
    hs = rng.choice(["850440", "610910", "940360", "300490", "870323"], rows)
    mass = rng.lognormal(5, 1, rows)
    price = pd.Series(hs).map(PRICES)
    importer = rng.integers(0, 300, rows)
    fraudster = importer % 10 == 0
    under = fraudster & (rng.random(rows) < 0.6)
    value = mass * price.to_numpy() * rng.lognormal(0, 0.2, rows) * np.where(under, 0.35, 1.0)
    duty_rate = pd.Series(hs).map(
        {"850440": 0.08, "610910": 0.13, "940360": 0.0, "300490": 0.05, "870323": 0.08}
    )
    frame = pd.DataFrame(
        {
            "declaration_id": [f"S{seed}-{i:06d}" for i in range(rows)],
            "lodged_at": lodged,
            "office": rng.choice(OFFICES, rows),
            "importer": [f"IMP{i}" for i in importer],
            "declarant": [f"BRK{i}" for i in rng.integers(0, 30, rows)],
            "seller": [f"SEL{i}" for i in rng.integers(0, 200, rows)],
            "hs_code": [f"{h}{rng.integers(0, 99):02d}00" for h in hs],
            "origin_country": rng.choice(["CN", "VN", "US", "DE", "JP"], rows),
            "departure_country": rng.choice(["CN", "VN", "US", "DE", "JP"], rows),
            "transport_mode": rng.choice(["sea", "air", "road"], rows),
            "quantity": np.round(mass / 2),
            "net_mass_kg": mass,
            "declared_value": value,
            "duty_rate": duty_rate.to_numpy(),
            "declared_duty": value * duty_rate.to_numpy(),
            "aeo": (importer % 13 == 0) & ~fraudster,
        }
    )
    return frame


def undervalued(frame: pd.DataFrame) -> np.ndarray:
    """Declarations where `declarations` planted an undervaluation (value < 60 % of price)."""
    price = frame["hs_code"].astype(str).str[:6].map(PRICES).to_numpy(dtype=float)
    ratio = frame["declared_value"].to_numpy(dtype=float) / (
        frame["net_mass_kg"].to_numpy(dtype=float) * price
    )
    return ratio < 0.6


def outcomes(declared: pd.DataFrame, seed: int, control_rate: float = 0.3) -> pd.DataFrame:
    """Inspection outcomes of a random share of the declarations (hits where undervalued)."""
    rng = np.random.default_rng(seed + 1)
    under = undervalued(declared)
    controlled = rng.random(len(declared)) < control_rate
    hit = under & (rng.random(len(declared)) < 0.9) | (rng.random(len(declared)) < 0.02)
    picked = declared.loc[controlled]
    selected = picked["lodged_at"] + pd.Timedelta(hours=1)
    return pd.DataFrame(
        {
            "declaration_id": picked["declaration_id"].to_numpy(),
            "selected_at": selected.to_numpy(),
            "selection_reason": "random",
            "selection_probability": control_rate,
            "inspected": True,
            "hit": hit[controlled],
            "fraud_type": np.where(hit[controlled], "undervaluation", None),
            "revenue_recovered": np.where(
                hit[controlled], picked["declared_value"].to_numpy() * 0.1, 0.0
            ),
            "result_at": (selected + pd.Timedelta(days=7)).to_numpy(),
        }
    )


def labelled_training(feature_set: Any) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows of a FeatureSet whose outcome is known: X and y."""
    known = feature_set.y.notna().to_numpy()
    return feature_set.X.loc[known], feature_set.y[known].to_numpy(dtype=float)


def train_model(X: pd.DataFrame, y: np.ndarray, seed: int = 0, rounds: int = 30) -> Any:
    """A small real TargetingModel: XGBoost on native categories, isotonic calibration."""
    import xgboost as xgb
    from sklearn.isotonic import IsotonicRegression

    from pipeline.serve.model import Calibration, TargetingModel

    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 4, "eta": 0.2, "seed": seed, "nthread": 1},
        xgb.DMatrix(X, y, enable_categorical=True),
        num_boost_round=rounds,
    )
    raw = booster.inplace_predict(X)
    isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(raw, y)
    return TargetingModel(
        booster=booster,
        calibration=Calibration(
            "isotonic",
            list(map(float, isotonic.X_thresholds_)),
            list(map(float, isotonic.y_thresholds_)),
        ),
        feature_names=list(X.columns),
        categories=TargetingModel.categories_of(X),
    )


def thresholds_document(
    model: Any, reference: pd.DataFrame, serve: ServeConfig, descriptions: dict[str, str]
) -> dict[str, Any]:
    """An export document for `model`, cut-offs set on a scored reference window."""
    from pipeline.serve.cutoffs import Provenance, compute_cutoffs, new_document

    policy = compute_cutoffs(reference, serve, days=30.0)
    return new_document(
        policy,
        Provenance(
            model={
                "name": "test-model",
                "version": "1",
                "uri": None,
                "booster_sha256": model.booster_sha256(),
            },
            rank_by="probability",
            manifest_sha256="0" * 64,
            windows={"reference": ["2024-03-01", "2024-04-01"]},
            features={
                "config": FeaturesConfig().model_dump(mode="json"),
                "descriptions": descriptions,
            },
            snapshot={"uri": None, "path": None},
        ),
    )


def make_snapshot(history: pd.DataFrame, inspected: pd.DataFrame, config: Any) -> Any:
    """The serving snapshot of a history, as of just after its last declaration."""
    from pipeline.features import build

    as_of = pd.Timestamp(history["lodged_at"].max()) + pd.Timedelta(seconds=1)
    return build.build_snapshot(history, inspected, config, as_of)


def scored_reference(history: pd.DataFrame, feature_set: Any, model: Any) -> pd.DataFrame:
    """The declarations of `feature_set` (looked up in `history`) beside the model's scores: the
    reference window an export sets its cut-offs on."""
    from pipeline.serve.ranking import rank

    by_id = history.set_index("declaration_id").loc[feature_set.declaration_id.astype(str)]
    scores = rank(model, feature_set.X, BY_PROBABILITY).frame(feature_set.X.index)
    return pd.concat([by_id.reset_index(), scores], axis=1)


@dataclass
class Trained:
    """Declarations, their inspection outcomes and features, and a small model trained on the
    labelled rows."""

    history: pd.DataFrame
    inspected: pd.DataFrame
    feature_set: Any
    model: Any
    config: FeaturesConfig


def trained(
    history: pd.DataFrame, seed: int, rounds: int = 30, config: FeaturesConfig | None = None
) -> Trained:
    """`history` with outcomes drawn from `seed`, its features, and a model of `rounds` trees."""
    from pipeline.features import build

    config = config or FeaturesConfig()
    inspected = outcomes(history, seed=seed)
    feature_set = build.build_feature_set(history, inspected, config)
    X, y = labelled_training(feature_set)
    return Trained(history, inspected, feature_set, train_model(X, y, rounds=rounds), config)


@dataclass
class Logged:
    """A scorer exported to a folder and logged to MLflow: its run, its URI and what it serves."""

    run_id: str
    uri: str
    snapshot: Any
    thresholds: Any


def logged_scorer(world: Trained, folder: Path, threads: int | None = None) -> Logged:
    """`world`'s model exported to `folder` (cut-offs set on its whole feature window, its
    features config recorded) and logged as the scorer of a new run of the current experiment
    (with `threads` recorded, as an export records `compute.threads`)."""
    import mlflow

    from pipeline.serve.thresholds import Thresholds
    from pipeline.tracking import log_scorer

    reference = scored_reference(world.history, world.feature_set, world.model)
    document = thresholds_document(world.model, reference, serve_config(), {})
    document["features"]["config"] = world.config.model_dump(mode="json")
    thresholds = Thresholds(document)
    snapshot = make_snapshot(world.history, world.inspected, world.config)
    world.model.save(folder / "model")
    snapshot.save(folder / "snapshot")
    thresholds.save(folder / "selectivity.json")
    with mlflow.start_run() as run:
        run_id = run.info.run_id
    uri = log_scorer(
        run_id, folder / "model", folder / "snapshot", folder / "selectivity.json", threads=threads
    )
    return Logged(run_id, uri, snapshot, thresholds)
