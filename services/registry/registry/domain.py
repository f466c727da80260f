"""The registry's rules, as plain functions: no I/O.

ISO codes come from `pycountry` (ISO 3166-1 and 3166-2). Scheme vocabularies follow the schemes' own words:
RMAP audit statuses, IRMA achievement levels, Fairmined and CRAFT for artisanal mining, ITSCI membership.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from shared.iso import RENAMED_SUBDIVISIONS, current_region, is_country, is_region
from shared.visibility import Relation, identity_disclosed
from shared.vocab import DEFAULT_DISCLOSURE, Disclosure, Kind, Mineral

__all__ = ["RENAMED_SUBDIVISIONS", "Kind", "Mineral"]


class MiningType(StrEnum):
    asm = "asm"  # artisanal and small-scale mining
    lsm = "lsm"  # large-scale (industrial) mining


class Scheme(StrEnum):
    rmap = "rmap"
    irma = "irma"
    fairmined = "fairmined"
    craft = "craft"
    itsci = "itsci"


# What each scheme records, and the values it allows. IRMA assesses mines to achievement levels; the others
# have a status.
SCHEME_VALUES: dict[Scheme, tuple[str, frozenset[str]]] = {
    Scheme.rmap: ("status", frozenset({"conformant", "active", "non_conformant", "suspended"})),
    Scheme.irma: ("level", frozenset({"transparency", "irma_50", "irma_75", "irma_100"})),
    Scheme.fairmined: ("status", frozenset({"certified", "suspended", "withdrawn"})),
    Scheme.craft: ("status", frozenset({"committed", "progressing", "conformant", "suspended"})),
    Scheme.itsci: ("status", frozenset({"member", "suspended", "withdrawn"})),
}

# Statuses that count as "certified" for the ASM rule (certified or progressing ASM is included on equal terms).
CERTIFIED_ASM = {
    Scheme.fairmined: frozenset({"certified"}),
    Scheme.craft: frozenset({"progressing", "conformant"}),
    Scheme.itsci: frozenset({"member"}),
}


class DomainError(ValueError):
    """A rule broken by the input. `where` names the field (dotted path) for the problem body."""

    def __init__(self, where: str, msg: str) -> None:
        super().__init__(f"{where}: {msg}")
        self.where = where
        self.msg = msg


def check_country(code: str, where: str = "country") -> str:
    code = code.upper()
    if not is_country(code):
        raise DomainError(where, f"{code!r} is not an ISO 3166-1 alpha-2 country code")
    return code


def check_region(region: str, country: str, where: str = "region") -> str:
    """An ISO 3166-2 subdivision code that belongs to `country` (renamed codes are mapped to the current one)."""
    region = current_region(region)
    if not is_region(region):
        raise DomainError(where, f"{region!r} is not an ISO 3166-2 subdivision code")
    if region.split("-", 1)[0] != country:
        raise DomainError(where, f"{region!r} is not in country {country!r}")
    return region


def check_scheme_value(scheme: Scheme, status: str | None, level: str | None) -> tuple[str, str]:
    """Returns (field, value): the one of status/level the scheme uses, with a value the scheme has."""
    field, allowed = SCHEME_VALUES[scheme]
    value, other = (status, level) if field == "status" else (level, status)
    other_field = "level" if field == "status" else "status"
    if other is not None:
        raise DomainError(other_field, f"{scheme.value} records a {field}, not a {other_field}")
    if value is None:
        raise DomainError(field, f"{scheme.value} needs a {field}: one of {sorted(allowed)}")
    if value not in allowed:
        raise DomainError(field, f"{value!r} is not a {scheme.value} {field}; expected one of {sorted(allowed)}")
    return field, value


def check_period(start: date, end: date | None, start_name: str, end_name: str) -> None:
    if end is not None and end < start:
        raise DomainError(end_name, f"{end_name} ({end}) is before {start_name} ({start})")


def in_force(start: date, end: date | None, on: date) -> bool:
    """Whether a period with inclusive bounds covers the day `on` (no end = still in force)."""
    return start <= on and (end is None or on <= end)


@dataclass(frozen=True, slots=True)
class CertificationFact:
    scheme: Scheme
    value: str
    valid_from: date
    valid_until: date | None
    recorded_seq: int


def certifications_as_of(facts: Iterable[CertificationFact], on: date) -> list[CertificationFact]:
    """What a participant held on `on`: per scheme, the most recently recorded certification covering that day."""
    best: dict[Scheme, CertificationFact] = {}
    for f in facts:
        if in_force(f.valid_from, f.valid_until, on):
            cur = best.get(f.scheme)
            if cur is None or f.recorded_seq > cur.recorded_seq:
                best[f.scheme] = f
    return sorted(best.values(), key=lambda f: f.scheme.value)


@dataclass(frozen=True, slots=True)
class CahraArea:
    """One listed area: a whole country (region None) or one ISO 3166-2 region."""

    country: str
    region: str | None
    effective_from: date
    effective_to: date | None
    source: str
    name: str | None = None
    conflict_affected: bool = False
    high_risk: bool = True


def is_cahra(areas: Sequence[CahraArea], country: str, region: str | None, on: date) -> CahraArea | None:
    """The listed area covering (country, region) on `on`, if any: the whole country, or that region."""
    for a in areas:
        if (
            a.country == country
            and (a.region is None or a.region == region)
            and in_force(a.effective_from, a.effective_to, on)
        ):
            return a
    return None


class RiskFactor(StrEnum):
    """The risks the OECD Due Diligence Guidance (Annex II) names, as a country or region risk profile grades them."""

    conflict_and_armed_groups = "conflict_and_armed_groups"
    serious_human_rights_abuses = "serious_human_rights_abuses"
    worst_forms_of_child_labour = "worst_forms_of_child_labour"
    forced_labour = "forced_labour"
    environmental_harm = "environmental_harm"
    corruption = "corruption"
    fraudulent_misrepresentation_of_origin = "fraudulent_misrepresentation_of_origin"


class RiskLevel(StrEnum):
    none = "none"
    low = "low"
    medium = "medium"
    high = "high"


@dataclass(frozen=True, slots=True)
class RiskProfile:
    """One risk factor of a country (region None) or an ISO 3166-2 region, at a level, over a period, per a source."""

    country: str
    region: str | None
    factor: RiskFactor
    level: RiskLevel
    effective_from: date
    effective_to: date | None
    source: str


def check_place(country: str, region: str | None) -> tuple[str, str | None]:
    """(country, region) normalised: an ISO 3166-1 country and, if given, one of its ISO 3166-2 regions."""
    country = check_country(country)
    return country, check_region(region, country) if region else None


SMELTER_KINDS = frozenset({Kind.smelter, Kind.refiner})


def check_participant(
    *,
    kind: Kind,
    country: str,
    region: str | None,
    mining_type: MiningType | None,
    capacity: dict[Mineral, float],
    rmi_smelter_id: str | None,
) -> tuple[str, str | None]:
    """Cross-field rules of a participant. Returns (country, region) normalised."""
    country = check_country(country)
    region = check_region(region, country) if region else None
    if kind == Kind.mine:
        if mining_type is None:
            raise DomainError("mining_type", "a mine needs mining_type: asm or lsm")
    else:
        if mining_type is not None:
            raise DomainError("mining_type", f"only mines have a mining_type, not a {kind.value}")
        if capacity:
            raise DomainError("annual_capacity_kg", f"only mines declare a capacity, not a {kind.value}")
    if rmi_smelter_id is not None and kind not in SMELTER_KINDS:
        raise DomainError(
            "identifiers.rmi_smelter_id", f"RMI smelter ids belong to smelters and refiners, not to a {kind.value}"
        )
    return country, region


def check_mine_region(*, kind: Kind, country: str, region: str | None, listed_regions: Iterable[str | None]) -> None:
    """A mine names its region where its country has regions listed as CAHRAs (in force today): the EU list names
    the Democratic Republic of the Congo and Myanmar by region, and a mine without one could never be screened."""
    regions = sorted({r for r in listed_regions if r is not None})
    if kind == Kind.mine and region is None and regions:
        raise DomainError(
            "region",
            f"a mine in {country} needs its region (ISO 3166-2): {country} has regions listed as conflict-affected "
            f"or high-risk areas ({', '.join(regions)})",
        )


def check_officer_scope(scope: Sequence[str] | None, known: Iterable[str], max_ids: int) -> list[str] | None:
    """A compliance officer's scope: None (every participant), or the participant ids it oversees, each once and
    known to the registry, at most `max_ids` (its tokens carry them). Sorted, so two equal scopes compare equal."""
    if scope is None:
        return None
    ids = sorted(set(scope))
    if not ids:
        raise DomainError("scope", 'name at least one participant, or send "all"')
    if len(ids) > max_ids:
        raise DomainError("scope", f'at most {max_ids} participants; send "all" for every participant')
    unknown = sorted(set(ids) - set(known))
    if unknown:
        raise DomainError("scope", f"unknown participants: {', '.join(unknown[:10])}")
    return ids


# --- artisanal and industrial mining side by side (IRMA Standard chapter 3.6; ARM's principles of coexistence) ---


class AsmRelation(StrEnum):
    on_title = "on_title"  # artisanal miners work on the titleholder's concession
    adjacent = "adjacent"  # next to it


class AgreementStatus(StrEnum):
    negotiating = "negotiating"
    in_force = "in_force"
    suspended = "suspended"
    terminated = "terminated"


MAX_AGREEMENT_GROUPS = 50


def check_titleholder(kind: str, mining_type: str | None, where: str = "titleholder") -> None:
    """An industrial titleholder: a mine registered as large-scale (lsm)."""
    if kind != Kind.mine or mining_type != MiningType.lsm:
        raise DomainError(where, f"the titleholder must be an industrial mine (lsm), not a {mining_type or kind}")


def check_asm_group(kind: str, mining_type: str | None, where: str) -> None:
    """An ASM group: a mine registered as artisanal and small-scale (asm)."""
    if kind != Kind.mine or mining_type != MiningType.asm:
        raise DomainError(where, f"an ASM group must be a mine registered as asm, not a {mining_type or kind}")


def check_agreement_groups(titleholder: str, groups: Sequence[str]) -> list[str]:
    """The ASM groups party to an agreement: at least one, each once, never the titleholder. In the order given."""
    ids = list(dict.fromkeys(groups))
    if not ids:
        raise DomainError("asm_groups", "name at least one ASM group")
    if len(ids) != len(groups):
        raise DomainError("asm_groups", "an ASM group is named twice")
    if len(ids) > MAX_AGREEMENT_GROUPS:
        raise DomainError("asm_groups", f"at most {MAX_AGREEMENT_GROUPS} ASM groups")
    if titleholder in ids:
        raise DomainError("asm_groups", "the titleholder cannot be one of its own ASM groups")
    return ids


def check_agreement_dates(signed: date | None, valid_from: date, valid_until: date | None) -> None:
    check_period(valid_from, valid_until, "valid_from", "valid_until")
    if signed is not None and valid_until is not None and valid_until < signed:
        raise DomainError("valid_until", f"valid_until ({valid_until}) is before the agreement was signed ({signed})")


# --- disclosure policies and the directory -------------------------------------------------------------------------


def check_disclosure(kind: str, disclosure: Disclosure | None, where: str = "disclosure") -> Disclosure:
    """A participant's policy (None: its default): smelters and refiners are public by nature (their RMI facility
    id and RMAP status are what downstream filings need), so `public` is the only policy they may have."""
    if kind in SMELTER_KINDS:
        if disclosure not in (None, Disclosure.public):
            raise DomainError(
                where,
                f"a {kind} is public by nature (its RMI facility id and RMAP status are what downstream filings "
                "need): its policy can only be public",
            )
        return Disclosure.public
    return disclosure or DEFAULT_DISCLOSURE


def listed_as(kind: str, disclosure: str, contact: bool) -> str | None:
    """Why another participant is in a participant's directory, or None when it is not: a smelter or refiner (public
    by nature), a participant whose policy lets strangers learn its identity, or a contact (the operator introduced
    them) whose policy lets a counterparty learn it (`shared.visibility.identity_disclosed`, the one rule)."""
    if kind in SMELTER_KINDS:
        return "smelter_or_refiner"
    if identity_disclosed(kind, disclosure, "stranger"):
        return "public"
    if contact and identity_disclosed(kind, disclosure, "counterparty"):
        return "contact"
    return None


def findable(kind: str, disclosure: str) -> bool:
    """Whether a participant is found by its exact identifier (RMI facility id, LEI, GLN): who knows it is about to
    trade with it, so any policy that lets a counterparty learn who it is (all but `operator`)."""
    return identity_disclosed(kind, disclosure, "counterparty")


def policies_disclosed_to(relation: Relation) -> list[str]:
    """The policies under which a participant other than a smelter or refiner discloses its identity to a viewer in
    `relation` to it: what a directory query filters on (the same rule as `listed_as`)."""
    return [d.value for d in Disclosure if identity_disclosed(Kind.mine, d, relation)]
