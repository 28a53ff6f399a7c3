"""Every CRM section config.example.yaml shows, commented out, is a valid config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from crmsync.config import load_settings
from crmsync.sdk.registry import load_plugins

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


def _commented_section(name: str) -> str:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    start = lines.index(f"  # {name}:")
    block = []
    for line in lines[start:]:
        if not line.startswith("  # "):
            break
        block.append("  " + line[4:])
    return "\n".join(block)


@pytest.mark.parametrize("name", ["hubspot", "salesforce", "pipedrive"])
def test_the_commented_section_of_each_crm_validates_once_uncommented(
    name: str, tmp_path: Path
) -> None:
    section = _commented_section(name)
    config = tmp_path / "crm-sync.yaml"
    config.write_text(f"connectors:\n{section}\n", encoding="utf-8")
    (tmp_path / "salesforce.key").write_text("not read at load time\n", encoding="utf-8")
    environ = {var: "value-of-" + var for var in re.findall(r"\$\{(\w+)\}", section)}

    settings = load_settings(config, plugins=load_plugins(), environ=environ)

    assert settings.connectors[name].type == name
