"""Fraud with ground truth, what each declaration then declares, and the revenue at stake.

Classic schemes: undervaluation, misclassification (a code of the same hs4 with a lower duty),
origin fraud (a preferential origin claimed) and prohibited goods (critical, no revenue). Their
probability is a logistic function of importer propensity, declarant complicity, seller,
commodity and route risk, with an intercept solved so the overall rate hits `fraud_rate`.
Concept drift: `emerging_transshipment` appears at `drift_start` (none before) and takes
`emerging_share` of the frauds after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.config import SimulateConfig
from pipeline.simulate.draws import pick_rows, sigmoid, solve_intercept, top_k_weighted
from pipeline.simulate.entities import Countries, Entities
from pipeline.simulate.goods import Catalogue
from pipeline.simulate.scheme import Scheme
from pipeline.simulate.stream import Parties
from pipeline.simulate.world import Flow, World

FRAUD_TYPES: tuple[str, ...] = (
    "none",
    "undervaluation",
    "misclassification",
    "origin",
    "prohibited",
    "emerging_transshipment",
)
EMERGING = "emerging_transshipment"


@dataclass(frozen=True)
class Fraud:
    """The ground truth: which declarations are fraudulent, and by which scheme."""

    fraud: np.ndarray  # bool
    scheme: np.ndarray  # int8 index into FRAUD_TYPES
    emerging_rows: np.ndarray  # positions of the emerging scheme's declarations


@dataclass(frozen=True)
class Declared:
    """What is declared (code, origin, departure, value, rate, duty) and what a control recovers."""

    code: np.ndarray
    origin: np.ndarray
    departure: np.ndarray
    value: np.ndarray
    rate: np.ndarray
    duty: np.ndarray
    recoverable: np.ndarray  # duty evaded, 0 unless fraud
    critical: np.ndarray  # bool: prohibited goods


def _propensity(
    countries: Countries, entities: Entities, parties: Parties, cat: Catalogue
) -> np.ndarray:
    """Logit of fraud before the intercept: importer, declarant, seller, goods and route risk."""
    importer = parties.importer
    return (
        entities.importers.risk[importer]
        + 1.5 * entities.declarants.complicit[parties.declarant]
        + 0.8 * entities.sellers.risk[parties.seller]
        + cat.hs6_risk[parties.hs6]
        + countries.risk[parties.true_origin]
        + 0.4 * parties.via_hub
    ).astype(np.float32)


def _classic_schemes(
    rng: np.random.Generator, fraud: np.ndarray, world: World, flow: Flow
) -> np.ndarray:
    """Scheme of each fraud: base weights x eligibility x the importer's taste."""
    cat, countries = world.cat, world.countries
    entities, parties, consignments = flow.entities, flow.parties, flow.consignments
    rows = np.flatnonzero(fraud)
    rate_f, origin_f = consignments.true_rate[rows], parties.true_origin[rows]
    weights = (
        np.stack(
            [
                0.5 * (0.15 + (rate_f > 0)),
                0.25 * (cat.cheaper_sibling[parties.true_code[rows]] >= 0),
                0.2 * (~countries.preferential[origin_f] & (rate_f > 0)),
                0.05 * np.where(cat.chapter_sensitive[parties.chapter[rows]], 4.0, 0.3),
            ],
            axis=1,
        )
        * entities.importers.scheme_taste[parties.importer[rows]]
    )
    scheme = np.zeros(len(fraud), dtype=np.int8)  # index into FRAUD_TYPES
    scheme[rows] = pick_rows(rng, weights, weights.sum(axis=1)) + 1
    return scheme


def _emerging_rows(
    rng: np.random.Generator,
    target: int,
    pool: np.ndarray,
    entities: Entities,
    parties: Parties,
    scheme: Scheme,
) -> np.ndarray:
    """The emerging scheme's declarations: weighted by importer propensity, heavier from the
    source."""
    weight = np.where(
        pool,
        np.exp(entities.importers.risk[parties.importer])
        * np.where(parties.true_origin == scheme.source, 4.0, 1.0),
        0.0,
    )
    return top_k_weighted(rng, weight, target)


