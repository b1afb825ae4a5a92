"""The decision page: each acceptance criterion from the report's own figures, the verdict, the
approve command, and the page as headless Chromium renders it at the top of the report."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import helpers.evaluate as h
import numpy as np
import pandas as pd
import pytest

from pipeline.config import AcceptanceConfig
from pipeline.evaluate.decision import (
    Against,
    Decision,
    Evidence,
    calibration_error,
    decide,
    render_decision,
)
from pipeline.evaluate.keys import AT_OFFICE_CAPACITY, HISTORICAL, Kind, Population
from pipeline.evaluate.report import _frame_html, capacity_pivot, rate_label, render_report

TRUTH = Population.TRUTH
SHARE = 0.0512  # the historical policy's control share


def _row(model: str, rate: float, metric: str, value: float, low: float, high: float) -> dict:
    kind = Kind.DIFFERENCE if " - " in model else Kind.VALUE  # the names this test gives
    if model in (HISTORICAL, AT_OFFICE_CAPACITY):
        kind = Kind.POLICY
    return dict(
        population=TRUTH,
        model=model,
        kind=kind,
        rate=rate,
        metric=metric,
        value=value,
        low=low,
        high=high,
    )


def _metrics(raw_gap: tuple[float, float, float], lightgbm: float | None = None) -> pd.DataFrame:
    rows = [
        _row("model", SHARE, "precision", 0.40, 0.36, 0.44),
        _row("plain XGBoost", SHARE, "precision", 0.30, 0.26, 0.34),
        _row("rules", SHARE, "precision", 0.20, 0.17, 0.23),
        _row("model - plain XGBoost", SHARE, "precision", *raw_gap),
        _row("model - rules", SHARE, "precision", 0.20, 0.15, 0.25),
        _row("historical policy", SHARE, "control_share", SHARE, np.nan, np.nan),
        _row("historical policy", SHARE, "precision", 0.18, 0.15, 0.21),
        _row("model at office capacity", SHARE, "precision", 0.41, 0.37, 0.45),
    ]
    if lightgbm is not None:
        rows += [
            _row("LightGBM", SHARE, "precision", lightgbm, lightgbm - 0.04, lightgbm + 0.04),
            _row("model - LightGBM", SHARE, "precision", 0.40 - lightgbm, -0.01, 0.03),
        ]
    return pd.DataFrame(rows)


def _decide(
    metrics: pd.DataFrame,
    calibration: pd.DataFrame,
    drift: pd.DataFrame,
    config: AcceptanceConfig,
    population: Population | str,
    run_id: str,
    **against: Any,
) -> Decision:
    """`decide` on the evidence given in the order these tests read it."""
    claimed = against.pop("calibration_population", "")
    evidence = Evidence(metrics, Population(population), calibration, claimed, drift)
    return decide(evidence, config, run_id, Against(**against))


CALIBRATED = pd.DataFrame({"predicted": [0.01, 0.05, 0.2], "observed": [0.012, 0.047, 0.21]})
STABLE = pd.DataFrame({"feature": ["declared_value", "hs2"], "psi": [0.02, 0.08]})


def test_a_model_that_beats_every_comparator_is_ready_to_approve() -> None:
    decision = _decide(
        _metrics((0.10, 0.05, 0.15)),
        CALIBRATED,
        STABLE,
        AcceptanceConfig(),
        TRUTH,
        "abc123",
        references=["plain XGBoost"],
    )
    assert decision.verdict == "ready to approve"
    assert decision.rate == pytest.approx(SHARE)  # office capacity: the policy's control share
    names = [c.name for c in decision.criteria]
    assert names == [
        "beats plain XGBoost",
        "beats rules",
        "beats the historical policy",
        "calibrated",
        "no unexplained drift",
    ]
    assert decision.criteria[0].figure == "+0.100 [+0.050, +0.150]"
    assert decision.criteria[2].figure == "0.410 [0.370, 0.450] vs 0.180 [0.150, 0.210]"
    assert decision.approve_command == 'targeting approve --run-id abc123 --reason "..."'


def test_an_interval_that_reaches_zero_fails_and_so_does_the_verdict() -> None:
    decision = _decide(
        _metrics((0.02, -0.01, 0.05)),
        CALIBRATED,
        STABLE,
        AcceptanceConfig(),
        TRUTH,
        "r",
        references=["plain XGBoost"],
    )
    assert decision.criteria[0].status == "fail" and decision.verdict == "not ready"


def test_the_model_must_beat_every_healthy_reference_learner() -> None:
    """Beating the reference chosen on another metric is not enough: each healthy reference is
    judged on the page's population, metric and rate, and a loss to any one fails."""
    metrics = _metrics((0.10, 0.05, 0.15), lightgbm=0.38)
    decision = _decide(
        metrics,
        CALIBRATED,
        STABLE,
        AcceptanceConfig(),
        TRUTH,
        "r",
        references=["plain XGBoost", "LightGBM"],
    )
    by_name = {c.name: c.status for c in decision.criteria}
    assert by_name["beats plain XGBoost"] == "pass"
    assert by_name["beats LightGBM"] == "fail" and decision.verdict == "not ready"
    # a reference that is no real fit is not among `references`: not judged, never "the best"
    only = _decide(metrics, CALIBRATED, STABLE, AcceptanceConfig(), TRUTH, "r", references=[])
    assert "beats LightGBM" not in {c.name for c in only.criteria}
    assert {c.name: c.status for c in only.criteria}[
        "beats every healthy reference learner"
    ] == "not judged"


