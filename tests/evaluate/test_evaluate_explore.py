"""The exploration tables: declarations lined up with controls and truth, and their summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from pipeline.evaluate import explore


def tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Eight declarations over two weeks (odd index); five controlled, one twice; the truth."""
    declarations = pd.DataFrame(
        {
            "declaration_id": [f"D{i}" for i in range(8)],
            "lodged_at": pd.to_datetime(
                [
                    "2024-01-01 09:00",  # Monday, week 1
                    "2024-01-02 10:00",
                    "2024-01-03 11:00",
                    "2024-01-07 12:00",  # Sunday, still week 1
                    "2024-01-08 09:00",  # Monday, week 2
                    "2024-01-09 10:00",
                    "2024-01-10 11:00",
                    "2024-01-11 12:00",
                ]
            ),
            "office": ["A", "A", "B", "B", "A", "A", "B", "B"],
            "importer": ["I1", "I2", "I1", "I3", "I2", "I2", "I4", "I1"],
            "declarant": ["B1"] * 4 + ["B2"] * 4,
            "hs2": ["61", "61", "85", "85", "61", "94", "85", "61"],
            "origin_country": ["CN", "CN", "VN", "CN", "VN", "CN", "CN", "VN"],
            "aeo": [False, False, True, False, False, True, False, False],
        },
        index=pd.RangeIndex(8) * 7 + 3,
    )
    outcomes = pd.DataFrame(
        {
            "declaration_id": ["D0", "D1", "D2", "D2", "D4", "D6", "D7"],
            "selection_reason": ["random", "rule", "rule", "intelligence", "rule", "rule", "rule"],
            # the random draw's recorded probability: what makes it the random stratum
            "selection_probability": [0.05, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan],
            "inspected": [True, True, True, True, True, True, False],
            "hit": [True, False, False, True, True, False, False],
            "fraud_type": ["undervaluation", None, None, "origin", "undervaluation", None, None],
            "revenue_recovered": [10.0, 0.0, 0.0, 5.0, 20.0, 0.0, np.nan],
        },
        index=[11, 5, 2, 9, 4, 6, 1],
    )
    truth = pd.DataFrame(
        {
            "declaration_id": [f"D{i}" for i in range(8)],
            "fraud": [True, False, True, True, True, False, False, True],
            "fraud_type": [
                "undervaluation",
                "none",
                "origin",
                "emerging",
                "undervaluation",
                "none",
                "none",
                "emerging",
            ],
            "revenue_recoverable": [12.0, 0.0, 6.0, 30.0, 25.0, 0.0, 0.0, 40.0],
        }
    )
    return declarations, outcomes, truth


def lined_up(with_truth: bool = True) -> pd.DataFrame:
    declarations, outcomes, truth = tables()
    return explore.declaration_outcomes(declarations, outcomes, truth if with_truth else None)


def test_every_declaration_gets_its_control_in_input_order_and_inputs_are_untouched():
    declarations, outcomes, truth = tables()
    before = (declarations.copy(), outcomes.copy(), truth.copy())
    frame = explore.declaration_outcomes(declarations, outcomes, truth)
    assert frame["declaration_id"].tolist() == declarations["declaration_id"].tolist()
    assert frame["controlled"].tolist() == [True, True, True, False, True, False, True, False]
    # D2 was controlled twice: one control, a hit since one of them found something
    assert frame["hit"].tolist() == [True, False, True, False, True, False, False, False]
    assert frame["random"].tolist() == [True] + [False] * 7
    recovered = frame["revenue_recovered"].tolist()
    assert recovered[:3] == [10.0, 0.0, 5.0] and recovered[4] == 20.0
    assert np.isnan(recovered[3]) and np.isnan(recovered[7])  # never inspected: unknown
    assert frame["fraud_type"].tolist() == truth["fraud_type"].tolist()
    for original, now in zip(before, (declarations, outcomes, truth), strict=True):
        pd.testing.assert_frame_equal(original, now)


