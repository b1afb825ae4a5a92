"""SHAP explanations: equal to XGBoost's pred_contribs, additive to the margin, figures drawn."""

from __future__ import annotations

import helpers.evaluate as h
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from pipeline.evaluate import explain as ex
from pipeline.plan import RankingPolicy

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def world() -> dict:
    found = h.world(rows=3000, seed=1)
    found["model"] = h.train_model(found["features"], rounds=15)
    return found


def test_shap_values_equal_pred_contribs_and_add_up_to_the_margin(world: dict) -> None:
    model = world["model"]
    X = world["features"].X.iloc[::7]
    values, base, method = ex.shap_values(model, X)
    assert method == "shap.TreeExplainer"  # shap 0.51 reads xgboost 3.2's booster
    contribs = model.contributions(X)
    np.testing.assert_allclose(values, contribs[:, :-1], atol=1e-5)
    np.testing.assert_allclose(base, contribs[0, -1], atol=1e-5)
    np.testing.assert_allclose(base + values.sum(axis=1), model.margin(X), atol=1e-4)
    # the categorical columns carry attributions too (native categories, no one-hot)
    office = model.feature_names.index("office")
    assert np.abs(values[:, office]).sum() > 0


def test_shap_values_of_the_raw_booster_match_a_dmatrix_prediction(world: dict) -> None:
    model = world["model"]
    X = model.prepare(world["features"].X.iloc[:50])
    margin = model.booster.predict(xgb.DMatrix(X, enable_categorical=True), output_margin=True)
    values, base, _ = ex.shap_values(model, X)
    np.testing.assert_allclose(base + values.sum(axis=1), margin, atol=1e-4)


def test_global_explanations_draw_every_view(world: dict) -> None:
    features = world["features"]
    found = ex.global_explanations(world["model"], features, ex.GlobalViews(300, 2, 0))
    assert len(found.values) == 300
    assert found.values["declaration_id"].is_unique
    assert found.importance["share"].sum() == pytest.approx(1.0)
    assert set(found.families["stage"]) == set(features.manifest["stage"])
    assert found.families["share"].sum() == pytest.approx(1.0)
    names = set(found.figures)
    assert {"shap_bar", "shap_beeswarm", "shap_families"} <= names
    assert len([n for n in names if n.startswith("dependence_")]) == 2
    assert all(png.startswith(PNG) and len(png) > 2000 for png in found.figures.values())
    # the seeded sample is reproducible
    again = ex.global_explanations(world["model"], features, ex.GlobalViews(300, 0, 0))
    pd.testing.assert_frame_equal(found.values, again.values)


def test_waterfalls_one_per_declaration(world: dict) -> None:
    features = world["features"]
    rows = [5, 17, 230]
    values, figures = ex.waterfalls(
        world["model"], features.X.iloc[rows], features.declaration_id.iloc[rows]
    )
    assert values["declaration_id"].tolist() == features.declaration_id.iloc[rows].tolist()
    assert sorted(figures) == sorted(f"waterfall_{i}" for i in values["declaration_id"])
    assert all(png.startswith(PNG) for png in figures.values())
    np.testing.assert_allclose(
        values["margin"], world["model"].margin(features.X.iloc[rows]), atol=1e-4
    )


def test_red_sample_draws_from_the_top_of_the_ranking() -> None:
    score = np.arange(1000, dtype=float)
    picked = ex.red_sample(score, 0.02, 5, seed=3)
    assert len(picked) == 5
    assert (picked >= 980).all()
    assert ex.red_sample(score, 0.02, 5, seed=3).tolist() == picked.tolist()


def test_dominance_finds_the_entity_that_carries_a_feature() -> None:
    shap_frame = pd.DataFrame({"a": [5.0, 4.0, 0.1, 0.1, 0.1], "b": [0.2, 0.2, 0.2, 0.2, 0.2]})
    entities = pd.DataFrame({"importer": ["I1", "I1", "I2", "I3", "I4"]})
    table = ex.dominance(shap_frame, entities, ["a", "b"]).set_index("feature")
    assert table.loc["a", "entity"] == "I1"
    assert table.loc["a", "share"] == pytest.approx(9.0 / 9.3)
    assert table.loc["a", "row_share"] == pytest.approx(0.4)
    assert table.loc["b", "share"] == pytest.approx(0.4)


def test_the_same_inputs_reuse_the_last_global_explanation(world: dict) -> None:
    """`targeting run` reviews then explains one model on one sample: SHAP is computed once.
    Any change to what it is computed from (here a feature's values) computes it again."""
    import dataclasses

    features = world["features"]
    kept = ex.GlobalViews(sample=200, top_dependence=1, seed=3)
    first = ex.global_explanations(world["model"], features, kept)
    assert ex.global_explanations(world["model"], features, kept) is first
    changed = features.X.copy()
    numeric = changed.select_dtypes("number").columns[0]
    changed[numeric] = changed[numeric] * 2.0 + 1.0
    other = ex.global_explanations(world["model"], dataclasses.replace(features, X=changed), kept)
    assert other is not first
    assert not other.values[numeric].equals(first.values[numeric])


# --- what is served, by name (issue 26, item 5) ---------------------------------------------------


