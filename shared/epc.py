"""Identifiers between our records and GS1 EPCIS / UNTP: lots as EPC classes, participants as parties, and the
CBV words our custody events map onto. Pure: no I/O.

One vocabulary for capture (EPCIS in), query and export (EPCIS out) and the UNTP credentials, so that a lot or a
participant is named the same way in all of them (docs/epcis.md has the table):

- A lot captured with a GS1 LGTIN (`urn:epc:class:lgtin:…` or a GS1 Digital Link `…/01/<GTIN>/10/<lot>`) keeps it:
  `lgtin_key` gives the canonical key (`01/<GTIN-14>/10/<lot>`), `digital_link` the URI we export. Any other lot is
  `urn:mcoc:lot:<lot id>` (`lot_uri`), a URI we assign.
- A participant with a GLN is named by it (`urn:epc:id:pgln:…`, `urn:epc:id:sgln:…` or Digital Link `/417/` and
  `/414/` are read; `…/417/<GLN>` is written); any participant is also `urn:mcoc:party:<participant id>`.
- Shipments, transformations and consumptions are business transactions / parent ids `urn:mcoc:<kind>:<id>`.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

NID = "urn:mcoc:"
"""Our URN namespace: what we assign to lots, participants and our own records that GS1 keys do not name."""

NAMESPACE = "https://mcoc.example/ns/epcis#"
"""The JSON-LD namespace of our EPCIS extension fields (prefix `mcoc`): a captured commissioning names a lot's
mineral and form with `mcoc:mineral` / `mcoc:form` in its `ilmd`, a transformation its kind with
`mcoc:transformationKind` and each output's mineral and form with `mcoc:outputs`."""
PREFIX = "mcoc"
CONTEXT = {PREFIX: NAMESPACE}
"""The `@context` entry that declares the prefix (after GS1's EPCIS context)."""

DIGITAL_LINK = "https://id.gs1.org"
"""The resolver our exported GS1 Digital Link URIs name (any host is read on capture)."""

KILOGRAM = "KGM"
"""UN/CEFACT Rec. 20 code of the only unit custody masses are in."""

_LGTIN_URN = re.compile(r"^urn:epc:class:lgtin:(\d{6,12})\.(\d{1,7})\.(.{1,20})$")
_DL_LGTIN = re.compile(r"^https?://[^/]+(?:/[^/]+)*?/01/(\d{14})/10/([^/?#]{1,60})(?:[/?#].*)?$")
_PGLN_URN = re.compile(r"^urn:epc:id:pgln:(\d{6,12})\.(\d{0,6})$")
_SGLN_URN = re.compile(r"^urn:epc:id:sgln:(\d{6,12})\.(\d{0,6})\.(.{1,20})$")
_DL_GLN = re.compile(r"^https?://[^/]+(?:/[^/]+)*?/(?:417|414)/(\d{13})(?:[/?#].*)?$")


def check_digit(digits: str) -> str:
    """The GS1 mod-10 check digit of `digits` (a GTIN or GLN without its last digit)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str((10 - total % 10) % 10)


def valid_gs1_key(key: str) -> bool:
    """Digits whose last is the GS1 check digit of the others."""
    return key.isdigit() and len(key) >= 2 and check_digit(key[:-1]) == key[-1]


def lgtin_key(uri: str) -> str | None:
    """`01/<GTIN-14>/10/<lot>` of an LGTIN EPC class URN or a GS1 Digital Link with a lot; None for any other URI (or
    one whose GTIN's check digit is wrong)."""
    m = _LGTIN_URN.match(uri)
    if m is not None:
        company, item, lot = m.groups()
        if len(company) + len(item) != 13:
            return None
        body = item[0] + company + item[1:]
        return f"01/{body}{check_digit(body)}/10/{unquote(lot)}"
    m = _DL_LGTIN.match(uri)
    if m is not None and valid_gs1_key(m.group(1)):
        return f"01/{m.group(1)}/10/{unquote(m.group(2))}"
    return None


def digital_link(key: str) -> str:
    """The GS1 Digital Link URI of an `lgtin_key`."""
    gtin_part, lot = key.rsplit("/10/", 1)
    return f"{DIGITAL_LINK}/{gtin_part}/10/{quote(lot, safe='')}"


def gln_of(uri: str) -> str | None:
    """The GLN a party or location URI names (PGLN / SGLN URN, Digital Link 417 / 414); None otherwise."""
    m = _PGLN_URN.match(uri) or _SGLN_URN.match(uri)
    if m is not None:
        company, ref = m.group(1), m.group(2)
        if len(company) + len(ref) != 12:
            return None
        return company + ref + check_digit(company + ref)
    m = _DL_GLN.match(uri)
    if m is not None and valid_gs1_key(m.group(1)):
        return m.group(1)
    return None


def gln_uri(gln: str) -> str:
    """The GS1 Digital Link URI of a party's GLN."""
    return f"{DIGITAL_LINK}/417/{gln}"


def _ours(kind: str, value: str) -> str:
    return f"{NID}{kind}:{quote(value, safe=':')}"


def _parse(kind: str, uri: str) -> str | None:
    head = f"{NID}{kind}:"
    if not uri.startswith(head) or len(uri) == len(head):
        return None
    return unquote(uri[len(head) :])


def lot_uri(lot_id: str) -> str:
    """The URI we assign a lot that no GS1 key names."""
    return _ours("lot", lot_id)


def lot_of(uri: str) -> str | None:
    """The lot id of a URI we assigned (`lot_uri`); None for any other URI."""
    return _parse("lot", uri)


def party_uri(participant_id: str) -> str:
    """The URI we assign a participant."""
    return _ours("party", participant_id)


def party_of(uri: str) -> str | None:
    """The participant id of a URI we assigned (`party_uri`); None for any other URI."""
    return _parse("party", uri)


def record_uri(kind: str, record_id: str) -> str:
    """A record of ours as a URI (`shipment`, `transformation`, `consumption`, `event`)."""
    return _ours(kind, record_id)


def record_of(kind: str, uri: str) -> str | None:
    return _parse(kind, uri)


# Our custody events as EPCIS: (EPCIS event type, action, CBV bizStep, CBV disposition). The export writes these;
# capture maps them back (docs/epcis.md, "The mapping").
EVENT_MAP: dict[str, tuple[str, str | None, str, str]] = {
    "custody.lot.registered": ("ObjectEvent", "ADD", "commissioning", "active"),
    "custody.lot.external_declared": ("ObjectEvent", "ADD", "commissioning", "active"),
    "custody.lot.recycled": ("ObjectEvent", "ADD", "commissioning", "active"),
    "custody.lot.shipped": ("ObjectEvent", "OBSERVE", "shipping", "in_transit"),
    "custody.lot.received": ("ObjectEvent", "OBSERVE", "receiving", "in_progress"),
    "custody.lot.transformed": ("TransformationEvent", None, "creating_class_instance", "active"),
    "custody.lot.origin_confirmed": ("ObjectEvent", "OBSERVE", "inspecting", "conformant"),
    "custody.lot.consumed": ("ObjectEvent", "DELETE", "decommissioning", "inactive"),
}
