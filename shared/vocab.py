"""Words every service uses the same way: participant kinds and minerals, and what counts as smelting."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Kind(StrEnum):
    mine = "mine"
    trader = "trader"
    smelter = "smelter"
    refiner = "refiner"
    component_manufacturer = "component_manufacturer"
    manufacturer = "manufacturer"
    recycler = "recycler"


class Mineral(StrEnum):
    tin = "tin"
    tantalum = "tantalum"
    tungsten = "tungsten"
    gold = "gold"
    cobalt = "cobalt"
    lithium = "lithium"
    nickel = "nickel"
    graphite = "graphite"
    copper = "copper"
    mica = "mica"
    manganese = "manganese"
    silver = "silver"
    platinum = "platinum"
    palladium = "palladium"
    rare_earths = "rare_earths"
    zinc = "zinc"
    aluminium = "aluminium"


SMELTER_KINDS = frozenset({"smelter", "refiner"})
SMELTING_KINDS = frozenset({"smelting", "refining"})
RAW_FORMS = frozenset({"ore", "concentrate"})


def smelting_basis(
    kind: str, actor_kind: str, input_forms: Iterable[str | None], output_forms: Iterable[str | None]
) -> str | None:
    """Why a transformation is screened as a smelting or refining (None: it is not one): its actor is a smelter or
    refiner (`actor_kind`), it was recorded as a smelting or refining (`kind`), or it turned ore or concentrate
    into metal (`forms`), whoever did it. The first that applies, in that order."""
    if actor_kind in SMELTER_KINDS:
        return "actor_kind"
    if kind in SMELTING_KINDS:
        return "kind"
    if any(f in RAW_FORMS for f in input_forms) and any(f == "metal" for f in output_forms):
        return "forms"
    return None
