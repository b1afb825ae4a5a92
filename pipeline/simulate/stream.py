"""The declaration stream: when declarations are lodged, who lodges what where, and how much.

Lodging days follow weekday and yearly seasonality and a flow that grows as new importers arrive;
each declaration's importer is drawn among those active that day, then its seller, goods, office,
transport mode, declarant and route from the importer's ties; mass, quantity and true value
(mass x reference price x noise) follow.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from pipeline.config import SimulateConfig
from pipeline.simulate.draws import pick
from pipeline.simulate.entities import (
    HS6_SLOT_P,
    MODE_WEIGHT,
    SELLER_SLOT_P,
    Countries,
    Entities,
    Importers,
)
from pipeline.simulate.goods import Catalogue
from pipeline.simulate.scheme import Tariff

WEEKDAY_FACTOR = np.array([1.1, 1.05, 1.0, 1.0, 0.9, 0.25, 0.08])  # Monday .. Sunday


@dataclass(frozen=True)
class Lodging:
    """The expected flow per day and each declaration's lodging day and second."""

    day_index: np.ndarray  # 0 .. days - 1
    day_p: np.ndarray  # relative expected flow per day (weekday, season, active importers)
    day: np.ndarray  # int32 lodging day per declaration, in order
    lodged_s: np.ndarray  # int64 seconds since the start, sorted


@dataclass(frozen=True)
class Parties:
    """Who declares what, where: indexes into the entities and the catalogue per declaration."""

    importer: np.ndarray
    seller: np.ndarray
    hs6: np.ndarray
    true_code: np.ndarray  # national code actually shipped
    office: np.ndarray
    mode: np.ndarray
    declarant: np.ndarray
    true_origin: np.ndarray
    via_hub: np.ndarray  # bool: routed through a transit hub
    departure: np.ndarray
    chapter: np.ndarray  # chapter index of the true goods


@dataclass(frozen=True)
class Consignments:
    """What is truly shipped: mass, quantity, value; the duty rate of the true code and origin."""

    net_mass: np.ndarray
    quantity: np.ndarray
    true_value: np.ndarray
    true_rate: np.ndarray


def draw_lodging(rng: np.random.Generator, config: SimulateConfig, importers: Importers) -> Lodging:
    """Days by a multinomial over the growing active flow; times mostly in business hours."""
    n, days = config.rows, config.days
    day_index = np.arange(days)
    active_weight = np.cumsum(importers.size)[
        np.searchsorted(importers.first_day, day_index, side="right") - 1
    ]
    weekday = (dt.date.fromordinal(config.start.toordinal()).weekday() + day_index) % 7
    season = 1 + 0.1 * np.sin(2 * np.pi * day_index / 365)
    day_p = WEEKDAY_FACTOR[weekday] * active_weight * season
    day_counts = rng.multinomial(n, day_p / day_p.sum())
    day = np.repeat(day_index, day_counts).astype(np.int32)
    business = rng.random(n) < 0.85
    seconds = np.where(
        business,
        np.clip(rng.normal(12.0 * 3600, 2.5 * 3600, n), 0, 86_399),
        rng.uniform(0, 86_399, n),
    ).astype(np.int64)
    # Days are already in order; sorting the timestamps only reorders rows within a day.
    lodged_s = np.sort(day.astype(np.int64) * 86_400 + seconds)
    return Lodging(day_index, day_p, day, lodged_s)


def _active_importer(rng: np.random.Generator, importers: Importers, day: np.ndarray) -> np.ndarray:
    """An importer per declaration, by size among those already active on its day."""
    cumulative_size = np.cumsum(importers.size)
    n_active = np.searchsorted(importers.first_day, day, side="right")
    u = rng.random(len(day)) * cumulative_size[n_active - 1]
    importer = np.minimum(np.searchsorted(cumulative_size, u, side="right"), n_active - 1)
    return importer.astype(np.int32)


def draw_parties(
    rng: np.random.Generator,
    cat: Catalogue,
    countries: Countries,
    entities: Entities,
    lodging: Lodging,
) -> Parties:
    """The importer, then its usual seller and goods (mostly), office, mode, declarant, route."""
    n = len(lodging.day)
    offices, declarants = entities.offices, entities.declarants
    importer = _active_importer(rng, entities.importers, lodging.day)
    seller = entities.ties.sellers[importer, pick(rng, SELLER_SLOT_P, n)]
    hs6 = entities.ties.hs6[importer, pick(rng, HS6_SLOT_P, n)]
    true_code = cat.hs6_first[hs6] + (rng.random(n) * cat.hs6_count[hs6]).astype(np.int64)
    home_office = entities.importers.home_office[importer]
    office = np.where(rng.random(n) < 0.85, home_office, pick(rng, offices.weight, n))
    mode = np.where(rng.random(n) < 0.8, offices.mode[office], pick(rng, MODE_WEIGHT, n))
    declarant = np.where(
        rng.random(n) < 0.85, declarants.usual[importer], pick(rng, declarants.size, n)
    )
    true_origin = entities.sellers.country[seller]
    via_hub = rng.random(n) < 0.12
    departure = np.where(
        via_hub, countries.hubs[rng.integers(0, len(countries.hubs), n)], true_origin
    )
    return Parties(
        importer=importer,
        seller=seller,
        hs6=hs6,
        true_code=true_code,
        office=office,
        mode=mode,
        declarant=declarant,
        true_origin=true_origin,
        via_hub=via_hub,
        departure=departure,
        chapter=cat.hs6_chapter[hs6],
    )


def draw_consignments(
    rng: np.random.Generator,
    cat: Catalogue,
    tariff: Tariff,
    importers: Importers,
    parties: Parties,
) -> Consignments:
    """Mass around the goods' and importer's scale; true value = mass x reference price x noise."""
    n = len(parties.importer)
    hs6, importer = parties.hs6, parties.importer
    log_mass = cat.hs6_log_mass[hs6] + importers.scale[importer] + rng.normal(0.0, 0.8, n)
    net_mass = np.maximum(np.round(np.exp(log_mass), 1), 0.1)
    quantity = np.maximum(np.round(net_mass / cat.hs6_unit_mass[hs6]), 1.0)
    true_value = (
        net_mass * tariff.ref_price[hs6, parties.true_origin] * np.exp(rng.normal(0.0, 0.2, n))
    )
    true_value = np.maximum(np.round(true_value, 2), 1.0)
    true_rate = tariff.rate(parties.true_code, parties.true_origin)
    return Consignments(net_mass, quantity, true_value, true_rate)
