"""Configuration: a YAML file with ``${ENV_VAR}`` references, validated by pydantic.

Loading happens in two steps so that a config error always names the file, the
key and the problem: the file is parsed and its environment references expanded,
the top level is validated, then each connector section is validated against the
config model of the plugin its ``type`` names. Secrets (fields typed ``SecretStr``,
and the database URL's password) must be written as exactly one ``${ENV_VAR}``
reference to a variable that is set and not empty: no default, nothing around it.
They never print; :func:`secret_values` lists them for the redaction of messages.
A relative SQLite path is resolved against the folder of the config file, like every
other path in it.

The environment is passed in (``environ=``) rather than read from ``os.environ``
here, so tests never touch the process environment.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from crmsync.adapters.store import parse_database_url
from crmsync.billing.config import BillingConfig
from crmsync.domain.values import TaxStatus
from crmsync.errors import ConfigError
from crmsync.sdk.connector import ConnectorConfig, ConnectorPlugin

__all__ = [
    "AppConfig",
    "Defaults",
    "Settings",
    "WebhooksConfig",
    "load_settings",
    "parse_settings",
    "secret_values",
]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
#: What a secret must be written as: one reference, nothing around it, no default.
_SOLE_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
DEFAULT_DATABASE_URL = "sqlite:///crm-sync.db"
_REFERENCE_RULE = (
    "secrets must be given as exactly one ${ENV_VAR} reference (no default, nothing around"
    " it), not written in the file"
)


class Defaults(BaseModel):
    """Values a customer gets when neither the CRM nor a person sets them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tax_status: TaxStatus = Field(
        default=TaxStatus.TAXED, description="tax status of customers whose CRM record has none"
    )


class ChangeLogConfig(BaseModel):
    """How long the record of customer changes is kept."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retention_days: int = Field(
        default=365,
        ge=1,
        description="entries older than this are pruned after each sync (a customer's"
        " latest entry is always kept)",
    )


class WebhooksConfig(BaseModel):
    """How ``crm-sync serve`` takes webhook deliveries and applies them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_body_bytes: int = Field(
        default=1_048_576, ge=1_024, description="larger deliveries are refused (413)"
    )
    max_attempts: int = Field(
        default=8, ge=1, description="an event still failing after this many is set aside"
    )
    retry_seconds: float = Field(
        default=30.0, gt=0, description="wait before the first retry; doubles each attempt"
    )
    max_retry_seconds: float = Field(
        default=3_600.0, gt=0, description="the longest wait between two attempts"
    )
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$",
        description="the URL the CRM calls, up to where /webhooks/... begins (behind a"
        " proxy the host differs); signatures that cover the URL are checked against it",
    )
    batch_size: int = Field(
        default=500, ge=1, le=5_000, description="events applied together in one import"
    )
    coalesce_seconds: float = Field(
        default=0.5,
        ge=0,
        description="an import waits this long for more events before it starts, so that"
        " a burst is applied in a few imports instead of one per delivery",
    )
    claim_seconds: float = Field(
        default=120.0,
        gt=0,
        description="an event a worker claimed and did not finish is retried after this",
    )
    poll_seconds: float = Field(
        default=2.0, gt=0, description="how often the worker looks for due events"
    )
    retention_days: int = Field(
        default=7, ge=1, description="applied events are kept this long (re-deliveries dropped)"
    )


class AppConfig(BaseModel):
    """The top level of the config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: SecretStr = Field(
        default=SecretStr(DEFAULT_DATABASE_URL),
        description="SQLAlchemy URL of the store: sqlite:///file.db or postgresql://...",
    )
    defaults: Defaults = Field(default_factory=Defaults)
    change_log: ChangeLogConfig = Field(default_factory=ChangeLogConfig)
    log_level: str = Field(default="WARNING", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    billing: BillingConfig | None = Field(
        default=None, description="the billing platform (Sequence) `crm-sync push` sends to"
    )


class Settings(BaseModel):
    """The validated configuration: the top level plus each connector's own model."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    app: AppConfig
    connectors: dict[str, ConnectorConfig]
    base_dir: Path
    source: str
    file: Path | None = None
    """The config file these settings were read from; ``None`` for the built-in defaults."""


