"""Finding connector plugins through the crmsync.connectors entry points."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from crmsync.errors import ConfigError
from crmsync.sdk.registry import ENTRY_POINT_GROUP, load_plugins


def test_the_built_in_connectors_register_through_the_entry_point_group() -> None:
    plugins = load_plugins()
    assert {"file", "hubspot"} <= set(plugins)
    assert plugins["file"].type == "file"


@pytest.fixture
def third_party(tmp_path: Path) -> Iterator[Path]:
    """An installed third-party distribution, as pip would leave it on sys.path."""
    pkg = tmp_path / "crmsync_acme"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent("""
        from typing import Literal
        from crmsync.sdk import ConnectorConfig, ConnectorPlugin

        class AcmeConfig(ConnectorConfig):
            type: Literal["acme"] = "acme"

        plugin = ConnectorPlugin(type="acme", config_model=AcmeConfig,
                                 factory=lambda config, context: None)
        not_a_plugin = object()
    """)
    )
    dist = tmp_path / "crmsync_acme-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: crmsync-acme\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nacme = crmsync_acme:plugin\n")
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop("crmsync_acme", None)


def test_a_third_party_package_is_found_like_the_built_ins(third_party: Path) -> None:
    plugins = load_plugins()
    assert plugins["acme"].config_model.__name__ == "AcmeConfig"


def _ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


def test_a_plugin_that_fails_to_import_is_named(third_party: Path) -> None:
    with pytest.raises(ConfigError, match=r"'broken' \(crmsync_nowhere:plugin\) failed to load"):
        load_plugins([_ep("broken", "crmsync_nowhere:plugin")])


def test_an_entry_point_that_is_not_a_plugin_is_refused_at_load(third_party: Path) -> None:
    with pytest.raises(ConfigError, match=r"is not a crmsync\.sdk\.ConnectorPlugin"):
        load_plugins([_ep("odd", "crmsync_acme:not_a_plugin")])


def test_a_plugin_must_declare_the_type_of_its_entry_point(third_party: Path) -> None:
    with pytest.raises(ConfigError, match="must match its entry point"):
        load_plugins([_ep("other", "crmsync_acme:plugin")])


def test_two_plugins_cannot_claim_one_type(third_party: Path) -> None:
    with pytest.raises(ConfigError, match="two connector plugins claim the type 'acme'"):
        load_plugins([_ep("acme", "crmsync_acme:plugin"), _ep("acme", "crmsync_acme:plugin")])
