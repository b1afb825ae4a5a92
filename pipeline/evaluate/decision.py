"""The reviewer's decision page: acceptance criteria, each with its figure and pass / fail, the
verdict, and the exact command that approves.

Every criterion is computed from figures the report already holds (the tidy metrics frame with
its bootstrap intervals, the reliability table, the judged drift table), under the thresholds of
`evaluate.acceptance`. The comparators are named: "best baseline" is the best, at the decision
rate, of the learners listed in `acceptance.baselines` (a reference learner added to the metrics
frame under its name is judged as soon as it is listed there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from jinja2 import Environment, select_autoescape
from markupsafe import Markup

from pipeline.config import AcceptanceConfig

Status = Literal["pass", "fail", "not judged"]
READY = "ready to approve"  # the only verdict `targeting approve` takes without --override
HISTORICAL = "historical policy"
AT_CAPACITY = "model at office capacity"


@dataclass(frozen=True)
class Criterion:
    """One acceptance criterion: what is required, the figure measured, and its status."""

    name: str
    requirement: str
    figure: str
    status: Status


@dataclass(frozen=True)
class Decision:
    """The verdict over every criterion, and how to act on it."""

    criteria: list[Criterion]
    verdict: str  # "ready to approve" | "not ready" | "incomplete"
    population: str
    rate: float | None
    approve_command: str
    champion: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        """Whether `targeting approve` takes this model without an override."""
        return self.verdict == READY

    @property
    def override_command(self) -> str:
        """The approve command with the override a verdict other than ready requires."""
        return f'{self.approve_command} --override "why the verdict is set aside"'


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _with_interval(value: float, low: float, high: float) -> str:
    if np.isfinite(low) and np.isfinite(high):
        return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"
    return f"{value:+.3f} (no interval)"


def _rows(metrics: pd.DataFrame, population: str, metric: str) -> pd.DataFrame:
    return metrics.loc[(metrics["population"] == population) & (metrics["metric"] == metric)]


def _at(rows: pd.DataFrame, model: str, rate: float) -> pd.Series | None:
    """The row of `model` at `rate` (to 1e-9), or None."""
    hit = rows.loc[(rows["model"] == model) & np.isclose(rows["rate"].astype(float), rate)]
    return None if hit.empty else hit.iloc[0]


def decision_rate(metrics: pd.DataFrame, population: str, config: AcceptanceConfig) -> float | None:
    """The rate the criteria are judged at: the configured one, else the historical policy's
    control share (office capacity) when the report has it, else None."""
    if config.rate is not None:
        return float(config.rate)
    policy = metrics.loc[
        (metrics["population"] == population)
        & (metrics["model"] == HISTORICAL)
        & (metrics["metric"] == "control_share")
    ]
    return float(policy["value"].iloc[0]) if len(policy) else None


def _beats(rows: pd.DataFrame, comparator: str, rate: float, metric: str) -> Criterion:
    """Model minus `comparator`: the paired bootstrap interval must lie above zero."""
    requirement = f"model - {comparator}: paired 95 % interval of {metric}@{_pct(rate)} above 0"
    diff = _at(rows, f"model - {comparator}", rate)
    if diff is None:
        return _beats_unpaired(rows, comparator, rate, metric)
    low, high = float(diff["low"]), float(diff["high"])
    passed = bool(np.isfinite(low) and low > 0)
    figure = _with_interval(float(diff["value"]), low, high)
    return Criterion(f"beats {comparator}", requirement, figure, "pass" if passed else "fail")


def _beats_unpaired(rows: pd.DataFrame, comparator: str, rate: float, metric: str) -> Criterion:
    """Without a paired difference in the report: the model's interval must lie above the
    comparator's (stricter than a paired interval)."""
    requirement = f"{metric}@{_pct(rate)}: model's 95 % interval above {comparator}'s (unpaired)"
    model, other = _at(rows, "model", rate), _at(rows, comparator, rate)
    if model is None or other is None:
        return Criterion(f"beats {comparator}", requirement, "no figure at this rate", "not judged")
    low, high = float(model["low"]), float(other["high"])
    if not (np.isfinite(low) and np.isfinite(high)):
        return Criterion(f"beats {comparator}", requirement, "no interval", "not judged")
    figure = (
        f"{float(model['value']):.3f} [{low:.3f}, {float(model['high']):.3f}] vs "
        f"{float(other['value']):.3f} [{float(other['low']):.3f}, {high:.3f}]"
    )
    return Criterion(f"beats {comparator}", requirement, figure, "pass" if low > high else "fail")


