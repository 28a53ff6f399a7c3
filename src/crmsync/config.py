"""Configuration: a YAML file with ``${ENV_VAR}`` references, validated by pydantic.

Loading happens in two steps so that a config error always names the file, the
key and the problem: the file is parsed and its environment references expanded,
the top level is validated, then each connector section is validated against the
config model of the plugin its ``type`` names. Secrets (fields typed ``SecretStr``)
must be written as ``${ENV_VAR}`` references, never literally, and never print.

The environment is passed in (``environ=``) rather than read from ``os.environ``
here, so tests never touch the process environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from crmsync.domain.values import TaxStatus
from crmsync.errors import ConfigError
from crmsync.sdk.connector import ConnectorConfig, ConnectorPlugin

__all__ = ["AppConfig", "Defaults", "Settings", "load_settings", "parse_settings"]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
DEFAULT_DATABASE_URL = "sqlite:///crm-sync.db"


class Defaults(BaseModel):
    """Values a customer gets when neither the CRM nor a person sets them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tax_status: TaxStatus = Field(
        default=TaxStatus.TAXED, description="tax status of customers whose CRM record has none"
    )


class AppConfig(BaseModel):
    """The top level of the config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: SecretStr = Field(
        default=SecretStr(DEFAULT_DATABASE_URL),
        description="SQLAlchemy URL of the store: sqlite:///file.db or postgresql://...",
    )
    defaults: Defaults = Field(default_factory=Defaults)
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")


class Settings(BaseModel):
    """The validated configuration: the top level plus each connector's own model."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    app: AppConfig
    connectors: dict[str, ConnectorConfig]
    base_dir: Path
    source: str


def _expand(value: Any, path: str, environ: Mapping[str, str], from_env: set[str]) -> Any:
    if isinstance(value, dict):
        return {
            k: _expand(v, f"{path}.{k}" if path else str(k), environ, from_env)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_expand(v, f"{path}.{i}", environ, from_env) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(f"environment variable {name} is not set", key=path)

    from_env.add(path)
    return _ENV_REF.sub(substitute, value)


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


def _secret_paths(model: BaseModel, prefix: str) -> list[str]:
    found: list[str] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        path = f"{prefix}.{name}"
        if isinstance(value, SecretStr):
            found.append(path)
        elif isinstance(value, BaseModel):
            found += _secret_paths(value, path)
    return found


def parse_settings(
    raw: Mapping[str, Any] | None,
    *,
    plugins: Mapping[str, ConnectorPlugin[Any]],
    environ: Mapping[str, str],
    base_dir: Path,
    source: str,
) -> Settings:
    """Validate an already-parsed config document."""
    from_env: set[str] = set()
    expanded = _expand(dict(raw or {}), "", environ, from_env)
    sections = expanded.pop("connectors", None) or {}
    if not isinstance(sections, dict):
        raise ConfigError(
            "must map connector names to their sections", source=source, key="connectors"
        )
    try:
        app = AppConfig.model_validate(expanded)
    except ValidationError as exc:
        _raise_validation(exc, source)
    connectors: dict[str, ConnectorConfig] = {}
    for name, section in sections.items():
        prefix = f"connectors.{name}"
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", name):
            raise ConfigError(
                "connector names use lower-case letters, digits, '-' and '_'",
                source=source,
                key=prefix,
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
            config = plugin.config_model.model_validate(section)
        except ValidationError as exc:
            _raise_validation(exc, source, prefix)
        for secret in _secret_paths(config, prefix):
            if (
                getattr_path(config, secret[len(prefix) + 1 :]) is not None
                and secret not in from_env
            ):
                raise ConfigError(
                    "secrets must be given as ${ENV_VAR} references, not written in the file",
                    source=source,
                    key=secret,
                )
        connectors[name] = config
    if _url_has_password(app.database_url) and "database_url" not in from_env:
        raise ConfigError(
            "a database URL with a password must be given as an ${ENV_VAR} reference",
            source=source,
            key="database_url",
        )
    return Settings(app=app, connectors=connectors, base_dir=base_dir, source=source)


def _url_has_password(url: SecretStr) -> bool:
    try:
        return make_url(url.get_secret_value()).password is not None
    except ArgumentError:
        return False


def getattr_path(model: BaseModel, dotted: str) -> Any:
    """Follow a dotted attribute path (``oauth.client_secret``) through nested models."""
    value: Any = model
    for part in dotted.split("."):
        value = getattr(value, part, None)
    return value


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
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError("the top level must be a mapping of keys", source=source)
    return parse_settings(
        raw, plugins=plugins, environ=environ, base_dir=path.resolve().parent, source=source
    )
