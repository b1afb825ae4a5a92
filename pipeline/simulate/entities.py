"""The trading world: countries, offices, importers, declarants (brokers), foreign sellers and the
ties between them (each importer's usual sellers and goods).

Importers have heavy-tailed (Pareto) declaration rates, a latent compliance propensity, an
AEO-certified subset (mostly compliant) and newcomers whose first declaration spreads over the
period; a few declarants are complicit; each seller trades from one country; each office has its
own flow and transport mode. Country codes are ISO-like labels, their attributes random: no
statement about real countries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.config import SimulateConfig
from pipeline.simulate.draws import pick, top_k_weighted
from pipeline.simulate.goods import Catalogue

TRANSPORT_MODES: tuple[str, ...] = ("sea", "air", "road", "rail", "post")
# ISO-like labels only; trade weights, risk and preferential status are drawn at random.
COUNTRY_CODES: tuple[str, ...] = (
    "CN", "US", "DE", "JP", "VN", "IT", "FR", "GB", "IN", "TH", "MY", "ID", "TR", "MX", "BR",
    "CA", "AU", "CH", "NL", "ES", "PL", "SG", "HK", "AE", "PK", "BD", "LK", "PH", "ZA", "EG",
    "MA", "NG", "KE", "CL", "PE", "AR", "RU", "UA", "KZ", "SA",
)  # fmt: skip
HUB_CODES: tuple[str, ...] = ("SG", "HK", "AE", "NL")
MODE_WEIGHT = np.array([0.45, 0.2, 0.25, 0.05, 0.05])  # share of each transport mode
SELLER_SLOT_P = np.array([0.55, 0.25, 0.12, 0.08])  # an importer's four usual sellers
HS6_SLOT_P = np.array([0.4, 0.25, 0.15, 0.1, 0.06, 0.04])  # an importer's six usual goods


@dataclass(frozen=True)
class Countries:
    """Countries of origin: trade weight, risk, preferential status, transit hubs."""

    codes: np.ndarray  # str labels
    weight: np.ndarray
    risk: np.ndarray
    preferential: np.ndarray  # bool: goods from there pay a reduced duty
    hubs: np.ndarray  # indexes of the transit hubs (all preferential)
    substitute: np.ndarray  # preferential origin that origin fraud claims, per true origin


@dataclass(frozen=True)
class Offices:
    """Customs offices: relative flow and main transport mode."""

    weight: np.ndarray
    mode: np.ndarray  # index into TRANSPORT_MODES


@dataclass(frozen=True)
class Importers:
    """Importers: the first `config.importers` trade from day 0, the others arrive later."""

    first_day: np.ndarray  # float day of the first declaration, sorted
    size: np.ndarray  # relative declaration rate
    is_new: np.ndarray  # bool
    aeo: np.ndarray  # bool: AEO-certified
    risk: np.ndarray  # latent fraud propensity
    scale: np.ndarray  # log-mass shift of their consignments
    scheme_taste: np.ndarray  # (importers, 4) weights of the classic schemes
    home_office: np.ndarray


@dataclass(frozen=True)
class Declarants:
    """Customs brokers, a few complicit, and each importer's usual broker."""

    size: np.ndarray
    complicit: np.ndarray  # bool
    usual: np.ndarray  # usual declarant of each importer


@dataclass(frozen=True)
class Sellers:
    """Foreign sellers: each trades from one country."""

    country: np.ndarray
    size: np.ndarray
    risk: np.ndarray


@dataclass(frozen=True)
class Ties:
    """Each importer's usual sellers (4 slots) and usual goods (6 hs6 slots)."""

    sellers: np.ndarray  # (importers, 4) seller indexes
    hs6: np.ndarray  # (importers, 6) hs6 indexes


@dataclass(frozen=True)
class Entities:
    """Everyone who trades: what the declaration stream draws its parties from."""

    offices: Offices
    importers: Importers
    declarants: Declarants
    sellers: Sellers
    ties: Ties


def draw_countries(rng: np.random.Generator) -> Countries:
    """Trade weight, risk and preferential status; hubs are preferential; origin fraud claims a
    fixed preferential "neighbour" of each true origin."""
    countries = np.array(COUNTRY_CODES)
    n_countries = len(countries)
    country_weight = rng.pareto(1.0, n_countries) + 0.2
    country_risk = rng.normal(0.0, 0.8, n_countries)
    preferential = rng.random(n_countries) < 0.35
    hubs = np.flatnonzero(np.isin(countries, HUB_CODES))
    preferential[hubs] = True
    pref_idx = np.flatnonzero(preferential)
    substitute = pref_idx[pick(rng, country_weight[pref_idx], n_countries)]
    return Countries(countries, country_weight, country_risk, preferential, hubs, substitute)


