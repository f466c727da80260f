"""Check a lot's custody history offline: `python -m custody.verify history.json` (or `-` to read standard input).

The input is the JSON of `GET /lots/{lot_id}/history`, as the caller received it (fields withheld from it or not).
Standard library only: this file imports nothing from custody or shared, so anyone can copy it and run it with any
Python 3.11+, without the project. The recipe it checks is docs/verification.md:

- canonical(v) = JSON with sorted keys, no whitespace, UTF-8 (non-ASCII characters as themselves);
- recipe 2: each disclosable field has digest = hex sha256(canonical([salt, name, value])); the fields are `actor`
  and each key of `data`, except that a key whose value is a non-empty object is committed key by key, one level
  deep, as `<key>.<subkey>` (shown as `data[key][subkey]`); the event's hash = sha256(prev_hash ||
  canonical({event_id, lot_id, seq, type, occurred_at, recipe: 2, digests})). A withheld field shows only as its
  digest, which the hash still covers;
- recipe 1 (events written before recipe 2): hash = sha256(prev_hash || canonical({event_id, lot_id, seq, type,
  occurred_at, actor, data})), the event whole;
- the first event's prev_hash is 64 zeros, each next one's is the hash of the event before, and seq goes 1, 2, 3...

It checks every disclosed field's digest against its salt and value, every event's hash against its digests (or its
whole body), the links and the seq numbers, and says for each event whether it verifies and, if not, why. A history
that starts after seq 1 is verified from its first event on (the links before it cannot be checked: it says from
where). Exit status: 0 everything verifies, 1 something does not, 2 the input cannot be read (missing, larger than
64 MiB, not JSON, or not a history).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass, field
from typing import Any, BinaryIO

MAX_INPUT_BYTES = 64 * 1024 * 1024
GENESIS_HEX = "0" * 64
RECIPES = (1, 2)


class Unreadable(Exception):
    """The input is not a history this tool can read (exit status 2)."""


# --- canonical JSON, byte for byte as custody writes it (orjson with OPT_SORT_KEYS) -----------------------------


def _float(f: float) -> str:
    """A float as orjson writes it: Python's shortest repr, except that exponents -5 and below are written without
    zero padding (1e-7, not 1e-07) and exponent -5 in positional notation (0.00001234, not 1.234e-05)."""
    if math.isnan(f) or math.isinf(f):
        raise ValueError("NaN and infinity have no JSON form")
    r = repr(f)
    if "e" not in r:
        return r
    mantissa, exp = r.split("e")
    e = int(exp)
    if e > 0:
        return f"{mantissa}e+{e}"
    if e == -5:
        sign, digits = ("-", mantissa[1:]) if mantissa.startswith("-") else ("", mantissa)
        return f"{sign}0.0000{digits.replace('.', '')}"
    return f"{mantissa}e{e}"


def _dump(v: Any, out: list[str]) -> None:
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, int):
        out.append(str(v))
    elif isinstance(v, float):
        out.append(_float(v))
    elif isinstance(v, str):
        out.append(json.dumps(v, ensure_ascii=False))
    elif isinstance(v, list):
        out.append("[")
        for i, item in enumerate(v):
            if i:
                out.append(",")
            _dump(item, out)
        out.append("]")
    elif isinstance(v, dict):
        out.append("{")
        for i, key in enumerate(sorted(v)):
            if not isinstance(key, str):
                raise ValueError("object keys must be strings")
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _dump(v[key], out)
        out.append("}")
    else:
        raise ValueError(f"{type(v).__name__} has no JSON form")


def canonical(value: Any) -> bytes:
    """JSON with sorted keys and no whitespace, UTF-8: the bytes a custody hash or digest covers."""
    out: list[str] = []
    _dump(value, out)
    return "".join(out).encode("utf-8")  # a lone surrogate cannot be encoded: UnicodeEncodeError


def field_digest(salt: str, name: str, value: Any) -> str:
    """Recipe 2's commitment to one field: hex sha256(canonical([salt, name, value]))."""
    return hashlib.sha256(canonical([salt, name, value])).hexdigest()


# --- checking a history -----------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """One event's result: `problems` empty when it verifies."""

    index: int
    seq: Any
    type: Any
    recipe: Any
    withheld: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Report:
    lot_id: str
    verdicts: list[Verdict]
    start: str  # from where the links were checked

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts)


def _is_hex64(v: Any) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


