"""The ``crm-sync`` command line.

Exit codes (stable, documented in the README):

====  ==========================================================
0     success
1     a sync run failed, or an unexpected error
2     usage error (unknown command or option, bad argument)
3     configuration error (file, key and problem are named)
4     not found (customer, contact, alias, connector record)
5     a rule refused the change (alias taken, invalid email, ...)
6     the store cannot be used (schema behind, database unreachable)
7     another worker is syncing the connector right now
75    the CRM's daily rate limit stopped the run; it resumes next run
====  ==========================================================
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.engine import Connection

from crmsync.adapters import runs as run_store
from crmsync.adapters.tables import quarantine, sync_runs
from crmsync.bootstrap import App, bootstrap
from crmsync.domain import TaxStatus
from crmsync.entrypoints.runtime import settle_heap
from crmsync.errors import CrmSyncError, StoreError
from crmsync.sdk.records import ObjectType
from crmsync.service.sync import RunResult

__all__ = ["EXIT_FAILED_RUN", "EXIT_RATE_LIMITED", "app", "main"]

EXIT_FAILED_RUN = 1
EXIT_USAGE = 2
EXIT_RATE_LIMITED = 75

app = typer.Typer(
    name="crm-sync",
    help="Sync customers from CRMs into a local customer store, ready for billing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
customers_app = typer.Typer(help="Look at customers and archive them.", no_args_is_help=True)
contacts_app = typer.Typer(
    help="Add contacts and pick the primary billing contact.", no_args_is_help=True
)
aliases_app = typer.Typer(
    help="Manage the aliases usage events are attributed by.", no_args_is_help=True
)
db_app = typer.Typer(help="Manage the store's schema.", no_args_is_help=True)
app.add_typer(customers_app, name="customers")
app.add_typer(contacts_app, name="contacts")
app.add_typer(aliases_app, name="aliases")
app.add_typer(db_app, name="db")

out = Console()
if not out.is_terminal:  # piped or captured: never truncate ids people copy
    out.width = max(out.width, 200)
err = Console(stderr=True, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _app(ctx: typer.Context) -> App:
    obj = ctx.find_root().obj
    assert isinstance(obj, App)
    return obj


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


@contextmanager
def _transaction(ctx: typer.Context) -> Iterator[tuple[App, Connection]]:
    application = _app(ctx)
    with application.open_store().begin() as conn:
        yield application, conn


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            envvar="CRMSYNC_CONFIG",
            help="Config file (default: ./crm-sync.yaml if present).",
        ),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")
    ] = None,
) -> None:
    if config is None and Path("crm-sync.yaml").is_file():
        config = Path("crm-sync.yaml")
    application = bootstrap(config, environ=os.environ)
    level = (log_level or application.settings.app.log_level).upper()
    logging.basicConfig(
        level=level,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=err, show_path=False, rich_tracebacks=False)],
        force=True,
    )
    # httpx logs whole URLs (query strings included) at INFO: keep them out of our logs.
    for noisy in ("httpx", "httpcore", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    ctx.obj = application
    ctx.call_on_close(application.close)


# -- sync ------------------------------------------------------------------------------


def _run_json(result: RunResult) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "connector": result.connector,
        "mode": result.mode,
        "status": result.status,
        "error": result.error,
        "counts": result.counts.as_dict(),
        "duration_seconds": round(result.duration_seconds, 3),
    }


def _report(ctx: typer.Context, results: list[RunResult], started: float, as_json: bool) -> None:
    with _transaction(ctx) as (application, conn):
        summary = application.customers.summary(conn)
        quarantined = conn.execute(sa.select(sa.func.count()).select_from(quarantine)).scalar()
    duration = time.monotonic() - started
    if as_json:
        _emit_json(
            {
                "runs": [_run_json(r) for r in results],
                "customers": summary,
                "quarantined": quarantined,
                "duration_seconds": round(duration, 3),
            }
        )
        return
    for r in results:
        c = r.counts
        style = "green" if r.ok else "red"
        out.print(
            f"[{style}]{r.connector}: {r.status}[/] ({r.mode}, run {r.run_id}) - "
            f"{c.seen} records seen: {c.created} created, {c.updated} updated, "
            f"{c.unchanged} unchanged, {c.quarantined} quarantined"
        )
        if r.error:
            out.print(f"  [red]error:[/] {r.error}")
    out.print(
        f"\nCustomers: {summary['customers']} - [green]{summary['ready']} ready to bill[/], "
        f"[yellow]{summary['blocked']} held[/]"
    )
    for code, count in summary["blocked_by_reason"].items():
        out.print(f"  {count:>6}  {code}")
    if quarantined:
        out.print(f"Quarantined records: {quarantined} (see `crm-sync quarantine`)")
    out.print(f"Done in {duration:.1f}s.")


def _exit_for(results: list[RunResult]) -> None:
    if any(r.status == "failed" for r in results):
        raise typer.Exit(EXIT_FAILED_RUN)
    if any(r.status == "rate_limited" for r in results):
        raise typer.Exit(EXIT_RATE_LIMITED)


@app.command()
def sync(
    ctx: typer.Context,
    connectors: Annotated[
        list[str] | None, typer.Argument(help="Connectors to sync (default: all configured).")
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Read everything, not only changes.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Sync connectors now and print which customers are ready to bill and which are held."""
    application = _app(ctx)
    names = connectors or application.connector_names()
    if not names:
        raise CrmSyncError("no connectors are configured: see config.example.yaml")
    for name in names:  # fail on a typo before syncing anything
        application.settings.connectors.get(name) or application.build_connector(name)
    started = time.monotonic()
    results: list[RunResult] = []
    show_bar = not as_json and err.is_terminal
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not show_bar,
    ) as bar:
        task = bar.add_task("starting", total=None)

        def progress(name: str, stream: ObjectType, counts: run_store.RunCounts) -> None:
            bar.update(task, description=f"{name} {stream.value}s: {counts.seen:,} records")

        engine = application.engine(progress=progress)
        settle_heap()
        for name in names:
            connector = application.build_connector(name)
            try:
                results.append(
                    engine.run(name, connector, full=full, reading=application.reading(name))
                )
            finally:
                connector.close()
    _report(ctx, results, started, as_json)
    _exit_for(results)


