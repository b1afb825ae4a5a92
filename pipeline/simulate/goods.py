"""The goods: an HS catalogue (hs2 > hs4 > hs6 > 10-digit national code) with duty rates.

Chapters carry a duty level, a risk and a log price; codes of one hs4 differ in duty (the room
misclassification exploits); sensitive chapters are where prohibited goods are plausible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Catalogue:
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


def draw_catalogue(rng: np.random.Generator) -> Catalogue:
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
    return Catalogue(
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
