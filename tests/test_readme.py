"""The README's configuration table and port list stay true to the settings classes."""

from __future__ import annotations

import re

import pytest

from audit.config import Settings as AuditSettings
from custody.config import Settings as CustodySettings
from registry.config import Settings as RegistrySettings
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("settings_cls", [RegistrySettings, CustodySettings, AuditSettings])
def test_every_setting_is_documented(settings_cls: type) -> None:
    table = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_0-9]+)`", table, flags=re.M))
    fields = {name.upper() for name in settings_cls.model_fields if name != "service_name"}
    assert fields <= documented, f"undocumented settings: {sorted(fields - documented)}"


@pytest.mark.parametrize("settings_cls", [RegistrySettings, CustodySettings, AuditSettings])
def test_default_ports_are_the_documented_ones(settings_cls: type) -> None:
    prefix = settings_cls.model_config["env_prefix"]
    port = settings_cls.model_fields["port"].default
    assert re.search(rf"127\.0\.0\.1:{port} \| `{prefix}HOST`, `{prefix}PORT`", README)
