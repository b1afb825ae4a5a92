"""Feature-family effects measured out of sample: the frozen choice refitted with each family
changed and scored on the test window; the selection's own fold figures only as a diagnostic."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.train import feature_set, train_config

from pipeline.evaluate import assess as a
from pipeline.evaluate.families import CHOSEN, arm_margins, family_ablation
from pipeline.features.featureset import FeatureSet
from pipeline.plan import make_windows
from pipeline.serve.model import FamiliesKept
from pipeline.train.fit import fit
from pipeline.train.select import ablation_arms, select_families


def _with_a_noise_family(fs: FeatureSet) -> FeatureSet:
    """`fs` with a `calendar` family of one column that carries nothing."""
    noise = np.random.default_rng(11).normal(size=len(fs.X))
    manifest = pd.concat(
        [
            fs.manifest,
            pd.DataFrame(
                {"name": ["day_noise"], "dtype": ["float64"], "stage": ["calendar"]},
            ),
        ],
        ignore_index=True,
    )
    return replace(fs, X=fs.X.assign(day_noise=noise), manifest=manifest)


@pytest.fixture(scope="module")
def chosen(tmp_path_factory: pytest.TempPathFactory) -> dict:
    fs = _with_a_noise_family(feature_set(rows=6_000, seed=5))
    config = train_config(
        Path(tmp_path_factory.mktemp("families")), split={"folds": 2}, evaluate={"bootstrap": 100}
    )
    windows = make_windows(fs.lodged_at, config.split)
    selection = select_families(fs, windows, dict(config.train.params), config)
    model = fit(fs.select(selection.columns), windows, dict(config.train.params), config).model
    model.info = replace(model.info, families=FamiliesKept.from_dict(selection.as_dict()))
    test_rows = windows.test.contains(fs.lodged_at)
    y = fs.y.to_numpy(dtype=float)[test_rows]
    labelled = np.isfinite(y)
    spans = {w.name: w for w in windows.ordered()}
    ablation = family_ablation(
        model, fs, spans, test_rows, {"inspected": (labelled, y[labelled])}, config
    )
    return {
        "fs": fs,
        "config": config,
        "selection": selection,
        "model": model,
        "spans": spans,
        "test_rows": test_rows,
        "ablation": ablation,
    }


def test_every_family_gets_an_effect_on_the_test_window_with_an_interval(chosen: dict) -> None:
    selection, ablation = chosen["selection"], chosen["ablation"]
    effects = ablation.effects.set_index("family")
    assert set(effects.index) == {"raw", "profiles", "valuation", "calendar"}
    assert ablation.refits == 1 + len(effects)  # the chosen set, then one refit per family
    for family, row in effects.iterrows():
        assert row["kept"] == (family in selection.kept)
        assert row["low"] <= row["effect"] <= row["high"]
        assert row["effect"] == pytest.approx(row["ap_with"] - row["ap_without"])
    # undervaluation carries most of the signal: out of sample too, its interval is above 0
    assert effects.loc["valuation", "kept"] and effects.loc["valuation", "low"] > 0
    # a family of pure noise adds nothing on rows the choice never saw (on these folds the
    # selection kept it: its in-sample effect is above 0 by construction)
    assert effects.loc["calendar", "low"] <= 0 <= effects.loc["calendar", "high"]


def test_the_ablation_refits_the_frozen_choice_and_not_the_selection_folds(chosen: dict) -> None:
    fs, config, model = chosen["fs"], chosen["config"], chosen["model"]
    columns, arms = ablation_arms(fs, model.feature_names, config.features)
    assert columns == model.feature_names
    for arm in arms:
        changed = set(arm.columns) ^ set(columns)
        assert changed and all(
            fs.manifest.set_index("name").loc[c, "stage"] == arm.family for c in changed
        )
    margins, _, notes = arm_margins(model, fs, chosen["spans"], chosen["test_rows"], config)
    assert not notes and set(margins) == {
        CHOSEN,
        *(f"{'without' if a.kept else 'with'} {a.family}" for a in arms),
    }
    assert all(len(m) == int(chosen["test_rows"].sum()) for m in margins.values())
    # the in-sample effect and the out-of-sample one are different measurements
    in_sample = chosen["selection"].effects.set_index("family")["effect"]
    out = chosen["ablation"].effects.set_index("family")["effect"]
    assert not np.allclose(in_sample.loc[out.index].to_numpy(), out.to_numpy())


def test_the_in_sample_table_is_a_labelled_diagnostic_without_intervals(chosen: dict) -> None:
    assert "low" not in chosen["selection"].effects.columns
    table = a.family_effects(chosen["model"].info)
    assert not [c for c in table.columns if "95 %" in str(c)]
    assert "fold AP it adds (in sample)" in table.columns
    shown = a.family_table(chosen["ablation"])
    assert {"test AP it adds", "low (95 %)", "high (95 %)", "in the model"} <= set(shown.columns)


def test_the_ablation_can_be_turned_off(chosen: dict) -> None:
    config = chosen["config"]
    off = config.model_copy(
        update={"evaluate": config.evaluate.model_copy(update={"family_ablation": False})}
    )
    ablation = family_ablation(
        chosen["model"], chosen["fs"], chosen["spans"], chosen["test_rows"], {}, off
    )
    assert ablation.effects.empty and ablation.refits == 0 and ablation.notes
