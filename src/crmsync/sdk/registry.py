"""Finding connector plugins through the ``crmsync.connectors`` entry-point group.

Built-in connectors register exactly as third-party ones do, so there is one
discovery path. A plugin is validated when it is loaded, not when first used: a
broken package fails ``crm-sync`` at start-up with its name in the message.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from crmsync.errors import ConfigError
from crmsync.sdk.connector import ConnectorConfig, ConnectorPlugin

__all__ = ["ENTRY_POINT_GROUP", "load_plugins"]

ENTRY_POINT_GROUP = "crmsync.connectors"


def _validate(ep: EntryPoint, obj: object) -> ConnectorPlugin[Any]:
    where = f"connector plugin {ep.name!r} ({ep.value})"
    if not isinstance(obj, ConnectorPlugin):
        raise ConfigError(f"{where} is not a crmsync.sdk.ConnectorPlugin")
    if obj.type != ep.name:
        raise ConfigError(f"{where} declares type {obj.type!r}; it must match its entry point")
    if not (isinstance(obj.config_model, type) and issubclass(obj.config_model, ConnectorConfig)):
        raise ConfigError(f"{where}: config_model must subclass ConnectorConfig")
    if not callable(obj.factory):
        raise ConfigError(f"{where}: factory is not callable")
    return obj


def load_plugins(eps: Iterable[EntryPoint] | None = None) -> dict[str, ConnectorPlugin[Any]]:
    """Load and validate every installed connector plugin, keyed by type."""
    found = entry_points(group=ENTRY_POINT_GROUP) if eps is None else eps
    plugins: dict[str, ConnectorPlugin[Any]] = {}
    for ep in found:
        if ep.name in plugins:
            raise ConfigError(f"two connector plugins claim the type {ep.name!r}")
        try:
            obj = ep.load()
        except Exception as exc:
            raise ConfigError(
                f"connector plugin {ep.name!r} ({ep.value}) failed to load: {exc}"
            ) from exc
        plugins[ep.name] = _validate(ep, obj)
    return plugins
