"""Data shown by the CLI is shown as it is: no markup, no control bytes, bounded."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from rich.console import Console

from crmsync.entrypoints.present import (
    DataTable,
    LiteralLogHandler,
    escape_controls,
    line,
    literal,
    plural,
    to_json,
)


def _render(renderable: object, *, colour: bool = False) -> str:
    buffer = io.StringIO()
    console = Console(
        file=buffer, width=200, force_terminal=colour, color_system="truecolor" if colour else None
    )
    console.print(renderable)
    return buffer.getvalue()


def test_markup_in_data_is_printed_as_it_is() -> None:
    assert _render(literal("Bad [/] Co [bold]x[/bold]")) == "Bad [/] Co [bold]x[/bold]\n"


def test_a_link_in_data_never_becomes_a_terminal_hyperlink() -> None:
    printed = _render(literal("[link=https://evil.example/]Click[/link]"), colour=True)

    assert "\x1b]8;" not in printed
    assert "[link=https://evil.example/]Click[/link]" in printed


def test_control_characters_are_written_as_escapes() -> None:
    assert escape_controls("a\x1b[2Jb\x07\x9b\n\t") == "a\\x1b[2Jb\\x07\\x9b\\n\\t"


def test_bidi_overrides_are_written_as_escapes() -> None:
    assert escape_controls("abc\u202edcba") == "abc\\u202edcba"


def test_printable_unicode_is_kept() -> None:
    assert escape_controls("Łódź 東京 Zürich") == "Łódź 東京 Zürich"


def test_a_very_long_value_is_cut_and_the_rest_counted() -> None:
    shown = literal("x" * 1_000, limit=10).plain

    assert shown == "xxxxxxxxxx... (990 more characters)"


def test_a_line_keeps_its_own_styles_but_shows_values_literally() -> None:
    text = line(("held", "yellow"), ": ", "[red]not red[/red]")

    assert text.plain == "held: [red]not red[/red]"
    assert [span.style for span in text.spans] == ["yellow"]


def test_table_cells_given_as_strings_are_shown_literally() -> None:
    table = DataTable("name")
    table.add_row("Widgets [old] [/old] Ltd \x1b[31m")

    assert "Widgets [old] [/old] Ltd \\x1b[31m" in _render(table)


def test_json_output_escapes_c1_controls_and_keeps_the_values() -> None:
    data = {"name": "a\x9b31mb\u202ec", "ok": "Zürich\x1b"}

    text = to_json(data)

    assert not {"\x9b", "\u202e", "\x1b"} & set(text)
    assert json.loads(text) == data


@pytest.mark.parametrize(
    ("noun", "expected"),
    [("company", "companies"), ("contact", "contacts"), ("entry", "entries"), ("key", "keys")],
)
def test_stream_names_are_pluralised_in_english(noun: str, expected: str) -> None:
    assert plural(noun) == expected


def test_one_of_a_thing_is_singular() -> None:
    assert plural("customer", 1) == "customer"


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    buffer = io.StringIO()
    handler = LiteralLogHandler(Console(file=buffer, width=200, force_terminal=False))
    logger = logging.getLogger("tests.present")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, buffer
    logger.removeHandler(handler)


def test_log_messages_are_never_read_as_markup(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = logged

    logger.warning("record %s is bad", "Bad [/] Co [bold]", extra={"markup": True})

    assert "record Bad [/] Co [bold] is bad" in buffer.getvalue()


def test_log_messages_show_control_bytes_as_escapes(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = logged

    logger.warning("name %s", "evil\x1b[2J\nforged line")

    assert "\x1b" not in buffer.getvalue()
    assert "evil\\x1b[2J\\nforged line" in buffer.getvalue()
