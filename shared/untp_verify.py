"""Verify a UNTP credential we issued: `python -m shared.untp_verify CREDENTIAL --registry URL [--custody URL
--token TOKEN]` (CREDENTIAL: a file holding the vc+jwt, or `-` for standard input).

Checks, each with a one-line verdict:
1. signature: the JWS (VC-JOSE, EdDSA) verifies with the key its `kid` names in the registry's JWKS
   (`--registry URL`, or `--jwks FILE` offline), which publishes every key the registry ever had; a key retired by a
   rotation verifies what it signed before its `retired_at` (a credential dated later is refused);
2. model: the credential is a UNTP 0.6.1 DTE or DPP as `shared.untp` models it;
3. events (with `--custody` and a token that may read the lot): every custody event the credential names (a DTE's
   `custodyEvents`) is on its lot's custody history, with the same seq, type and hash;
4. chain: each such lot's history verifies as a hash chain, by custody's own verifier (`python -m custody.verify`,
   run on the history as fetched).
A DPP names its lot (`product.id`) rather than events: check 3 finds the lot's history, check 4 verifies it.

Exit status: 0 every check passed, 1 a check failed, 2 the input or a service could not be read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from shared import epc, untp, vcjose

MAX_HISTORY_BYTES = 64 * 1024 * 1024
MAX_LOTS = 100  # lots whose histories one verification fetches
# A credential's `validFrom` (whole seconds, the registry's clock) against its key's `retired_at` (the database's
# clock): a signature begun just before the retirement may carry a `validFrom` a moment later.
RETIREMENT_LEEWAY = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


class Unreadable(Exception):
    """The credential, the JWKS or a service cannot be read (exit status 2)."""


# --- checks 1 and 2 (pure) --------------------------------------------------------------------------------------


def published_key(jwks: dict[str, Any], kid: str) -> dict[str, Any]:
    """The JWKS entry of `kid` (the registry publishes every key it ever had: `status` next, active or retired)."""
    return next((k for k in jwks.get("keys", []) if isinstance(k, dict) and k.get("kid") == kid), {})


def _instant(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def check_signature(token: str, jwks: dict[str, Any]) -> tuple[Check, dict[str, Any] | None]:
    """The JWS verifies with the key its `kid` names. A retired key (its private half erased when a newer key took
    over) verifies what it signed before `retired_at`: a credential dated later is refused (it cannot be ours)."""
    try:
        credential = vcjose.verify(token.strip(), jwks)
    except vcjose.VcJoseError as e:
        return Check("signature", False, e.reason), None
    kid = vcjose.header(token.strip())["kid"]
    key = published_key(jwks, kid)
    retired_at = _instant(key.get("retired_at"))
    if key.get("status") == "retired" and retired_at is not None:
        valid_from = _instant(credential.get("validFrom"))
        if valid_from is None or valid_from > retired_at + RETIREMENT_LEEWAY:
            return (
                Check(
                    "signature",
                    False,
                    f"key {kid} was retired at {key['retired_at']}, but the credential is dated "
                    f"{credential.get('validFrom')!r}: the registry signed nothing with it after its retirement",
                ),
                None,
            )
        return Check(
            "signature", True, f"EdDSA, key {kid} of the registry's JWKS (retired {key['retired_at']}, signed before)"
        ), credential
    return Check("signature", True, f"EdDSA, key {kid} of the registry's JWKS"), credential


def check_model(credential: dict[str, Any]) -> tuple[Check, untp.Credential | None]:
    try:
        parsed = untp.parse(credential)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(the credential)"
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        return Check("model", False, f"not a UNTP {untp.VERSION} credential: {where}: {first['msg']}{more}"), None
    except ValueError as e:
        return Check("model", False, f"not a UNTP {untp.VERSION} credential: {e}"), None
    if isinstance(parsed, untp.DigitalTraceabilityEvent):
        what = f"{len(parsed.credentialSubject)} events"
    else:
        what = f"passport of {parsed.credentialSubject.product.id if parsed.credentialSubject.product else '?'}"
    return Check("model", True, f"{type(parsed).__name__} (UNTP {untp.VERSION}), {what}"), parsed


# --- checks 3 and 4: against custody ----------------------------------------------------------------------------


def named_events(parsed: untp.Credential) -> dict[str, list[untp.CustodyEvent]]:
    """The custody events a credential names, by lot (a DPP: its product lot, with no events)."""
    lots: dict[str, list[untp.CustodyEvent]] = {}
    if isinstance(parsed, untp.DigitalTraceabilityEvent):
        for event in parsed.credentialSubject:
            for record in event.custodyEvents or []:
                lots.setdefault(record.lotId, []).append(record)
    else:
        product = parsed.credentialSubject.product
        lot = epc.lot_of(product.id) if product is not None else None
        if lot is not None:
            lots[lot] = []
    return lots


def check_events(lot_id: str, named: Sequence[untp.CustodyEvent], history: dict[str, Any]) -> Check:
    """Every event named is on the history, with the same seq, type and hash."""
    on_chain = {e.get("event_id"): e for e in history.get("events", []) if isinstance(e, dict)}
    problems = []
    for record in named:
        event = on_chain.get(record.eventId)
        if event is None:
            problems.append(f"event {record.eventId} (seq {record.seq}) is not on the lot's history")
        elif (event.get("seq"), event.get("type"), event.get("hash")) != (record.seq, record.type, record.hash):
            problems.append(f"event {record.eventId} differs from the history (seq, type or hash)")
    if problems:
        more = " …" if len(problems) > 5 else ""
        hint = (
            " (custody never recorded these as named; if your token sees only part of the lot's history, retry with "
            "the token of the lot's current holder or someone downstream)"
        )
        return Check(f"events of {lot_id}", False, "; ".join(problems[:5]) + more + hint)
    return Check(f"events of {lot_id}", True, f"{len(named)} named, each on the history with the same hash")


async def check_chain(lot_id: str, raw_history: bytes) -> Check:
    """The history verifies as a hash chain, by custody's verifier (`python -m custody.verify -`)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "custody.verify",
            "-",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as e:
        return Check(f"chain of {lot_id}", False, f"cannot run custody's verifier ({e})")
    out, err = await proc.communicate(raw_history)
    lines = (out or err).decode(errors="replace").strip().splitlines()
    last = lines[-1] if lines else "no output"
    if proc.returncode == 0:
        return Check(f"chain of {lot_id}", True, last)
    if b"No module named" in err:
        return Check(
            f"chain of {lot_id}",
            False,
            "custody's verifier is not installed here: run custody/verify.py on GET /lots/{id}/history by hand",
        )
    return Check(f"chain of {lot_id}", False, last)