def _with_revenue(world: dict) -> object:
    """The world's model with a tweedie revenue part trained on its hits' recovered revenue."""
    import dataclasses

    features = world["features"]
    hits = (features.y == 1).to_numpy()
    model = world["model"]
    revenue = xgb.train(
        {"objective": "reg:tweedie", "max_depth": 3, "eta": 0.3, "nthread": 1},
        xgb.DMatrix(
            model.prepare(features.X[hits]),
            features.revenue_recovered[hits],
            enable_categorical=True,
        ),
        num_boost_round=10,
    )
    return dataclasses.replace(model, revenue_booster=revenue)


def test_waterfalls_add_up_to_the_served_probability_and_revenue(world: dict) -> None:
    model = _with_revenue(world)
    X = world["features"].X.iloc[::50].reset_index(drop=True)
    values, base, _ = ex.shap_values(model, X)
    on_probability, p0, probability = ex.probability_scale(model, values, base)
    np.testing.assert_allclose(probability, model.predict_proba(X), atol=1e-5)
    np.testing.assert_allclose(p0 + on_probability.sum(axis=1), probability, atol=1e-9)
    assert 0 < p0 < 1
    # each feature keeps its sign (calibration is monotone)
    moved = ~np.isclose(probability, p0)
    assert (np.sign(on_probability[moved]) * np.sign(values[moved]) >= 0).all()
    found = ex.revenue_explanation(model, X)
    assert found is not None
    money, r0, if_hit = found
    np.testing.assert_allclose(if_hit, model.revenue_if_hit(X), rtol=1e-5)
    np.testing.assert_allclose(r0 + money.sum(axis=1), model.revenue_if_hit(X), rtol=1e-5)
    assert ex.revenue_explanation(world["model"], X) is None  # no revenue part


def test_waterfalls_leave_pyplot_interactive_as_they_found_it(world: dict) -> None:
    """shap's waterfall turns interactive mode off; a notebook's later figures need it on."""
    import matplotlib.pyplot as plt

    features = world["features"]
    with plt.ion():
        ex.waterfalls(world["model"], features.X.iloc[[3]], features.declaration_id.iloc[[3]])
        assert plt.isinteractive()


def test_a_ranking_by_expected_revenue_also_explains_the_revenue_part(world: dict) -> None:
    model = _with_revenue(world)
    features = world["features"]
    rows = [5, 17]
    ids = features.declaration_id.iloc[rows]
    _, by_revenue = ex.waterfalls(
        model, features.X.iloc[rows], ids, RankingPolicy("expected_revenue")
    )
    expected = {f"waterfall_{i}" for i in ids} | {f"waterfall_{i}_revenue" for i in ids}
    assert set(by_revenue) == expected
    _, by_probability = ex.waterfalls(
        model, features.X.iloc[rows], ids, RankingPolicy("probability")
    )
    assert set(by_probability) == {f"waterfall_{i}" for i in ids}


def test_categories_are_never_coloured_or_plotted_by_their_codes() -> None:
    X = pd.DataFrame({"hs6": pd.Categorical(["610910", "851712", None]), "value": [1.0, 2.0, 3.0]})
    coloured = ex.colour_values(X)
    assert coloured["hs6"].isna().all() and coloured["value"].tolist() == [1.0, 2.0, 3.0]
    rng = np.random.default_rng(0)
    levels = pd.Series(pd.Categorical(rng.choice([f"{6109 * 100 + i}" for i in range(300)], 2000)))
    levels[:40] = None
    grouped = ex.level_groups(levels, top=12)
    assert grouped.nunique() == 13  # the 12 most frequent (missing among them) and the others
    assert grouped.str.startswith("other levels").sum() > 0
    assert (grouped == "(missing)").sum() == 40
    png = ex.category_dependence("hs6", rng.normal(size=2000), levels)
    assert png.startswith(PNG)


def test_red_and_green_cohorts_compare_mean_shap_per_feature(world: dict) -> None:
    score = np.arange(1000, dtype=float)
    cohort = ex.channel_cohorts(score, {"red": 0.02, "yellow": 0.06})
    assert (cohort == "red").sum() == 20 and (cohort == "yellow").sum() == 60
    assert set(cohort.iloc[980:]) == {"red"} and set(cohort.iloc[:920]) == {"green"}

    features = world["features"]
    model = world["model"]
    channel = ex.channel_cohorts(model.margin(features.X), {"red": 0.1, "yellow": 0.1})
    found = ex.global_explanations(model, features, ex.GlobalViews(500, 3, 4), channel)
    assert found.figures["shap_red_vs_green"].startswith(PNG)
    table = found.cohorts.set_index("feature")
    sampled = channel.set_axis(features.declaration_id.astype(str).to_numpy())
    labels = sampled.loc[found.values["declaration_id"].astype(str)].to_numpy()
    for feature in model.feature_names:
        red = found.values.loc[labels == "red", feature].mean()
        assert table.loc[feature, "red"] == pytest.approx(red)
    assert table["difference"].abs().is_monotonic_decreasing
    # the red declarations are there because of what pushes their score up
    assert table["difference"].sum() > 0
