"""The webhooks' rules without I/O: signatures as a receiver checks them (written here from the Standard Webhooks
scheme, not with the module's own code), URLs, filters, backoff."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from datetime import UTC, datetime, timedelta

import pytest

from audit import webhooks_domain as domain


def receiver_verifies(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a subscriber writes (docs/webhooks.md): HMAC-SHA256 of `id.timestamp.body` with the secret's key."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['Webhook-Id']}.{headers['Webhook-Timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(expected, sig.partition(",")[2])
        for sig in headers["Webhook-Signature"].split()
        if sig.startswith("v1,")
    )


def test_a_signature_verifies_with_the_secret_and_fails_on_any_change() -> None:
    secret = domain.new_secret()
    body = b'{"type":"flag","data":{"id":"f-1","severity":"high"}}'
    sent = domain.headers(secret, "msg-1", 1_765_000_000, body)
    assert sent["Webhook-Signature"].startswith("v1,")
    assert receiver_verifies(secret, sent, body)
    assert not receiver_verifies(secret, sent, body.replace(b"high", b"low"))  # a tampered body
    assert not receiver_verifies(secret, {**sent, "Webhook-Timestamp": "1765000001"}, body)  # another time
    assert not receiver_verifies(secret, {**sent, "Webhook-Id": "msg-2"}, body)
    assert not receiver_verifies(domain.new_secret(), sent, body)  # another secret


def test_the_standard_webhooks_example_signature() -> None:
    """The test vector of the Standard Webhooks specification's reference libraries."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert (
        domain.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_secrets() -> None:
    assert len(domain.secret_key(domain.new_secret())) == domain.SECRET_BYTES
    assert domain.new_secret() != domain.new_secret()
    for bad in (
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "whsec_not base64!",
        "whsec_" + base64.b64encode(b"x" * 8).decode(),
    ):
        with pytest.raises(domain.BadSecret):
            domain.secret_key(bad)


@pytest.mark.parametrize(
    ("url", "allow", "ok"),
    [
        ("https://erp.example.com/hooks", False, True),
        ("https://erp.example.com:8443/hooks?x=1", False, True),
        ("http://erp.example.com/hooks", True, False),
        ("http://127.0.0.1:9000/hook", False, False),
        ("http://127.0.0.1:9000/hook", True, True),
        ("http://localhost/hook", True, True),
        ("ftp://erp.example.com/hooks", True, False),
        ("https://user:pw@erp.example.com/hooks", False, False),
        ("https://erp.example.com/hooks#x", False, False),
        ("https:///hooks", False, False),
        ("https://erp.example.com:99999/", False, False),
    ],
)
def test_urls(url: str, allow: bool, ok: bool) -> None:
    if ok:
        assert domain.check_url(url, allow_http_localhost=allow) == url
    else:
        with pytest.raises(domain.BadUrl):
            domain.check_url(url, allow_http_localhost=allow)


def test_filters() -> None:
    flag = {"id": "f", "rule": "mass_mismatch", "severity": "high", "lot_id": "L1", "lot_ids": ["L1", "L2"]}
    shipped = {"id": "e", "type": "custody.lot.shipped", "lot_id": "L1"}
    everything = domain.Filters(domain.FlagFilter(), domain.CustodyFilter())
    assert everything.matches("flag", flag) and everything.matches("custody", shipped)
    assert not everything.matches("other", flag)
    only_flags = domain.Filters(flags=domain.FlagFilter())
    assert only_flags.matches("flag", flag) and not only_flags.matches("custody", shipped)
    assert domain.Filters(flags=domain.FlagFilter(severities=frozenset({"high", "critical"}))).matches("flag", flag)
    assert not domain.Filters(flags=domain.FlagFilter(severities=frozenset({"critical"}))).matches("flag", flag)
    assert not domain.Filters(flags=domain.FlagFilter(rules=frozenset({"seal_mismatch"}))).matches("flag", flag)
    assert domain.Filters(flags=domain.FlagFilter(lot_ids=frozenset({"L2"}))).matches("flag", flag)  # any lot of it
    assert not domain.Filters(flags=domain.FlagFilter(lot_ids=frozenset({"L3"}))).matches("flag", flag)
    by_type = domain.Filters(custody=domain.CustodyFilter(types=frozenset({"custody.lot.received"})))
    assert not by_type.matches("custody", shipped)
    assert domain.Filters(custody=domain.CustodyFilter(lot_ids=frozenset({"L1"}))).matches("custody", shipped)
    assert not domain.Filters(custody=domain.CustodyFilter(lot_ids=frozenset({"L2"}))).matches("custody", shipped)
    for f in (everything, only_flags, by_type, domain.Filters(custody=domain.CustodyFilter(lot_ids=frozenset({"L"})))):
        assert domain.Filters.from_json(f.to_json()) == f


