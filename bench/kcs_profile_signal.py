"""Do KCS's entity profiles carry risk from one quarter to the next? Per quarter, how well each
profile feature alone ranks the quarter's hits (ROC AUC; 0.5: no signal).

The feature set is `configs/kcs.yaml`'s (as-of profiles, hierarchical shrinkage, decayed
profiles and the depth of history): a trader's smoothed hit rate that ranked hits above misses
would be the signal a profile family brings; an AUC of 0.5 in every quarter says that the
synthetic data's traders do not carry their risk forward, whatever the profiles' construction.
Writes bench/results/kcs_profile_signal.json.

    .venv/bin/python bench/kcs_profile_signal.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from pipeline.config import load
from pipeline.features.build import build_feature_set
from pipeline.ingest.readers import load_inputs

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "kcs_profile_signal.json"
FEATURES = (
    "importer_hit_rate",
    "importer_hit_rate_hl90",
    "declarant_hit_rate",
    "declarant_hit_rate_hl90",
    "seller_hit_rate",
    "seller_hit_rate_hl90",
    "importer_x_hs6_hit_rate",
    "kcs_courier_id_hit_rate",
    "hs6_hit_rate",
    "hs6_hit_rate_hl90",
    "origin_country_x_hs6_hit_rate",
    "importer_controls",
    "history_depth_days",
    "importer_days_known",
)


def main() -> None:
    config = load(ROOT / "configs" / "kcs.yaml")
    inputs = load_inputs(config)
    fs = build_feature_set(inputs.declarations, inputs.outcomes, config.features)
    y = fs.y.to_numpy()
    quarter = fs.lodged_at.dt.to_period("Q").astype(str).to_numpy()
    results: dict[str, dict[str, float]] = {}
    for name in sorted(set(quarter)):
        rows = (quarter == name) & np.isfinite(y)
        figures = {"declarations": float(rows.sum()), "hit_rate": float(y[rows].mean())}
        for feature in FEATURES:
            values = fs.X[feature].to_numpy(np.float64)[rows]
            known = np.isfinite(values)
            figures[feature] = float(roc_auc_score(y[rows][known], values[known]))
        results[name] = figures
    for feature in FEATURES:
        print(f"{feature:<32}" + "".join(f"{results[q][feature]:>8.3f}" for q in results))
    RESULTS.write_text(json.dumps({"auc_by_quarter": results}, indent=2), encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
