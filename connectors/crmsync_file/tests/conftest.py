"""The ``build`` fixture: writes export files into tmp_path and builds a connector over them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crmsync.sdk.connector import ConnectorContext
from crmsync_file import FileConnector, FileConnectorConfig
from crmsync_file.tests.support import Build


@pytest.fixture
def build(tmp_path: Path) -> Build:
    """``build(companies=..., contacts=..., company_source={...}, page_size=3, **kwargs)``.

    ``companies``/``contacts`` are file contents written to the source's path (default
    companies.csv / contacts.csv in tmp_path); ``*_source`` add keys to the source's config.
    """

    def _build(
        companies: str | bytes | None = None,
        contacts: str | bytes | None = None,
        *,
        company_source: dict[str, Any] | None = None,
        contact_source: dict[str, Any] | None = None,
        page_size: int = 3,
        **kwargs: Any,
    ) -> FileConnector:
        company_cfg: dict[str, Any] = {"path": "companies.csv", **(company_source or {})}
        _write(tmp_path / company_cfg["path"], companies)
        config: dict[str, Any] = {"type": "file", "page_size": page_size, "companies": company_cfg}
        if contacts is not None or contact_source is not None:
            contact_cfg: dict[str, Any] = {"path": "contacts.csv", **(contact_source or {})}
            _write(tmp_path / contact_cfg["path"], contacts)
            config["contacts"] = contact_cfg
        context = ConnectorContext(name="export", base_dir=tmp_path)
        return FileConnector(FileConnectorConfig.model_validate(config), context, **kwargs)

    return _build


def _write(path: Path, content: str | bytes | None) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
