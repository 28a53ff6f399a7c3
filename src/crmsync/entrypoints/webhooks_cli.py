"""``crm-sync webhooks``: the events in the webhook inbox, and replaying them.

- ``webhooks list [--failed] [--connector NAME] [--limit N] [--json]``: events newest
  first, with their status (pending, done, failed: set aside after too many attempts),
  attempts and last error;
- ``webhooks replay ID ... | --failed [--json]``: make events due again as new (attempts
  back to 0) and apply them now, through the same worker as ``crm-sync serve``.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Column

from crmsync.entrypoints.present import DataTable, line, make_console, plural, to_json
from crmsync.errors import NotFoundError

if TYPE_CHECKING:
    from crmsync.adapters.inbox import StoredEvent

__all__ = ["webhooks_app"]

webhooks_app = typer.Typer(
    help="Webhook events in the inbox: list them, replay the ones set aside.",
    no_args_is_help=True,
)
out = make_console()

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def event_json(event: StoredEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "connector": event.connector,
        "status": event.status,
        "action": event.action,
        "object_type": event.object_type,
        "external_id": event.external_id,
        "merged_ids": list(event.merged_ids),
        "related_ids": list(event.related_ids),
        "attempts": event.attempts,
        "occurred_at": _iso(event.occurred_at),
        "received_at": _iso(event.received_at),
        "next_attempt_at": _iso(event.next_attempt_at),
        "processed_at": _iso(event.processed_at),
        "last_error": event.last_error,
        "event_key": event.event_key,
    }


def _table(events: list[dict[str, Any]]) -> DataTable:
    table = DataTable(
        "id",
        "connector",
        "status",
        "event",
        Column("record", overflow="fold"),
        "tries",
        "received",
        Column("last error", overflow="fold"),
    )
    for event in events:
        table.add_row(
            str(event["id"]),
            event["connector"],
            event["status"],
            event["action"],
            f"{event['object_type']} {event['external_id']}",
            str(event["attempts"]),
            (event["received_at"] or "")[:19],
            event["last_error"] or "",
        )
    return table


@webhooks_app.command("list")
def webhooks_list(
    ctx: typer.Context,
    failed: Annotated[
        bool, typer.Option("--failed", help="Only the events set aside after failing.")
    ] = False,
    connector: Annotated[
        str | None, typer.Option("--connector", metavar="NAME", help="Only this connector's.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, metavar="N", help="How many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Webhook events, newest first, with their status and last error."""
    from crmsync.adapters import inbox
    from crmsync.domain.inbox import EventStatus
    from crmsync.entrypoints.cli import _reading

    status = EventStatus.FAILED if failed else None
    with _reading(ctx) as (_, conn):
        events = inbox.list_events(conn, status=status, connector=connector, limit=limit)
    data = [event_json(e) for e in events]
    if as_json:
        sys.stdout.write(to_json(data) + "\n")
        return
    if not data:
        out.print(line("no failed webhook events" if failed else "no webhook events"))
        return
    out.print(_table(data))


@webhooks_app.command("replay")
def webhooks_replay(
    ctx: typer.Context,
    ids: Annotated[
        list[int] | None, typer.Argument(metavar="ID", help="Inbox ids (webhooks list).")
    ] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Every event set aside after failing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Apply events again now: the named ones, or every one set aside (--failed)."""
    from crmsync.adapters import inbox
    from crmsync.entrypoints.cli import _app
    from crmsync.service.jobs import AppJobs

    wanted = list(ids or ())
    if not wanted and not failed:
        ctx.fail("name the events to replay: ID ... or --failed")
    application = _app(ctx)
    with application.open_store().begin() as conn:
        requeued = inbox.requeue(conn, application.clock(), ids=wanted, failed=failed)
    missing = sorted(set(wanted) - {e.id for e in requeued})
    if missing and not requeued:
        raise NotFoundError(f"no webhook event with id {', '.join(map(str, missing))}")
    jobs = AppJobs(application)
    applied = retried = set_aside = 0
    skipped: list[str] = []
    for name in sorted({e.connector for e in requeued}):
        if name not in application.settings.connectors:
            skipped.append(name)
            continue
        report = jobs.run_import(name, stop=threading.Event(), coalesce=False)
        applied += report.applied
        retried += report.retried
        set_aside += report.set_aside
    summary = {
        "requeued": len(requeued),
        "applied": applied,
        "retried": retried,
        "failed": set_aside,
        "not_found": missing,
        "unknown_connectors": skipped,
    }
    if as_json:
        sys.stdout.write(to_json(summary) + "\n")
    else:
        out.print(
            line(
                f"replayed {len(requeued)} {plural('event', len(requeued))}: {applied} applied,"
                f" {retried} to retry, {set_aside} set aside again"
            )
        )
        if missing:
            out.print(line("no such event: ", ", ".join(map(str, missing))))
        if skipped:
            out.print(line("not configured (left pending): ", ", ".join(skipped)))
    if set_aside or retried:
        raise typer.Exit(1)
