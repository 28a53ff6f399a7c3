"""Readable ``--help``: placeholders instead of Python types.

typer's help names each parameter's Python type (``--full <bool>``, ``CONNECTOR
<list[str]>``). :func:`readable` walks a built command tree once and shows instead
what a person types: nothing after a flag, the metavar of an option (``--limit N``)
and the name of an argument (``CUSTOMER``), which every command sets.
"""

from __future__ import annotations

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

__all__ = ["readable"]


class _NamedArgument(TyperArgument):
    """An argument whose metavar names it: no type shown next to it."""

    def display_type_rich(self, ctx: object) -> str | None:
        return None


def _readable_params(command: TyperCommand | TyperGroup, ctx: typer.Context) -> None:
    help_option = command.get_help_option(ctx)
    params = [*command.params, *([help_option] if help_option is not None else [])]
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
        elif isinstance(param, TyperArgument) and param.metavar:
            param.__class__ = _NamedArgument


def readable(command: object, parent: typer.Context | None = None) -> None:
    """Give ``command`` (built by ``typer.main.get_command``) and every subcommand
    readable placeholders."""
    if not isinstance(command, TyperCommand | TyperGroup):
        return
    ctx = typer.Context(command, parent=parent, info_name=command.name)
    _readable_params(command, ctx)
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            readable(sub, ctx)