async def fetch_history(custody: httpx.AsyncClient, token: str, lot_id: str) -> bytes | Check:
    r = await custody.get(f"/lots/{quote(lot_id, safe='')}/history", headers={"Authorization": f"Bearer {token}"})
    if r.status_code == 404:
        return Check(
            f"events of {lot_id}",
            False,
            "custody has no such lot that this token may read: use a token of the lot's holder or downstream, or "
            "check that --custody names the custody service that issued it",
        )
    if r.status_code != 200:
        raise Unreadable(f"custody answered {r.status_code} for lot {lot_id}'s history: {r.text[:300]}")
    if len(r.content) > MAX_HISTORY_BYTES:
        raise Unreadable(f"lot {lot_id}'s history is larger than {MAX_HISTORY_BYTES >> 20} MiB")
    return r.content


async def against_custody(parsed: untp.Credential, custody: httpx.AsyncClient, token: str) -> list[Check]:
    lots = named_events(parsed)
    if not lots:
        return [Check("events", False, "the credential names no custody event or lot to check")]
    if len(lots) > MAX_LOTS:
        return [Check("events", False, f"the credential names {len(lots)} lots; this verifier checks {MAX_LOTS}")]
    checks: list[Check] = []
    for lot_id, named in lots.items():
        raw = await fetch_history(custody, token, lot_id)
        if isinstance(raw, Check):
            checks.append(raw)
            continue
        history = json.loads(raw)
        if named:
            checks.append(check_events(lot_id, named, history))
        checks.append(await check_chain(lot_id, raw))
    return checks


