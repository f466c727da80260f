"""Check every EPCIS 2.0 document in a folder: `python -m custody.epcis_check FOLDER [--url URL --token TOKEN]`.

Without `--url`: validates each `*.json` / `*.jsonld` file (recursively; an EPCISQueryDocument's events as capture
takes them) and prints `ok <n> events` or the error. With `--url` (a running custody) and `--token` (a
participant's): captures each document (`POST /capture`), polls its job and prints `accepted: <applied> applied,
<stored> stored, <n> captured before` (eventIDs this participant captured already) or the failure. Then the totals;
exits 0 when every file passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx

from custody.epcis import VALIDATION, EpcisError, capture_body, validate_document


def check(path: Path) -> tuple[bool, str]:
    """One file's verdict and the line that says it."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return False, f"{VALIDATION} at /: not JSON ({error})"
    try:
        document = validate_document(capture_body(doc))
    except EpcisError as error:
        return False, str(error)
    return True, f"ok {len(document.epcis_body.event_list)} events"


def capture(client: httpx.Client, path: Path, timeout_s: float = 60.0) -> tuple[bool, str]:
    """Capture one file against a running custody and wait for its job."""
    r = client.post("/capture", content=path.read_bytes(), headers={"Content-Type": "application/ld+json"})
    if r.status_code != 202:
        body = r.json() if r.headers.get("content-type", "").endswith("json") else {}
        return False, f"refused {r.status_code}: {body.get('type')} at {body.get('pointer')}: {body.get('detail')}"
    location = r.headers["Location"]
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(location).json()
        if not job["running"]:
            break
        if time.monotonic() > deadline:
            return False, f"job {job['captureID']} still running after {timeout_s:.0f} s"
        time.sleep(0.1)
    skipped = job["eventCount"] - job["applied"] - job["stored"] - len(job["errors"])
    counts = f"{job['applied']} applied, {job['stored']} stored, {skipped} captured before"
    if job["success"]:
        return True, f"accepted: {counts}"
    errors = "; ".join(f"{e.get('pointer')}: {e.get('detail')}" for e in job["errors"][:3])
    return False, f"failed ({counts}): {errors}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m custody.epcis_check", description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--url", help="a running custody service: capture each document there")
    parser.add_argument("--token", help="a participant's bearer token (with --url)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    folder: Path = args.folder
    if not folder.is_dir() or (args.url is not None and not args.token):
        parser.print_usage(sys.stderr)
        return 2
    files = sorted(p for p in folder.rglob("*") if p.suffix in {".json", ".jsonld"} and p.is_file())
    passed = events = 0
    client = (
        httpx.Client(base_url=args.url, headers={"Authorization": f"Bearer {args.token}"}, timeout=60)
        if args.url
        else None
    )
    for path in files:
        ok, line = check(path) if client is None else capture(client, path)
        print(f"{path.relative_to(folder)}: {line}")
        passed += ok
        if ok and client is None:
            events += int(line.split()[1])
    if client is None:
        print(f"{passed} of {len(files)} documents valid ({events} events), {len(files) - passed} refused")
    else:
        print(f"{passed} of {len(files)} documents accepted, {len(files) - passed} refused")
    return 0 if files and passed == len(files) else 1


if __name__ == "__main__":
    sys.exit(main())
