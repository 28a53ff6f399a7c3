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
130   interrupted (Ctrl-C); the run is recorded as interrupted
143   stopped by SIGTERM; the run is recorded as interrupted
====  ==========================================================

Everything printed for people goes through :mod:`crmsync.entrypoints.present` (data
shown literally) and :mod:`crmsync.entrypoints.views` (what each listing looks like).
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from itertools import islice
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from rich.progress import Progress
from sqlalchemy.engine import Connection
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_never,
    wait_random_exponential,
)

from crmsync.adapters import runs as run_store
from crmsync.adapters.changelog import prune_change_log
from crmsync.adapters.tables import quarantine, sync_runs
from crmsync.bootstrap import App, bootstrap
from crmsync.domain.values import TaxStatus, parse_tax_status
from crmsync.entrypoints import helptext, views
from crmsync.entrypoints.present import (
    LiteralLogHandler,
    line,
    make_console,
    plural,
    to_json,
    write_json_array,
    write_json_lines,
)
from crmsync.entrypoints.progress import StreamProgress, columns
from crmsync.entrypoints.push_cli import push_command
from crmsync.entrypoints.runtime import Terminated, settle_heap, terminate_as_interrupt
from crmsync.entrypoints.serve import serve
from crmsync.entrypoints.webhooks_cli import webhooks_app
from crmsync.errors import CrmSyncError, NotFoundError, StoreError
from crmsync.sdk.capabilities import capabilities_of
from crmsync.sdk.records import ObjectType
from crmsync.sdk.registry import load_plugins
from crmsync.service import quarantine as quarantine_service
from crmsync.service.sync import ConnectorBusy, RunResult

__all__ = ["EXIT_FAILED_RUN", "EXIT_RATE_LIMITED", "app", "main", "run"]

EXIT_FAILED_RUN = 1
EXIT_USAGE = 2
EXIT_RATE_LIMITED = 75
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM
HELD_SHOWN = 10
"""How many held customers ``sync`` lists after its summary."""

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
connectors_app = typer.Typer(help="The connector types installed.", no_args_is_help=True)
quarantine_app = typer.Typer(
    help="Records that could not be imported, with the reason; clear entries by hand.",
    invoke_without_command=True,
)
db_app = typer.Typer(help="Manage the store's schema.", no_args_is_help=True)
app.add_typer(customers_app, name="customers")
app.add_typer(contacts_app, name="contacts")
app.add_typer(aliases_app, name="aliases")
app.add_typer(connectors_app, name="connectors")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(db_app, name="db")
app.add_typer(webhooks_app, name="webhooks")
app.command("serve")(serve)
app.command("push")(push_command)

out = make_console()
err = make_console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
CustomerArg = Annotated[
    str,
    typer.Argument(
        metavar="CUSTOMER", help="Customer id, alias or CRM record id (C-1031, sample:C-1031)."
    ),
]