def _best_baseline(rows: pd.DataFrame, rate: float, names: list[str]) -> str | None:
    values = {n: float(row["value"]) for n in names if (row := _at(rows, n, rate)) is not None}
    return max(values, key=lambda n: values[n]) if values else None


def _beats_historical(rows: pd.DataFrame, metric: str) -> Criterion:
    """The model at the historical policy's office capacity: its interval above the policy's."""
    requirement = (
        f"{metric} of the model at the policy's office capacity: 95 % interval above the "
        "historical policy's"
    )
    name = "beats the historical policy"
    policy = rows.loc[rows["model"] == HISTORICAL]
    model = rows.loc[rows["model"] == AT_CAPACITY]
    if policy.empty or model.empty:
        return Criterion(name, requirement, "needs ground truth (no policy figure)", "not judged")
    p, m = policy.iloc[0], model.iloc[0]
    figure = (
        f"{float(m['value']):.3f} [{float(m['low']):.3f}, {float(m['high']):.3f}] vs "
        f"{float(p['value']):.3f} [{float(p['low']):.3f}, {float(p['high']):.3f}]"
    )
    passed = bool(float(m["low"]) > float(p["high"]))
    return Criterion(name, requirement, figure, "pass" if passed else "fail")


def calibration_error(calibration: pd.DataFrame) -> float | None:
    """Mean |predicted - observed| over the reliability table's equal-count bins (an expected
    calibration error); None without a table."""
    if calibration.empty:
        return None
    gap = (calibration["predicted"].astype(float) - calibration["observed"].astype(float)).abs()
    return float(gap.mean())


BEST_REFERENCE = "best reference learner"


def _baseline_criterion(
    rows: pd.DataFrame, rate: float | None, config: AcceptanceConfig, best_reference: str | None
) -> Criterion:
    """Whether the model beats the best of the listed baselines at the decision rate."""
    if rate is None:
        return Criterion("beats the best baseline", "a decision rate", "none", "not judged")
    names = [
        (best_reference or "") if name == BEST_REFERENCE else name for name in config.baselines
    ]
    best = _best_baseline(rows, rate, [name for name in names if name])
    if best is None:
        return Criterion(
            "beats the best baseline",
            f"one of {', '.join(config.baselines)} in the report",
            "none present",
            "not judged",
        )
    beaten = _beats(rows, best, rate, config.metric)
    return Criterion(
        f"beats the best baseline ({best})", beaten.requirement, beaten.figure, beaten.status
    )


def _calibration_criterion(calibration: pd.DataFrame, config: AcceptanceConfig) -> Criterion:
    error = calibration_error(calibration)
    bound = config.max_calibration_error
    return Criterion(
        "calibrated",
        f"mean |predicted - observed| over the reliability bins below {bound:.3f}",
        "no reliability table" if error is None else f"{error:.4f}",
        "not judged" if error is None else ("pass" if error < bound else "fail"),
    )


def _drift_criterion(judged_drift: pd.DataFrame, config: AcceptanceConfig) -> Criterion:
    psi = judged_drift["psi"].astype(float) if "psi" in judged_drift else pd.Series(dtype=float)
    drifting = judged_drift.loc[psi >= config.max_psi, "feature"].astype(str).tolist()
    return Criterion(
        "no unexplained drift",
        f"PSI below {config.max_psi:g} for every judged feature (train vs test)",
        "no drift table"
        if psi.empty
        else (f"max PSI {psi.max():.3f}" + (f": {', '.join(drifting[:5])}" if drifting else "")),
        "not judged" if psi.empty else ("fail" if drifting else "pass"),
    )