def draw_offices(rng: np.random.Generator, config: SimulateConfig) -> Offices:
    """Each office's flow (lognormal) and main transport mode."""
    n_offices = config.offices
    office_weight = rng.lognormal(0.0, 0.8, n_offices)
    office_mode = rng.choice(len(TRANSPORT_MODES), n_offices, p=MODE_WEIGHT)
    return Offices(office_weight, office_mode)


def draw_importers(rng: np.random.Generator, config: SimulateConfig, offices: Offices) -> Importers:
    """Sizes, arrival days, AEO status (larger established traders), propensity, tastes."""
    n_old = config.importers
    n_new = round(config.importers * config.new_importer_share)
    n_imp = n_old + n_new
    first_day = np.concatenate([np.zeros(n_old), np.sort(rng.uniform(0, config.days, n_new))])
    size = (rng.pareto(1.2, n_imp) + 1.0) * rng.lognormal(0.0, 0.3, n_imp)
    is_new = np.arange(n_imp) >= n_old
    aeo_weight = np.where(is_new, 0.0, np.sqrt(size))
    n_aeo = min(round(config.aeo_share * n_imp), n_old)
    aeo = np.zeros(n_imp, dtype=bool)
    aeo[top_k_weighted(rng, aeo_weight, n_aeo)] = True
    risk = rng.normal(0.0, 1.0, n_imp) + 0.7 * is_new - 2.5 * aeo
    scale = rng.normal(0.0, 0.7, n_imp)
    # Each fraudulent importer favours some schemes (undervaluation, misclassification, origin,
    # prohibited).
    scheme_taste = rng.dirichlet(np.full(4, 0.6), n_imp) * 4
    home_office = pick(rng, offices.weight, n_imp)
    return Importers(first_day, size, is_new, aeo, risk, scale, scheme_taste, home_office)


def draw_declarants(
    rng: np.random.Generator, config: SimulateConfig, importers: Importers
) -> Declarants:
    """Brokers by size; the riskiest importers often use a complicit one."""
    n_decl = config.declarants
    n_imp = len(importers.size)
    declarant_size = rng.pareto(1.0, n_decl) + 1.0
    complicit = np.zeros(n_decl, dtype=bool)
    complicit[
        rng.choice(n_decl, round(config.complicit_declarant_share * n_decl), replace=False)
    ] = True
    usual = pick(rng, declarant_size, n_imp)
    risky = importers.risk > 1.28
    complicit_idx = np.flatnonzero(complicit)
    if len(complicit_idx):
        to_complicit = risky & (rng.random(n_imp) < 0.4)
        usual[to_complicit] = complicit_idx[
            rng.integers(0, len(complicit_idx), int(to_complicit.sum()))
        ]
    return Declarants(declarant_size, complicit, usual)


def draw_sellers(rng: np.random.Generator, config: SimulateConfig, countries: Countries) -> Sellers:
    """Sellers placed in countries by trade weight, with a size and a risk."""
    n_sel = config.sellers
    seller_country = pick(rng, countries.weight, n_sel)
    seller_size = rng.lognormal(0.0, 1.0, n_sel)
    seller_risk = rng.normal(0.0, 0.5, n_sel)
    return Sellers(seller_country, seller_size, seller_risk)


def draw_ties(
    rng: np.random.Generator, cat: Catalogue, importers: Importers, sellers: Sellers
) -> Ties:
    """Each importer's usual sellers, and usual goods mostly from one main chapter."""
    n_imp = len(importers.size)
    seller_slots = pick(rng, sellers.size, (n_imp, 4))
    main_chapter = pick(rng, cat.chapter_weight, n_imp)
    in_main = rng.random((n_imp, 6)) < 0.7
    own = cat.chapter_first_hs6[main_chapter][:, None] + (
        rng.random((n_imp, 6)) * cat.chapter_hs6_count[main_chapter][:, None]
    ).astype(np.int64)
    hs6_slots = np.where(in_main, own, pick(rng, cat.hs6_weight, (n_imp, 6)))
    return Ties(seller_slots, hs6_slots)


def draw_entities(
    rng: np.random.Generator, config: SimulateConfig, cat: Catalogue, countries: Countries
) -> Entities:
    """Offices, importers, declarants, sellers and their ties, in this order of draws."""
    offices = draw_offices(rng, config)
    importers = draw_importers(rng, config, offices)
    declarants = draw_declarants(rng, config, importers)
    sellers = draw_sellers(rng, config, countries)
    ties = draw_ties(rng, cat, importers, sellers)
    return Entities(offices, importers, declarants, sellers, ties)