class LogLevel(StrEnum):
    """The levels ``--log-level`` accepts (any case); anything else is a usage error."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


@dataclass
class _Root:
    """What the top-level options asked for; the :class:`App` is built on first use, so
    commands that need no config (``connectors list``) work without one."""

    config: Path | None = None
    log_level: LogLevel | None = None
    app: App | None = None


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, handlers=[LiteralLogHandler(err)], force=True)
    # httpx logs whole URLs (query strings included) at INFO: keep them out of our logs.
    for noisy in ("httpx", "httpcore", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _app(ctx: typer.Context) -> App:
    root_ctx = ctx.find_root()
    root = root_ctx.obj
    assert isinstance(root, _Root)
    if root.app is None:
        application = bootstrap(root.config, environ=os.environ)
        if root.log_level is None:
            _configure_logging(application.settings.app.log_level)
        application.install_log_redaction()
        root_ctx.call_on_close(application.close)
        root.app = application
    return root.app


def _emit_json(data: Any) -> None:
    sys.stdout.write(to_json(data) + "\n")


@contextmanager
def _transaction(ctx: typer.Context) -> Iterator[tuple[App, Connection]]:
    application = _app(ctx)
    with application.open_store().begin() as conn:
        yield application, conn


@contextmanager
def _reading(ctx: typer.Context) -> Iterator[tuple[App, Connection]]:
    """A read-only transaction: on SQLite it neither waits for a running sync's page nor
    holds one up."""
    application = _app(ctx)
    with application.open_store().read() as conn:
        yield application, conn


def _installed_version() -> str:
    try:
        return version("crm-sync")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        out.print(line("crm-sync ", _installed_version()))
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            envvar="CRMSYNC_CONFIG",
            metavar="FILE",
            help="Config file (default: ./crm-sync.yaml if present).",
        ),
    ] = None,
    log_level: Annotated[
        LogLevel | None,
        typer.Option(
            "--log-level",
            case_sensitive=False,
            metavar="LEVEL",
            help="DEBUG, INFO, WARNING or ERROR (logs go to stderr).",
        ),
    ] = None,
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the installed version and exit.",
        ),
    ] = False,
) -> None:
    if config is None and Path("crm-sync.yaml").is_file():
        config = Path("crm-sync.yaml")
    _configure_logging(log_level.value if log_level is not None else LogLevel.WARNING.value)
    root = ctx.obj if isinstance(ctx.obj, _Root) else _Root()
    root.config, root.log_level = config, log_level
    ctx.obj = root


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
        "missing": list(result.missing),
        "readiness_refreshed": result.refreshed,
    }


def _print_run(result: RunResult) -> None:
    c = result.counts
    rare = "".join(
        f", {count} {what}"
        for count, what in (
            (c.stale, "stale (the store had a newer version)"),
            (c.skipped, "skipped (deleted before they were ever synced)"),
        )
        if count
    )
    out.print(
        line(
            (f"{result.connector}: {result.status}", "green" if result.ok else "red"),
            f" ({result.mode}, run {result.run_id}) - {c.seen} records seen: {c.created} "
            f"created, {c.updated} updated, {c.unchanged} unchanged, "
            f"{c.quarantined} quarantined{rare}",
        )
    )
    if result.error:
        out.print(line(("  error: ", "red"), result.error))
    if result.missing:
        out.print(line(("  not in the CRM: ", "yellow"), ", ".join(result.missing)))


def _print_held(conn: Connection, application: App, summary: dict[str, Any]) -> None:
    """The per-reason counts, then the first held customers with the reason for each."""
    for code, count in summary["blocked_by_reason"].items():
        out.print(line(f"  {count:>6}  ", views.reason_title(code), (f" ({code})", "dim")))
    held = summary["blocked"] - summary["archived"]  # archived customers are held by choice
    if held <= 0:
        return
    shown = list(
        islice(
            application.customers.iter_customers(conn, blocked_only=True, include_archived=False),
            HELD_SHOWN,
        )
    )
    out.print()
    out.print(line(f"Held customers ({held}):"))
    out.print(views.held_table(shown))
    if held > len(shown):
        out.print(line(f"... and {held - len(shown)} more: crm-sync customers list --blocked"))


def _report(ctx: typer.Context, results: list[RunResult], started: float, as_json: bool) -> None:
    with _reading(ctx) as (application, conn):
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
        for result in results:
            _print_run(result)
        out.print()
        out.print(
            line(
                f"Customers: {summary['customers']} - ",
                (f"{summary['ready']} ready to bill", "green"),
                ", ",
                (f"{summary['blocked']} held", "yellow"),
            )
        )
        _print_held(conn, application, summary)
    if quarantined:
        out.print(line(f"Quarantined records: {quarantined} (see `crm-sync quarantine`)"))
    out.print(line(f"Done in {duration:.1f}s."))


def _exit_for(results: list[RunResult]) -> None:
    if any(r.status == "failed" for r in results):
        raise typer.Exit(EXIT_FAILED_RUN)
    if any(r.status == "rate_limited" for r in results):
        raise typer.Exit(EXIT_RATE_LIMITED)


@contextmanager
def _interruptible() -> Iterator[None]:
    """Ctrl-C or SIGTERM during a run: the engine records the run as interrupted (and
    releases its lease); say so and exit 130 or 143."""
    try:
        with terminate_as_interrupt():
            yield
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        err.print(
            line(
                ("stopped" if terminated else "interrupted", "yellow"),
                ": the run is recorded as interrupted; the next sync resumes from its cursor",
            )
        )
        raise typer.Exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED) from None


WAIT_POLL_MAX_SECONDS = 5.0
"""``sync --wait`` asks for a busy connector's lease again after a random, growing pause
of at most this long."""


def _when_free(
    name: str, attempt: Callable[[], RunResult], wait: bool, wait_timeout: float | None
) -> RunResult:
    """Run ``attempt``; while another run holds the connector's lease, without ``wait``
    that is exit 7 naming the holder; with it, say once whom it waits for and try again,
    with backoff, until the lease is free (or ``wait_timeout`` seconds have passed)."""
    if not wait:
        return attempt()

    def waiting(state: RetryCallState) -> None:
        if state.attempt_number == 1 and state.outcome is not None:
            limit = f" (at most {wait_timeout:g}s)" if wait_timeout is not None else ""
            err.print(line(("waiting", "yellow"), f"{limit}: {state.outcome.exception()}"))

    def gave_up(state: RetryCallState) -> RunResult:
        raise ConnectorBusy(
            f"gave up after waiting {wait_timeout:g}s: "
            f"{state.outcome.exception() if state.outcome is not None else name}"
        )

    backoff = wait_random_exponential(multiplier=0.1, max=WAIT_POLL_MAX_SECONDS)

    def pause(state: RetryCallState) -> float:  # the last pause ends at the timeout
        if wait_timeout is None:
            return backoff(state)
        return max(0.0, min(backoff(state), wait_timeout - (state.seconds_since_start or 0.0)))

    retrying = Retrying(
        retry=retry_if_exception_type(ConnectorBusy),
        wait=pause,
        stop=stop_never if wait_timeout is None else stop_after_delay(wait_timeout),
        before_sleep=waiting,
        retry_error_callback=gave_up,
    )
    result: RunResult = retrying(attempt)
    return result


def _sync_all(
    application: App,
    names: Sequence[str],
    *,
    full: bool,
    show_bar: bool,
    force_deletions: bool = False,
    wait: bool = False,
    wait_timeout: float | None = None,
) -> list[RunResult]:
    results: list[RunResult] = []
    with Progress(*columns(), console=err, transient=True, disable=not show_bar) as display:
        engine = application.engine(progress=StreamProgress(display))
        settle_heap()
        for name in names:
            connector = application.build_connector(name)
            try:
                attempt = partial(
                    engine.run,
                    name,
                    connector,
                    full=full,
                    reading=application.reading(name),
                    max_deletion_share=application.settings.connectors[name].max_deletion_share,
                    force_deletions=force_deletions,
                )
                results.append(_when_free(name, attempt, wait, wait_timeout))
            finally:
                connector.close()
    return results


@app.command()
def sync(
    ctx: typer.Context,
    connectors: Annotated[
        list[str] | None,
        typer.Argument(metavar="CONNECTOR", help="Connectors to sync (default: all configured)."),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Read everything, not only changes.")
    ] = False,
    force_deletions: Annotated[
        bool,
        typer.Option(
            "--force-deletions",
            help="Mark the records an export no longer holds deleted even when they are"
            " more than the connector's max_deletion_share (or the export is empty).",
        ),
    ] = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="When another run is syncing a connector, wait until it ends, then sync"
            " (without it: exit 7).",
        ),
    ] = False,
    wait_timeout: Annotated[
        float | None,
        typer.Option(
            "--wait-timeout",
            metavar="SECONDS",
            min=0,
            help="Wait at most this long for another run to end, then exit 7 (implies --wait).",
        ),
    ] = None,
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
    with _interruptible():
        results = _sync_all(
            application,
            names,
            full=full,
            show_bar=not as_json and err.is_terminal,
            force_deletions=force_deletions,
            wait=wait or wait_timeout is not None,
            wait_timeout=wait_timeout,
        )
    _prune_change_log(ctx)
    _report(ctx, results, started, as_json)
    _exit_for(results)


def _prune_change_log(ctx: typer.Context) -> None:
    """Forget change-log entries past the retention (a customer's latest always stays)."""
    with _transaction(ctx) as (application, conn):
        days = application.settings.app.change_log.retention_days
        prune_change_log(conn, older_than=application.clock() - timedelta(days=days))


@app.command()
def resync(
    ctx: typer.Context,
    connector: Annotated[
        str, typer.Argument(metavar="CONNECTOR", help="The connector to read from.")
    ],
    external_ids: Annotated[
        list[str] | None,
        typer.Option(
            "--external-id",
            metavar="ID",
            help="A CRM record id to re-import, of the --type given (repeat for several).",
        ),
    ] = None,
    object_type: Annotated[
        ObjectType, typer.Option("--type", help="What the --external-id ids are.")
    ] = ObjectType.COMPANY,
    company_ids: Annotated[
        list[str] | None,
        typer.Option("--company", metavar="ID", help="A CRM company id (repeat for several)."),
    ] = None,
    contact_ids: Annotated[
        list[str] | None,
        typer.Option("--contact", metavar="ID", help="A CRM contact id (repeat for several)."),
    ] = None,
    mark_deleted: Annotated[
        bool,
        typer.Option(
            "--mark-missing-deleted",
            help="Mark the named records the CRM no longer has as deleted in the store"
            " (their customers are held; their data stays).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-import named CRM records now, companies and contacts in one run, without moving
    any cursor (exit 4 when the CRM has none of them)."""
    wanted: dict[ObjectType, list[str]] = {
        ObjectType.COMPANY: list(company_ids or ()),
        ObjectType.CONTACT: list(contact_ids or ()),
    }
    wanted[object_type] += external_ids or ()
    named = [i for ids in wanted.values() for i in ids]
    if not named:
        raise typer.BadParameter(
            "name at least one record: --company ID, --contact ID or --external-id ID"
        )
    application = _app(ctx)
    source = application.build_connector(connector)
    started = time.monotonic()
    try:
        with _interruptible():
            result = application.engine().import_records(
                connector, source, wanted, missing_deleted=mark_deleted
            )
    finally:
        source.close()
    _report(ctx, [result], started, as_json)
    _exit_for([result])
    if result.missing and set(result.missing) >= set(named) and not mark_deleted:
        raise typer.Exit(NotFoundError.exit_code)


# -- customers -------------------------------------------------------------------------


def _show_customer(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _emit_json(data)
    else:
        out.print(views.customer_details(data))


@customers_app.command("list")
def customers_list(
    ctx: typer.Context,
    blocked: Annotated[
        bool, typer.Option("--blocked", help="Only customers held back, grouped by reason.")
    ] = False,
    ready: Annotated[bool, typer.Option("--ready", help="Only customers ready to bill.")] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, metavar="N", help="At most N customers.")
    ] = None,
    after: Annotated[
        str | None,
        typer.Option(
            "--after",
            metavar="ID",
            help="Only customers after this id (ids sort by creation): the next page.",
        ),
    ] = None,
    as_json: JsonOpt = False,
    as_jsonl: Annotated[
        bool, typer.Option("--jsonl", help="Print one customer per line (JSON Lines).")
    ] = False,
) -> None:
    """List customers, with why each held one is held and the CRM record it comes from.

    Customers are read page by page and printed as they come, so memory stays flat
    however large the store is.
    """
    if blocked and ready:
        raise typer.BadParameter("--blocked and --ready exclude each other", param_hint="--ready")
    with _reading(ctx) as (application, conn):
        settle_heap()  # a listing allocates a few objects per field of every customer
        rows = application.customers.iter_customers(
            conn, blocked_only=blocked, ready_only=ready, after=after
        )
        if limit is not None:
            rows = itertools.islice(rows, limit)
        if as_jsonl:
            write_json_lines(rows, sys.stdout.write)
            return
        if as_json:
            write_json_array(rows, sys.stdout.write)
            return
        if blocked:
            groups = views.blocked_groups(rows)
            for renderable in groups:
                out.print(renderable)
            if not groups:
                out.print(line("No customer is held."))
            return
        _print_customers_in_pages(rows)


def _print_customers_in_pages(rows: Iterator[dict[str, Any]], page: int = 200) -> None:
    """The customers table, printed a page of rows at a time (the header once)."""
    shown = 0
    while batch := list(itertools.islice(rows, page)):
        table = views.customers_table(batch, width=out.width)
        table.show_header = shown == 0
        out.print(table)
        shown += len(batch)
    out.print(line(f"{shown} {plural('customer', shown)}"))


@customers_app.command("show")
def customers_show(
    ctx: typer.Context,
    customer: CustomerArg,
    as_json: JsonOpt = False,
) -> None:
    """Show one customer: billing details, contacts, aliases, and why it is held."""
    with _reading(ctx) as (application, conn):
        waiting = application.customers.waiting_for_refresh(conn, customer)
        data = application.customers.show(conn, customer) if waiting is None else {}
    if waiting is not None:  # a sync under way has not recomputed its readiness yet
        with _transaction(ctx) as (application, conn):
            application.customers.refresh(conn, waiting, now=application.clock())
            data = application.customers.show(conn, waiting)
    _show_customer(data, as_json)


@customers_app.command("history")
def customers_history(
    ctx: typer.Context,
    customer: CustomerArg,
    limit: Annotated[
        int, typer.Option("--limit", min=1, metavar="N", help="At most N entries.")
    ] = 50,
    after_version: Annotated[
        int | None,
        typer.Option("--after-version", metavar="V", help="Only changes after version V."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """What changed about a customer, newest first: version, when, why, and each field's
    old and new value."""
    with _reading(ctx) as (application, conn):
        entries = application.customers.history(
            conn, customer, limit=limit, after_version=after_version
        )
    if as_json:
        _emit_json(entries)
        return
    for entry in entries:
        out.print(
            line((f"version {entry['version']}", "bold"), f"  {entry['at']}  ", entry["cause"])
        )
        for change in entry["changes"]:
            out.print(
                line(
                    f"  {change['field']}: ",
                    _history_value(change["old"]),
                    " -> ",
                    _history_value(change["new"]),
                )
            )
    if not entries:
        out.print(line("No changes recorded."))


def _history_value(value: Any) -> str:
    return (
        "-" if value is None else value if isinstance(value, str) else to_json(value, indent=None)
    )


@customers_app.command("archive")
def customers_archive(
    ctx: typer.Context,
    customer: CustomerArg,
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
        line(
            result.customer_id,
            f" {verb}: {result.schedules_archived} billing schedules archived, "
            f"{result.invoices_voided} draft invoices voided, "
            f"{result.invoices_kept} finalized or sent invoices kept.",
        )
    )


def _tax_status(text: str) -> TaxStatus:
    status = parse_tax_status(text)
    if status is None:
        known = ", ".join(s.value for s in TaxStatus)
        raise typer.BadParameter(f"{text!r} is not a tax status; use one of {known}")
    return status


@customers_app.command("set-tax-status")
def customers_set_tax_status(
    ctx: typer.Context,
    customer: CustomerArg,
    status: Annotated[
        str,
        typer.Argument(
            metavar="STATUS",
            help="TAXED, TAX_EXEMPT or REVERSE_CHARGED (any case; spaces or dashes work too).",
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Override the tax status by hand (syncs no longer change it)."""
    parsed = _tax_status(status)
    with _transaction(ctx) as (application, conn):
        data = application.customers.set_tax_status(conn, customer, parsed, now=application.clock())
    _show_customer(data, as_json)


# -- contacts --------------------------------------------------------------------------


@contacts_app.command("add")
def contacts_add(
    ctx: typer.Context,
    customer: CustomerArg,
    name: Annotated[str, typer.Option("--name", metavar="NAME", help="The contact's name.")],
    email: Annotated[
        str, typer.Option("--email", metavar="EMAIL", help="The contact's email address.")
    ],
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
    customer: CustomerArg,
    contact: Annotated[
        str,
        typer.Argument(metavar="CONTACT", help="Contact id, email or CRM record id (P-2061)."),
    ],
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
    customer: CustomerArg,
    alias: Annotated[str, typer.Argument(metavar="ALIAS", help="The new alias (exact string).")],
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
        out.print(line(repr(alias), " now resolves to ", customer_id))


@aliases_app.command("remove")
def aliases_remove(
    ctx: typer.Context,
    alias: Annotated[str, typer.Argument(metavar="ALIAS", help="The alias to remove.")],
    as_json: JsonOpt = False,
) -> None:
    """Remove an alias that was added by hand."""
    with _transaction(ctx) as (application, conn):
        customer_id = application.customers.remove_alias(conn, alias, now=application.clock())
    if as_json:
        _emit_json({"alias": alias, "customer_id": customer_id, "removed": True})
    else:
        out.print(line("removed ", repr(alias), " from ", customer_id))


@aliases_app.command("resolve")
def aliases_resolve(
    ctx: typer.Context,
    alias: Annotated[
        str, typer.Argument(metavar="ALIAS", help="An alias, customer id or CRM record id.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Print the customer id an alias stands for."""
    with _reading(ctx) as (application, conn):
        customer_id = application.customers.resolve(conn, alias)
    if as_json:
        _emit_json({"alias": alias, "customer_id": customer_id})
    else:
        out.print(line(customer_id))


# -- connectors ------------------------------------------------------------------------


@connectors_app.command("list")
def connectors_list(as_json: JsonOpt = False) -> None:
    """The connector types installed, what each reads and what it can do (no config needed)."""
    data = [
        {
            "type": kind,
            "description": plugin.description,
            "capabilities": list(
                capabilities_of(plugin.connector_class)
                if plugin.connector_class is not None
                else ("sync", "fetch")
            ),
        }
        for kind, plugin in sorted(load_plugins().items())
    ]
    if as_json:
        _emit_json(data)
        return
    out.print(views.connectors_table(data))


# -- runs, quarantine, db --------------------------------------------------------------


@app.command("runs")
def runs_command(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, metavar="N", help="How many runs.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Recent sync runs, newest first."""
    with _reading(ctx) as (_, conn):
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
    out.print(views.runs_table(data, list(run_store.RunCounts().as_dict())))


@quarantine_app.callback()
def quarantine_command(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", min=1, metavar="N", help="How many records.")
    ] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Records that could not be imported, with the reason."""
    if ctx.invoked_subcommand is not None:
        return
    with _reading(ctx) as (_, conn):
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
    out.print(views.quarantine_table(data))


@quarantine_app.command("clear")
def quarantine_clear(
    ctx: typer.Context,
    external_ids: Annotated[
        list[str] | None,
        typer.Argument(metavar="ID", help="External ids of the entries to clear."),
    ] = None,
    connector: Annotated[
        str | None,
        typer.Option("--connector", metavar="NAME", help="Only entries of this connector."),
    ] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="Clear every entry (of --connector, if given).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Clear quarantine entries by hand; a record still bad comes back with the next sync."""
    ids = external_ids or []
    if not ids and connector is None and not everything:
        ctx.fail("name the entries to clear: external ids, --connector NAME, or --all")
    with _transaction(ctx) as (_, conn):
        cleared = quarantine_service.clear(conn, connector=connector, ids=ids)
    if as_json:
        _emit_json({"cleared": cleared})
    else:
        out.print(line(f"cleared {cleared} quarantine {plural('entry', cleared)}"))


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply the store's schema migrations (safe to run from several workers)."""
    store = _app(ctx).open_store(migrate=False, create=True)
    before, after = store.upgrade()
    if before == after:
        out.print(line(f"store is up to date (revision {after})"))
    else:
        out.print(line(f"store upgraded from {before or 'empty'} to {after}"))


# -- running ---------------------------------------------------------------------------


def _error(application: App | None, message: str) -> None:
    text = application.redact(message) if application is not None else message
    err.print(line("error: ", text))


def run(argv: list[str] | None = None, *, prog: str = "crm-sync") -> int:
    """Run the CLI and return its exit code (what ``main`` passes to ``sys.exit``)."""
    command = typer.main.get_command(app)
    helptext.readable(command)
    root = _Root()
    try:
        # Standalone mode: the CLI library reports usage errors itself (exit 2) and turns
        # typer.Exit into SystemExit; our own errors come through to be mapped here.
        command.main(args=argv, prog_name=prog, standalone_mode=True, obj=root)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except CrmSyncError as exc:
        _error(root.app, str(exc))
        return exc.exit_code
    except sa.exc.OperationalError as exc:
        message = str(exc.orig).strip().splitlines()[0] if exc.orig else "cannot reach it"
        _error(root.app, str(StoreError(f"the store is unreachable: {message}")))
        return StoreError.exit_code
    return 0


def main() -> None:
    sys.exit(run())
