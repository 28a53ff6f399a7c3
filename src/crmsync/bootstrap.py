"""The composition root: the one place that builds the store, connectors and services."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from crmsync.adapters.store import Store, create_store
from crmsync.config import Settings, load_settings
from crmsync.domain import DEFAULT_PRIMARY_ORDER, PrimarySource
from crmsync.errors import ConfigError
from crmsync.sdk.connector import (
    Clock,
    Connector,
    ConnectorContext,
    ConnectorPlugin,
    ReadPlan,
    utc_now,
)
from crmsync.sdk.registry import load_plugins
from crmsync.service.customers import CustomerService
from crmsync.service.sync import Progress, SyncEngine

__all__ = ["App", "bootstrap"]


@dataclass
class App:
    """Everything a command needs, built from the settings on first use."""

    settings: Settings
    plugins: Mapping[str, ConnectorPlugin[Any]]
    clock: Clock = utc_now
    _store: Store | None = field(default=None, repr=False)

    def open_store(self, *, migrate: bool = True) -> Store:
        """The store; a SQLite file is created and upgraded on first use."""
        if self._store is None:
            self._store = create_store(self.settings.app.database_url.get_secret_value())
            if migrate:
                self._store.ensure_schema()
        return self._store

    def order_for(self, connector: str | None) -> Sequence[PrimarySource]:
        config = self.settings.connectors.get(connector or "")
        return config.primary_contact_order if config is not None else DEFAULT_PRIMARY_ORDER

    def connector_names(self) -> list[str]:
        return list(self.settings.connectors)

    def build_connector(self, name: str) -> Connector:
        config = self.settings.connectors.get(name)
        if config is None:
            known = ", ".join(self.settings.connectors) or "none configured"
            raise ConfigError(
                f"no connector named {name!r} (configured: {known})",
                source=self.settings.source,
                key="connectors",
            )
        plugin = self.plugins[config.type]
        context = ConnectorContext(name=name, base_dir=self.settings.base_dir, clock=self.clock)
        return plugin.factory(config, context)

    def reading(self, name: str) -> ReadPlan:
        """How the named connector's plugin wants its streams read."""
        config = self.settings.connectors.get(name)
        plugin = self.plugins.get(config.type) if config is not None else None
        return plugin.reading if plugin is not None else ReadPlan()

    def engine(self, *, progress: Progress | None = None) -> SyncEngine:
        return SyncEngine(
            self.open_store(),
            default_tax_status=self.settings.app.defaults.tax_status,
            order_for=self.order_for,
            clock=self.clock,
            progress=progress,
        )

    @cached_property
    def customers(self) -> CustomerService:
        return CustomerService(order_for=self.order_for)

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()


def bootstrap(
    config_path: Path | None,
    *,
    environ: Mapping[str, str],
    plugins: Mapping[str, ConnectorPlugin[Any]] | None = None,
    clock: Clock = utc_now,
) -> App:
    """Load plugins and settings; nothing touches the store or a CRM yet."""
    found = load_plugins() if plugins is None else plugins
    settings = load_settings(config_path, plugins=found, environ=environ)
    return App(settings=settings, plugins=found, clock=clock)
