"""Validate every EPCIS 2.0 document in a folder: `python -m custody.epcis_check FOLDER`.

Prints `ok <n> events` or the error per `*.json` / `*.jsonld` file (recursively), then the totals; exits 0 when
every file passes, 1 otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from custody.epcis import VALIDATION, EpcisError, validate_document


def check(path: Path) -> tuple[bool, str]:
    """One file's verdict and the line that says it."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return False, f"{VALIDATION} at /: not JSON ({error})"
    try:
        document = validate_document(doc)
    except EpcisError as error:
        return False, str(error)
    return True, f"ok {len(document.epcis_body.event_list)} events"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        print("usage: python -m custody.epcis_check FOLDER", file=sys.stderr)
        return 2
    folder = Path(args[0])
    files = sorted(p for p in folder.rglob("*") if p.suffix in {".json", ".jsonld"} and p.is_file())
    passed = events = 0
    for path in files:
        ok, line = check(path)
        print(f"{path.relative_to(folder)}: {line}")
        if ok:
            passed += 1
            events += int(line.split()[1])
    print(f"{passed} of {len(files)} documents valid ({events} events), {len(files) - passed} refused")
    return 0 if files and passed == len(files) else 1


if __name__ == "__main__":
    sys.exit(main())
