"""Synthetic declaration stream with inspection outcomes and ground truth: our laboratory.

`simulate(config, seed)` builds, in memory and without I/O:

- **entities**: importers with heavy-tailed (Pareto) declaration rates, a latent compliance
  propensity, an AEO-certified subset (mostly compliant) and new importers whose first
  declaration spreads over the period; declarants (brokers), a few complicit; foreign sellers in
  a country each; offices with their own flows, transport modes and daily inspection capacities;
  countries with a risk level and preferential-origin status (country codes are ISO-like labels,
  their attributes are random: no statement about real countries); an HS catalogue
  (hs2 > hs4 > hs6 > 10-digit national code) with duty rates and lognormal reference unit prices
  per HS6 x origin.
- **declarations**: lodging times over `days` with weekday and yearly seasonality and a flow that
  grows as new importers arrive; mass, quantity, true value = mass x reference price x noise,
  declared value, duty rate of the declared code and origin, declared duty (a few clerical errors).
- **fraud with ground truth**: undervaluation, misclassification (a code of the same hs4 with a
  lower duty), origin fraud (a preferential origin claimed) and prohibited goods (critical, no
  revenue). Their probability is a logistic function of importer propensity, declarant
  complicity, seller, commodity and route risk, with an intercept solved so the overall rate
  hits `fraud_rate`. **Concept drift**: `emerging_transshipment` appears at `drift_start` (none
  before): goods of chosen chapters from non-preferential origins are routed through a
  preferential transit country and declared as originating there, dodging an anti-dumping duty.
- **historical selection policy** (the labels): random draws with known probability
  `random_rate`, rule criteria (high-risk declared origins, sensitive chapters, high values, new
  importers) and officer picks (noisy, correlated with true risk, biased towards road traffic,
  lenient with AEO traders), within each office's daily capacity. Blind spots by construction:
  no rule looks at unit values, the emerging scheme declares a low-risk preferential origin in
  chapters no rule targets, and officers' intuition does not notice it.

Capacity: random draws are taken first and never cut (so `selection_probability` is exactly
`random_rate`); rules and officers fill what is left of the office-day's capacity, highest
priority first. An office-day therefore controls at most max(capacity, random draws) declarations
(random draws beyond capacity are rare because `random_rate` is far below `capacity_rate`).

Everything is vectorised over declarations (numpy integer codes, categoricals at the end); loops
run only over the small catalogues. The same seed gives identical frames.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import SimulateConfig
from pipeline.ingest.columns import SELECTION_REASONS

FRAUD_TYPES: tuple[str, ...] = (
    "none",
    "undervaluation",
    "misclassification",
    "origin",
    "prohibited",
    "emerging_transshipment",
)
EMERGING = "emerging_transshipment"
TRANSPORT_MODES: tuple[str, ...] = ("sea", "air", "road", "rail", "post")
# ISO-like labels only; trade weights, risk and preferential status are drawn at random.
COUNTRY_CODES: tuple[str, ...] = (
    "CN", "US", "DE", "JP", "VN", "IT", "FR", "GB", "IN", "TH", "MY", "ID", "TR", "MX", "BR",
    "CA", "AU", "CH", "NL", "ES", "PL", "SG", "HK", "AE", "PK", "BD", "LK", "PH", "ZA", "EG",
    "MA", "NG", "KE", "CL", "PE", "AR", "RU", "UA", "KZ", "SA",
)  # fmt: skip
HUB_CODES: tuple[str, ...] = ("SG", "HK", "AE", "NL")
WEEKDAY_FACTOR = np.array([1.1, 1.05, 1.0, 1.0, 0.9, 0.25, 0.08])  # Monday .. Sunday
PREFERENTIAL_FACTOR = 0.25  # duty of a preferential origin, as a share of the general rate
ANTI_DUMPING_DUTY = 0.15  # extra duty on the emerging scheme's chapters from its source origin
DUMPING_PRICE_FACTOR = 0.7  # the source's prices in those chapters, relative to its normal ones


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


@dataclass
class _Catalogue:
    """HS catalogue: national codes with their hs6/hs4/hs2 and per-code attributes."""

    code: np.ndarray  # str, 10 digits
    hs6: np.ndarray  # int index into hs6 arrays
    hs4_key: np.ndarray  # int hs4 number per national code
    chapter: np.ndarray  # int chapter index per national code
    duty: np.ndarray  # general duty rate per national code
    cheaper_sibling: np.ndarray  # national code of the same hs4 with the lowest duty, or -1
    hs6_code: np.ndarray  # str, 6 digits
    hs6_chapter: np.ndarray  # chapter index per hs6
    hs6_first: np.ndarray  # first national code of each hs6 (codes sorted by hs6)
    hs6_count: np.ndarray  # national codes per hs6
    hs6_weight: np.ndarray
    hs6_risk: np.ndarray
    hs6_log_mass: np.ndarray
    hs6_log_price: np.ndarray  # log reference price per kg, before the origin's factor
    hs6_unit_mass: np.ndarray
    chapter_number: np.ndarray  # int 1..97 per chapter index
    chapter_weight: np.ndarray
    chapter_first_hs6: np.ndarray
    chapter_hs6_count: np.ndarray
    chapter_sensitive: np.ndarray  # prohibited goods are plausible there


def _catalogue(rng: np.random.Generator) -> _Catalogue:
    """Draw an HS catalogue: ~45 chapters, a few hs4/hs6 each, 1-4 national codes per hs6."""
    chapters = np.sort(rng.choice(np.setdiff1d(np.arange(1, 98), [77]), 45, replace=False))
    n_chapters = len(chapters)
    chapter_weight = rng.dirichlet(np.full(n_chapters, 0.8))
    chapter_duty = rng.choice([0.0, 0.03, 0.05, 0.08, 0.12, 0.2], n_chapters)
    chapter_risk = rng.normal(0.0, 0.7, n_chapters)
    chapter_sensitive = rng.random(n_chapters) < 0.2
    chapter_log_price = rng.normal(1.5, 1.2, n_chapters)

    hs6_codes: list[int] = []
    hs6_chapter: list[int] = []
    # The catalogue is small (thousands of codes): plain loops are clearer than index tricks.
    for c, number in enumerate(chapters):
        n_hs4 = 1 + rng.poisson(3)
        for sub4 in np.sort(rng.choice(np.arange(1, 100), n_hs4, replace=False)):
            n_hs6 = 1 + rng.poisson(2)
            for sub6 in np.sort(rng.choice(np.arange(10, 100), n_hs6, replace=False)):
                hs6_codes.append(int(number) * 10_000 + int(sub4) * 100 + int(sub6))
                hs6_chapter.append(c)
    hs6_num = np.array(hs6_codes, dtype=np.int64)
    hs6_ch = np.array(hs6_chapter, dtype=np.int64)
    n_hs6 = len(hs6_num)
    hs6_count = 1 + np.minimum(rng.poisson(1.2, n_hs6), 3)
    hs6_first = np.concatenate([[0], np.cumsum(hs6_count)[:-1]])
    hs6_of_code = np.repeat(np.arange(n_hs6), hs6_count)
    within = np.arange(len(hs6_of_code)) - hs6_first[hs6_of_code]
    suffix = (within + 1) * 1_000 + 10 * rng.integers(0, 10, len(within))
    national = hs6_num[hs6_of_code] * 10_000 + suffix
    # General duty rate: the chapter's level times a code-level factor, so that codes of one hs4
    # differ (the room misclassification exploits).
    factor = rng.choice([0.0, 0.5, 1.0, 1.0, 1.5, 2.0], len(national))
    duty = np.round(chapter_duty[hs6_ch[hs6_of_code]] * factor, 3)
    hs4_key = national // 1_000_000
    frame = pd.DataFrame({"hs4": hs4_key, "duty": duty})
    cheapest = frame.groupby("hs4")["duty"].transform("idxmin").to_numpy()
    cheaper_sibling = np.where(duty[cheapest] < duty, cheapest, -1)

    chapter_first_hs6 = np.searchsorted(hs6_ch, np.arange(n_chapters))
    chapter_hs6_count = np.bincount(hs6_ch, minlength=n_chapters)
    hs6_weight = chapter_weight[hs6_ch] * rng.lognormal(0.0, 1.0, n_hs6)
    return _Catalogue(
        code=np.char.zfill(national.astype(str), 10),
        hs6=hs6_of_code,
        hs4_key=hs4_key,
        chapter=hs6_ch[hs6_of_code],
        duty=duty,
        cheaper_sibling=cheaper_sibling,
        hs6_code=np.char.zfill(hs6_num.astype(str), 6),
        hs6_chapter=hs6_ch,
        hs6_first=hs6_first,
        hs6_count=hs6_count,
        hs6_weight=hs6_weight / hs6_weight.sum(),
        hs6_risk=chapter_risk[hs6_ch] + rng.normal(0.0, 0.6, n_hs6),
        hs6_log_mass=rng.normal(6.0, 1.3, n_hs6),
        hs6_log_price=chapter_log_price[hs6_ch] + rng.normal(0.0, 0.8, n_hs6),
        hs6_unit_mass=rng.lognormal(0.0, 1.5, n_hs6),
        chapter_number=chapters,
        chapter_weight=chapter_weight,
        chapter_first_hs6=chapter_first_hs6,
        chapter_hs6_count=chapter_hs6_count,
        chapter_sensitive=chapter_sensitive,
    )


def _labels(prefix: str, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Identifiers like IMP00042 (shuffled when `rng` is given, so a number says nothing)."""
    numbers = np.arange(1, n + 1) if rng is None else rng.permutation(n) + 1
    width = max(len(str(n)), 3)
    return np.char.add(prefix, np.char.zfill(numbers.astype(str), width))


