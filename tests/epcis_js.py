"""Validate EPCIS 2.0 documents with GS1 France's `epcis2.js`, an implementation independent of ours.

`make epcis-js` (a step of `make test`) installs the pinned package into `tests/epcis_js/node_modules`; this module
runs `node tests/epcis_js/validate.mjs` once per call on all the documents given (JSON Lines on stdin) and returns
one `Result` per document, in order. The errors are epcis2.js's own messages, each naming the JSON path of its fault
(`EPCISDocument/epcisBody/eventList/0/action should be equal to one of the allowed values`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

FOLDER = Path(__file__).resolve().parent / "epcis_js"
SCRIPT = FOLDER / "validate.mjs"


class EpcisJsMissing(RuntimeError):
    """node or the validator's node modules are not installed."""


@dataclass(frozen=True)
class Result:
    valid: bool
    errors: list[str]


def validate_with_epcis2js(docs: list[dict[str, object]], *, timeout_s: float = 60.0) -> list[Result]:
    """One `Result` per document, from one node process for all of them."""
    if not docs:
        return []
    node = shutil.which("node")
    if node is None:
        raise EpcisJsMissing("node is not installed: install Node.js 18 or later (Debian: apt-get install nodejs npm)")
    if not (FOLDER / "node_modules" / "epcis2.js").is_dir():
        raise EpcisJsMissing(
            f"epcis2.js is not installed in {FOLDER / 'node_modules'}: run `make test` (or `make epcis-js`) first"
        )
    lines = "".join(json.dumps(doc, separators=(",", ":")) + "\n" for doc in docs)
    proc = subprocess.run(
        [node, str(SCRIPT)], input=lines, capture_output=True, text=True, cwd=FOLDER, timeout=timeout_s, check=False
    )
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"validate.mjs failed (exit {proc.returncode}): {proc.stderr.strip()}")
    results = [Result(**json.loads(line)) for line in proc.stdout.splitlines() if line.strip()]
    if len(results) != len(docs):
        raise RuntimeError(f"validate.mjs answered {len(results)} results for {len(docs)} documents: {proc.stderr}")
    return results
