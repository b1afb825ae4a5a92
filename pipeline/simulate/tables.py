"""The simulation as canonical tables: declarations, outcomes, ground truth, offices, capacity and
the scenario's known answers.

Integer codes become categoricals of str at the end; identifiers of importers, declarants and
sellers are shuffled so that a number says nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import SimulateConfig
from pipeline.ingest.columns import SELECTION_REASONS
from pipeline.simulate.entities import TRANSPORT_MODES, Countries, Entities
from pipeline.simulate.fraud import EMERGING, FRAUD_TYPES, Declared, Fraud
from pipeline.simulate.goods import Catalogue
from pipeline.simulate.policy import Inspections, Selection
from pipeline.simulate.scheme import ANTI_DUMPING_DUTY, PREFERENTIAL_FACTOR, Scheme
from pipeline.simulate.stream import Lodging
from pipeline.simulate.world import Flow, World


@dataclass
class SimulatedData:
    """The three tables (canonical form); offices, capacity per office-day, the hidden scenario.

    `scenario` names the known answers of the laboratory: the emerging scheme's source, transit
    country and chapters, the historical rules' chapters and origins, preferential origins.
    """

    declarations: pd.DataFrame
    outcomes: pd.DataFrame
    ground_truth: pd.DataFrame
    offices: pd.DataFrame = field(default_factory=pd.DataFrame)
    capacity: pd.DataFrame = field(default_factory=pd.DataFrame)
    scenario: dict[str, Any] = field(default_factory=dict)


def _labels(prefix: str, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Identifiers like IMP00042 (shuffled when `rng` is given, so a number says nothing)."""
    numbers = np.arange(1, n + 1) if rng is None else rng.permutation(n) + 1
    width = max(len(str(n)), 3)
    return np.char.add(prefix, np.char.zfill(numbers.astype(str), width))


def declaration_ids(n: int) -> np.ndarray:
    """'SD' + 10 digits in lodging order, built with digit arithmetic (fast at 10M rows)."""
    numbers = np.arange(1, n + 1, dtype=np.int64)
    text = np.empty((n, 12), dtype=np.uint8)
    text[:, 0], text[:, 1] = ord("S"), ord("D")
    for position in range(10):  # ten digit columns, each one vectorised over all rows
        text[:, 11 - position] = numbers % 10 + ord("0")
        numbers //= 10
    return text.view("S12").ravel().astype("U12").astype(object)


def _category(codes: np.ndarray, labels: np.ndarray) -> pd.Categorical:
    """A categorical of str from integer codes, keeping only the labels that occur."""
    used = np.bincount(codes, minlength=len(labels)) > 0
    new_code = np.cumsum(used) - 1
    return pd.Categorical.from_codes(
        new_code[codes], categories=pd.Index(labels[used].astype(object))
    )


def _timestamps(config: SimulateConfig, seconds: np.ndarray) -> np.ndarray:
    """Seconds since the start of the period as datetime64[ns]."""
    origin_ns = np.datetime64(config.start, "ns")
    return origin_ns + seconds.astype("timedelta64[s]").astype("timedelta64[ns]")


def _hs_labels(digits: int) -> np.ndarray:
    """All codes of `digits` digits as zero-padded text ('00' .. '99' for two)."""
    return np.char.zfill(np.arange(10**digits).astype(str), digits)


def declarations_table(
    rng: np.random.Generator,
    config: SimulateConfig,
    ids: np.ndarray,
    world: World,
    flow: Flow,
    declared: Declared,
) -> pd.DataFrame:
    """The declarations as lodged (declared code, origin, value, duty), in lodging order."""
    cat, countries = world.cat, world.countries
    entities, lodging, parties, consignments = (
        flow.entities,
        flow.lodging,
        flow.parties,
        flow.consignments,
    )
    code = declared.code
    return pd.DataFrame(
        {
            "declaration_id": ids,
            "lodged_at": _timestamps(config, lodging.lodged_s),
            "office": _category(parties.office, _labels("OFF", config.offices)),
            "importer": _category(
                parties.importer, _labels("IMP", len(entities.importers.size), rng)
            ),
            "declarant": _category(
                parties.declarant, _labels("DCL", len(entities.declarants.size), rng)
            ),
            "seller": _category(parties.seller, _labels("SEL", len(entities.sellers.size), rng)),
            "hs_code": np.asarray(cat.code.astype(object)[code]),
            "origin_country": _category(declared.origin, countries.codes),
            "departure_country": _category(declared.departure, countries.codes),
            "transport_mode": _category(parties.mode, np.array(TRANSPORT_MODES)),
            "quantity": consignments.quantity,
            "net_mass_kg": consignments.net_mass,
            "declared_value": declared.value,
            "duty_rate": declared.rate,
            "declared_duty": declared.duty,
            "aeo": entities.importers.aeo[parties.importer],
            "hs2": _category(cat.chapter_number[cat.chapter[code]], _hs_labels(2)),
            "hs4": _category(cat.hs4_key[code], _hs_labels(4)),
            "hs6": _category(cat.hs6[code], cat.hs6_code),
        }
    )


