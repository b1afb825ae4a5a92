"""Builders for the evaluation tests: a small FeatureSet with selective labels, a random stratum
and ground truth; canonical declarations row-aligned with it; a small real TargetingModel."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Config, RuleConfig
from pipeline.features.featureset import FeatureSet

START = pd.Timestamp("2024-01-01")
WINDOWS = {
    "train": {"start": "2024-01-01", "end": "2024-02-15"},
    "valid": {"start": "2024-02-15", "end": "2024-03-10"},
    "calibration": {"start": "2024-03-10", "end": "2024-03-24"},
    "test": {"start": "2024-03-24", "end": "2024-04-30"},
}
OFFICES = ("ICN01", "PUS02", "SEL03", "GMP04")
CHAPTERS = ("61", "85", "94", "30", "87", "39")
RANDOM_PROBABILITY = 0.05


def world(rows: int = 6_000, seed: int = 0, leak: bool = False) -> dict[str, Any]:
    """Declarations, ground truth and the FeatureSet built from them (selective labels).

    The historical policy controls chapters 61 and 85 often, the rest rarely, plus a random
    stratum with a known probability. With `leak`, a feature copies the outcome.
    """
    rng = np.random.default_rng(seed)
    lodged = START + pd.to_timedelta(np.sort(rng.uniform(0, 120, rows)), unit="D")
    importer = rng.integers(0, 400, rows)
    importer_risk = rng.beta(1, 12, 400)[importer]
    chapter = rng.choice(CHAPTERS, rows)
    value = rng.lognormal(8, 1, rows)
    duty = (
        pd.Series(chapter)
        .map({"61": 0.13, "85": 0.08, "94": 0.0, "30": 0.05, "87": 0.08, "39": 0.065})
        .to_numpy()
    )
    unit_ratio = rng.lognormal(0, 0.3, rows)
    logit = -3.6 + 9 * importer_risk + 1.8 * (unit_ratio < 0.7) + 0.6 * (chapter == "61")
    fraud = rng.random(rows) < 1 / (1 + np.exp(-logit))
    found = fraud & (rng.random(rows) < 0.85)
    recoverable = np.where(fraud, value * np.maximum(duty, 0.02) * rng.uniform(0.2, 0.6, rows), 0.0)
    drawn = rng.random(rows) < RANDOM_PROBABILITY
    ruled = np.isin(chapter, ["61", "85"]) & (rng.random(rows) < 0.12)
    other = rng.random(rows) < 0.01
    controlled = drawn | ruled | other
    reason = np.where(
        drawn, "random", np.where(ruled, "rule", np.where(other, "intelligence", None))
    )
    ids = pd.Series([f"E{seed}-{i:06d}" for i in range(rows)], dtype="string")
    office = rng.choice(OFFICES, rows, p=[0.4, 0.3, 0.2, 0.1])
    origin = rng.choice(["CN", "VN", "US", "DE"], rows)
    aeo = (importer % 17 == 0) & (importer_risk < 0.05)
    declarations = pd.DataFrame(
        {
            "declaration_id": ids,
            "lodged_at": lodged,
            "office": office,
            "importer": [f"IMP{i}" for i in importer],
            "declarant": [f"BRK{i}" for i in rng.integers(0, 25, rows)],
            "seller": [f"SEL{i}" for i in rng.integers(0, 300, rows)],
            "hs_code": [f"{c}{rng.integers(10, 99)}10" for c in chapter],
            "origin_country": origin,
            "aeo": aeo,
            "declared_value": value,
        }
    )
    truth = pd.DataFrame(
        {
            "declaration_id": ids,
            "fraud": fraud,
            "fraud_type": np.where(fraud, "undervaluation", "none"),
            "revenue_recoverable": recoverable,
            "critical": False,
        }
    )
    y = np.where(controlled, found.astype(float), np.nan)
    X = pd.DataFrame(
        {
            "office": pd.Categorical(office),
            "hs2": pd.Categorical(chapter),
            "origin_country": pd.Categorical(origin),
            "log_declared_value": np.log(value),
            "duty_rate": duty,
            "importer_hit_rate": importer_risk + rng.normal(0, 0.02, rows),
            "unit_value_ratio": unit_ratio,
            "importer_tenure_days": rng.uniform(0, 900, rows),
        }
    )
    stages = ["raw", "raw", "raw", "raw", "raw", "profiles", "valuation", "history"]
    if leak:
        X["result_code"] = np.nan_to_num(y, nan=0.5) + rng.normal(0, 0.01, rows)
        stages.append("history")
    manifest = pd.DataFrame(
        {
            "name": list(X.columns),
            "dtype": [str(t) for t in X.dtypes],
            "stage": stages,
            "description": [f"feature {c}" for c in X.columns],
        }
    )
    features = FeatureSet(
        X=X,
        declaration_id=ids,
        lodged_at=pd.Series(lodged),
        office=pd.Series(office, dtype="string"),
        y=pd.Series(y),
        revenue_recovered=pd.Series(
            np.where(controlled, np.where(found, recoverable, 0.0), np.nan)
        ),
        sample_weight=pd.Series(np.where(drawn, 1 / RANDOM_PROBABILITY, 1.0)),
        selection_reason=pd.Series(reason, dtype="string"),
        label_known_at=pd.Series(lodged + pd.Timedelta(days=10)).where(controlled),
        manifest=manifest,
    )
    return {"features": features, "declarations": declarations, "ground_truth": truth}


def train_model(features: FeatureSet, seed: int = 0, rounds: int = 25) -> Any:
    """A small real TargetingModel on the labelled rows of the training window (isotonic)."""
    import xgboost as xgb
    from sklearn.isotonic import IsotonicRegression

    from pipeline.plan import Windows
    from pipeline.serve.model import Calibration, ModelInfo, TargetingModel

    lodged = features.lodged_at
    train = (
        lodged < pd.Timestamp(WINDOWS["train"]["end"])
    ).to_numpy() & features.labelled.to_numpy()
    calib = (
        (lodged >= pd.Timestamp(WINDOWS["calibration"]["start"]))
        & (lodged < pd.Timestamp(WINDOWS["calibration"]["end"]))
    ).to_numpy() & features.labelled.to_numpy()
    X = features.X
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "seed": seed, "nthread": 1},
        xgb.DMatrix(X[train], features.y[train], enable_categorical=True),
        num_boost_round=rounds,
    )
    raw = booster.inplace_predict(X[calib])
    isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(
        raw, features.y[calib]
    )
    return TargetingModel(
        booster=booster,
        calibration=Calibration(
            "isotonic",
            [float(v) for v in isotonic.X_thresholds_],
            [float(v) for v in isotonic.y_thresholds_],
        ),
        feature_names=list(X.columns),
        categories=TargetingModel.categories_of(X),
        info=ModelInfo(windows=Windows.from_dict(WINDOWS), best_iteration=rounds - 1),
    )


def config(tmp_path: Path, **evaluate: Any) -> Config:
    """A config writing under tmp_path; quick bootstrap; one rule on chapter 61."""
    cfg = Config(output_dir=tmp_path / "out")
    cfg.evaluate = cfg.evaluate.model_copy(
        update={
            "bootstrap": 50,
            "shap_sample": 400,
            "top_dependence": 2,
            "red_waterfalls": 2,
            "rules": [RuleConfig(name="textiles", column="hs_code", prefix=["61"])],
            **evaluate,
        }
    )
    cfg.train = cfg.train.model_copy(update={"num_boost_round": 20})
    cfg.compute = cfg.compute.model_copy(update={"threads": 1})
    return cfg


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def chromium() -> str:
    """Path of Debian's chromium, installed with apt-get when absent (tests run as root)."""
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if found:
        return found
    subprocess.run(["apt-get", "update"], check=True, capture_output=True, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
        check=True,
        capture_output=True,
        timeout=900,
    )
    return shutil.which("chromium") or "/usr/bin/chromium"


PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var out = document.createElement('div');
  out.id = 'probe';
  out.setAttribute('data-images', String(imgs.length));
  out.setAttribute('data-decoded', String(ok));
  out.setAttribute('data-sections', String(document.querySelectorAll('section').length));
  document.body.appendChild(out);
});
</script>"""


def headless_dom(
    page: Path, profile: Path, budget_ms: int, *flags: str
) -> subprocess.CompletedProcess[str]:
    """`page` opened in headless Chromium (its own `profile`, `budget_ms` of virtual time, any
    further `flags`): the finished DOM on stdout."""
    return subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            *flags,
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def rendered_images(html: str, folder: Path) -> dict[str, int]:
    """Open a copy of the report in headless Chromium; count images and decoded images."""
    import re

    page = folder / "probe.html"
    page.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    result = headless_dom(page, folder / "chromium-profile", 10_000)
    match = re.search(
        r'id="probe" data-images="(\d+)" data-decoded="(\d+)" data-sections="(\d+)"', result.stdout
    )
    if match is None:
        raise AssertionError(f"no probe in Chromium's DOM; stderr: {result.stderr[-2000:]}")
    images, decoded, sections = (int(g) for g in match.groups())
    return {"images": images, "decoded": decoded, "sections": sections}


def assessed_against_champion(
    made: dict[str, Any], config: Config, local_ids: tuple[str, ...] = ()
) -> tuple[Any, Any]:
    """A model trained on `made` (a `world`) and its review against a 5-round champion, with
    the world's declarations and truth, as run `run-under-review`: (model, assessment)."""
    from pipeline.evaluate.assess import Review, assess

    model = train_model(made["features"])
    champion = train_model(made["features"], seed=1, rounds=5)
    review = Review(
        declarations=made["declarations"],
        ground_truth=made["ground_truth"],
        champion=("champion v1", champion),
        run_id="run-under-review",
        local_ids=local_ids,
    )
    return model, assess(model, made["features"], config, review)


# --- an experiment on simulated data, trained and tracked for the job tests ---------------------