class _Expander:
    """Expands ``${VAR}`` references, remembering what each string was written as."""

    def __init__(self, environ: Mapping[str, str], source: str) -> None:
        self.environ = environ
        self.source = source
        self.written: dict[str, str] = {}
        """Dotted key -> the text written in the file, for every string value."""

    def expand(self, value: Any, path: str = "") -> Any:
        if isinstance(value, dict):
            return {k: self.expand(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.expand(v, f"{path}.{i}") for i, v in enumerate(value)]
        if not isinstance(value, str):
            return value
        self.written[path] = value
        if "${" not in value:
            return value

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in self.environ:
                return self.environ[name]
            if default is not None:
                return default
            raise ConfigError(
                f"environment variable {name} is not set", source=self.source, key=path
            )

        return _ENV_REF.sub(substitute, value)

    def check_secret(self, path: str, written: str | None) -> None:
        """Refuse a secret unless it is one reference to a set, non-empty variable."""
        match = _SOLE_REF.fullmatch(written or "")
        if match is None:
            raise ConfigError(_REFERENCE_RULE, source=self.source, key=path)
        if not self.environ.get(match.group(1)):
            raise ConfigError(
                f"environment variable {match.group(1)} is empty", source=self.source, key=path
            )


def _dotted(loc: tuple[int | str, ...], prefix: str = "") -> str:
    parts = [prefix] if prefix else []
    parts += [str(p) for p in loc]
    return ".".join(parts)


def _raise_validation(exc: ValidationError, source: str, prefix: str = "") -> None:
    first = exc.errors()[0]
    key = _dotted(first["loc"], prefix) or prefix or None
    problem = first["msg"]
    if first["type"] == "extra_forbidden":
        problem = "unknown key"
    more = len(exc.errors()) - 1
    if more:
        problem += f" (and {more} more problem{'s' if more > 1 else ''})"
    raise ConfigError(problem, source=source, key=key) from None


def _secrets(value: Any, path: str) -> Iterator[tuple[str, SecretStr]]:
    """Every ``SecretStr`` in a validated value, with the dotted key it was written under."""
    if isinstance(value, SecretStr):
        yield path, value
    elif isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            yield from _secrets(getattr(value, name), f"{path}.{field.alias or name}")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _secrets(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _secrets(item, f"{path}.{index}")


def secret_values(settings: Settings) -> list[str]:
    """The value of every secret in the settings: each ``SecretStr`` of the connector
    sections and the database URL's password (the rest of that URL is no secret)."""
    found = [
        secret.get_secret_value()
        for name, config in settings.connectors.items()
        for _, secret in _secrets(config, f"connectors.{name}")
    ]
    found += [secret.get_secret_value() for _, secret in _secrets(settings.app.billing, "billing")]
    password = make_url(settings.app.database_url.get_secret_value()).password
    if password:
        found.append(str(password))
    return [value for value in found if value]


def _connector(
    name: str, section: Any, plugins: Mapping[str, ConnectorPlugin[Any]], expander: _Expander
) -> ConnectorConfig:
    source, prefix = expander.source, f"connectors.{name}"
    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", name):
        raise ConfigError(
            "connector names use lower-case letters, digits, '-' and '_'", source=source, key=prefix
        )
    if not isinstance(section, dict) or "type" not in section:
        raise ConfigError("each connector needs a `type`", source=source, key=f"{prefix}.type")
    plugin = plugins.get(str(section["type"]))
    if plugin is None:
        known = ", ".join(sorted(plugins)) or "none installed"
        raise ConfigError(
            f"unknown connector type {section['type']!r} (installed: {known})",
            source=source,
            key=f"{prefix}.type",
        )
    try:
        config: ConnectorConfig = plugin.config_model.model_validate(section)
    except ValidationError as exc:
        _raise_validation(exc, source, prefix)
    for path, _ in _secrets(config, prefix):
        expander.check_secret(path, expander.written.get(path))
    return config


def _database_url(expander: _Expander, value: str, base_dir: Path) -> SecretStr:
    """The store URL, checked (supported driver, password only from the environment) and
    with a relative SQLite path made absolute against the config file's folder."""
    try:
        url = parse_database_url(value)
    except ConfigError as exc:
        raise exc.in_file(expander.source) from None
    written = expander.written.get("database_url", DEFAULT_DATABASE_URL)
    if url.password is not None:
        _check_database_password(expander, written)
    no_path = url.database in (None, "", ":memory:") or url.query.get("uri") == "true"
    if url.get_backend_name() == "sqlite" and not no_path:
        url = url.set(database=str(base_dir / Path(str(url.database)).expanduser()))
    return SecretStr(url.render_as_string(hide_password=False))


def _check_database_password(expander: _Expander, written: str) -> None:
    """The password comes from one variable: the whole URL's or the password's own."""
    if _SOLE_REF.fullmatch(written):
        expander.check_secret("database_url", written)
        return
    try:
        password = make_url(written).password
    except ArgumentError:
        password = None
    if password is None or not _SOLE_REF.fullmatch(str(password)):
        raise ConfigError(
            "a database password must come from the environment: write the whole URL as one"
            " ${ENV_VAR} reference, or the password as one (postgresql://USER:${DB_PASSWORD}@...)",
            source=expander.source,
            key="database_url",
        )
    expander.check_secret("database_url", str(password))


def parse_settings(
    raw: Mapping[str, Any] | None,
    *,
    plugins: Mapping[str, ConnectorPlugin[Any]],
    environ: Mapping[str, str],
    base_dir: Path,
    source: str,
    file: Path | None = None,
) -> Settings:
    """Validate an already-parsed config document."""
    expander = _Expander(environ, source)
    expanded = expander.expand(dict(raw or {}))
    sections = expanded.pop("connectors", None) or {}
    if not isinstance(sections, dict):
        raise ConfigError(
            "must map connector names to their sections", source=source, key="connectors"
        )
    try:
        app = AppConfig.model_validate(expanded)
    except ValidationError as exc:
        _raise_validation(exc, source)
    for path, _ in _secrets(app.billing, "billing"):
        expander.check_secret(path, expander.written.get(path))
    connectors = {
        name: _connector(name, section, plugins, expander) for name, section in sections.items()
    }
    url = _database_url(expander, app.database_url.get_secret_value(), base_dir)
    return Settings(
        app=app.model_copy(update={"database_url": url}),
        connectors=connectors,
        base_dir=base_dir,
        source=source,
        file=file,
    )


def load_settings(
    path: Path | None,
    *,
    plugins: Mapping[str, ConnectorPlugin[Any]],
    environ: Mapping[str, str],
) -> Settings:
    """Read and validate a config file; ``None`` means the built-in defaults."""
    if path is None:
        return parse_settings(
            {}, plugins=plugins, environ=environ, base_dir=Path.cwd(), source="(defaults)"
        )
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", source=source) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"not valid YAML{where}", source=source) from None
    if raw is None:
        raise ConfigError(
            "the file is empty: it needs at least a connector (see config.example.yaml)",
            source=source,
        )
    if not isinstance(raw, dict):
        raise ConfigError("the top level must be a mapping of keys", source=source)
    settings = parse_settings(
        raw,
        plugins=plugins,
        environ=environ,
        base_dir=path.resolve().parent,
        source=source,
        file=path.resolve(),
    )
    if not settings.connectors:
        raise ConfigError(
            "no connectors are configured: add a section under `connectors:`"
            " (see config.example.yaml)",
            source=source,
            key="connectors",
        )
    return settings