def test_calibration_on_the_random_stratum_is_judged_by_its_intervals() -> None:
    thin = pd.DataFrame(
        {
            "predicted": [0.01, 0.03, 0.08],
            "observed": [0.0, 0.05, 0.20],
            "low": [0.0, 0.01, 0.12],
            "high": [0.04, 0.12, 0.30],
        }
    )
    population = "random stratum (IPW)"
    decision = _decide(
        _metrics((0.10, 0.05, 0.15)),
        thin,
        STABLE,
        AcceptanceConfig(),
        TRUTH,
        "r",
        calibration_population=population,
    )
    calibrated = {c.name: c for c in decision.criteria}["calibrated"]
    assert calibrated.figure == "2 of 3 bins inside" and calibrated.status == "pass"
    assert population in calibrated.requirement
    far = thin.assign(predicted=[0.2, 0.3, 0.5])
    again = _decide(
        _metrics((0.10, 0.05, 0.15)),
        far,
        STABLE,
        AcceptanceConfig(),
        TRUTH,
        "r",
        calibration_population=population,
    )
    assert {c.name: c for c in again.criteria}["calibrated"].status == "fail"


def test_miscalibration_and_drift_fail_with_their_figures() -> None:
    off = pd.DataFrame({"predicted": [0.01, 0.05, 0.2], "observed": [0.05, 0.10, 0.30]})
    drifted = pd.DataFrame({"feature": ["declared_value", "hs2"], "psi": [0.02, 0.40]})
    assert calibration_error(off) == pytest.approx((0.04 + 0.05 + 0.10) / 3)
    decision = _decide(_metrics((0.10, 0.05, 0.15)), off, drifted, AcceptanceConfig(), TRUTH, "r")
    by_name = {c.name: c for c in decision.criteria}
    assert by_name["calibrated"].status == "fail"
    assert by_name["calibrated"].figure == "0.0633"
    assert by_name["no unexplained drift"].figure == "max PSI 0.400: hs2"
    assert by_name["no unexplained drift"].status == "fail"


def test_without_ground_truth_the_policy_criterion_is_not_judged() -> None:
    inspected = _metrics((0.10, 0.05, 0.15)).assign(population=Population.INSPECTED)
    inspected = inspected.loc[
        ~inspected["model"].isin(["historical policy", "model at office capacity"])
    ]
    chosen = AcceptanceConfig(rate=SHARE)
    decision = _decide(inspected, CALIBRATED, STABLE, chosen, Population.INSPECTED, "r")
    by_name = {c.name: c.status for c in decision.criteria}
    assert by_name["beats the historical policy"] == "not judged"
    assert decision.verdict == "incomplete"
    html = str(render_decision(decision))
    assert "Verdict: incomplete" in html and "not judged" in html


