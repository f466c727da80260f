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


class CustodyModel(StrEnum):
    """The chain-of-custody model a transformation followed (ISO 22095:2020), as the transformer records it.

    - `identity_preserved`: the outputs come from one identified source, kept apart from every other;
    - `segregated`: inputs of the same certified characteristic are mixed, kept apart from everything else;
    - `controlled_blending`: certified and other inputs are mixed in a known proportion;
    - `mass_balance`: mixed; certified mass is accounted for, not physically traced;
    - `book_and_claim`: no physical link; certificates are traded apart from the material.

    A transformation with no model on record is treated as `mass_balance` for claims (`claims_physical`)."""

    identity_preserved = "identity_preserved"
    segregated = "segregated"
    controlled_blending = "controlled_blending"
    mass_balance = "mass_balance"
    book_and_claim = "book_and_claim"


PHYSICAL_MODELS = frozenset({CustodyModel.identity_preserved, CustodyModel.segregated})


def claims_physical(model: str | None) -> bool:
    """Does material that went through a transformation under `model` keep a physical claim to where it came from
    (a Fairmined claim needs that: identity preserved or segregated all the way)? No model on record: no."""
    return model in PHYSICAL_MODELS


class RecycledSource(StrEnum):
    """What a recycler registers as an origin lot (`origin.kind` `recycled`): the CMRT's "recycled" or "scrap"."""

    recycled = "recycled"  # post-consumer: end-of-life products
    scrap = "scrap"  # pre-consumer: manufacturing scrap


CMRT_METALS: dict[str, str] = {"tantalum": "Tantalum", "tin": "Tin", "gold": "Gold", "tungsten": "Tungsten"}
"""The Conflict Minerals Reporting Template's metals (3TG): our mineral -> the template's `Metal (*)` value."""

EMRT_MINERALS: dict[str, str] = {
    "cobalt": "Cobalt",
    "copper": "Copper",
    "graphite": "Graphite (natural)",
    "lithium": "Lithium",
    "mica": "Mica",
    "nickel": "Nickel",
}
"""The Extended Minerals Reporting Template's minerals as far as public material names them (EMRT 2.0: cobalt,
copper, natural graphite, lithium, mica, nickel): our mineral -> its label. Unverified against the template itself."""

BATTERY_MATERIALS = frozenset({"cobalt", "lithium", "nickel", "graphite"})
"""The raw materials the EU Battery Regulation's supply-chain due diligence names (Annex X: cobalt, lithium, nickel,
natural graphite)."""
