"""Sequence's OpenAPI document (API version 2024-07-30), shipped as package data.

The copy is Sequence's published document, unchanged; tests validate requests and
models against it. Loaded on first use, never at import time.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

__all__ = ["openapi_document"]


@cache
def openapi_document() -> dict[str, Any]:
    """The parsed OpenAPI document (one shared dict: do not modify it)."""
    text = files("crmsync.billing").joinpath("openapi.json").read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document