@app.command()
def resync(
    ctx: typer.Context,
    connector: Annotated[str, typer.Argument(help="The connector to read from.")],
    external_ids: Annotated[
        list[str],
        typer.Option("--external-id", help="A CRM record id to re-import (repeat for several)."),
    ],
    object_type: Annotated[
        ObjectType, typer.Option("--type", help="What the ids are.")
    ] = ObjectType.COMPANY,
    as_json: JsonOpt = False,
) -> None:
    """Re-import named CRM records now."""
    application = _app(ctx)
    source = application.build_connector(connector)
    started = time.monotonic()
    try:
        result = application.engine().resync(connector, source, object_type, external_ids)
    finally:
        source.close()
    _report(ctx, [result], started, as_json)
    _exit_for([result])


# -- customers -------------------------------------------------------------------------


def _print_customer(data: dict[str, Any]) -> None:
    state = "[green]ready[/]" if data["ready"] else "[yellow]held[/]"
    out.print(f"[bold]{data['company_name'] or '(no name)'}[/]  {data['id']}  {state}")
    addr = data["billing_address"]
    parts = [addr[k] for k in ("line1", "line2", "city", "state", "postal_code", "country")]
    out.print(f"  address:     {', '.join(p for p in parts if p) or '-'}")
    out.print(f"  tax status:  {data['tax_status']} ({data['tax_status_source']})")
    for contact in data["contacts"]:
        mark = "*" if contact["billing_preference"] == "PRIMARY" else " "
        valid = "" if contact["email_valid"] else " [red](invalid email)[/]"
        out.print(
            f"  {mark} contact:   {contact['name'] or '-'} <{contact['email'] or '-'}>"
            f"{valid}  {contact['id']} ({contact['origin']})"
        )
    out.print(f"  aliases:     {', '.join(a['value'] for a in data['aliases'])}")
    for ref in data["external_refs"]:
        deleted = " [red](deleted in CRM)[/]" if ref["deleted_in_source"] else ""
        out.print(
            f"  from:        {ref['connector']} {ref['object_type']} {ref['external_id']}{deleted}"
        )
    if data["archived_at"]:
        out.print(f"  archived at: {data['archived_at']}")
    for reason in data["blocked_reasons"]:
        out.print(f"  [yellow]{reason['code']}[/]: {reason['message']}")


