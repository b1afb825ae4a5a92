"""The laboratory's hidden answers and the tariff they play on.

The emerging scheme (`emerging_transshipment`): goods of chosen chapters from a big
non-preferential source are routed through a preferential transit hub and declared as originating
there, dodging an anti-dumping duty. Its chapters carry duty and no historical rule targets them.
The rules target the riskiest chapters and origins. The tariff: lognormal reference unit prices
per HS6 x origin (the source sells the scheme's chapters at dumping prices) and the duty rate of a
code from an origin (preference and anti-dumping applied).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.simulate.entities import Countries
from pipeline.simulate.goods import Catalogue

PREFERENTIAL_FACTOR = 0.25  # duty of a preferential origin, as a share of the general rate
ANTI_DUMPING_DUTY = 0.15  # extra duty on the emerging scheme's chapters from its source origin
DUMPING_PRICE_FACTOR = 0.7  # the source's prices in those chapters, relative to its normal ones


@dataclass(frozen=True)
class Scheme:
    """Where the emerging scheme comes from and goes through; what the historical rules target."""

    source: int  # country index: big, non-preferential
    transit: int  # country index: a preferential hub
    emerging_chapters: np.ndarray  # chapter indexes
    is_emerging_chapter: np.ndarray  # bool per chapter index
    rule_chapters: np.ndarray  # chapter indexes the rules target
    high_risk_origins: np.ndarray  # country indexes the rules target


@dataclass(frozen=True)
class Tariff:
    """Reference unit prices per HS6 x origin, and the duty rate of a code from an origin."""

    ref_price: np.ndarray  # float32 per kg, (hs6, countries)
    duty: np.ndarray  # general rate per national code
    code_chapter: np.ndarray  # chapter index per national code
    preferential: np.ndarray  # bool per country
    source: int
    is_emerging_chapter: np.ndarray

    def rate(self, code: np.ndarray, origin: np.ndarray) -> np.ndarray:
        """Rate of a national code from an origin: preference and anti-dumping applied."""
        rate = self.duty[code] * np.where(self.preferential[origin], PREFERENTIAL_FACTOR, 1.0)
        dumping = (origin == self.source) & self.is_emerging_chapter[self.code_chapter[code]]
        return np.round(rate + ANTI_DUMPING_DUTY * dumping, 4)


def _chapter_mean(values: np.ndarray, chapter: np.ndarray, n_chapters: int) -> np.ndarray:
    """Mean of `values` per chapter index (0 for a chapter without any)."""
    return (
        pd.Series(values)
        .groupby(chapter)
        .mean()
        .reindex(range(n_chapters), fill_value=0.0)
        .to_numpy()
    )


def design_scheme(rng: np.random.Generator, cat: Catalogue, countries: Countries) -> Scheme:
    """The emerging scheme's source, transit hub and chapters (which carry duty and that no rule
    targets); the rules' four riskiest chapters and five riskiest origins."""
    n_chapters = len(cat.chapter_number)
    non_pref = np.flatnonzero(~countries.preferential)
    source = non_pref[np.argmax(countries.weight[non_pref])]
    transit = countries.hubs[rng.integers(len(countries.hubs))]
    chapter_duty_mean = _chapter_mean(cat.duty, cat.chapter, n_chapters)
    chapter_risk = _chapter_mean(cat.hs6_risk, cat.hs6_chapter, n_chapters)
    rule_chapters = np.argsort(-chapter_risk)[:4]
    eligible_chapters = np.flatnonzero(chapter_duty_mean > 0.02)
    eligible_chapters = np.setdiff1d(eligible_chapters, rule_chapters)
    emerging_chapters = eligible_chapters[np.argsort(-cat.chapter_weight[eligible_chapters])[:4]]
    is_emerging_chapter = np.zeros(n_chapters, dtype=bool)
    is_emerging_chapter[emerging_chapters] = True
    high_risk_origins = np.argsort(-countries.risk)[:5]
    return Scheme(
        source=int(source),
        transit=int(transit),
        emerging_chapters=emerging_chapters,
        is_emerging_chapter=is_emerging_chapter,
        rule_chapters=rule_chapters,
        high_risk_origins=high_risk_origins,
    )


def draw_tariff(
    rng: np.random.Generator, cat: Catalogue, countries: Countries, scheme: Scheme
) -> Tariff:
    """Reference prices per HS6 x origin; the source's dumping prices in the scheme's chapters."""
    origin_factor = rng.normal(0.0, 0.25, (len(cat.hs6_code), len(countries.codes)))
    ref_price = np.exp(cat.hs6_log_price[:, None] + origin_factor).astype(np.float32)
    # The source sells the emerging chapters at dumping prices (hence its anti-dumping duty), so
    # transshipped goods show a low unit value for their declared (transit) origin.
    ref_price[scheme.is_emerging_chapter[cat.hs6_chapter], scheme.source] *= DUMPING_PRICE_FACTOR
    return Tariff(
        ref_price=ref_price,
        duty=cat.duty,
        code_chapter=cat.chapter,
        preferential=countries.preferential,
        source=scheme.source,
        is_emerging_chapter=scheme.is_emerging_chapter,
    )
