"""Do KCS traders carry a signal of their own? The AUC of each key's hit rate on later quarters.

For each profile or target-statistic key of `configs/kcs.yaml` (importer, declarant, seller,
office, courier, hs6...), two hit rates rank the declarations of 2020 Q4 and 2021 Q1:

- ``as of lodging``: the feature the pipeline builds (`<key>_hit_rate`, outcomes known before
  each declaration's lodging, shrunk towards its parent level);
- ``training window``: the key's hit rate over January-July 2020 (the evaluated model's training
  window), with the same prior strength towards the window's rate: what a static target encoding
  learnt on the training rows would give.

An AUC near 0.5 means the key's past hit rate says nothing about its later declarations. Prints
the table and writes bench/results/kcs_entities.json.

    .venv/bin/python bench/kcs_entities.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from pipeline.config import load
from pipeline.features import profiles
from pipeline.features.build import build_feature_set
from pipeline.ingest.readers import load_inputs

ROOT = Path(__file__).resolve().parent.parent
QUARTERS = {"2020 Q4": ("2020-10-01", "2021-01-01"), "2021 Q1": ("2021-01-01", "2021-04-01")}
TRAIN = ("2020-01-01", "2020-08-01")


def _static_rate(keys: pd.Series, y: np.ndarray, train: np.ndarray, prior: float) -> pd.Series:
    """Each level's hit rate over the training rows, shrunk towards their rate."""
    base = float(y[train].mean())
    sums = pd.Series(y[train]).groupby(keys[train].to_numpy()).agg(["sum", "count"])
    rate = (sums["sum"] + prior * base) / (sums["count"] + prior)
    return keys.map(rate).astype(float).fillna(base)


def main() -> None:
    config = load(ROOT / "configs" / "kcs.yaml")
    inputs = load_inputs(config)
    declarations, outcomes = inputs.declarations, inputs.outcomes
    fs = build_feature_set(declarations, outcomes, config.features)
    decl = declarations.set_index("declaration_id").loc[fs.declaration_id.to_numpy()]
    y = fs.y.to_numpy(dtype=float)
    lodged = pd.to_datetime(fs.lodged_at).reset_index(drop=True)
    train = ((lodged >= TRAIN[0]) & (lodged < TRAIN[1])).to_numpy()
    rows = []
    for key in profiles.profile_keys(config.features):
        name = profiles.key_name(key)
        keys = decl[list(key)].astype(str).agg("|".join, axis=1).reset_index(drop=True)
        static = _static_rate(keys, y, train, config.features.prior_strength)
        for quarter, (start, end) in QUARTERS.items():
            rows_in = ((lodged >= start) & (lodged < end)).to_numpy() & ~np.isnan(y)
            as_of = np.nan_to_num(fs.X[f"{name}_hit_rate"].to_numpy(dtype=float)[rows_in], nan=-1)
            rows.append(
                {
                    "key": name,
                    "quarter": quarter,
                    "as of lodging": round(float(roc_auc_score(y[rows_in], as_of)), 3),
                    "training window": round(float(roc_auc_score(y[rows_in], static[rows_in])), 3),
                }
            )
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    out = ROOT / "bench" / "results" / "kcs_entities.json"
    out.write_text(json.dumps({"command": "bench/kcs_entities.py", "auc": rows}, indent=2))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
