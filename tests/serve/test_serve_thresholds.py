"""Channel cut-offs, the reproducible random draw, rules, AEO policy and the export file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers.serve import (
    reference_frame,
    serve_config,
    siphash24,
    splitmix_finaliser,
    watch_list_rules,
)

from pipeline.config import PROJECT_ROOT
from pipeline.ingest.columns import RANDOM
from pipeline.serve.channels import assign_channels
from pipeline.serve.cutoffs import (
    NO_LEVEL_BASIS,
    Level,
    Provenance,
    channel_kpis,
    channel_order_warnings,
    compute_cutoffs,
    hit_rate_bounds,
    new_document,
)
from pipeline.serve.draw import random_draw, random_hash, random_key_bytes
from pipeline.serve.selectivity import ThresholdsError, schema, validate_document
from pipeline.serve.thresholds import Thresholds

SHA = "ab" * 32


def _document(reference: pd.DataFrame, **changes: Any) -> dict[str, Any]:
    serve = serve_config(**changes)
    policy = compute_cutoffs(reference, serve, days=60.0)
    return new_document(
        policy,
        Provenance(
            model={
                "name": "m",
                "version": "1",
                "uri": "runs:/x/targeting_model",
                "booster_sha256": SHA,
            },
            rank_by="probability",
            manifest_sha256="cd" * 32,
            windows={"reference": ["2024-03-01", "2024-04-30"]},
            features={"config": {}, "descriptions": {}},
            snapshot={"uri": None, "path": None},
        ),
    )


def _shares(reference: pd.DataFrame, document: dict[str, Any]) -> pd.DataFrame:
    thresholds = Thresholds.from_document(document)
    return assign_channels(
        thresholds,
        reference,
        reference["score"].to_numpy(),
        reference["margin"].to_numpy(),
    )


@pytest.mark.parametrize("ties", [True, False])
@pytest.mark.parametrize("aeo_factor", [1.0, 0.5])
def test_realised_shares_meet_targets_on_the_reference_window(ties: bool, aeo_factor: float):
    reference = reference_frame(20_000, seed=1, ties=ties)
    document = _document(
        reference, rules=watch_list_rules(), random_rate=0.005, aeo_factor=aeo_factor
    )
    channels = _shares(reference, document)
    shares = channels["channel"].value_counts(normalize=True)
    assert abs(shares.get("red", 0.0) - 0.02) <= 0.005
    assert abs(shares.get("yellow", 0.0) - 0.06) <= 0.005
    assert channels.index.equals(reference.index)
    # random and rule selections are red and count towards the red share
    forced = channels["selection_reason"].isin([RANDOM, "watch-listed importer"])
    assert forced.any()
    assert (channels.loc[forced, "channel"] == "red").all()


def test_aeo_declarations_are_selected_at_the_factor_of_the_others():
    reference = reference_frame(40_000, seed=2, ties=False)
    document = _document(reference, aeo_factor=0.5, random_rate=0.0)
    channels = _shares(reference, document)
    controlled = channels["channel"].isin(["red", "yellow"])
    aeo = reference["aeo"].to_numpy()
    rate_aeo = controlled[aeo].mean()
    rate_other = controlled[~aeo].mean()
    assert rate_aeo == pytest.approx(0.5 * rate_other, abs=0.005)
    assert controlled.mean() == pytest.approx(0.08, abs=0.005)
    # stricter: the AEO cut-offs are above the others'
    for channel in ("red", "yellow"):
        assert (
            document["cutoffs"]["aeo_cutoffs"][channel]["score"]
            >= document["cutoffs"]["cutoffs"][channel]["score"]
        )


def test_per_office_red_rate_follows_daily_capacity():
    reference = reference_frame(30_000, seed=3, ties=False)
    capacity = {"ICN01": 10.0, "PUS02": 3.0}  # red controls per day
    document = _document(
        reference, per_office=True, office_capacity=capacity, random_rate=0.0, aeo_factor=1.0
    )
    channels = _shares(reference, document)
    for office, per_day in capacity.items():
        rows = (reference["office"] == office).to_numpy()
        flow = rows.sum() / 60.0
        red_share = (channels.loc[rows, "channel"] == "red").mean()
        assert red_share == pytest.approx(per_day / flow, abs=0.005)
        assert document["offices"][office]["rates"]["red"] == pytest.approx(per_day / flow)
    # an office without capacity keeps the global rate; an unknown office uses global cut-offs
    rows = (reference["office"] == "SEL03").to_numpy()
    assert (channels.loc[rows, "channel"] == "red").mean() == pytest.approx(0.02, abs=0.005)
    new_office = reference.assign(office="NEW99")
    fallback = _shares(new_office, document)
    assert fallback["channel"].eq("red").mean() == pytest.approx(0.02, abs=0.005)


def test_rules_send_matches_to_red_with_the_rule_name():
    reference = reference_frame(5_000, seed=4)
    document = _document(reference, rules=watch_list_rules(), random_rate=0.0)
    channels = _shares(reference, document)
    watched = reference["importer"].isin(["IMP7", "IMP11"]).to_numpy()
    chapter = reference["hs_code"].str.startswith("93").to_numpy()
    assert watched.any() and chapter.any()
    assert (channels.loc[watched, "selection_reason"] == "watch-listed importer").all()
    assert (channels.loc[chapter & ~watched, "selection_reason"] == "prohibited chapter 93").all()
    assert (channels.loc[watched | chapter, "channel"] == "red").all()
    assert (channels.loc[watched, "selection_probability"] == 1.0).all()


def test_random_draw_is_deterministic_and_matches_its_probability():
    ids = pd.Series([f"DECL-{i:09d}" for i in range(200_000)])
    rate = 0.01
    first = random_draw(ids, "secret", rate)
    again = random_draw(ids.copy(), "secret", rate)
    np.testing.assert_array_equal(first, again)
    # a declaration's draw depends on its id only, not on the batch or its order
    shuffled = ids.sample(frac=1.0, random_state=3)
    np.testing.assert_array_equal(
        random_draw(shuffled, "secret", rate), first[shuffled.index.to_numpy()]
    )
    np.testing.assert_array_equal(random_draw(ids[:10], "secret", rate), first[:10])
    # binomial: within 4.5 standard deviations of n x rate
    n = len(ids)
    sd = math.sqrt(n * rate * (1 - rate))
    assert abs(first.sum() - n * rate) < 4.5 * sd
    # another key draws another stratum; nested rates give nested strata
    other = random_draw(ids, "another key", rate)
    assert (first & other).sum() < 3 * n * rate * rate + 4.5 * sd
    wider = random_draw(ids, "secret", 0.05)
    assert (wider | ~first).all()
    assert random_draw(ids[:5], "secret", 1.0).all()
    assert not random_draw(ids[:5], "secret", 0.0).any()


def test_random_draw_follows_the_documented_algorithm():
    ids = ["DECL-000000001", "20240101-ICN-42", "", "δήλωση-7", "x" * 23]
    key = random_key_bytes("customs-targeting")
    assert len(key.encode("ascii")) == 16
    expected = [splitmix_finaliser(siphash24(key.encode(), i.encode("utf-8"))) for i in ids]
    assert random_hash(pd.Series(ids), "customs-targeting").tolist() == expected


def _saved(tmp_path: Path, document: dict[str, Any]) -> Path:
    return Thresholds(document).save(tmp_path / "selectivity.json")


def test_export_round_trips_and_is_written_atomically(tmp_path: Path):
    reference = reference_frame(3_000, seed=5)
    document = _document(reference, rules=watch_list_rules())
    path = _saved(tmp_path, document)
    assert [p.name for p in tmp_path.iterdir()] == ["selectivity.json"]  # no temporary left
    loaded = Thresholds.load(path, booster_sha256=SHA)
    assert loaded.document == json.loads(json.dumps(document))
    assert [r.name for r in loaded.rules] == ["watch-listed importer", "prohibited chapter 93"]


def test_a_file_made_for_another_model_is_refused(tmp_path: Path):
    path = _saved(tmp_path, _document(reference_frame(2_000, seed=6)))
    with pytest.raises(ThresholdsError, match="another model"):
        Thresholds.load(path, booster_sha256="ef" * 32)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["channels"][0].update(rate=1.5), "schema"),
        (
            lambda d: d["cutoffs"]["cutoffs"].update(
                red={"score": 0.0, "margin": -9.0, "tiebreak": 0.0}
            ),
            "ordered",
        ),
        (lambda d: d["channels"].append({"name": "blue", "rate": 0.95}), "more than 1"),
        (lambda d: d["model"].pop("booster_sha256"), "schema"),
        (lambda d: d["random"].update(rate=-0.1), "schema"),
    ],
)
def test_invalid_files_are_refused_with_a_clear_error(tmp_path: Path, change: Any, message: str):
    document = _document(reference_frame(2_000, seed=7))
    change(document)
    path = tmp_path / "selectivity.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ThresholdsError, match=message):
        Thresholds.load(path)
    with pytest.raises(ThresholdsError):
        Thresholds(document).save(tmp_path / "other.json")
    assert not (tmp_path / "other.json").exists()


def test_the_published_schema_and_page_are_those_the_model_gives():
    """pipeline/serve/selectivity.schema.json and docs/selectivity.md are generated from
    `SelectivityExport`: `tools/selectivity_doc.py --check` fails on either going stale."""
    import subprocess
    import sys

    answer = subprocess.run(
        [sys.executable, "tools/selectivity_doc.py", "--check"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert answer.returncode == 0, answer.stderr
    published = json.loads((PROJECT_ROOT / "pipeline/serve/selectivity.schema.json").read_text())
    assert published == json.loads(json.dumps(schema()))


def test_another_system_checking_the_published_schema_agrees_with_the_model(tmp_path: Path):
    """What the model accepts, a JSON Schema validator given the published schema accepts too;
    a written key and a rate above 1 both refuse."""
    jsonschema = pytest.importorskip("jsonschema")
    document = json.loads(_saved(tmp_path, _document(reference_frame(2_000, seed=7))).read_text())
    validator = jsonschema.Draft202012Validator(schema())
    assert list(validator.iter_errors(document)) == []
    keyed = json.loads(json.dumps(document))
    keyed["random"]["key"] = "secret"
    over = json.loads(json.dumps(document))
    over["channels"][0]["rate"] = 1.5
    for bad in (keyed, over):
        assert list(validator.iter_errors(bad))
        with pytest.raises(ThresholdsError, match="schema"):
            validate_document(bad)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["random"].update(channel="blue"), "not a defined controlled channel"),
        (lambda d: d["serving"].update(invalid_channel="green"), "never be released"),
        (lambda d: d["cutoffs"]["cutoffs"].update(blue=d["cutoffs"]["cutoffs"]["red"]), "blue"),
        (lambda d: d["cutoffs"]["cutoffs"]["red"].update(score=float("nan")), "finite"),
        (lambda d: d.update(created_at="yesterday"), "created_at"),
    ],
)
def test_the_model_refuses_what_a_schema_cannot_say(change: Any, message: str):
    document = _document(reference_frame(2_000, seed=7))
    change(document)
    with pytest.raises(ThresholdsError, match=message):
        validate_document(document)


def _reference_kpis(reference: pd.DataFrame, level: Level | None = None) -> dict[str, Any]:
    """`channel_kpis` of a reference frame at red 2 %, yellow 6 %, over 60 days."""
    return channel_kpis(
        _shares(reference, _document(reference)),
        reference["probability"].to_numpy(),
        reference["expected_revenue"].to_numpy(),
        {"red": 0.02, "yellow": 0.06},
        days=60.0,
        level=level,
    )


def test_kpis_report_shares_and_expected_hit_rates():
    reference = reference_frame(10_000, seed=8, ties=False)
    kpis = _reference_kpis(reference)
    red, green = kpis["channels"]["red"], kpis["channels"]["green"]
    assert red["expected_hit_rate"] > kpis["channels"]["yellow"]["expected_hit_rate"]
    assert kpis["channels"]["yellow"]["expected_hit_rate"] > green["expected_hit_rate"]
    total = sum(c["declarations"] for c in kpis["channels"].values())
    assert total + kpis["random"]["declarations"] == len(reference)
    assert kpis["warnings"] == []  # red >= yellow >= green
    assert red["expected_revenue"] > 0
    # without the level's uncertainty no bound is made up, and the file says why
    assert red["expected_hit_rate_interval"] is None and red["hit_rate_range"] is None
    assert kpis["hit_rate_uncertainty"] == NO_LEVEL_BASIS


def test_the_random_draw_is_its_own_share_not_part_of_the_red_kpis():
    reference = reference_frame(20_000, seed=8, ties=False)
    document = _document(reference, random_rate=0.01)
    channels = _shares(reference, document)
    kpis = channel_kpis(
        channels,
        reference["probability"].to_numpy(),
        reference["expected_revenue"].to_numpy(),
        {"red": 0.02, "yellow": 0.06},
        days=60.0,
    )
    drawn = (channels["selection_reason"] == RANDOM).to_numpy()
    random, red = kpis["random"], kpis["channels"]["red"]
    assert random["channel"] == "red" and random["declarations"] == drawn.sum() > 100
    assert random["share"] == pytest.approx(drawn.mean())
    assert random["expected_hit_rate"] == pytest.approx(reference["probability"][drawn].mean())
    assert RANDOM not in red["by_reason"]
    targeted = (channels["channel"] == "red").to_numpy() & ~drawn
    assert red["expected_hit_rate"] == pytest.approx(reference["probability"][targeted].mean())
    # the draw is a uniform sample: far below the targeted red controls' rate
    assert random["expected_hit_rate"] < 0.5 * red["expected_hit_rate"]
    assert red["share"] + random["share"] == pytest.approx(0.02, abs=0.003)  # red's target


def test_channels_out_of_order_are_warned_about():
    entries = {
        "red": {"expected_hit_rate": 0.819},
        "yellow": {"expected_hit_rate": 0.973},
        "green": {"expected_hit_rate": 0.02},
        "empty": {"expected_hit_rate": None},
    }
    (warning,) = channel_order_warnings(entries)
    assert "yellow's expected hit rate (97.3%) is above red's (81.9%)" in warning
    assert channel_order_warnings({**entries, "red": {"expected_hit_rate": 0.98}}) == []
    # a rule sending low-risk declarations to red breaks the order: the export says so
    reference = reference_frame(10_000, seed=8, ties=False)
    low = reference["probability"] < reference["probability"].quantile(0.5)
    reference["importer"] = np.where(low, "IMP7", "IMP1000")  # watch-listed, yet low risk
    document = _document(reference, rules=watch_list_rules(), random_rate=0.0)
    kpis = channel_kpis(
        _shares(reference, document),
        reference["probability"].to_numpy(),
        reference["expected_revenue"].to_numpy(),
        {"red": 0.02, "yellow": 0.06},
        days=60.0,
    )
    assert any("above red's" in w for w in kpis["warnings"]), kpis["warnings"]


def test_kpis_carry_the_level_uncertainty_when_the_model_has_one():
    kpis = _reference_kpis(
        reference_frame(10_000, seed=8, ties=False),
        Level(list(np.linspace(-0.5, 0.5, 100)), "anchored on 40 random hits"),
    )
    assert kpis["hit_rate_uncertainty"] == "anchored on 40 random hits"
    for entry in kpis["channels"].values():
        low, high = entry["expected_hit_rate_interval"]
        assert low < entry["expected_hit_rate"] < high
        spread = entry["hit_rate_range"]
        assert spread[0] <= low and high <= spread[1]  # the range adds the luck of the draws


def test_hit_rate_range_narrows_to_the_interval_as_controls_grow():
    """The range is a binomial mixture over the level's quantiles: with few controls it is wide,
    with many it tends to the interval of the expected rate, never inside it."""
    p = np.random.default_rng(3).beta(2.0, 8.0, 500)
    shifts = list(np.linspace(-0.3, 0.3, 100))
    widths = []
    for controls in (50, 500, 50_000):
        interval, spread = hit_rate_bounds(p, shifts, controls)
        assert interval is not None and spread is not None
        assert spread[0] <= interval[0] + 1e-3 and interval[1] - 1e-3 <= spread[1]
        widths.append(spread[1] - spread[0])
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] == pytest.approx(interval[1] - interval[0], rel=0.1)
    assert hit_rate_bounds(p, None, 50) == (None, None)
    # with one level (no uncertainty) the range is the plain binomial's
    _, alone = hit_rate_bounds(np.full(10, 0.2), [0.0] * 100, 400)
    assert alone == pytest.approx([0.16, 0.24], abs=0.006)


def test_shares_are_met_even_when_every_score_ties():
    reference = reference_frame(10_000, seed=9).assign(score=0.18, margin=-1.5)
    document = _document(reference, random_rate=0.005, aeo_factor=0.5)
    channels = _shares(reference, document)
    shares = channels["channel"].value_counts(normalize=True)
    assert abs(shares["red"] - 0.02) <= 0.005
    assert abs(shares["yellow"] - 0.06) <= 0.005
    again = _shares(reference.iloc[::-1], document)  # the tie-break depends on ids, not order
    assert again["channel"].reindex(channels.index).equals(channels["channel"])


def test_serving_needs_neither_training_nor_evaluation_nor_shap():
    import subprocess
    import sys

    probe = (
        "import sys, pipeline.serve.scorer, pipeline.serve.thresholds;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('shap', 'jsonschema')"
        " or m.startswith(('pipeline.train', 'pipeline.evaluate', 'pipeline.serve.cutoffs'))))"
    )
    answer = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert answer.stdout.strip() == "[]"


def test_the_expected_hit_rates_interval_is_the_posteriors_own_95_percent():
    """The stored shifts sit at the level's quantiles (k + 1/2) %: the interval's ends are the
    2.5 % and 97.5 % quantiles themselves (the 3rd and the 98th shift), not a sample quantile of
    the 100 means, which would be a 94 % interval."""
    from pipeline.serve.model import shift_log_odds

    p = np.random.default_rng(4).beta(2.0, 30.0, 2_000)
    shifts = list(np.linspace(-0.8, 0.8, 100))
    interval, _ = hit_rate_bounds(p, shifts, 100)
    assert interval is not None
    assert interval[0] == pytest.approx(shift_log_odds(p, shifts[2]).mean(), rel=1e-9)
    assert interval[1] == pytest.approx(shift_log_odds(p, shifts[97]).mean(), rel=1e-9)
