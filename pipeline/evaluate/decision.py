"""The reviewer's decision page: acceptance criteria, each with its figure and pass / fail, the
verdict, and the exact command that approves.

Every criterion is computed from figures the report already holds (the tidy metrics frame with
its bootstrap intervals, the reliability table, the judged drift table), under the thresholds of
`evaluate.acceptance`. The comparators are named: "best baseline" is the best, at the decision
rate, of the learners listed in `acceptance.baselines` (a reference learner added to the metrics
frame under its name is judged as soon as it is listed there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from jinja2 import Environment, select_autoescape
from markupsafe import Markup

from pipeline.config import AcceptanceConfig
from pipeline.evaluate.keys import AT_OFFICE_CAPACITY, HISTORICAL, Population, difference_name

Status = Literal["pass", "fail", "not judged"]
READY = "ready to approve"  # the only verdict `targeting approve` takes without --override
EVERY_ROW_INSPECTED = "every one inspected"  # named in the population of such data


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
    population: Population | None
    rate: float | None
    approve_command: str
    champion: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        """Whether `targeting approve` takes this model without an override."""
        return self.verdict == READY

    @property
    def population_label(self) -> str:
        """The population judged on, in words ('' when the report has none)."""
        return self.population.label if self.population is not None else ""

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


def _rows(metrics: pd.DataFrame, population: Population | None, metric: str) -> pd.DataFrame:
    return metrics.loc[(metrics["population"] == population) & (metrics["metric"] == metric)]


def _at(rows: pd.DataFrame, model: str, rate: float) -> pd.Series | None:
    """The row of `model` at `rate` (to 1e-9), or None."""
    hit = rows.loc[(rows["model"] == model) & np.isclose(rows["rate"].astype(float), rate)]
    return None if hit.empty else hit.iloc[0]


def decision_rate(
    metrics: pd.DataFrame,
    population: Population | None,
    config: AcceptanceConfig,
    fallback: float | None = None,
) -> float | None:
    """The rate the criteria are judged at: the configured one, else the historical policy's
    control share (office capacity) when the report has it, else `fallback` (the report's
    headline rate: data where every declaration was inspected has no policy share)."""
    if config.rate is not None:
        return float(config.rate)
    policy = metrics.loc[
        (metrics["population"] == population)
        & (metrics["model"] == HISTORICAL)
        & (metrics["metric"] == "control_share")
    ]
    return float(policy["value"].iloc[0]) if len(policy) else fallback


def _beats(rows: pd.DataFrame, comparator: str, rate: float, metric: str) -> Criterion:
    """Model minus `comparator`: the paired bootstrap interval must lie above zero."""
    requirement = f"model - {comparator}: paired 95 % interval of {metric}@{_pct(rate)} above 0"
    diff = _at(rows, difference_name("model", comparator), rate)
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
    model = rows.loc[rows["model"] == AT_OFFICE_CAPACITY]
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


def _baseline_criteria(
    rows: pd.DataFrame, rate: float | None, config: AcceptanceConfig, references: Sequence[str]
) -> list[Criterion]:
    """Whether the model beats each listed baseline at the decision rate: `BEST_REFERENCE`
    stands for every healthy reference learner (the model must beat each, not one chosen on
    some other metric); a listed baseline absent from the report is left out."""
    if rate is None:
        return [Criterion("beats the baselines", "a decision rate", "none", "not judged")]
    criteria: list[Criterion] = []
    for name in config.baselines:
        if name == BEST_REFERENCE and not references:
            criteria.append(
                Criterion(
                    "beats every healthy reference learner",
                    "at least one reference learner that is a real fit",
                    "no healthy reference learner",
                    "not judged",
                )
            )
        for comparator in references if name == BEST_REFERENCE else [name]:
            if _at(rows, comparator, rate) is not None:
                criteria.append(_beats(rows, comparator, rate, config.metric))
    return criteria


def chance_misses(cells: int, share: float = 0.05) -> int:
    """Most cells a 95 % band may miss by chance alone (the binomial's 99th percentile)."""
    from scipy.stats import binom

    return int(binom.ppf(0.99, cells, share)) if cells else 0


def _calibration_criterion(
    calibration: pd.DataFrame, config: AcceptanceConfig, population: str
) -> Criterion:
    """Calibration judged on the population the probability claims (`population`): with bin
    intervals (the random stratum's thin, weighted rows), no more bins outside their interval
    than chance allows; else the mean |predicted - observed| below the bound."""
    on = f" on {population}" if population else ""
    if "low" in calibration and len(calibration):
        judged = calibration.dropna(subset=["low", "high"])
        predicted = judged["predicted"].astype(float)
        outside = int(((predicted < judged["low"]) | (predicted > judged["high"])).sum())
        allowed = chance_misses(len(judged))
        return Criterion(
            "calibrated",
            f"predicted probability inside the observed 95 % interval{on} in every bin but "
            "what chance allows",
            f"{len(judged) - outside} of {len(judged)} bins inside"
            if len(judged)
            else "too few to judge",
            "not judged" if not len(judged) else ("pass" if outside <= allowed else "fail"),
        )
    error = calibration_error(calibration)
    bound = config.max_calibration_error
    return Criterion(
        "calibrated",
        f"mean |predicted - observed| over the reliability bins{on} below {bound:.3f}",
        "no reliability table" if error is None else f"{error:.4f}",
        "not judged" if error is None else ("pass" if error < bound else "fail"),
    )


WALK_NAME = "the deployed procedure holds (walk-forward)"


def walk_criterion(walk: Any, rate: float | None, metric: str) -> Criterion:
    """What deploys, replayed at past cut-offs (`walkforward.WalkForward`): its `metric` at the
    rate nearest the decision rate not significantly below the evaluated model's on the same
    stretches, and each channel's realised hit rate inside the export's 95 % range in every
    cell but what chance allows."""
    from pipeline.evaluate.walkforward import DEPLOYED, EVALUATED, INSPECTED

    requirement = (
        f"deployed - evaluated {metric}: paired 95 % interval reaching 0 or above; realised "
        "channel hit rates inside the 95 % range"
    )
    if walk is None or walk.stretches.empty:
        return Criterion(WALK_NAME, requirement, "not run", "not judged")
    inside, cells = walk.coverage()
    parts, failed = [], cells - inside > chance_misses(cells)
    parts.append(f"channels inside the range: {inside} of {cells}" if cells else "no channel")
    rows = walk.metrics.loc[walk.metrics["metric"] == metric] if len(walk.metrics) else None
    if rows is not None and len(rows) and walk.population != INSPECTED and rate is not None:
        rates = rows["rate"].astype(float).dropna().unique()
        near = float(rates[np.argmin(np.abs(rates - rate))])
        diff = _at(rows, f"{DEPLOYED} - {EVALUATED}", near)
        if diff is not None:
            low, high = float(diff["low"]), float(diff["high"])
            parts.insert(
                0, f"{metric}@{_pct(near)} {_with_interval(float(diff['value']), low, high)}"
            )
            failed |= bool(np.isfinite(high) and high < 0)
    status: Status = "fail" if failed else ("pass" if cells else "not judged")
    return Criterion(WALK_NAME, requirement, "; ".join(parts), status)


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


@dataclass(frozen=True)
class Evidence:
    """What the criteria are judged on: the metrics frame and its most honest population, the
    calibration table on the population the probability claims, the drift of the judged
    features, and the rate to judge at when neither the config nor the policy gives one."""

    metrics: pd.DataFrame
    population: Population | None
    calibration: pd.DataFrame
    calibration_population: str = ""
    judged_drift: pd.DataFrame = field(default_factory=pd.DataFrame)
    fallback_rate: float | None = None


@dataclass(frozen=True)
class Against:
    """What the model is compared with besides the baselines of its metrics: the champion's
    name, the healthy reference learners, and the walk-forward replay of the deployment
    (a `walkforward.WalkForward`)."""

    champion: str | None = None
    references: Sequence[str] = ()
    walk: Any = None


def decide(
    evidence: Evidence, config: AcceptanceConfig, run_id: str, against: Against | None = None
) -> Decision:
    """Judge every acceptance criterion and give the verdict: first what deploys, replayed
    (`against.walk`), then the evaluated model against each listed baseline (`BEST_REFERENCE`
    standing for every healthy reference learner in `against.references`), the historical
    policy and the champion, its calibration on the claimed population, drift."""
    against = against or Against()
    metrics, population = evidence.metrics, evidence.population
    champion, walk = against.champion, against.walk
    calibration_population = evidence.calibration_population
    rate = decision_rate(metrics, population, config, evidence.fallback_rate)
    rows = _rows(metrics, population, config.metric)
    criteria = [walk_criterion(walk, rate, config.metric)] if walk is not None else []
    criteria += _baseline_criteria(rows, rate, config, against.references)
    # Where every declaration was inspected (KCS) there was no selection policy to beat.
    every_row = EVERY_ROW_INSPECTED in calibration_population
    if config.historical_policy and not every_row:
        criteria.append(_beats_historical(rows, config.metric))
    if champion is not None and rate is not None:
        criteria.append(_beats(rows, champion, rate, config.metric))
    criteria.append(_calibration_criterion(evidence.calibration, config, calibration_population))
    criteria.append(_drift_criterion(evidence.judged_drift, config))
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
, judged on {{ d.population_label }} at a control rate of {{ rate }}{% endif %}.</p>
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
        "population": decision.population_label,
        "criteria": [
            {"name": c.name, "requirement": c.requirement, "figure": c.figure, "status": c.status}
            for c in decision.criteria
        ],
        "approve_command": decision.approve_command,
    }
