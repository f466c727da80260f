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


class Disclosure(StrEnum):
    """Who may learn a participant's identity (its id, name, identifiers) where it appears in what others read: its
    disclosure policy, kept in the registry and changed by the participant (`shared.visibility.identity_disclosed`).

    - `operator`: the operator and regulators only; a counterparty still sees it on the events they share (a
      shipment names its sender and its receiver to both), nowhere else;
    - `counterparties` (the default): also every direct counterparty (shipped to it or received from it), everywhere;
    - `downstream`: also everyone downstream of its material (who holds or held what was made from its lots);
    - `public`: everyone who may read what it appears in.

    Smelters and refiners are public by nature: their RMI facility id and RMAP status are what filings need."""

    operator = "operator"
    counterparties = "counterparties"
    downstream = "downstream"
    public = "public"


DEFAULT_DISCLOSURE = Disclosure.counterparties


def effective_disclosure(kind: str | None, policy: str | None) -> Disclosure:
    """A participant's policy as applied: smelters and refiners are public whatever they chose; no policy on record
    (an unknown participant, an event from before policies) is the default."""
    if kind in SMELTER_KINDS:
        return Disclosure.public
    try:
        return Disclosure(policy) if policy else DEFAULT_DISCLOSURE
    except ValueError:
        return DEFAULT_DISCLOSURE


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
