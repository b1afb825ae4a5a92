"""The historical selection policy (which gives the labels) and its inspections' outcomes.

Random draws with known probability `random_rate`, rule criteria (high-risk declared origins,
sensitive chapters, high values, new importers) and officer picks (noisy, correlated with true
risk, biased towards road traffic, lenient with AEO traders), within each office's daily capacity.
Blind spots by construction: no rule looks at unit values, the emerging scheme declares a low-risk
preferential origin in chapters no rule targets, and officers' intuition does not notice it.

Capacity: random draws are taken first and never cut (so `selection_probability` is exactly
`random_rate`); rules and officers fill what is left of the office-day's capacity, highest
priority first. An office-day therefore controls at most max(capacity, random draws) declarations
(random draws beyond capacity are rare because `random_rate` is far below `capacity_rate`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.config import SimulateConfig
from pipeline.ingest.columns import RANDOM
from pipeline.simulate.draws import sample_rows
from pipeline.simulate.entities import TRANSPORT_MODES
from pipeline.simulate.fraud import EMERGING, FRAUD_TYPES, Declared, Fraud
from pipeline.simulate.stream import Lodging, Parties
from pipeline.simulate.world import Flow, World


@dataclass(frozen=True)
class Selection:
    """Each office-day's capacity and which declarations the historical policy controlled."""

    office_rows: np.ndarray  # declarations per office
    capacity: np.ndarray  # int64 controls per office-day, office-major (offices x days, ravelled)
    random_draw: np.ndarray  # bool: drawn at random, with probability `random_rate`
    reason_rule: np.ndarray  # bool: a rule (not an officer) ranked it, where not random
    selected: np.ndarray  # bool


@dataclass(frozen=True)
class Inspections:
    """The controls of the selected declarations: when, why, whether they found the fraud."""

    rows: np.ndarray  # positions of the selected declarations
    selected_s: np.ndarray  # seconds since the start
    result_s: np.ndarray
    hit: np.ndarray  # bool
    reason: np.ndarray  # str: random, rule or intelligence


def _capacity(
    rng: np.random.Generator, config: SimulateConfig, parties: Parties, lodging: Lodging
) -> tuple[np.ndarray, np.ndarray]:
    """Declarations per office, and each office-day's capacity: capacity_rate of the flow it
    expects that day (weekday and season), stochastically rounded to whole controls so small
    offices keep the right rate."""
    office_rows = np.bincount(parties.office, minlength=config.offices)
    day_p = lodging.day_p
    expected = config.capacity_rate * office_rows[:, None] * (day_p / day_p.sum())[None, :]
    capacity = np.floor(expected + rng.random(expected.shape)).astype(np.int64).ravel()
    return office_rows, capacity


def _rule_priority(
    rng: np.random.Generator, world: World, flow: Flow, declared: Declared
) -> np.ndarray:
    """Priority of the rules' hits (-inf where no rule fires): risky origins and chapters, high
    values, new importers."""
    countries, scheme = world.countries, world.scheme
    entities, lodging, parties = flow.entities, flow.lodging, flow.parties
    n = len(declared.value)
    importer = parties.importer
    high_value = declared.value > np.quantile(declared.value[sample_rows(rng, n)], 0.98)
    tenure = lodging.day - entities.importers.first_day[importer]
    rule_flags = (
        1.0 * np.isin(np.arange(len(countries.codes)), scheme.high_risk_origins)[declared.origin]
        + 1.0
        * np.isin(np.arange(len(scheme.is_emerging_chapter)), scheme.rule_chapters)[parties.chapter]
        + 0.7 * high_value
        + 0.7 * (entities.importers.is_new[importer] & (tenure < 60))
    )
    return np.where(rule_flags > 0, 1.5 + rule_flags + rng.normal(0, 0.3, n), -np.inf)


