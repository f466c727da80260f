"""The README stays a short front door, and the documentation under docs/ stays true to the code and to itself:
the configuration page against the settings classes, every relative link and anchor against what it points at."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from audit.config import Settings as AuditSettings
from custody.config import Settings as CustodySettings
from registry.config import Settings as RegistrySettings
from tests.conftest import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
SETTINGS = (RegistrySettings, CustodySettings, AuditSettings)
DOC_PAGES = sorted(DOCS.rglob("*.md"))

FENCE = re.compile(r"^(```|~~~).*?^\1", flags=re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", flags=re.M)


def section(text: str, heading: str) -> str:
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def prose(text: str) -> str:
    """The text without its code: fenced blocks and inline code hold shell and JSON, not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (hyphens and underscores kept), spaces to `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors on its text
    return re.sub(r"[^\w\- ]", "", text.replace("`", "").strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text())):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def relative_links(path: Path) -> list[str]:
    return [t for t in LINK.findall(prose(path.read_text())) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("settings_cls", SETTINGS)
def test_every_setting_is_documented(settings_cls: type) -> None:
    table = section(CONFIGURATION.read_text(), "Settings")
    documented = set(re.findall(r"^\| `([A-Z_0-9]+)`", table, flags=re.M))
    fields = {name.upper() for name in settings_cls.model_fields if name != "service_name"}
    assert fields <= documented, f"undocumented settings: {sorted(fields - documented)}"


def test_every_documented_setting_exists() -> None:
    table = section(CONFIGURATION.read_text(), "Settings")
    documented = set(re.findall(r"^\| `([A-Z_0-9]+)`", table, flags=re.M))
    fields = {name.upper() for cls in SETTINGS for name in cls.model_fields}
    assert documented <= fields, f"documented but no such setting: {sorted(documented - fields)}"


@pytest.mark.parametrize("settings_cls", SETTINGS)
def test_default_ports_are_the_documented_ones(settings_cls: type) -> None:
    ports = section(CONFIGURATION.read_text(), "Ports")
    prefix = settings_cls.model_config["env_prefix"]
    port = settings_cls.model_fields["port"].default
    assert re.search(rf"127\.0\.0\.1:{port} \| `{prefix}HOST`, `{prefix}PORT`", ports)


def test_the_readme_is_a_front_door() -> None:
    size = len(README.read_bytes())
    assert size < 10_000, f"README.md is {size:,} bytes: move detail under docs/"


def test_the_readme_links_to_every_docs_page() -> None:
    linked = {(README.parent / t.split("#", 1)[0]).resolve() for t in relative_links(README)}
    missing = [p.relative_to(ROOT) for p in [*DOC_PAGES, DOCS / "architecture.svg"] if p.resolve() not in linked]
    assert not missing, f"README.md does not link to {missing}"


@pytest.mark.parametrize("page", [README, *DOC_PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_what_exists(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no such heading in {path.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"
