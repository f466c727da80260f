"""Vendor the openAPIV3Schema of CustomResourceDefinitions into this folder, so the chart's tests validate the
Strimzi, CloudNativePG, KEDA and Prometheus Operator objects it renders without reaching the network.

    python -m tests.deploy.schemas.vendor <crd.yaml>...

Each CRD's served versions become `<group>_<version>_<Kind>.json` here: the schema as the CRD declares it, less its
`description` texts (prose only, most of the size). Where each CRD comes from (project, tag, commit, path) is in
SOURCES.md beside this file: update it with the files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


def without_descriptions(schema: Any) -> Any:
    """The schema node less its `description` keywords; a property *named* description is kept."""
    if isinstance(schema, list):
        return [without_descriptions(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "description" and isinstance(value, str):
            continue
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {name: without_descriptions(sub) for name, sub in value.items()}
        else:
            out[key] = without_descriptions(value)
    return out


def vendor(crd_path: Path) -> list[Path]:
    written = []
    for crd in yaml.safe_load_all(crd_path.read_text()):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd["spec"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            schema = without_descriptions(version["schema"]["openAPIV3Schema"])
            path = HERE / f"{spec['group']}_{version['name']}_{spec['names']['kind']}.json"
            path.write_text(json.dumps(schema, indent=None, sort_keys=True, separators=(",", ":")) + "\n")
            written.append(path)
    return written


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        for p in vendor(Path(arg)):
            print(p.name)
