"""The composition root: the one place that builds the store, connectors and services."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from crmsync.adapters.store import Store, create_store
from crmsync.config import Settings, load_settings, secret_values
from crmsync.domain import DEFAULT_PRIMARY_ORDER, PrimarySource
from crmsync.errors import ConfigError
from crmsync.redaction import Redactor
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

__all__ = ["NO_CONFIG", "App", "bootstrap"]

NO_CONFIG = (
    "no config file: give one with --config FILE (or CRMSYNC_CONFIG), or put a crm-sync.yaml"
    " in this folder; config.example.yaml shows every key"
)


@dataclass
class App:
    """Everything a command needs, built from the settings on first use."""

    settings: Settings
    plugins: Mapping[str, ConnectorPlugin[Any]]
    clock: Clock = utc_now
    _store: Store | None = field(default=None, repr=False)
    redactor: Redactor = field(init=False, repr=False)
    """Masks the config's secrets (and bearer tokens) in messages and log records."""

    def __post_init__(self) -> None:
        self.redactor = Redactor(secret_values(self.settings))

    def open_store(self, *, migrate: bool = True, create: bool = True) -> Store:
        """The store of the config file (there is none without one: ``ConfigError``).

        A SQLite file that does not exist yet is created, unless ``create`` is false
        (commands that only read or hand-edit the store): then that is a ``StoreError``
        saying to sync first. With ``migrate`` a SQLite store is upgraded on first use and
        a PostgreSQL store behind the code is refused; a store newer than the code is
        always refused.
        """
        if self.settings.file is None:
            raise ConfigError(NO_CONFIG)
        if self._store is None:
            url = self.settings.app.database_url.get_secret_value()
            store = create_store(url, create=create)
            if migrate:
                try:
                    store.ensure_schema()
                except BaseException:
                    store.dispose()
                    raise
            self._store = store
        return self._store

    def redact(self, text: str) -> str:
        """``text`` with every secret of the config, and any bearer token, masked."""
        return self.redactor.redact(text)

    def install_log_redaction(self, logger: logging.Logger | None = None) -> None:
        """Mask secrets in every record reaching the handlers of ``logger`` (default:
        the root logger); call it after the handlers are set up."""
        self.redactor.install(logger)

    def order_for(self, connector: str | None) -> Sequence[PrimarySource]:
        config = self.settings.connectors.get(connector or "")
        return config.primary_contact_order if config is not None else DEFAULT_PRIMARY_ORDER

    def connector_names(self) -> list[str]:
        """The configured connectors; without a config file that is a ``ConfigError``."""
        if self.settings.file is None:
            raise ConfigError(NO_CONFIG)
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
            redact=self.redact,
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
