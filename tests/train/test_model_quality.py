"""Model quality: raw categories of any cardinality, the round cap, feature families chosen on
validation, a study keyed on what it tunes, and the deployed refit on every known label."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from helpers.features import simulated, small_config
from helpers.train import feature_set, train_config

from pipeline.features.build import (
    attach,
    build_feature_set,
    build_snapshot,
    feature_families,
)
from pipeline.plan import RefitRule, data_span, lay_refit, make_windows
from pipeline.train.engine import cap_warning
from pipeline.train.fit import fit, refit, refit_rounds
from pipeline.train.select import select_families
from pipeline.train.split import rows_in
from pipeline.train.tune import study_key


def test_any_declaration_column_enters_as_a_category_and_unseen_levels_become_missing() -> None:
    declarations, outcomes = simulated()
    config = small_config(raw_categories=["hs6", "seller", "office"], raw_ids=["importer"])
    cut = declarations["lodged_at"].quantile(0.8)
    past = declarations.loc[declarations["lodged_at"] < cut]
    fs = build_feature_set(past, outcomes, config)
    for column in ("hs6", "seller", "importer", "office_code"):
        assert isinstance(fs.X[column].dtype, pd.CategoricalDtype)
    assert fs.X["seller"].cat.categories.size > 100  # no cap on the number of levels
    family = feature_families(fs.manifest, config)
    assert family["importer"] == "id_importer" and family["hs6"] == "raw"
    assert "hs2" not in fs.X.columns  # only the listed columns

    new = declarations.loc[declarations["lodged_at"] >= cut].head(50).copy()
    new["seller"] = "never-seen-seller"
    snapshot = build_snapshot(past, outcomes, config, as_of=cut)
    served = attach(new, snapshot, config)
    assert len(served) == len(new)
    assert served.X["seller"].isna().all()  # an unseen level reaches the trees as missing
    assert served.X["hs6"].notna().any()


def test_boosting_near_the_round_cap_is_warned(tmp_path: Path) -> None:
    fs = feature_set(seed=4)
    capped = train_config(tmp_path, train={"num_boost_round": 5, "early_stopping_rounds": 50})
    result = fit(fs, make_windows(fs.lodged_at, capped.split), capped.train.params, capped)
    expected = cap_warning(result.log.best_iteration, 5, "final fit")
    assert result.log.warnings == ([expected] if expected else [])
    assert "train.num_boost_round=5" in str(cap_warning(4, 5, "final fit"))
    assert cap_warning(10, 1000, "x") is None


def test_families_are_chosen_on_the_tuning_folds_with_an_effect_each(tmp_path: Path) -> None:
    fs = feature_set(rows=5_000, seed=5)
    config = train_config(tmp_path, split={"folds": 2}, evaluate={"bootstrap": 50})
    windows = make_windows(fs.lodged_at, config.split)
    first = select_families(fs, windows, dict(config.train.params), config)
    again = select_families(fs, windows, dict(config.train.params), config)
    assert first.effects.equals(again.effects)  # seeded: the same choice every time
    assert set(first.effects["family"]) == {"raw", "profiles", "valuation"}
    valuation = first.effects.set_index("family").loc["valuation"]
    # undervaluation carries most of the signal: it joins the raw columns; the figure is the
    # selection's own (in sample, no interval: evaluate.families measures it on the test window)
    assert valuation["effect"] > 0.02 and "low" not in first.effects.columns
    assert "valuation" in first.kept
    assert first.columns == [c for c in fs.X.columns if c in first.columns]
    assert valuation["ap_with"] == first.ap_chosen  # what it adds to the chosen set


def test_the_study_key_changes_with_what_is_tuned(tmp_path: Path) -> None:
    fs = feature_set(rows=2_000, seed=6)
    config = train_config(tmp_path)
    windows = make_windows(fs.lodged_at, config.split)
    key = study_key(config, list(fs.X.columns), windows)
    assert key == study_key(config, list(fs.X.columns), windows)
    assert key != study_key(config, list(fs.X.columns)[:-1], windows)
    other = config.model_copy(update={"tune": config.tune.model_copy(update={"at_rate": 0.1})})
    assert key != study_key(other, list(fs.X.columns), windows)


def test_the_refit_learns_from_labels_the_evaluated_model_never_saw(tmp_path: Path) -> None:
    fs = feature_set(rows=6_000, seed=7)
    config = train_config(tmp_path)
    windows = make_windows(fs.lodged_at, config.split)
    evaluated = fit(fs, windows, dict(config.train.params), config)
    end = data_span(fs.lodged_at)[1]
    spans = lay_refit(fs, windows.train.start, end, RefitRule(config.split.calibration_days))
    deployed = refit(fs, spans, evaluated, config)

    assert spans.train.start == windows.train.start
    # it trains past the evaluated model's validation and calibration windows, and calibrates on
    # the latest labelled stretch, inside the evaluated model's test window
    assert spans.train.end > windows.valid.end
    assert spans.calibration.start == spans.train.end
    assert spans.calibration.end > windows.test.start
    seen = rows_in(fs, windows.train, windows.labels_known_by(windows.train))
    learned = rows_in(fs, spans.train, spans.labels_known_by)
    assert (learned & ~seen).sum() > 1_000  # labels only the refit saw
    assert not (pd.to_datetime(fs.label_known_at)[learned] >= spans.labels_known_by).any()

    trees = deployed.model.booster.num_boosted_rounds()
    assert trees == deployed.log.trees
    assert trees == refit_rounds(
        evaluated.log.best_iteration, evaluated.log.rows["train"].fitted, learned.sum()
    )
    assert trees > evaluated.log.best_iteration + 1  # more data, more trees
    info = deployed.model.info
    assert info.role == "deployed" and evaluated.model.info.role == "evaluated"
    assert info.windows == windows and info.best_iteration == evaluated.log.best_iteration
    assert info.refit is not None and info.refit_trees == trees
    assert info.to_dict()["evaluated"]["windows"] == windows.as_dict()
    proba = deployed.model.predict_proba(fs.X)
    assert np.isfinite(proba).all() and ((proba >= 0) & (proba <= 1)).all()
    assert deployed.model.booster_sha256() != evaluated.model.booster_sha256()


def test_the_refit_records_its_own_facts_and_calibrates_on_enough_hits(tmp_path: Path) -> None:
    fs = feature_set(rows=6_000, seed=7)
    config = train_config(tmp_path, train={"min_calibration_hits": 40})
    windows = make_windows(fs.lodged_at, config.split)
    evaluated = fit(fs, windows, dict(config.train.params), config)
    spans = lay_refit(fs, windows.train.start, data_span(fs.lodged_at)[1], RefitRule.of(config))
    deployed = refit(fs, spans, evaluated, config)

    cal = rows_in(fs, spans.calibration, spans.labels_known_by)
    assert fs.y.to_numpy(dtype=float)[cal].sum() >= 40  # reached back for hits
    assert spans.calibration.days >= config.split.calibration_days
    assert spans.selection is not None and spans.selection.end == spans.calibration.start
    info, log = deployed.model.info, deployed.log
    # its own anchoring, calibration and selection texts, not copies of the evaluated model's
    assert info.anchoring == log.anchoring and info.calibration == log.calibration
    assert info.selection_correction == log.selection_correction
    if "anchored on" in str(log.anchoring):
        assert info.anchoring != evaluated.model.info.anchoring
    assert "evaluated" not in str(info.anchoring)
    loaded = type(info).from_dict(info.to_dict())
    assert loaded.anchoring == info.anchoring and loaded.refit is not None
    assert loaded.refit.calibration.start == spans.calibration.start
    assert loaded.refit.selection is not None
    assert loaded.refit.selection.start == spans.selection.start