def test_the_decision_page_opens_the_report_in_headless_chromium(tmp_path: Path) -> None:
    config = h.config(tmp_path)
    _, assessment = h.assessed_against_champion(h.world(rows=4000, seed=5), config)
    report = assessment.report
    page = tmp_path / "report.html"
    html = render_report(report, config.evaluate.rates)
    page.write_text(html.replace("</body>", CLICK_PROBE + "</body>"), encoding="utf-8")
    result = h.headless_dom(page, tmp_path / "profile", 5000, "--window-size=1280,900")
    dom = result.stdout
    assert "<main>" in dom, result.stderr[-2000:]
    main = dom.split("<main>", 1)[1]
    assert main.lstrip().startswith('<section id="decision">')  # the page opens on the decision
    verdict = re.search(r"Verdict: (ready to approve|not ready|incomplete)", main)
    assert verdict is not None and verdict.group(1) == report.decision.verdict
    decision_section = main.split("</section>", 1)[0]
    statuses = re.findall(r"<td>(pass|fail|not judged)</td></tr>", decision_section)
    assert len(statuses) == len(report.decision.criteria)
    healthy = report.references.loc[report.references["healthy"] == "yes", "name"]
    for name in [*healthy, "rules", "champion v1"]:  # every healthy reference, each named
        assert f"beats {name}" in decision_section
    assert "beats champion v1" in decision_section
    assert "targeting approve --run-id run-under-review --reason" in decision_section
    # the global SHAP views span the page (legible labels) and a click enlarges a figure
    probe = re.search(r'id="click-probe" data-bar-width="(\d+)" data-zoomed="(\w+)"', dom)
    assert probe is not None, result.stderr[-2000:]
    assert int(probe.group(1)) >= 800 and probe.group(2) == "true"


CLICK_PROBE = """<script>
window.addEventListener('load', function () {
  var bar = document.querySelector('img[alt="shap_bar"]');
  bar.click();
  var out = document.createElement('div');
  out.id = 'click-probe';
  bar.classList.remove('zoom');
  var width = Math.round(bar.getBoundingClientRect().width);
  bar.click();
  out.setAttribute('data-bar-width', String(width));
  out.setAttribute('data-zoomed', String(bar.classList.contains('zoom')));
  document.body.appendChild(out);
});
</script>"""


def test_rates_read_apart_and_counts_have_separators() -> None:
    assert rate_label(0.05) == "5%" and rate_label(0.1) == "10%"
    assert rate_label(0.0498, 0.0498) == "4.98% (policy's share)"
    metrics = pd.concat(
        [
            _metrics((0.1, 0.05, 0.15)),
            pd.DataFrame([_row("model", 0.05, "precision", 0.4, 0.3, 0.5)]),
        ]
    )
    table = capacity_pivot(metrics, TRUTH)
    model_rows = table.loc[table["model"] == "model", "n %"].tolist()
    assert model_rows == ["5%", "5.12% (policy's share)"]  # one row per rate, never alike
    html = str(_frame_html(pd.DataFrame({"declarations": [1234567], "share": [0.5]})))
    assert "1,234,567" in html and "0.500" in html


def test_a_baseline_without_a_paired_difference_is_judged_on_unpaired_intervals() -> None:
    metrics = _metrics((0.10, 0.05, 0.15))
    metrics = metrics.loc[metrics["model"] != "model - rules"]
    config = AcceptanceConfig(baselines=["rules"])
    first = _decide(metrics, CALIBRATED, STABLE, config, TRUTH, "r").criteria[0]
    assert first.name == "beats rules" and first.status == "pass"
    assert first.figure == "0.400 [0.360, 0.440] vs 0.200 [0.170, 0.230]"
    assert "(unpaired)" in first.requirement