def decide(
    metrics: pd.DataFrame,
    calibration: pd.DataFrame,
    judged_drift: pd.DataFrame,
    config: AcceptanceConfig,
    population: str | None,
    run_id: str,
    champion: str | None = None,
    best_reference: str | None = None,
) -> Decision:
    """Judge every acceptance criterion and give the verdict; the baseline named
    `BEST_REFERENCE` stands for ``best_reference``, the strongest reference learner."""
    population = population or ""
    rate = decision_rate(metrics, population, config)
    rows = _rows(metrics, population, config.metric)
    criteria = [_baseline_criterion(rows, rate, config, best_reference)]
    if config.historical_policy:
        criteria.append(_beats_historical(rows, config.metric))
    if champion is not None and rate is not None:
        criteria.append(_beats(rows, champion, rate, config.metric))
    criteria.append(_calibration_criterion(calibration, config))
    criteria.append(_drift_criterion(judged_drift, config))
    statuses = {c.status for c in criteria}
    verdict = (
        "not ready"
        if "fail" in statuses
        else ("incomplete" if "not judged" in statuses else "ready to approve")
    )
    command = (
        f'targeting approve --run-id {run_id} --reason "..."'
        if run_id
        else 'targeting approve --version N --reason "..."'
    )
    return Decision(
        criteria=criteria,
        verdict=verdict,
        population=population,
        rate=rate,
        approve_command=command,
        champion=champion,
    )


_PAGE = """<section id="decision"><h2>Decision</h2>
<p class="verdict {{ css }}"><b>Verdict: {{ d.verdict }}</b>{% if d.rate is not none -%}
, judged on {{ d.population }} at a control rate of {{ rate }}{% endif %}.</p>
<table class="grid decision"><tr><th>criterion</th><th>requirement</th><th>figure</th>
<th>result</th></tr>{% for c in d.criteria %}<tr class="{{ c.status|replace(' ', '-') }}">
<td>{{ c.name }}</td><td>{{ c.requirement }}</td><td class="num">{{ c.figure }}</td>
<td>{{ c.status }}</td></tr>{% endfor %}</table>
{% if d.champion %}<p class="note">Challenger against the current champion ({{ d.champion }}):
see the criterion above and the paired differences under Metrics.</p>{% else %}<p class="note">
No champion is registered yet: this model would be the first.</p>{% endif %}
{% if d.ready %}<p>To approve after review (the export registers the scorer this command
approves):</p>
<pre>{{ d.approve_command }}</pre>{% else %}<p>The verdict is <b>{{ d.verdict }}</b>:
<code>targeting approve</code> refuses this model. A reviewer who approves it all the same
records why the verdict is set aside (the override, the verdict and its criteria are kept on the
registered version):</p>
<pre>{{ d.override_command }}</pre>{% endif %}</section>
"""


def render_decision(decision: Decision) -> Markup:
    """The decision page as an HTML section (placed first in the report)."""
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    css = {"ready to approve": "ok", "not ready": "fail", "incomplete": "warn"}[decision.verdict]
    rate = _pct(decision.rate) if decision.rate is not None else ""
    return Markup(env.from_string(_PAGE).render(d=decision, css=css, rate=rate))


def decision_figures(decision: Decision) -> dict[str, Any]:
    """The decision as JSON-ready data (metrics.json, MLflow tags)."""
    return {
        "verdict": decision.verdict,
        "rate": decision.rate,
        "population": decision.population,
        "criteria": [
            {"name": c.name, "requirement": c.requirement, "figure": c.figure, "status": c.status}
            for c in decision.criteria
        ],
        "approve_command": decision.approve_command,
    }