def test_backoff_doubles_with_jitter_up_to_the_ceiling() -> None:
    rand = random.Random(7)
    waits = [[domain.backoff_s(n, base_s=5, max_s=3600, rand=rand) for _ in range(200)] for n in range(1, 12)]
    for n, ws in enumerate(waits, start=1):
        ceiling = min(3600, 5 * 2 ** (n - 1))
        assert all(ceiling / 2 <= w <= ceiling for w in ws), n
        assert max(ws) - min(ws) > ceiling / 4  # jitter: spread, not one instant
    assert domain.backoff_s(10_000, base_s=5, max_s=3600) <= 3600  # no overflow


def test_gives_up_after_the_time_given() -> None:
    t0 = datetime(2026, 12, 6, tzinfo=UTC)
    assert not domain.gives_up(t0, t0 + timedelta(days=2, hours=23), timedelta(days=3))
    assert domain.gives_up(t0, t0 + timedelta(days=3), timedelta(days=3))


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("10.1.2.3", "a private address"),
        ("192.168.0.10", "a private address"),
        ("172.16.5.4", "a private address"),
        ("169.254.169.254", "a link-local address"),  # cloud metadata
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("[::ffff:10.0.0.1]", "a private address"),
        ("fd00::1", "a private address"),
        ("0.0.0.0", "a private address"),
        ("100.64.0.1", "an address that is not global"),  # carrier-grade NAT
        ("224.0.0.1", "a multicast address"),
    ],
)
def test_addresses_that_are_not_public_are_refused(address: str, why: str) -> None:
    found = domain.not_public(address)
    assert found is not None and found.startswith(why), found
    with pytest.raises(domain.BadUrl, match="public address"):
        domain.check_url(
            f"https://{address if ':' not in address or address.startswith('[') else f'[{address}]'}/h",
            allow_http_localhost=False,
        )


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "hooks.example.com"])
def test_public_addresses_and_names_pass(address: str) -> None:
    assert domain.not_public(address) is None


def test_this_machine_only_where_the_service_allows_it() -> None:
    assert domain.check_url("http://127.0.0.1:8080/h", allow_http_localhost=True)
    assert domain.check_url("https://localhost/h", allow_http_localhost=True)
    with pytest.raises(domain.BadUrl, match="public address"):
        domain.check_url("https://localhost/h", allow_http_localhost=False)


def test_a_delivery_to_a_name_that_resolves_inward_is_refused() -> None:
    """Checked again before each attempt: `localhost` is a name, 127.0.0.1 what it resolves to."""
    import asyncio

    from audit.config import Settings
    from audit.webhooks_delivery import DeliveryWorker

    worker = DeliveryWorker(Settings(webhook_allow_http_localhost=False), pool=None)  # type: ignore[arg-type]
    with pytest.raises(domain.BadUrl, match="resolves to a loopback address"):
        asyncio.run(worker._public("https://localhost:9/hooks"))
    allowed = DeliveryWorker(Settings(webhook_allow_http_localhost=True), pool=None)  # type: ignore[arg-type]
    asyncio.run(allowed._public("http://localhost:9/hooks"))  # a local install that allows it


# --- the owner's access -----------------------------------------------------------------------------------------------

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _ended(kind: str, token: str | None, expires: datetime | None, revoked: frozenset[str] = frozenset()) -> str | None:
    return domain.access_ended(kind, token, expires, revoked=revoked.__contains__, now=NOW, leeway_s=30)


def test_an_owner_whose_credential_holds_keeps_its_access() -> None:
    assert _ended("mine", "T-1", NOW + timedelta(days=300), frozenset({"T-2"})) is None
    assert _ended("officer", "T-1", None) is None  # no expiry recorded: revocation only
    assert _ended("smelter", "T-1", NOW - timedelta(seconds=29)) is None  # within the verifier's leeway


def test_a_revoked_or_expired_credential_ends_the_owners_access() -> None:
    why = _ended("mine", "T-1", NOW + timedelta(days=300), frozenset({"T-1"}))
    assert why is not None and "T-1" in why and "revoked" in why
    why = _ended("officer", "T-1", NOW - timedelta(seconds=31))
    assert why is not None and "expired at 2026-12-06T11:59:29Z" in why


def test_without_a_credential_only_the_operator_keeps_its_access() -> None:
    assert _ended("operator", None, None, frozenset({"anything"})) is None
    why = _ended("mine", None, None)
    assert why is not None and "no credential" in why


def test_the_worker_judges_owners_by_the_verifiers_lists_once_loaded() -> None:
    from audit.webhooks_delivery import OwnerAccess
    from shared.auth import TokenVerifier

    assert OwnerAccess(None).ready and OwnerAccess(None).ended("mine", None, None) is None  # nothing to judge by
    verifier = TokenVerifier()
    access = OwnerAccess(verifier)
    assert not access.ready  # before the lists are loaded nothing is sent: a revoked credential would look valid
    verifier.load_jwks(
        {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "k1"}]}
    )
    verifier.load_revoked({"T-1"})
    assert access.ready
    assert access.ended("mine", "T-2", None) is None
    assert "revoked" in (access.ended("mine", "T-1", None) or "")