def _officer_priority(
    rng: np.random.Generator,
    config: SimulateConfig,
    world: World,
    flow: Flow,
    declared: Declared,
    fraud: Fraud,
) -> np.ndarray:
    """Officers' picks (-inf where none): a noisy read of the importer and route, a nose for the
    classic schemes, a taste for road traffic; blind to the emerging scheme."""
    countries, entities, parties = world.countries, flow.entities, flow.parties
    n = len(declared.value)
    officer_score = (
        0.6 * entities.importers.risk[parties.importer]
        + 0.6 * countries.risk[declared.origin]
        + 0.3 * np.log1p(declared.value) / 3
        + 0.8 * (fraud.fraud & (fraud.scheme != FRAUD_TYPES.index(EMERGING)))
        + 0.6 * (parties.mode == TRANSPORT_MODES.index("road"))
        + rng.normal(0.0, 1.0, n)
    ).astype(np.float32)
    officer_cut = np.quantile(officer_score[sample_rows(rng, n)], 1 - 2 * config.capacity_rate)
    return np.where(officer_score >= officer_cut, officer_score - officer_cut + 2.5, -np.inf)


def _fill_capacity(
    priority: np.ndarray, office_day: np.ndarray, remaining: np.ndarray
) -> np.ndarray:
    """Rank the candidates within their office-day, highest priority first; cut at what is
    left of the capacity."""
    candidates = np.flatnonzero(np.isfinite(priority))
    order = candidates[np.lexsort((-priority[candidates], office_day[candidates]))]
    sorted_od = office_day[order]
    first = np.r_[True, sorted_od[1:] != sorted_od[:-1]]
    group_start = np.flatnonzero(first)[np.cumsum(first) - 1]
    rank = np.arange(len(order)) - group_start
    chosen = np.zeros(len(priority), dtype=bool)
    chosen[order[rank < remaining[order]]] = True
    return chosen


def select_historically(
    rng: np.random.Generator,
    config: SimulateConfig,
    world: World,
    flow: Flow,
    declared: Declared,
    fraud: Fraud,
) -> Selection:
    """Random draws first, then rules and officers (AEO traders pushed down) up to capacity."""
    entities, lodging, parties = flow.entities, flow.lodging, flow.parties
    n, days = len(declared.value), config.days
    office_rows, capacity = _capacity(rng, config, parties, lodging)
    is_aeo = entities.importers.aeo[parties.importer]
    random_draw = rng.random(n) < config.random_rate
    rule_priority = _rule_priority(rng, world, flow, declared)
    officer_priority = _officer_priority(rng, config, world, flow, declared, fraud)
    priority = np.maximum(rule_priority, officer_priority) - 2.0 * is_aeo
    reason_rule = rule_priority >= officer_priority
    priority[random_draw] = -np.inf  # random draws are taken apart, before the others
    office_day = parties.office.astype(np.int64) * days + lodging.day
    random_per_od = np.bincount(office_day[random_draw], minlength=config.offices * days)
    remaining = np.maximum(capacity[office_day] - random_per_od[office_day], 0)
    chosen = _fill_capacity(priority, office_day, remaining)
    return Selection(office_rows, capacity, random_draw, reason_rule, chosen | random_draw)


def inspect(
    rng: np.random.Generator,
    config: SimulateConfig,
    lodging: Lodging,
    fraud: Fraud,
    selection: Selection,
) -> Inspections:
    """Selection a little after lodging, a result after an exponential delay, a hit when the
    control finds the fraud (with probability `detection_rate`)."""
    sel = np.flatnonzero(selection.selected)
    n_sel_rows = len(sel)
    selected_s = lodging.lodged_s[sel] + rng.exponential(2 * 3600, n_sel_rows).astype(np.int64) + 60
    delay_s = (rng.exponential(max(config.result_delay_days, 0.01), n_sel_rows) + 0.1) * 86_400
    result_s = selected_s + delay_s.astype(np.int64)
    hit = fraud.fraud[sel] & (rng.random(n_sel_rows) < config.detection_rate)
    reason = np.where(
        selection.random_draw[sel],
        RANDOM,
        np.where(selection.reason_rule[sel], "rule", "intelligence"),
    )
    return Inspections(sel, selected_s, result_s, hit, reason)
