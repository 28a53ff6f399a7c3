"""How the command line prints: text from a CRM or a file shown exactly as it is.

Names, ids, addresses and error messages come from CRMs and export files, so they may
hold anything: rich markup (``Bad [/] Co`` would crash a markup parser,
``[link=...]`` would become a clickable link), emoji codes, and raw control bytes
that a terminal obeys (``\\x1b[2J`` clears it). Every piece of data goes through
:func:`literal`, which makes a :class:`rich.text.Text` (never parsed as markup) with
control characters written out as escapes (``\\x1b``) and the length bounded; the
consoles are built with markup, emoji and highlighting off, so a plain string that
reaches them is shown as it is too; table cells go through :class:`DataTable`; log
records through :class:`LiteralLogHandler`; ``--json`` output through :func:`to_json`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
from rich.console import Console, ConsoleRenderable, RenderableType
from rich.logging import RichHandler
from rich.style import StyleType
from rich.table import Table
from rich.text import Text

__all__ = [
    "MAX_TEXT",
    "DataTable",
    "LiteralLogHandler",
    "escape_controls",
    "line",
    "literal",
    "make_console",
    "plural",
    "to_json",
    "write_json_array",
    "write_json_lines",
]

MAX_TEXT = 500
"""The most characters of one value printed; the rest is counted, not shown."""

# C0 and C1 controls, DEL, line and paragraph separators, and the bidirectional
# overrides and isolates (which reorder what a terminal shows: "Trojan source").
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# What JSON leaves unescaped among those (it escapes \x00-\x1f itself).
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control character written as an escape (``\\x1b``, ``\\n``)."""
    return _CONTROL.sub(_escape, text)


def literal(value: object, style: StyleType = "", *, limit: int = MAX_TEXT) -> Text:
    """``value`` as text shown as it is: no markup, control characters escaped, bounded.

    ``None`` shows as ``-``.
    """
    text = "-" if value is None else str(value)
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit:,} more characters)"
    return Text(escape_controls(text), style=style)


Part = Text | str | int | float | None | tuple[object, StyleType]


def line(*parts: Part) -> Text:
    """One line of output from parts: a :class:`Text` is kept (built by :func:`literal`
    or :func:`line`), ``(value, style)`` is a styled value, anything else a plain value;
    every value is shown literally."""
    out = Text()
    for part in parts:
        if isinstance(part, Text):
            out.append_text(part)
        elif isinstance(part, tuple):
            out.append_text(literal(part[0], part[1]))
        else:
            out.append_text(literal(part))
    return out


class DataTable(Table):
    """A table whose cells are data: every cell that is not a :class:`Text` already is
    shown literally (:func:`literal`)."""

    def add_row(
        self,
        *renderables: RenderableType | None,
        style: StyleType | None = None,
        end_section: bool = False,
    ) -> None:
        cells = [
            cell if isinstance(cell, Text) or not isinstance(cell, str | None) else literal(cell)
            for cell in renderables
        ]
        super().add_row(*cells, style=style, end_section=end_section)


class _LiteralFormatter(logging.Formatter):
    """Escapes control characters in the message; a traceback keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))


class LiteralLogHandler(RichHandler):
    """Rich log output that never reads a message as markup, whatever the record says."""

    def __init__(self, console: Console) -> None:
        super().__init__(console=console, show_path=False, rich_tracebacks=False, markup=False)
        self.setFormatter(_LiteralFormatter("%(message)s", datefmt="[%X]"))

    def render_message(self, record: logging.LogRecord, message: str) -> ConsoleRenderable:
        text = Text(message)
        return self.highlighter(text) if self.highlighter is not None else text


def make_console(*, stderr: bool = False, environ: Mapping[str, str] | None = None) -> Console:
    """A console that shows strings as they are (no markup, emoji or highlighting).

    Standard output that is not a terminal (a pipe, a file) is at least 200 columns
    wide, so ids people copy are never cut, unless ``COLUMNS`` says otherwise.
    """
    env = os.environ if environ is None else environ
    console = Console(stderr=stderr, markup=False, emoji=False, highlight=False, soft_wrap=stderr)
    if not stderr and not console.is_terminal and "COLUMNS" not in env:
        console.width = max(console.width, 200)
    return console


_ONE_LINE = json.JSONEncoder(ensure_ascii=False, default=str)


def _json_safe(text: str) -> str:
    """JSON text with C1 controls and bidi overrides escaped as ``\\uXXXX`` (ASCII text
    without DEL, nearly all of it, is returned as it is without a scan)."""
    if text.isascii() and "\x7f" not in text:
        return text
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def to_json(data: Any, *, indent: int | None = 2) -> str:
    """``data`` as JSON (indented, or on one line with ``indent=None``); C1 controls and
    bidi overrides escaped as ``\\uXXXX``."""
    if indent is None:
        return _json_safe(_ONE_LINE.encode(data))
    return _json_safe(json.dumps(data, indent=indent, ensure_ascii=False, default=str))


_ORJSON_INDENTED = (
    orjson.OPT_INDENT_2 | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def _array_item(item: Any) -> str:
    """``item`` as :func:`to_json` writes it, indented as an element of an array.

    For the ``--json`` shapes (strings, integers, booleans, null, lists and objects with
    text keys) orjson writes the same text as the standard library's ``indent=2``
    encoder, which is pure Python and about 40 times slower; datetimes and dataclasses
    go through ``str`` as there; what orjson refuses (a lone surrogate, an integer
    beyond 64 bits, a key that is not text) goes through :func:`to_json`.
    """
    try:
        text = orjson.dumps([item], default=str, option=_ORJSON_INDENTED).decode()[2:-2]
    except orjson.JSONEncodeError:
        return textwrap.indent(to_json(item), "  ")
    return _json_safe(text)


def write_json_array(items: Iterable[Any], write: Callable[[str], object]) -> int:
    """Write ``items`` as one indented JSON array as they come (one item in memory at a
    time); returns how many were written."""
    count = 0
    for item in items:
        write(("[\n" if count == 0 else ",\n") + _array_item(item))
        count += 1
    write("[]\n" if count == 0 else "\n]\n")
    return count


def write_json_lines(items: Iterable[Any], write: Callable[[str], object]) -> int:
    """Write ``items`` as JSON Lines (one compact object a line) as they come."""
    count = 0
    for item in items:
        write(to_json(item, indent=None) + "\n")
        count += 1
    return count


_PLURALS = {"company": "companies", "contact": "contacts"}


def plural(noun: str, count: int | None = None) -> str:
    """``noun`` in the plural (``company`` -> ``companies``); the singular when
    ``count`` is 1."""
    if count == 1:
        return noun
    if noun in _PLURALS:
        return _PLURALS[noun]
    if len(noun) > 1 and noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"