def _shown_fields(data: dict[str, Any], digests: dict[str, Any], v: Verdict) -> dict[str, Any]:
    """The fields `data` shows, by name: a key committed whole (its name has a digest) as itself; an object whose
    keys are committed one by one (`<key>.<subkey>` digests) as one field per key it shows."""
    shown: dict[str, Any] = {}
    for name, value in data.items():
        if "." in name:
            v.problems.append(f"`data` has a key with a '.' (`{name}`), which recipe 2 never writes")
        elif name not in digests and isinstance(value, dict):
            if not value:
                v.problems.append(f"field `{name}` is shown as an empty object, which recipe 2 commits whole")
            for key, sub in value.items():
                shown[f"{name}.{key}"] = sub
        else:
            shown[name] = value
    return shown


def _check_fields(ev: dict[str, Any], v: Verdict) -> dict[str, Any] | None:
    """Recipe 2: each disclosed field's digest from its salt and value; returns the digests (None if unusable)."""
    digests, salts, data = ev.get("digests"), ev.get("salts", {}), ev.get("data", {})
    withheld = ev.get("withheld", [])
    if not isinstance(digests, dict) or not all(isinstance(k, str) and _is_hex64(d) for k, d in digests.items()):
        v.problems.append("`digests` is not an object of 64-hex-digit digests")
        return None
    if not isinstance(salts, dict) or not isinstance(data, dict) or not isinstance(withheld, list):
        v.problems.append("`salts` and `data` must be objects and `withheld` a list")
        return digests
    if "actor" not in digests:
        v.problems.append("no digest for `actor`: recipe 2 commits to the actor of every event")
    shown = _shown_fields(data, digests, v)
    if "actor" in data:
        v.problems.append("`data` has a field named `actor`, which recipe 2 never writes")
    if ev.get("actor") is not None:
        shown["actor"] = ev["actor"]
    for name in sorted(shown):
        if name not in digests:
            v.problems.append(f"field `{name}` is shown but has no digest: its value is not covered by the hash")
        elif name not in salts:
            v.problems.append(f"field `{name}` is shown without its salt, so its value cannot be checked")
    for name in sorted(salts):
        salt = salts[name]
        if name not in digests:
            v.problems.append(f"field `{name}` has a salt but no digest")
        elif name not in shown:
            v.problems.append(f"field `{name}` has a salt but no value")
        elif not isinstance(salt, str):
            v.problems.append(f"field `{name}`'s salt is not a string")
        else:
            try:
                digest = field_digest(salt, name, shown[name])
            except (ValueError, UnicodeEncodeError) as e:
                v.problems.append(f"field `{name}` cannot be put in canonical form ({e})")
                continue
            if digest != digests[name]:
                v.problems.append(
                    f"field `{name}`: its value or salt does not match its digest (changed value, changed salt, "
                    "or digests swapped between fields)"
                )
    hidden = sorted(set(digests) - set(shown))
    v.withheld = hidden
    if sorted(str(w) for w in withheld) != hidden:
        v.problems.append(
            f"`withheld` says {sorted(map(str, withheld))} but the fields shown only as a digest are {hidden}"
        )
    return digests


def _body(lot_id: str, ev: dict[str, Any], v: Verdict) -> dict[str, Any] | None:
    """The object the event's hash covers, by its recipe (None when it cannot be built)."""
    missing = [k for k in ("seq", "event_id", "type", "occurred_at", "prev_hash", "hash") if k not in ev]
    if missing:
        v.problems.append(f"missing {', '.join(missing)}")
        return None
    if not isinstance(ev["seq"], int) or isinstance(ev["seq"], bool):
        v.problems.append("`seq` is not an integer")
        return None
    if not (_is_hex64(ev["prev_hash"]) and _is_hex64(ev["hash"])):
        v.problems.append("`prev_hash` and `hash` must be 64 lower-case hex digits")
        return None
    body = {k: ev[k] for k in ("event_id", "seq", "type", "occurred_at")}
    body["lot_id"] = lot_id
    recipe = ev.get("recipe", 1)
    if recipe == 1:
        if ev.get("digests") or ev.get("salts") or ev.get("withheld") or ev.get("actor") is None:
            v.problems.append("recipe 1 events are shown whole and cannot withhold fields")
        if "data" not in ev:
            v.problems.append("missing data")
            return None
        return {**body, "actor": ev.get("actor"), "data": ev["data"]}
    if recipe == 2:
        digests = _check_fields(ev, v)
        return None if digests is None else {**body, "recipe": 2, "digests": digests}
    v.problems.append(f"unknown recipe {recipe!r} (this tool knows {', '.join(map(str, RECIPES))})")
    return None