def outcomes_table(
    config: SimulateConfig,
    ids: np.ndarray,
    fraud: Fraud,
    declared: Declared,
    selection: Selection,
    inspections: Inspections,
) -> pd.DataFrame:
    """One row per controlled declaration: when, why, with what probability, what it found."""
    sel, hit = inspections.rows, inspections.hit
    return pd.DataFrame(
        {
            "declaration_id": ids[sel],
            "selected_at": _timestamps(config, inspections.selected_s),
            "selection_reason": pd.Categorical(
                inspections.reason, categories=list(SELECTION_REASONS)
            ),
            "selection_probability": np.where(
                selection.random_draw[sel], config.random_rate, np.nan
            ),
            "inspected": np.ones(len(sel), dtype=bool),
            "hit": hit,
            "fraud_type": pd.Categorical.from_codes(
                np.where(hit, fraud.scheme[sel], 0), categories=list(FRAUD_TYPES)
            ),
            "revenue_recovered": np.where(hit, declared.recoverable[sel], 0.0),
            "result_at": _timestamps(config, inspections.result_s),
        }
    )


def ground_truth_table(
    ids: np.ndarray, world: World, flow: Flow, fraud: Fraud, declared: Declared
) -> pd.DataFrame:
    """What really happened, per declaration: fraud, scheme, evaded duty, true code and origin."""
    cat, countries, parties = world.cat, world.countries, flow.parties
    consignments = flow.consignments
    return pd.DataFrame(
        {
            "declaration_id": ids,
            "fraud": fraud.fraud,
            "fraud_type": pd.Categorical.from_codes(fraud.scheme, categories=list(FRAUD_TYPES)),
            "revenue_recoverable": declared.recoverable,
            "critical": declared.critical,
            "true_hs_code": np.asarray(cat.code.astype(object)[parties.true_code]),
            "true_origin_country": _category(parties.true_origin, countries.codes),
            "true_value": consignments.true_value,
        }
    )


def office_tables(
    config: SimulateConfig, entities: Entities, lodging: Lodging, selection: Selection
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Offices (mode, flow, mean daily capacity) and the capacity of every office-day."""
    n_offices, days = config.offices, config.days
    office_labels = _labels("OFF", n_offices).astype(object)
    offices = pd.DataFrame(
        {
            "office": office_labels,
            "transport_mode": np.array(TRANSPORT_MODES, dtype=object)[entities.offices.mode],
            "declarations": selection.office_rows,
            "mean_daily_capacity": selection.capacity.reshape(n_offices, days).mean(axis=1),
        }
    )
    capacity = pd.DataFrame(
        {
            "office": np.repeat(office_labels, days),
            "date": np.tile(
                np.datetime64(config.start, "ns") + lodging.day_index.astype("timedelta64[D]"),
                n_offices,
            ),
            "capacity": selection.capacity,
        }
    )
    return offices, capacity


def scenario_answers(
    config: SimulateConfig, cat: Catalogue, countries: Countries, scheme: Scheme
) -> dict[str, Any]:
    """The known answers: when and where the emerging scheme runs, what the rules target."""
    drift_day = config.drift_start * config.days
    hs2_labels = _hs_labels(2)
    hs2_of = [str(hs2_labels[c]) for c in cat.chapter_number]
    codes = countries.codes
    return {
        "drift_start": str(np.datetime64(config.start, "D") + int(np.ceil(drift_day))),
        "emerging_scheme": EMERGING,
        "emerging_source_country": str(codes[scheme.source]),
        "emerging_transit_country": str(codes[scheme.transit]),
        "emerging_chapters": sorted(hs2_of[c] for c in scheme.emerging_chapters),
        "rule_chapters": sorted(hs2_of[c] for c in scheme.rule_chapters),
        "rule_high_risk_origins": sorted(str(codes[c]) for c in scheme.high_risk_origins),
        "preferential_origins": sorted(str(c) for c in codes[countries.preferential]),
        "anti_dumping_duty": ANTI_DUMPING_DUTY,
        "preferential_factor": PREFERENTIAL_FACTOR,
    }