def _show_customer(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _emit_json(data)
    else:
        _print_customer(data)


@customers_app.command("list")
def customers_list(
    ctx: typer.Context,
    blocked: Annotated[bool, typer.Option("--blocked", help="Only customers held back.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List customers, with why each held one is held."""
    with _transaction(ctx) as (application, conn):
        rows = application.customers.iter_customers(conn, blocked_only=blocked)
        if as_json:
            _emit_json(list(rows))
            return
        table = Table("company", "ready", "primary billing contact", "held because")
        table.add_column("id", no_wrap=True)
        count = 0
        for c in rows:
            count += 1
            primary = c["primary_billing_contact"]
            table.add_row(
                c["company_name"] or "-",
                "yes" if c["ready"] else "no",
                (primary["email"] or "-") if primary else "-",
                ", ".join(r["code"] for r in c["blocked_reasons"]),
                c["id"],
            )
        out.print(table)
        out.print(f"{count} customer{'s' if count != 1 else ''}")


@customers_app.command("show")
def customers_show(
    ctx: typer.Context,
    id_or_alias: Annotated[str, typer.Argument(help="Customer id or any of its aliases.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one customer: billing details, contacts, aliases, and why it is held."""
    with _transaction(ctx) as (application, conn):
        data = application.customers.show(conn, id_or_alias)
    _show_customer(data, as_json)


@customers_app.command("archive")
def customers_archive(
    ctx: typer.Context,
    customer: Annotated[str, typer.Argument(help="Customer id or alias.")],
    as_json: JsonOpt = False,
) -> None:
    """Archive a customer: its billing schedules are archived and draft invoices voided."""
    with _transaction(ctx) as (application, conn):
        result = application.customers.archive(conn, customer, now=application.clock())
    if as_json:
        _emit_json(
            {
                "id": result.customer_id,
                "already_archived": result.already_archived,
                "schedules_archived": result.schedules_archived,
                "invoices_voided": result.invoices_voided,
                "invoices_kept": result.invoices_kept,
            }
        )
        return
    verb = "was already archived" if result.already_archived else "archived"
    out.print(
        f"{result.customer_id} {verb}: {result.schedules_archived} billing schedules "
        f"archived, {result.invoices_voided} draft invoices voided, "
        f"{result.invoices_kept} finalized or sent invoices kept."
    )


@customers_app.command("set-tax-status")
def customers_set_tax_status(
    ctx: typer.Context,
    customer: Annotated[str, typer.Argument(help="Customer id or alias.")],
    status: Annotated[TaxStatus, typer.Argument(help="TAXED, TAX_EXEMPT or REVERSE_CHARGED.")],
    as_json: JsonOpt = False,
) -> None:
    """Override the tax status by hand (syncs no longer change it)."""
    with _transaction(ctx) as (application, conn):
        data = application.customers.set_tax_status(conn, customer, status, now=application.clock())
    _show_customer(data, as_json)


# -- contacts --------------------------------------------------------------------------


@contacts_app.command("add")
def contacts_add(
    ctx: typer.Context,
    customer: Annotated[str, typer.Argument(help="Customer id or alias.")],
    name: Annotated[str, typer.Option("--name", help="The contact's name.")],
    email: Annotated[str, typer.Option("--email", help="The contact's email address.")],
    primary: Annotated[
        bool, typer.Option("--primary", help="Make it the primary billing contact.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add a contact by hand (it becomes primary if asked, or if there is none)."""
    with _transaction(ctx) as (application, conn):
        data = application.customers.add_contact(
            conn, customer, name=name, email=email, primary=primary, now=application.clock()
        )
    _show_customer(data, as_json)


@contacts_app.command("set-primary")
def contacts_set_primary(
    ctx: typer.Context,
    customer: Annotated[str, typer.Argument(help="Customer id or alias.")],
    contact: Annotated[str, typer.Argument(help="Contact id or email.")],
    as_json: JsonOpt = False,
) -> None:
    """Pick the primary billing contact by hand; the pick survives later syncs."""
    with _transaction(ctx) as (application, conn):
        data = application.customers.set_primary(conn, customer, contact, now=application.clock())
    _show_customer(data, as_json)


# -- aliases ---------------------------------------------------------------------------


@aliases_app.command("add")
def aliases_add(
    ctx: typer.Context,
    customer: Annotated[str, typer.Argument(help="Customer id or alias.")],
    alias: Annotated[str, typer.Argument(help="The new alias (exact string).")],
    as_json: JsonOpt = False,
) -> None:
    """Give a customer an alias; refused if any customer holds it or a case variant."""
    with _transaction(ctx) as (application, conn):
        customer_id = application.customers.add_alias(
            conn, customer, alias, now=application.clock()
        )
    if as_json:
        _emit_json({"alias": alias, "customer_id": customer_id})
    else:
        out.print(f"{alias!r} now resolves to {customer_id}")


@aliases_app.command("remove")
def aliases_remove(
    ctx: typer.Context,
    alias: Annotated[str, typer.Argument(help="The alias to remove.")],
    as_json: JsonOpt = False,
) -> None:
    """Remove an alias that was added by hand."""
    with _transaction(ctx) as (application, conn):
        customer_id = application.customers.remove_alias(conn, alias)
    if as_json:
        _emit_json({"alias": alias, "customer_id": customer_id, "removed": True})
    else:
        out.print(f"removed {alias!r} from {customer_id}")


@aliases_app.command("resolve")
def aliases_resolve(
    ctx: typer.Context,
    alias: Annotated[str, typer.Argument(help="An alias or customer id.")],
    as_json: JsonOpt = False,
) -> None:
    """Print the customer id an alias stands for."""
    with _transaction(ctx) as (application, conn):
        customer_id = application.customers.resolve(conn, alias)
    if as_json:
        _emit_json({"alias": alias, "customer_id": customer_id})
    else:
        out.print(customer_id)


# -- runs, quarantine, db --------------------------------------------------------------


@app.command("runs")
def runs_command(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many runs.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Recent sync runs, newest first."""
    with _transaction(ctx) as (_, conn):
        rows = conn.execute(sa.select(sync_runs).order_by(sync_runs.c.id.desc()).limit(limit)).all()
    data = [
        {
            "id": r.id,
            "connector": r.connector,
            "mode": r.mode,
            "status": r.status,
            "started_at": r.started_at.isoformat(),
            "finished_at": r.finished_at.isoformat() if r.finished_at else None,
            "counts": {k: getattr(r, k) for k in run_store.RunCounts().as_dict()},
            "error": r.error,
            "worker": r.worker,
        }
        for r in rows
    ]
    if as_json:
        _emit_json(data)
        return
    table = Table(
        "id",
        "connector",
        "mode",
        "status",
        "started",
        "seen",
        "created",
        "updated",
        "unchanged",
        "quarantined",
        "error",
    )
    for d in data:
        c = d["counts"]
        table.add_row(
            str(d["id"]),
            d["connector"],
            d["mode"],
            d["status"],
            d["started_at"][:19],
            *(str(c[k]) for k in c),
            d["error"] or "",
        )
    out.print(table)


@app.command("quarantine")
def quarantine_command(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many records.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Records that could not be imported, with the reason."""
    with _transaction(ctx) as (_, conn):
        rows = conn.execute(
            sa.select(quarantine)
            .order_by(quarantine.c.last_seen_at.desc(), quarantine.c.id)
            .limit(limit)
        ).all()
    data = [
        {
            "connector": r.connector,
            "object_type": r.object_type,
            "external_id": r.external_id,
            "reason": r.reason,
            "raw": r.raw,
            "occurrences": r.occurrences,
            "first_seen_at": r.first_seen_at.isoformat(),
            "last_seen_at": r.last_seen_at.isoformat(),
        }
        for r in rows
    ]
    if as_json:
        _emit_json(data)
        return
    table = Table("connector", "type", "external id", "reason", "seen")
    for d in data:
        table.add_row(
            d["connector"],
            d["object_type"],
            d["external_id"] or "-",
            d["reason"],
            str(d["occurrences"]),
        )
    out.print(table)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply the store's schema migrations (safe to run from several workers)."""
    store = _app(ctx).open_store(migrate=False)
    before, after = store.upgrade()
    if before == after:
        out.print(f"store is up to date (revision {after})")
    else:
        out.print(f"store upgraded from {before or 'empty'} to {after}")


# -- running ---------------------------------------------------------------------------


def run(argv: list[str] | None = None, *, prog: str = "crm-sync") -> int:
    """Run the CLI and return its exit code (what ``main`` passes to ``sys.exit``)."""
    command: Any = typer.main.get_command(app)
    try:
        # Standalone mode: the CLI library reports usage errors itself (exit 2) and turns
        # typer.Exit into SystemExit; our own errors come through to be mapped here.
        command.main(args=argv, prog_name=prog, standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except CrmSyncError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        return exc.exit_code
    except sa.exc.OperationalError as exc:
        message = str(exc.orig).strip().splitlines()[0] if exc.orig else "cannot reach it"
        err.print(
            f"error: {StoreError(f'the store is unreachable: {message}')}",
            markup=False,
            highlight=False,
        )
        return StoreError.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    return 0


def main() -> None:
    sys.exit(run())
