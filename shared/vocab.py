"""Words every service uses the same way: participant kinds and minerals."""

from __future__ import annotations

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
