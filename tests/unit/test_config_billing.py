"""The ``billing:`` section: optional, its example valid, its credentials secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from crmsync.config import parse_settings, secret_values
from crmsync.errors import ConfigError
from crmsync.sdk.registry import load_plugins

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"
ENV = {"SEQUENCE_CLIENT_ID": "client-id-1", "SEQUENCE_CLIENT_SECRET": "client-secret-2"}


def _example_billing() -> dict[str, Any]:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    start = lines.index("# billing:")
    block = []
    for line in lines[start:]:
        if not line.startswith("# "):
            break
        block.append(line[2:])
    parsed = yaml.safe_load("\n".join(block))
    assert isinstance(parsed, dict)
    return parsed


def _settings(raw: dict[str, Any], environ: dict[str, str] = ENV) -> Any:
    return parse_settings(
        raw, plugins=load_plugins(), environ=environ, base_dir=Path.cwd(), source="test.yaml"
    )


def test_the_commented_billing_section_validates_once_uncommented() -> None:
    settings = _settings(_example_billing())

    billing = settings.app.billing
    assert billing is not None
    assert billing.username.get_secret_value() == "client-id-1"
    assert billing.base_url == "https://sandbox.sequencehq.com/api"


def test_the_billing_section_is_optional() -> None:
    assert _settings({}).app.billing is None


def test_a_billing_secret_written_in_the_file_is_refused() -> None:
    raw = {"billing": {"username": "${SEQUENCE_CLIENT_ID}", "password": "in-the-file"}}

    with pytest.raises(ConfigError) as refused:
        _settings(raw)

    assert refused.value.key == "billing.password"
    assert "in-the-file" not in str(refused.value)


def test_the_billing_credentials_are_masked_like_every_secret() -> None:
    values = secret_values(_settings(_example_billing()))

    assert {"client-id-1", "client-secret-2"} <= set(values)