def verify(history: Any) -> Report:
    """Check a parsed history (`GET /lots/{lot_id}/history`). Raises Unreadable when it is not one."""
    if not isinstance(history, dict) or not isinstance(history.get("events"), list):
        raise Unreadable("not a history: expected a JSON object with an `events` list")
    lot_id = history.get("lot_id")
    if not isinstance(lot_id, str):
        raise Unreadable("not a history: expected its `lot_id` (a string)")
    verdicts: list[Verdict] = []
    start = "no events"
    prev_hash: str | None = None
    prev_seq: int | None = None
    for i, ev in enumerate(history["events"]):
        if not isinstance(ev, dict):
            verdicts.append(Verdict(i, None, None, None, problems=["not a JSON object"]))
            prev_hash = prev_seq = None
            continue
        v = Verdict(i, ev.get("seq"), ev.get("type"), ev.get("recipe", 1))
        verdicts.append(v)
        body = _body(lot_id, ev, v)
        if body is None:
            prev_hash = prev_seq = None
            continue
        seq = ev["seq"]
        if i == 0:
            if seq == 1:
                start = "genesis"
                if ev["prev_hash"] != GENESIS_HEX:
                    v.problems.append("the first event's prev_hash is not 64 zeros (genesis)")
            else:
                start = f"seq {seq} (prev_hash {ev['prev_hash']}): the events before it are not in this history"
        elif prev_seq is not None:
            if seq <= prev_seq:
                v.problems.append(f"out of order: seq {seq} after seq {prev_seq}")
            elif seq != prev_seq + 1:
                gap = f"seq {prev_seq + 1}" if seq == prev_seq + 2 else f"seq {prev_seq + 1} to {seq - 1}"
                v.problems.append(f"missing event(s): {gap}")
        if prev_hash is not None and ev["prev_hash"] != prev_hash:
            v.problems.append("broken link: prev_hash is not the hash of the event before it")
        try:
            computed = hashlib.sha256(bytes.fromhex(ev["prev_hash"]) + canonical(body)).hexdigest()
        except (ValueError, UnicodeEncodeError) as e:
            v.problems.append(f"cannot be put in canonical form ({e})")
        else:
            if computed != ev["hash"]:
                what = "digests" if body.get("recipe") == 2 else "fields"
                v.problems.append(
                    f"hash mismatch: the event's {what} are not the ones its hash was computed from (changed, "
                    "swapped, or a recipe changed)"
                )
        prev_hash, prev_seq = ev["hash"], seq
    return Report(lot_id, verdicts, start)


# --- the command ------------------------------------------------------------------------------------------------


def read_bounded(stream: BinaryIO, limit: int = MAX_INPUT_BYTES) -> bytes:
    raw = stream.read(limit + 1)
    if len(raw) > limit:
        raise Unreadable(f"input larger than {limit // (1024 * 1024)} MiB; this tool reads at most that")
    return raw


def load(path: str) -> Any:
    """The history at `path` (`-`: standard input), parsed; Unreadable if it cannot be."""
    try:
        if path == "-":
            raw = read_bounded(sys.stdin.buffer)
        else:
            with open(path, "rb") as f:
                raw = read_bounded(f)
    except OSError as e:
        raise Unreadable(f"cannot read {path}: {e.strerror or e}") from e
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise Unreadable(f"not JSON: {e}") from e


def describe(v: Verdict) -> str:
    head = f"seq {v.seq}" if v.seq is not None else f"event #{v.index + 1}"
    kind = f" {v.type}" if isinstance(v.type, str) else ""
    if not v.ok:
        return f"FAIL  {head}{kind}: " + "; ".join(v.problems)
    hidden = f", withheld: {', '.join(v.withheld)}" if v.withheld else ""
    return f"ok    {head}{kind} (recipe {v.recipe}{hidden})"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m custody.verify HISTORY.json   (or - for standard input)", file=sys.stderr)
        print(f"checks a custody history offline; reads at most {MAX_INPUT_BYTES >> 20} MiB", file=sys.stderr)
        return 2
    try:
        report = verify(load(args[0]))
    except Unreadable as e:
        print(f"unreadable: {e}", file=sys.stderr)
        return 2
    for v in report.verdicts:
        print(describe(v))
    n, bad = len(report.verdicts), sum(not v.ok for v in report.verdicts)
    if bad:
        print(f"lot {report.lot_id}: {bad} of {n} events do NOT verify (checked from {report.start})")
        return 1
    print(f"lot {report.lot_id}: all {n} events verify, checked from {report.start}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
