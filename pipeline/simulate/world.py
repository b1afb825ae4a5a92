"""What the simulator's stages pass along: the fixed world and the stream lodged in it.

`World` is drawn once before any declaration (the goods catalogue, the countries, the fraud
scheme's design and the tariff); `Flow` is who lodges what, when and how (the traders, the
lodging times, the parties of each declaration and its consignment). The later stages (fraud,
declaring, the historical policy, the tables) read both.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.simulate.entities import Countries, Entities
from pipeline.simulate.goods import Catalogue
from pipeline.simulate.scheme import Scheme, Tariff
from pipeline.simulate.stream import Consignments, Lodging, Parties


@dataclass(frozen=True)
class World:
    """The goods catalogue, the countries, the fraud scheme's design and the tariff."""

    cat: Catalogue
    countries: Countries
    scheme: Scheme
    tariff: Tariff


@dataclass(frozen=True)
class Flow:
    """The traders, when each declaration is lodged, its parties and its consignment."""

    entities: Entities
    lodging: Lodging
    parties: Parties
    consignments: Consignments
