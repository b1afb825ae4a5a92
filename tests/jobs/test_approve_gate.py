"""The reviewer's gate without a registry: `targeting approve` takes a "ready to approve" verdict,
refuses any other unless an override says why, and the decision page offers the command that
fits its verdict (the registry side is in test_approve.py)."""

from __future__ import annotations

import json

import pytest

from pipeline.evaluate.decision import READY, Criterion, Decision, decision_figures, render_decision
from pipeline.evaluate.keys import Population
from pipeline.jobs.approve import ApprovalError, verdict_tags

COMMAND = 'targeting approve --run-id abc123 --reason "..."'


def _decision(verdict: str, status: str) -> Decision:
    return Decision(
        criteria=[
            Criterion("calibrated", "mean gap below 0.020", "0.0110", "pass"),
            Criterion("beats the historical policy", "interval above", "0.31 vs 0.12", status),
        ],
        verdict=verdict,
        population=Population.TRUTH,
        rate=0.05,
        approve_command=COMMAND,
    )


def test_a_ready_verdict_is_approved_and_recorded_without_override() -> None:
    tags = verdict_tags(decision_figures(_decision(READY, "pass")), None, "m v1")
    assert tags["verdict"] == READY and "verdict_override" not in tags
    criteria = json.loads(tags["verdict_criteria"])
    assert [(c["name"], c["status"]) for c in criteria] == [
        ("calibrated", "pass"),
        ("beats the historical policy", "pass"),
    ]
    assert criteria[0]["figure"] == "0.0110"


@pytest.mark.parametrize(
    ("verdict", "status"), [("not ready", "fail"), ("incomplete", "not judged")]
)
def test_any_other_verdict_is_refused_with_what_stands_in_the_way(
    verdict: str, status: str
) -> None:
    figures = decision_figures(_decision(verdict, status))
    with pytest.raises(ApprovalError) as refused:
        verdict_tags(figures, None, "m v1")
    message = str(refused.value)
    assert f"m v1: the report's verdict is '{verdict}'" in message
    assert f"beats the historical policy: {status}" in message and "calibrated:" not in message
    assert '--override "why the verdict is set aside"' in message
    with pytest.raises(ApprovalError):
        verdict_tags(figures, "   ", "m v1")  # a blank override is no reason


def test_an_override_records_its_reason_beside_the_verdict() -> None:
    figures = decision_figures(_decision("not ready", "fail"))
    tags = verdict_tags(figures, " accepted: policy figure from a short window ", "m v1")
    assert tags["verdict"] == "not ready"
    assert tags["verdict_override"] == "accepted: policy figure from a short window"
    assert json.loads(tags["verdict_criteria"])[1]["status"] == "fail"


def test_a_report_without_decision_needs_an_override() -> None:
    with pytest.raises(ApprovalError, match="no decision page"):
        verdict_tags(None, None, "m v1")
    assert verdict_tags(None, "reviewed by hand", "m v1")["verdict_criteria"] == "[]"


def test_the_page_shows_the_approve_command_only_under_ready() -> None:
    ready = str(render_decision(_decision(READY, "pass")))
    assert f"<pre>{COMMAND}</pre>".replace('"', "&#34;") in ready and "--override" not in ready
    for verdict, status in (("not ready", "fail"), ("incomplete", "not judged")):
        page = str(render_decision(_decision(verdict, status)))
        assert f"<pre>{COMMAND}</pre>".replace('"', "&#34;") not in page
        assert "--override &#34;why the verdict is set aside&#34;</pre>" in page
        assert f"The verdict is <b>{verdict}</b>" in page and "refuses this model" in page
