"""Synthetic declaration stream with inspection outcomes and ground truth: our laboratory.

`simulate(config, seed)` builds, in memory and without I/O, one stage after the other, each
returning a small frozen dataclass of what it made (the same seed gives identical frames):

- goods (`goods.py`): an HS catalogue (hs2 > hs4 > hs6 > 10-digit national code) with duty rates.
- the trading world (`entities.py`): countries with a risk level and preferential status;
  offices with their own flows and transport modes; importers with heavy-tailed declaration
  rates, a latent compliance propensity, an AEO subset and newcomers; declarants, a few
  complicit; foreign sellers; each importer's usual sellers and goods.
- the hidden scenario (`scheme.py`): the emerging scheme's source, transit hub and chapters, the
  rules' targets; reference unit prices per HS6 x origin and the duty rate of a code and origin.
- the stream (`stream.py`): lodging times with weekday and yearly seasonality over a growing flow;
  who declares what, where; mass, quantity, true value.
- fraud (`fraud.py`): classic schemes by a logistic propensity, the emerging scheme from
  `drift_start` (concept drift); what is declared; the revenue at stake.
- the historical policy (`policy.py`): random draws, rules and officers within each office's
  daily capacity; the inspections' times, reasons and hits.
- the tables (`tables.py`): the canonical declarations, outcomes, ground truth, offices, capacity
  and the scenario's known answers; `summary.py` gives the headline figures.

Everything is vectorised over declarations (numpy integer codes, categoricals at the end); loops
run only over the small catalogues.
"""

from __future__ import annotations

import numpy as np

from pipeline.config import SimulateConfig
from pipeline.simulate.entities import draw_countries, draw_entities
from pipeline.simulate.fraud import EMERGING, FRAUD_TYPES, declare, draw_fraud
from pipeline.simulate.goods import draw_catalogue
from pipeline.simulate.policy import inspect, select_historically
from pipeline.simulate.scheme import design_scheme, draw_tariff
from pipeline.simulate.stream import draw_consignments, draw_lodging, draw_parties
from pipeline.simulate.summary import summary
from pipeline.simulate.tables import (
    SimulatedData,
    declaration_ids,
    declarations_table,
    ground_truth_table,
    office_tables,
    outcomes_table,
    scenario_answers,
)
from pipeline.simulate.world import Flow, World

__all__ = ["EMERGING", "FRAUD_TYPES", "SimulatedData", "scaled_config", "simulate", "summary"]


def scaled_config(rows: int) -> SimulateConfig:
    """A stream of `rows` declarations whose importers, sellers and declarants grow with it, in
    the proportions of the default 200,000 (benchmarks at millions of rows use it)."""
    scale = rows / 200_000
    return SimulateConfig(
        rows=rows,
        importers=max(int(8_000 * scale), 100),
        sellers=max(int(6_000 * scale), 100),
        declarants=max(int(300 * scale), 10),
    )


def simulate(config: SimulateConfig, seed: int) -> SimulatedData:
    """Simulate declarations, the historical policy's outcomes and the ground truth.

    The stages draw from one generator in this order; changing the order changes every number.
    """
    rng = np.random.default_rng(seed)
    cat = draw_catalogue(rng)
    countries = draw_countries(rng)
    scheme = design_scheme(rng, cat, countries)
    tariff = draw_tariff(rng, cat, countries, scheme)
    entities = draw_entities(rng, config, cat, countries)
    lodging = draw_lodging(rng, config, entities.importers)
    parties = draw_parties(rng, cat, countries, entities, lodging)
    consignments = draw_consignments(rng, cat, tariff, entities.importers, parties)
    world = World(cat, countries, scheme, tariff)
    flow = Flow(entities, lodging, parties, consignments)
    fraud = draw_fraud(rng, config, world, flow)
    declared = declare(rng, config, world, flow, fraud)
    selection = select_historically(rng, config, world, flow, declared, fraud)
    inspections = inspect(rng, config, lodging, fraud, selection)
    ids = declaration_ids(config.rows)
    declarations = declarations_table(rng, config, ids, world, flow, declared)
    outcomes = outcomes_table(config, ids, fraud, declared, selection, inspections)
    truth = ground_truth_table(ids, world, flow, fraud, declared)
    offices, capacity = office_tables(config, entities, lodging, selection)
    scenario = scenario_answers(config, cat, countries, scheme)
    return SimulatedData(declarations, outcomes, truth, offices, capacity, scenario)