def test_profile_counts_controls_hits_and_true_recall():
    figures = explore.profile(lined_up())
    assert figures["declarations"] == 8
    assert figures["controls"] == 5
    assert figures["hits"] == 3
    assert figures["hit rate of the controls"] == pytest.approx(3 / 5)
    assert figures["random-stratum hit rate"] == 1.0
    assert figures["offices"] == 2 and figures["HS chapters"] == 3
    assert figures["AEO share"] == pytest.approx(2 / 8)
    assert figures["fraud rate (ground truth)"] == pytest.approx(5 / 8)
    assert figures["recall of the historical policy"] == pytest.approx(3 / 5)
    without = explore.profile(lined_up(with_truth=False))
    assert "fraud rate (ground truth)" not in without.index


def test_weekly_rates_start_on_monday_and_add_truth_when_known():
    weekly = explore.rates_over_time(lined_up(), "W")
    assert list(weekly.index) == [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-08")]
    assert weekly["declarations"].tolist() == [4, 4]
    assert weekly["controls"].tolist() == [3, 2]
    assert weekly["hit_rate"].tolist() == pytest.approx([2 / 3, 1 / 2])
    assert weekly["random_hit_rate"].iloc[0] == 1.0 and np.isnan(weekly["random_hit_rate"].iloc[1])
    assert weekly["recall"].tolist() == pytest.approx([2 / 3, 1 / 2])
    assert "fraud_rate" not in explore.rates_over_time(lined_up(with_truth=False)).columns


def test_risk_map_rates_need_enough_controls_and_counts_are_whole():
    frame = lined_up()
    rates = explore.risk_map(frame, "origin_country", "hs2", min_controls=1)
    assert rates.loc["CN", "61"] == pytest.approx(1 / 2)  # D0 hit, D1 not
    assert rates.loc["VN", "85"] == 1.0  # D2
    strict = explore.risk_map(frame, "origin_country", "hs2", min_controls=2)
    assert strict.loc["CN", "61"] == pytest.approx(1 / 2)
    assert np.isnan(strict.loc["VN", "85"])  # one control only
    counts = explore.risk_map(frame, "origin_country", "hs2", value="controls")
    assert counts.to_numpy().sum() == 5
    assert counts.dtypes.eq("int64").all()
    top = explore.risk_map(frame, "origin_country", "hs2", value="controls", top=1)
    assert top.shape == (1, 1)


def test_recall_by_scheme_against_the_truth_and_by_period():
    table = explore.recall_by_scheme(lined_up())
    assert table.loc["undervaluation", ["frauds", "controlled", "found"]].tolist() == [2, 2, 2]
    assert table.loc["emerging", "recall"] == 0.0  # D3 never controlled, D7 not inspected
    assert table.loc["origin", "recall"] == 1.0
    assert table.loc["emerging", "first_lodged"] == pd.Timestamp("2024-01-07 12:00")
    assert "none" not in table.index
    by_week = explore.recall_by_scheme(lined_up(), "W")
    assert by_week.index.names == ["period", "fraud_type"]
    assert by_week["frauds"].sum() == 5
    with pytest.raises(ValueError, match="ground truth"):
        explore.recall_by_scheme(lined_up(with_truth=False))


def test_by_chapter_compares_the_share_of_controls_with_the_share_of_hits():
    chapters = explore.by_chapter(lined_up())
    assert chapters.index[0] == "61"  # largest first
    assert chapters["control_share"].sum() == pytest.approx(1.0)
    assert chapters["hit_share"].sum() == pytest.approx(1.0)
    assert chapters.loc["61", ["declarations", "controls", "hits"]].tolist() == [4, 3, 2]
    assert chapters.loc["94", "controls"] == 0 and np.isnan(chapters.loc["94", "hit_rate"])
    assert chapters.loc["85", "recall"] == pytest.approx(1 / 2)
    assert "recall" not in explore.by_chapter(lined_up(with_truth=False)).columns


def test_figures_are_built_without_pyplot():
    frame = lined_up()
    table = explore.risk_map(frame, min_controls=1)
    heat = explore.heatmap_figure(table, "hit rate")
    assert isinstance(heat, Figure)
    assert len(heat.axes[0].texts) == int(np.isfinite(table.to_numpy(dtype=float)).sum())
    scatter = explore.blind_spot_figure(explore.by_chapter(frame))
    assert isinstance(scatter, Figure) and scatter.axes[0].get_title()