async def verify(
    token: str, *, jwks: dict[str, Any], custody: httpx.AsyncClient | None = None, custody_token: str | None = None
) -> list[Check]:
    """Every check that applies: signature and model always; events and chain with a custody client and token."""
    signature, credential = check_signature(token, jwks)
    checks = [signature]
    if credential is None:
        return checks
    model, parsed = check_model(credential)
    checks.append(model)
    if parsed is None:
        return checks
    if custody is not None and custody_token:
        checks += await against_custody(parsed, custody, custody_token)
    return checks


# --- the command ------------------------------------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        if path == "-":
            raw = sys.stdin.read(vcjose.MAX_TOKEN_BYTES + 1)
        else:
            with open(path, encoding="utf-8") as f:
                raw = f.read(vcjose.MAX_TOKEN_BYTES + 1)
    except (OSError, UnicodeDecodeError) as e:
        raise Unreadable(f"cannot read {path}: {e}") from e
    if len(raw) > vcjose.MAX_TOKEN_BYTES:
        raise Unreadable(f"{path} is larger than {vcjose.MAX_TOKEN_BYTES >> 20} MiB")
    return raw.strip()


def _jwks_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            loaded: dict[str, Any] = json.load(f)
    except (OSError, ValueError) as e:
        raise Unreadable(f"cannot read the JWKS {path}: {e}") from e
    return loaded


async def _jwks(registry: str) -> dict[str, Any]:
    try:
        async with httpx.AsyncClient(base_url=registry.rstrip("/"), timeout=10) as client:
            r = await client.get("/.well-known/jwks.json")
        r.raise_for_status()
        fetched: dict[str, Any] = r.json()
        return fetched
    except (httpx.HTTPError, ValueError) as e:
        raise Unreadable(f"cannot fetch the registry's JWKS from {registry}: {e}; check --registry") from e


async def _run(args: argparse.Namespace, token: str) -> list[Check]:
    jwks = _jwks_file(args.jwks) if args.jwks else await _jwks(args.registry)
    if not args.custody:
        return await verify(token, jwks=jwks)
    try:
        async with httpx.AsyncClient(base_url=args.custody.rstrip("/"), timeout=30) as custody:
            return await verify(token, jwks=jwks, custody=custody, custody_token=args.token)
    except httpx.HTTPError as e:
        raise Unreadable(f"cannot reach custody at {args.custody}: {e}; check --custody") from e


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.untp_verify", description="Verify a UNTP credential (vc+jwt) we issued."
    )
    parser.add_argument("credential", help="file holding the vc+jwt, or - for standard input")
    keys = parser.add_mutually_exclusive_group(required=True)
    keys.add_argument("--registry", help="the registry's URL (its /.well-known/jwks.json)")
    keys.add_argument("--jwks", help="a JWKS file fetched from the registry (offline)")
    parser.add_argument("--custody", help="custody's URL: check the events against the lots' custody histories")
    parser.add_argument("--token", help="a token that may read the lots (with --custody)")
    args = parser.parse_args(argv)
    if args.custody and not args.token:
        parser.error("--custody needs --token: a token that may read the lot (its holder's, or downstream)")
    try:
        checks = asyncio.run(_run(args, _read(args.credential)))
    except Unreadable as e:
        print(f"unreadable: {e}", file=sys.stderr)
        return 2
    for c in checks:
        print(c.line())
    failed = [c for c in checks if not c.ok]
    if failed:
        print(f"NOT VERIFIED: {len(failed)} of {len(checks)} checks failed")
        return 1
    scope = "" if args.custody else " (signature and model only: add --custody and --token to check the chain)"
    print(f"verified: all {len(checks)} checks passed{scope}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