def features_from(declarations: pd.DataFrame, outcomes: pd.DataFrame) -> FeatureSet:
    """A small FeatureSet from canonical tables: raw columns and one valuation feature.

    Not the project's feature builder (tested on its own): enough columns for a model that
    ranks better than chance, with labels, weights and selection reasons from the outcomes.
    """
    decl = declarations.sort_values(["lodged_at", "declaration_id"], kind="stable").reset_index(
        drop=True
    )
    found = outcomes.drop_duplicates("declaration_id").set_index("declaration_id")
    out = found.reindex(decl["declaration_id"].astype(str).to_numpy())
    inspected = out["inspected"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    unit = np.log(decl["declared_value"].clip(lower=1e-3) / decl["net_mass_kg"].clip(lower=1e-3))
    hs6 = decl["hs_code"].astype(str).str[:6]
    X = pd.DataFrame(
        {
            "customs_office": decl["office"].astype("string").astype("category"),
            "hs2": decl["hs_code"].astype(str).str[:2].astype("category"),
            "origin_country": decl["origin_country"].astype("string").astype("category"),
            "transport_mode": decl["transport_mode"].astype("string").astype("category"),
            "log_declared_value": np.log1p(decl["declared_value"].to_numpy(dtype=float)),
            "duty_rate": decl["duty_rate"].to_numpy(dtype=float),
            "aeo": decl["aeo"].astype(float).to_numpy(),
            "unit_value_gap": (unit - unit.groupby(hs6).transform("median")).to_numpy(),
        }
    )
    manifest = pd.DataFrame(
        {
            "name": list(X.columns),
            "dtype": [str(t) for t in X.dtypes],
            "stage": ["raw"] * 7 + ["valuation"],
            "description": [f"{c} of the declaration" for c in X.columns],
        }
    )
    reason = out["selection_reason"].astype("string").where(inspected)
    probability = out["selection_probability"].to_numpy(dtype=float)
    weight = np.where((reason == "random").fillna(False) & (probability > 0), 1 / probability, 1.0)
    return FeatureSet(
        X=X,
        declaration_id=decl["declaration_id"].astype("string"),
        lodged_at=decl["lodged_at"],
        office=decl["office"].astype("string"),
        y=pd.Series(np.where(inspected, out["hit"].to_numpy(dtype=float), np.nan)),
        revenue_recovered=pd.Series(
            np.where(inspected, out["revenue_recovered"].to_numpy(dtype=float), np.nan)
        ),
        sample_weight=pd.Series(weight),
        selection_reason=reason.reset_index(drop=True),
        label_known_at=pd.Series(pd.to_datetime(out["result_at"]).where(inspected).to_numpy()),
        manifest=manifest,
    )


def experiment_config(tmp_path: Path, seed: int = 5) -> Config:
    """A small simulated experiment tracked in a SQLite MLflow store under tmp_path."""
    from pipeline.config import load

    return load(
        None,
        [
            f"output_dir={tmp_path / 'out'}",
            f"seed={seed}",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            "tracking.experiment=evaluate-tests",
            "tracking.registered_model=evaluate-tests-model",
            "simulate.rows=9000",
            "simulate.days=240",
            "simulate.importers=700",
            "simulate.sellers=500",
            "simulate.declarants=40",
            "simulate.offices=4",
            "simulate.random_rate=0.03",
            "split.calibration_days=20",
            "split.valid_days=30",
            "split.test_days=45",
            "split.gap_days=14",
            "tune.n_trials=0",
            "train.num_boost_round=40",
            "train.early_stopping_rounds=10",
            "compute.threads=1",
            "evaluate.bootstrap=40",
            "evaluate.shap_sample=300",
            "evaluate.top_dependence=1",
            "evaluate.red_waterfalls=1",
            # the jobs' tests use a hand-made feature set (`features_from`) that the serving
            # snapshot cannot rebuild: the walk-forward has its own tests on real features
            "evaluate.walk_forward_cutoffs=0",
        ],
    )


def simulated_tables(config: Config) -> Any:
    """Simulate the experiment's declarations and write the canonical tables where jobs read."""
    from pipeline.ingest.readers import write_table
    from pipeline.simulate import simulate

    data = simulate(config.simulate, config.seed)
    write_table(data.declarations, config.paths.declarations)
    write_table(data.outcomes, config.paths.outcomes)
    write_table(data.ground_truth, config.paths.ground_truth)
    return data


def train_and_track(config: Config, data: Any, params: dict[str, Any] | None = None) -> Any:
    """Build features, fit with train.fit, log the run with tracking; returns RunInfo."""
    from pipeline import tracking
    from pipeline.plan import make_windows
    from pipeline.train.fit import fit

    features = features_from(data.declarations, data.outcomes)
    features.to_parquet(config.paths.features, config.paths.manifest)
    windows = make_windows(features.lodged_at, config.split)
    result = fit(features, windows, params or dict(config.train.params), config)
    with tracking.start_parent_run(config) as _:
        trained_on = tracking.TrainedOn(features.manifest, "test-data", features.X.head(50))
        info = tracking.log_training(config, result, trained_on)
    tracking.write_last_run(config, info)
    return info
