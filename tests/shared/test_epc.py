"""shared.epc: GS1 keys read from the URIs partners send, and the URIs we assign, both ways."""

from __future__ import annotations

import pytest

from shared import epc


def test_check_digit_of_gs1_examples() -> None:
    assert epc.check_digit("061414112345") == "2"  # GS1's GLN example 0614141123452
    assert epc.valid_gs1_key("0614141123452")
    assert not epc.valid_gs1_key("0614141123453")
    assert not epc.valid_gs1_key("06141411234x2")


@pytest.mark.parametrize(
    ("uri", "key"),
    [
        ("urn:epc:class:lgtin:4012345.012345.998877", "01/04012345123456/10/998877"),
        ("https://id.gs1.org/01/04012345123456/10/998877", "01/04012345123456/10/998877"),
        ("https://example.com/shop/01/04012345123456/10/A%2FB?x=1", "01/04012345123456/10/A/B"),
        ("https://id.gs1.org/01/04012345123457/10/998877", None),  # wrong check digit
        ("urn:epc:class:lgtin:4012345.0123456.1", None),  # 14 digits of prefix and item: not a GTIN
        ("urn:epc:id:sgtin:4012345.011111.987", None),  # an instance, not a class
        ("urn:mcoc:lot:ABCDEFGH:LOT-1", None),
    ],
)
def test_lgtin_key(uri: str, key: str | None) -> None:
    assert epc.lgtin_key(uri) == key


def test_digital_link_round_trip() -> None:
    key = "01/04012345123456/10/A/B"
    assert epc.digital_link(key) == "https://id.gs1.org/01/04012345123456/10/A%2FB"
    assert epc.lgtin_key(epc.digital_link(key)) == key


@pytest.mark.parametrize(
    ("uri", "gln"),
    [
        ("urn:epc:id:pgln:0614141.00000", "0614141000005"),
        ("urn:epc:id:sgln:0614141.00888.0", "0614141008889"),
        ("https://id.gs1.org/417/0614141000005", "0614141000005"),
        ("https://id.gs1.org/414/0614141008889/254/1", "0614141008889"),
        ("https://id.gs1.org/417/0614141000006", None),
        ("urn:mcoc:party:P-1", None),
    ],
)
def test_gln_of(uri: str, gln: str | None) -> None:
    assert epc.gln_of(uri) == gln


def test_our_uris_round_trip() -> None:
    assert epc.lot_of(epc.lot_uri("ABCDEFGH:LOT 1")) == "ABCDEFGH:LOT 1"
    assert epc.lot_uri("ABCDEFGH:LOT-1") == "urn:mcoc:lot:ABCDEFGH:LOT-1"
    assert epc.party_of(epc.party_uri("P-42")) == "P-42"
    assert epc.lot_of(epc.party_uri("P-42")) is None
    assert epc.lot_of("urn:mcoc:lot:") is None
    assert epc.record_of("shipment", epc.record_uri("shipment", "SHP-1")) == "SHP-1"
