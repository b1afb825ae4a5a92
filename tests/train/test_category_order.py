"""train.category_order hit_rate: category levels sorted by their shrunk hit rate in the training
window, taken by the trees as positions, the same at training, refit, tuning and serving."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from helpers.train import feature_set, train_config
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline.plan import RefitRule, data_span, lay_refit, make_windows
from pipeline.serve.model import TargetingModel, level_positions
from pipeline.train.fit import fit, refit
from pipeline.train.rows import WindowRows, hit_rate_order
from pipeline.train.split import rows_in
from pipeline.train.tune import CONVENTIONAL, best_params, run_study


def _rows(levels: list[str], y: list[float], weight: list[float] | None = None) -> WindowRows:
    n = len(levels)
    return WindowRows(
        X=pd.DataFrame({"hs2": pd.Categorical(levels)}),
        y=np.asarray(y, dtype=float),
        weight=np.ones(n) if weight is None else np.asarray(weight, dtype=float),
        revenue=np.zeros(n),
    )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("ABCDE"), st.booleans()), min_size=1, max_size=60),
    st.floats(0, 200),
)
def test_levels_are_sorted_by_their_shrunk_hit_rate(
    rows: list[tuple[str, bool]], prior: float
) -> None:
    levels = [level for level, _ in rows]
    y = [float(hit) for _, hit in rows]
    kept = sorted(set(levels))
    order = hit_rate_order(_rows(levels, y), {"hs2": kept}, prior)["hs2"]
    base = float(np.mean(y))
    frame = pd.DataFrame({"level": levels, "y": y}).groupby("level")["y"].agg(["sum", "count"])
    rate = ((frame["sum"] + prior * base) / (frame["count"] + prior)).round(12)
    assert sorted(order) == kept
    rates = [rate[level] for level in order]
    assert all(a <= b for a, b in itertools.pairwise(rates))
    for a, b in itertools.pairwise(order):  # ties: by name, reproducibly
        if rate[a] == rate[b]:
            assert a < b


def test_the_prior_pulls_a_small_level_towards_the_window_rate() -> None:
    # "C": 2 declarations, both hits; "B": 400 declarations, 30 % hits; "A": 400, 5 %.
    levels = ["C"] * 2 + ["B"] * 400 + ["A"] * 400
    y = [1.0] * 2 + [1.0] * 120 + [0.0] * 280 + [1.0] * 20 + [0.0] * 380
    kept = {"hs2": ["A", "B", "C"]}
    assert hit_rate_order(_rows(levels, y), kept, prior=0)["hs2"] == ["A", "B", "C"]
    # shrunk by 50 declarations towards the window's 17.7 %, two hits no longer rank first
    assert hit_rate_order(_rows(levels, y), kept, prior=50)["hs2"] == ["A", "C", "B"]
    # weights count as the trees count them: C weighted up 100-fold keeps its lead
    weight = [100.0] * 2 + [1.0] * 800
    assert hit_rate_order(_rows(levels, y, weight), kept, prior=50)["hs2"][-1] == "C"


def test_positions_are_numbers_and_an_unknown_level_is_missing() -> None:
    frame = pd.DataFrame(
        {"hs2": pd.Categorical(["85", "39", None, "99"], categories=["39", "85"]), "v": 1.0}
    )
    out = level_positions(frame, ["hs2"])
    assert out["hs2"].dtype == np.float64
    np.testing.assert_array_equal(out["hs2"].to_numpy(), [1.0, 0.0, np.nan, np.nan])
    assert out["v"].tolist() == [1.0] * 4


def test_a_hit_rate_model_serves_as_it_trained_and_its_refit_sorts_its_own_window(
    tmp_path: Path,
) -> None:
    fs = feature_set(rows=6_000, seed=7)
    config = train_config(tmp_path, train={"category_order": "hit_rate", "category_prior": 20})
    windows = make_windows(fs.lodged_at, config.split)
    evaluated = fit(fs, windows, dict(config.train.params), config)
    model = evaluated.model
    assert model.ordered == ["hs2", "office_code"] and evaluated.log.category_order == "hit_rate"
    # chapter 85 carries the planted risk: it sorts last among the chapters
    assert model.categories["hs2"][-1] == "85"
    # serving rows (strings, an unseen chapter among them) reach the trees as positions
    served = fs.X.head(50).astype({"hs2": "string", "office_code": "string"})
    served.loc[0, "hs2"] = "00"
    prepared = model.prepare(served)
    assert prepared["hs2"].dtype == np.float64 and np.isnan(prepared.loc[0, "hs2"])
    expected = [model.categories["hs2"].index(v) for v in served["hs2"].iloc[1:]]
    assert prepared["hs2"].iloc[1:].tolist() == expected
    np.testing.assert_allclose(
        model.predict_proba(served.iloc[1:]), model.predict_proba(fs.X.iloc[1:50]), rtol=0
    )
    model.save(tmp_path / "bundle")
    again = TargetingModel.load(tmp_path / "bundle")
    assert again.ordered == model.ordered
    np.testing.assert_array_equal(again.predict_proba(served), model.predict_proba(served))

    spans = lay_refit(fs, windows.train.start, data_span(fs.lodged_at)[1], RefitRule.of(config))
    deployed = refit(fs, spans, evaluated, config).model
    assert deployed.ordered == model.ordered
    # the refit's order is its own training window's (levels by their rate there)
    inside = rows_in(fs, spans.train, spans.labels_known_by)
    y = fs.y.to_numpy(dtype=float)[inside]
    chapters = fs.X["hs2"].astype(str).to_numpy()[inside]
    rates = pd.Series(y).groupby(chapters).mean()
    assert deployed.categories["hs2"][-1] == rates.idxmax()


def test_the_native_order_keeps_xgboost_categories(tmp_path: Path) -> None:
    fs = feature_set(rows=3_000, seed=7)
    config = train_config(tmp_path)
    model = fit(fs, make_windows(fs.lodged_at, config.split), config.train.params, config).model
    assert model.ordered == []
    assert isinstance(model.prepare(fs.X)["hs2"].dtype, pd.CategoricalDtype)


def test_tuning_measures_the_other_order_on_the_conventional_parameters(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fs = feature_set(rows=3_000, seed=11)
    config = train_config(
        tmp_path, tune={"n_trials": 3, "tune_category_order": True}, split={"folds": 2}
    )
    windows = make_windows(fs.lodged_at, config.split)
    study = run_study(fs, windows, config)
    first, second = study.trials[0], study.trials[1]
    assert first.user_attrs.get(CONVENTIONAL) and first.params["category_order"] == "native"
    assert second.params["category_order"] == "hit_rate"
    assert {k: v for k, v in second.params.items() if k != "category_order"} == {
        k: v for k, v in first.params.items() if k != "category_order"
    }
    assert first.value != second.value  # the order changed what the trees saw
    chosen = best_params(study)
    result = fit(fs, windows, chosen, config)
    assert bool(result.model.ordered) == (chosen["category_order"] == "hit_rate")


def test_the_dask_engine_refuses_the_hit_rate_order(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"needs train\.engine memory"):
        train_config(tmp_path, train={"engine": "dask", "category_order": "hit_rate"})