def draw_fraud(rng: np.random.Generator, config: SimulateConfig, world: World, flow: Flow) -> Fraud:
    """Classic frauds at the rate left once the emerging scheme's share after drift is set aside,
    then the emerging scheme among clean dutiable declarations of its chapters after drift."""
    cat, countries, scheme = world.cat, world.countries, world.scheme
    entities, lodging, parties, consignments = (
        flow.entities,
        flow.lodging,
        flow.parties,
        flow.consignments,
    )
    n = len(parties.importer)
    after_drift = lodging.day >= config.drift_start * config.days
    score = _propensity(countries, entities, parties, cat)
    emerging_target = round(config.emerging_share * config.fraud_rate * int(after_drift.sum()))
    base_rate = max(config.fraud_rate * n - emerging_target, 0) / n
    sample = score[rng.integers(0, n, min(n, 200_000))]
    intercept = solve_intercept(sample.astype(np.float64), base_rate)
    fraud = rng.random(n) < sigmoid(intercept + score)
    kinds = _classic_schemes(rng, fraud, world, flow)
    pool = (
        after_drift
        & ~fraud
        & scheme.is_emerging_chapter[parties.chapter]
        & ~countries.preferential[parties.true_origin]
        & (consignments.true_rate > 0)
    )
    emerging_rows = _emerging_rows(rng, emerging_target, pool, entities, parties, scheme)
    kinds[emerging_rows] = FRAUD_TYPES.index(EMERGING)
    fraud[emerging_rows] = True
    return Fraud(fraud, kinds, emerging_rows)


def declare(
    rng: np.random.Generator, config: SimulateConfig, world: World, flow: Flow, fraud: Fraud
) -> Declared:
    """The declared code, origin, value and duty each scheme implies; the evaded duty; a few
    clerical errors in the declared duty."""
    cat, countries, scheme, tariff = world.cat, world.countries, world.scheme, world.tariff
    parties, consignments = flow.parties, flow.consignments
    kinds, emerging_rows = fraud.scheme, fraud.emerging_rows
    true_code, true_origin = parties.true_code, parties.true_origin
    declared_code = true_code.copy()
    is_mis = kinds == FRAUD_TYPES.index("misclassification")
    declared_code[is_mis] = cat.cheaper_sibling[true_code[is_mis]]
    declared_origin = true_origin.copy()
    is_origin = kinds == FRAUD_TYPES.index("origin")
    declared_origin[is_origin] = countries.substitute[true_origin[is_origin]]
    declared_origin[emerging_rows] = scheme.transit
    departure = parties.departure.copy()  # the stream's route stays the true one
    departure[emerging_rows] = scheme.transit
    true_value = consignments.true_value
    declared_value = true_value.copy()
    is_under = kinds == FRAUD_TYPES.index("undervaluation")
    declared_value[is_under] = np.round(
        true_value[is_under] * rng.uniform(0.35, 0.8, int(is_under.sum())), 2
    )
    rate = tariff.rate(declared_code, declared_origin)
    recoverable = np.maximum(true_value * consignments.true_rate - declared_value * rate, 0.0)
    recoverable = np.round(np.where(fraud.fraud, recoverable, 0.0), 2)
    critical = kinds == FRAUD_TYPES.index("prohibited")
    declared_duty = declared_value * rate
    clerical = rng.random(len(kinds)) < config.duty_error_rate
    declared_duty[clerical] *= np.exp(rng.normal(0.0, 0.2, int(clerical.sum())))
    declared_duty = np.round(declared_duty, 2)
    return Declared(
        code=declared_code,
        origin=declared_origin,
        departure=departure,
        value=declared_value,
        rate=rate,
        duty=declared_duty,
        recoverable=recoverable,
        critical=critical,
    )