def _pick(rng: np.random.Generator, weights: np.ndarray, size: int | tuple[int, ...]) -> np.ndarray:
    """Draw indexes proportionally to `weights` (inverse CDF, vectorised)."""
    cumulative = np.cumsum(weights, dtype=np.float64)
    u = rng.random(size) * cumulative[-1]
    return np.minimum(np.searchsorted(cumulative, u, side="right"), len(weights) - 1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _solve_intercept(score: np.ndarray, target: float) -> float:
    """Intercept b with mean(sigmoid(b + score)) = target (bisection on the given sample)."""
    if target <= 0:
        return -50.0
    low, high = -30.0, 30.0
    for _ in range(60):
        middle = (low + high) / 2
        if _sigmoid(middle + score).mean() < target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _top_k_weighted(rng: np.random.Generator, weights: np.ndarray, k: int) -> np.ndarray:
    """k positions drawn without replacement proportionally to weights (Efraimidis-Spirakis)."""
    k = min(k, int((weights > 0).sum()))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    keys = np.full(len(weights), -np.inf)
    positive = weights > 0
    keys[positive] = np.log(rng.random(int(positive.sum()))) / weights[positive]
    return np.argpartition(-keys, k - 1)[:k]


def _declaration_ids(n: int) -> np.ndarray:
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
    """Simulate declarations, the historical policy's outcomes and the ground truth."""
    rng = np.random.default_rng(seed)
    n, days = config.rows, config.days
    cat = _catalogue(rng)
    n_hs6, n_chapters = len(cat.hs6_code), len(cat.chapter_number)

    # --- countries: trade weight, risk, preferential status; hubs for transit ----------------
    countries = np.array(COUNTRY_CODES)
    n_countries = len(countries)
    country_weight = rng.pareto(1.0, n_countries) + 0.2
    country_risk = rng.normal(0.0, 0.8, n_countries)
    preferential = rng.random(n_countries) < 0.35
    hubs = np.flatnonzero(np.isin(countries, HUB_CODES))
    preferential[hubs] = True
    pref_idx = np.flatnonzero(preferential)
    # Origin fraud claims a fixed preferential "neighbour" of each true origin.
    pref_substitute = pref_idx[_pick(rng, country_weight[pref_idx], n_countries)]
    # Emerging scheme: a big non-preferential source, a preferential transit hub, chapters that
    # carry duty and that no rule targets.
    non_pref = np.flatnonzero(~preferential)
    source = non_pref[np.argmax(country_weight[non_pref])]
    transit = hubs[rng.integers(len(hubs))]
    chapter_duty_mean = (
        pd.Series(cat.duty)
        .groupby(cat.chapter)
        .mean()
        .reindex(range(n_chapters), fill_value=0.0)
        .to_numpy()
    )
    chapter_risk = (
        pd.Series(cat.hs6_risk)
        .groupby(cat.hs6_chapter)
        .mean()
        .reindex(range(n_chapters), fill_value=0.0)
        .to_numpy()
    )
    rule_chapters = np.argsort(-chapter_risk)[:4]
    eligible_chapters = np.flatnonzero(chapter_duty_mean > 0.02)
    eligible_chapters = np.setdiff1d(eligible_chapters, rule_chapters)
    emerging_chapters = eligible_chapters[np.argsort(-cat.chapter_weight[eligible_chapters])[:4]]
    is_emerging_chapter = np.zeros(n_chapters, dtype=bool)
    is_emerging_chapter[emerging_chapters] = True
    high_risk_origins = np.argsort(-country_risk)[:5]
    # Reference unit price (per kg) per HS6 x origin.
    origin_factor = rng.normal(0.0, 0.25, (n_hs6, n_countries))
    ref_price = np.exp(cat.hs6_log_price[:, None] + origin_factor).astype(np.float32)
    # The source sells the emerging chapters at dumping prices (hence its anti-dumping duty), so
    # transshipped goods show a low unit value for their declared (transit) origin.
    ref_price[is_emerging_chapter[cat.hs6_chapter], source] *= DUMPING_PRICE_FACTOR

    # --- offices ----------------------------------------------------------------------------
    n_offices = config.offices
    office_weight = rng.lognormal(0.0, 0.8, n_offices)
    office_mode = rng.choice(len(TRANSPORT_MODES), n_offices, p=[0.45, 0.2, 0.25, 0.05, 0.05])
    mode_weight = np.array([0.45, 0.2, 0.25, 0.05, 0.05])

    # --- importers --------------------------------------------------------------------------
    n_old = config.importers
    n_new = round(config.importers * config.new_importer_share)
    n_imp = n_old + n_new
    first_day = np.concatenate([np.zeros(n_old), np.sort(rng.uniform(0, days, n_new))])
    size = (rng.pareto(1.2, n_imp) + 1.0) * rng.lognormal(0.0, 0.3, n_imp)
    is_new = np.arange(n_imp) >= n_old
    aeo_weight = np.where(is_new, 0.0, np.sqrt(size))
    n_aeo = min(round(config.aeo_share * n_imp), n_old)
    aeo = np.zeros(n_imp, dtype=bool)
    aeo[_top_k_weighted(rng, aeo_weight, n_aeo)] = True
    importer_risk = rng.normal(0.0, 1.0, n_imp) + 0.7 * is_new - 2.5 * aeo
    importer_scale = rng.normal(0.0, 0.7, n_imp)
    # Each fraudulent importer favours some schemes (undervaluation, misclassification, origin,
    # prohibited).
    scheme_taste = rng.dirichlet(np.full(4, 0.6), n_imp) * 4
    home_office = _pick(rng, office_weight, n_imp)

    # --- declarants and sellers ---------------------------------------------------------------
    n_decl = config.declarants
    declarant_size = rng.pareto(1.0, n_decl) + 1.0
    complicit = np.zeros(n_decl, dtype=bool)
    complicit[
        rng.choice(n_decl, round(config.complicit_declarant_share * n_decl), replace=False)
    ] = True
    main_declarant = _pick(rng, declarant_size, n_imp)
    risky = importer_risk > 1.28
    complicit_idx = np.flatnonzero(complicit)
    if len(complicit_idx):
        to_complicit = risky & (rng.random(n_imp) < 0.4)
        main_declarant[to_complicit] = complicit_idx[
            rng.integers(0, len(complicit_idx), int(to_complicit.sum()))
        ]
    n_sel = config.sellers
    seller_country = _pick(rng, country_weight, n_sel)
    seller_size = rng.lognormal(0.0, 1.0, n_sel)
    seller_risk = rng.normal(0.0, 0.5, n_sel)
    seller_slots = _pick(rng, seller_size, (n_imp, 4))
    seller_slot_p = np.array([0.55, 0.25, 0.12, 0.08])
    main_chapter = _pick(rng, cat.chapter_weight, n_imp)
    in_main = rng.random((n_imp, 6)) < 0.7
    own = cat.chapter_first_hs6[main_chapter][:, None] + (
        rng.random((n_imp, 6)) * cat.chapter_hs6_count[main_chapter][:, None]
    ).astype(np.int64)
    hs6_slots = np.where(in_main, own, _pick(rng, cat.hs6_weight, (n_imp, 6)))
    hs6_slot_p = np.array([0.4, 0.25, 0.15, 0.1, 0.06, 0.04])

    # --- lodging times: days by a multinomial over the growing active flow --------------------
    day_index = np.arange(days)
    active_weight = np.cumsum(size)[np.searchsorted(first_day, day_index, side="right") - 1]
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
    del seconds, business

    # --- who declares what: importer among those active that day -----------------------------
    cumulative_size = np.cumsum(size)
    n_active = np.searchsorted(first_day, day, side="right")
    u = rng.random(n) * cumulative_size[n_active - 1]
    importer = np.minimum(np.searchsorted(cumulative_size, u, side="right"), n_active - 1)
    del u, n_active
    importer = importer.astype(np.int32)
    seller = seller_slots[importer, _pick(rng, seller_slot_p, n)]
    hs6 = hs6_slots[importer, _pick(rng, hs6_slot_p, n)]
    true_code = cat.hs6_first[hs6] + (rng.random(n) * cat.hs6_count[hs6]).astype(np.int64)
    office = np.where(rng.random(n) < 0.85, home_office[importer], _pick(rng, office_weight, n))
    mode = np.where(rng.random(n) < 0.8, office_mode[office], _pick(rng, mode_weight, n))
    declarant = np.where(
        rng.random(n) < 0.85, main_declarant[importer], _pick(rng, declarant_size, n)
    )
    true_origin = seller_country[seller]
    via_hub = rng.random(n) < 0.12
    departure = np.where(via_hub, hubs[rng.integers(0, len(hubs), n)], true_origin)
    chapter = cat.hs6_chapter[hs6]

    # --- quantities and values ------------------------------------------------------------------
    log_mass = cat.hs6_log_mass[hs6] + importer_scale[importer] + rng.normal(0.0, 0.8, n)
    net_mass = np.maximum(np.round(np.exp(log_mass), 1), 0.1)
    del log_mass
    quantity = np.maximum(np.round(net_mass / cat.hs6_unit_mass[hs6]), 1.0)
    true_value = net_mass * ref_price[hs6, true_origin] * np.exp(rng.normal(0.0, 0.2, n))
    true_value = np.maximum(np.round(true_value, 2), 1.0)

    def duty_rate(code: np.ndarray, origin: np.ndarray) -> np.ndarray:
        """Rate of a national code from an origin: preference and anti-dumping applied."""
        rate = cat.duty[code] * np.where(preferential[origin], PREFERENTIAL_FACTOR, 1.0)
        dumping = (origin == source) & is_emerging_chapter[cat.chapter[code]]
        return np.round(rate + ANTI_DUMPING_DUTY * dumping, 4)

    true_rate = duty_rate(true_code, true_origin)

    # --- fraud -------------------------------------------------------------------------------
    drift_day = config.drift_start * days
    after_drift = day >= drift_day
    score = (
        importer_risk[importer]
        + 1.5 * complicit[declarant]
        + 0.8 * seller_risk[seller]
        + cat.hs6_risk[hs6]
        + country_risk[true_origin]
        + 0.4 * via_hub
    ).astype(np.float32)
    emerging_target = round(config.emerging_share * config.fraud_rate * int(after_drift.sum()))
    base_rate = max(config.fraud_rate * n - emerging_target, 0) / n
    sample = score[rng.integers(0, n, min(n, 200_000))]
    intercept = _solve_intercept(sample.astype(np.float64), base_rate)
    fraud = rng.random(n) < _sigmoid(intercept + score)
    del score

    # Scheme of each fraud: base weights x eligibility x the importer's taste.
    rows = np.flatnonzero(fraud)
    rate_f, origin_f = true_rate[rows], true_origin[rows]
    weights = (
        np.stack(
            [
                0.5 * (0.15 + (rate_f > 0)),
                0.25 * (cat.cheaper_sibling[true_code[rows]] >= 0),
                0.2 * (~preferential[origin_f] & (rate_f > 0)),
                0.05 * np.where(cat.chapter_sensitive[chapter[rows]], 4.0, 0.3),
            ],
            axis=1,
        )
        * scheme_taste[importer[rows]]
    )
    scheme = np.zeros(n, dtype=np.int8)  # index into FRAUD_TYPES
    scheme[rows] = _pick_rows(rng, weights, weights.sum(axis=1)) + 1
    del weights, rows, rate_f, origin_f

    # Emerging scheme after drift: weighted by importer propensity, heavier from the source.
    pool = (
        after_drift
        & ~fraud
        & is_emerging_chapter[chapter]
        & ~preferential[true_origin]
        & (true_rate > 0)
    )
    emerging_weight = np.where(
        pool, np.exp(importer_risk[importer]) * np.where(true_origin == source, 4.0, 1.0), 0.0
    )
    emerging_rows = _top_k_weighted(rng, emerging_weight, emerging_target)
    del emerging_weight, pool
    scheme[emerging_rows] = FRAUD_TYPES.index(EMERGING)
    fraud[emerging_rows] = True

    # What is declared.
    declared_code = true_code.copy()
    is_mis = scheme == FRAUD_TYPES.index("misclassification")
    declared_code[is_mis] = cat.cheaper_sibling[true_code[is_mis]]
    declared_origin = true_origin.copy()
    is_origin = scheme == FRAUD_TYPES.index("origin")
    declared_origin[is_origin] = pref_substitute[true_origin[is_origin]]
    declared_origin[emerging_rows] = transit
    departure[emerging_rows] = transit
    declared_value = true_value.copy()
    is_under = scheme == FRAUD_TYPES.index("undervaluation")
    declared_value[is_under] = np.round(
        true_value[is_under] * rng.uniform(0.35, 0.8, int(is_under.sum())), 2
    )
    rate = duty_rate(declared_code, declared_origin)
    recoverable = np.maximum(true_value * true_rate - declared_value * rate, 0.0)
    recoverable = np.round(np.where(fraud, recoverable, 0.0), 2)
    critical = scheme == FRAUD_TYPES.index("prohibited")
    declared_duty = declared_value * rate
    clerical = rng.random(n) < config.duty_error_rate
    declared_duty[clerical] *= np.exp(rng.normal(0.0, 0.2, int(clerical.sum())))
    declared_duty = np.round(declared_duty, 2)

    # --- historical selection policy ----------------------------------------------------------
    # Daily capacity of each office: capacity_rate of the flow it expects that day (weekday and
    # season), stochastically rounded to whole controls so small offices keep the right rate.
    office_rows = np.bincount(office, minlength=n_offices)
    expected = config.capacity_rate * office_rows[:, None] * (day_p / day_p.sum())[None, :]
    capacity = np.floor(expected + rng.random(expected.shape)).astype(np.int64).ravel()
    is_aeo = aeo[importer]
    random_draw = rng.random(n) < config.random_rate
    high_value = declared_value > np.quantile(declared_value[sample_rows(rng, n)], 0.98)
    tenure = day - first_day[importer]
    rule_flags = (
        1.0 * np.isin(np.arange(n_countries), high_risk_origins)[declared_origin]
        + 1.0 * np.isin(np.arange(n_chapters), rule_chapters)[chapter]
        + 0.7 * high_value
        + 0.7 * (is_new[importer] & (tenure < 60))
    )
    rule_priority = np.where(rule_flags > 0, 1.5 + rule_flags + rng.normal(0, 0.3, n), -np.inf)
    del rule_flags, tenure
    # Officers: a noisy read of the importer and route, a nose for the classic schemes, a taste
    # for road traffic and leniency with AEO traders; blind to the emerging scheme.
    officer_score = (
        0.6 * importer_risk[importer]
        + 0.6 * country_risk[declared_origin]
        + 0.3 * np.log1p(declared_value) / 3
        + 0.8 * (fraud & (scheme != FRAUD_TYPES.index(EMERGING)))
        + 0.6 * (mode == TRANSPORT_MODES.index("road"))
        + rng.normal(0.0, 1.0, n)
    ).astype(np.float32)
    officer_cut = np.quantile(officer_score[sample_rows(rng, n)], 1 - 2 * config.capacity_rate)
    officer_priority = np.where(
        officer_score >= officer_cut, officer_score - officer_cut + 2.5, -np.inf
    )
    del officer_score
    priority = np.maximum(rule_priority, officer_priority) - 2.0 * is_aeo
    reason_rule = rule_priority >= officer_priority
    del rule_priority, officer_priority
    priority[random_draw] = -np.inf  # random draws are taken apart, before the others

    office_day = office.astype(np.int64) * days + day
    random_per_od = np.bincount(office_day[random_draw], minlength=n_offices * days)
    remaining = np.maximum(capacity[office_day] - random_per_od[office_day], 0)
    # Rank the candidates within their office-day, highest priority first; cut at what is left.
    candidates = np.flatnonzero(np.isfinite(priority))
    order = candidates[np.lexsort((-priority[candidates], office_day[candidates]))]
    sorted_od = office_day[order]
    first = np.r_[True, sorted_od[1:] != sorted_od[:-1]]
    group_start = np.flatnonzero(first)[np.cumsum(first) - 1]
    rank = np.arange(len(order)) - group_start
    chosen = np.zeros(n, dtype=bool)
    chosen[order[rank < remaining[order]]] = True
    del order, sorted_od, first, group_start, rank, remaining, priority, candidates
    selected = chosen | random_draw

    # --- outcomes -------------------------------------------------------------------------------
    sel = np.flatnonzero(selected)
    n_sel_rows = len(sel)
    selected_s = lodged_s[sel] + rng.exponential(2 * 3600, n_sel_rows).astype(np.int64) + 60
    delay_s = (rng.exponential(max(config.result_delay_days, 0.01), n_sel_rows) + 0.1) * 86_400
    result_s = selected_s + delay_s.astype(np.int64)
    hit = fraud[sel] & (rng.random(n_sel_rows) < config.detection_rate)
    reason = np.where(
        random_draw[sel], "random", np.where(reason_rule[sel], "rule", "intelligence")
    )
    origin_ns = np.datetime64(config.start, "ns")

    def timestamps(seconds_: np.ndarray) -> np.ndarray:
        return origin_ns + seconds_.astype("timedelta64[s]").astype("timedelta64[ns]")

    ids = _declaration_ids(n)
    code_hs6 = cat.hs6[declared_code]
    hs4_labels = np.char.zfill(np.arange(10_000).astype(str), 4)
    hs2_labels = np.char.zfill(np.arange(100).astype(str), 2)
    declarations = pd.DataFrame(
        {
            "declaration_id": ids,
            "lodged_at": timestamps(lodged_s),
            "office": _category(office, _labels("OFF", n_offices)),
            "importer": _category(importer, _labels("IMP", n_imp, rng)),
            "declarant": _category(declarant, _labels("DCL", n_decl, rng)),
            "seller": _category(seller, _labels("SEL", n_sel, rng)),
            "hs_code": np.asarray(cat.code.astype(object)[declared_code]),
            "origin_country": _category(declared_origin, countries),
            "departure_country": _category(departure, countries),
            "transport_mode": _category(mode, np.array(TRANSPORT_MODES)),
            "quantity": quantity,
            "net_mass_kg": net_mass,
            "declared_value": declared_value,
            "duty_rate": rate,
            "declared_duty": declared_duty,
            "aeo": is_aeo,
            "hs2": _category(cat.chapter_number[cat.chapter[declared_code]], hs2_labels),
            "hs4": _category(cat.hs4_key[declared_code], hs4_labels),
            "hs6": _category(code_hs6, cat.hs6_code),
        }
    )
    fraud_type = pd.Categorical.from_codes(scheme, categories=list(FRAUD_TYPES))
    outcomes = pd.DataFrame(
        {
            "declaration_id": ids[sel],
            "selected_at": timestamps(selected_s),
            "selection_reason": pd.Categorical(reason, categories=list(SELECTION_REASONS)),
            "selection_probability": np.where(random_draw[sel], config.random_rate, np.nan),
            "inspected": np.ones(n_sel_rows, dtype=bool),
            "hit": hit,
            "fraud_type": pd.Categorical.from_codes(
                np.where(hit, scheme[sel], 0), categories=list(FRAUD_TYPES)
            ),
            "revenue_recovered": np.where(hit, recoverable[sel], 0.0),
            "result_at": timestamps(result_s),
        }
    )
    ground_truth = pd.DataFrame(
        {
            "declaration_id": ids,
            "fraud": fraud,
            "fraud_type": fraud_type,
            "revenue_recoverable": recoverable,
            "critical": critical,
            "true_hs_code": np.asarray(cat.code.astype(object)[true_code]),
            "true_origin_country": _category(true_origin, countries),
            "true_value": true_value,
        }
    )
    office_labels = _labels("OFF", n_offices).astype(object)
    offices = pd.DataFrame(
        {
            "office": office_labels,
            "transport_mode": np.array(TRANSPORT_MODES, dtype=object)[office_mode],
            "declarations": office_rows,
            "mean_daily_capacity": capacity.reshape(n_offices, days).mean(axis=1),
        }
    )
    capacity_frame = pd.DataFrame(
        {
            "office": np.repeat(office_labels, days),
            "date": np.tile(
                np.datetime64(config.start, "ns") + day_index.astype("timedelta64[D]"), n_offices
            ),
            "capacity": capacity,
        }
    )
    hs2_of = [str(hs2_labels[c]) for c in cat.chapter_number]
    scenario = {
        "drift_start": str(np.datetime64(config.start, "D") + int(np.ceil(drift_day))),
        "emerging_scheme": EMERGING,
        "emerging_source_country": str(countries[source]),
        "emerging_transit_country": str(countries[transit]),
        "emerging_chapters": sorted(hs2_of[c] for c in emerging_chapters),
        "rule_chapters": sorted(hs2_of[c] for c in rule_chapters),
        "rule_high_risk_origins": sorted(str(countries[c]) for c in high_risk_origins),
        "preferential_origins": sorted(str(c) for c in countries[preferential]),
        "anti_dumping_duty": ANTI_DUMPING_DUTY,
        "preferential_factor": PREFERENTIAL_FACTOR,
    }
    return SimulatedData(declarations, outcomes, ground_truth, offices, capacity_frame, scenario)


def sample_rows(rng: np.random.Generator, n: int, size: int = 200_000) -> np.ndarray:
    """Row positions of a subsample, for quantiles that need not see every row."""
    return rng.integers(0, n, min(n, size))


def _pick_rows(rng: np.random.Generator, weights: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """For each row of `weights`, a column drawn proportionally to that row's weights."""
    cumulative = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * totals
    picked = (cumulative <= u[:, None]).sum(axis=1)
    return np.minimum(picked, weights.shape[1] - 1)


def summary(data: SimulatedData) -> dict[str, float]:
    """Headline figures: true fraud, the historical policy's controls, hits and revenue."""
    declarations, outcomes, truth = data.declarations, data.outcomes, data.ground_truth
    rows = len(declarations)
    inspected = outcomes["inspected"].to_numpy()
    hits = outcomes["hit"].to_numpy()
    random_draw = (outcomes["selection_reason"] == "random").to_numpy()
    fraud = truth["fraud"].to_numpy()
    aeo = declarations["aeo"].to_numpy()
    emerging = (truth["fraud_type"] == EMERGING).to_numpy()
    lodged = declarations["lodged_at"]
    recoverable = float(truth["revenue_recoverable"].sum())
    recovered = float(outcomes["revenue_recovered"].sum())
    first_emerging = lodged[emerging].min() if emerging.any() else pd.NaT
    return {
        "rows": float(rows),
        "days": float((lodged.max() - lodged.min()) / pd.Timedelta(days=1)) if rows else 0.0,
        "fraud_rate": float(fraud.mean()) if rows else 0.0,
        "fraud_rate_aeo": float(fraud[aeo].mean()) if aeo.any() else float("nan"),
        "fraud_rate_non_aeo": float(fraud[~aeo].mean()) if (~aeo).any() else float("nan"),
        "critical_rate": float(truth["critical"].mean()) if rows else 0.0,
        "emerging_rate": float(emerging.mean()) if rows else 0.0,
        "emerging_first_day": float((first_emerging - lodged.min()) / pd.Timedelta(days=1))
        if emerging.any()
        else float("nan"),
        "inspection_rate": float(inspected.sum() / rows) if rows else 0.0,
        "hit_rate": float(hits[inspected].mean()) if inspected.any() else float("nan"),
        "hit_rate_random": float(hits[random_draw].mean()) if random_draw.any() else float("nan"),
        "random_stratum_rate": float(random_draw.sum() / rows) if rows else 0.0,
        "recall": float(hits.sum() / fraud.sum()) if fraud.any() else float("nan"),
        "emerging_share_of_frauds_after_start": float(
            emerging.sum() / fraud[(lodged >= first_emerging).to_numpy()].sum()
        )
        if emerging.any()
        else float("nan"),
        "recall_emerging": float((outcomes["fraud_type"] == EMERGING).sum() / emerging.sum())
        if emerging.any()
        else float("nan"),
        "revenue_recoverable": recoverable,
        "revenue_recovered": recovered,
        "revenue_recovered_share": recovered / recoverable if recoverable > 0 else float("nan"),
    }
