"""``crm-sync push [--customer ID_OR_ALIAS ...] [--dry-run] [--json]``.

Sends the ready customers that changed since their last push to the billing platform
(the ``billing:`` section of the config), lists the held ones with their reasons, and
exits:

====  ==============================================================
0     every customer looked at was sent, or had nothing new
1     a push failed (the API refused it, or stayed unreachable), or the push stopped
      (credentials refused, rate limit): failed ones are retried next push
8     some customers were left for a person: held, in an alias conflict, or merged
      away in the CRM after a push (:class:`crmsync.errors.CustomersHeld`); the
      others were sent
====  ==============================================================

``--dry-run`` sends nothing and records nothing: it prints the requests it would send
(it needs no ``billing:`` section).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Column

from crmsync.entrypoints.present import DataTable, line, make_console, plural, to_json
from crmsync.errors import ConfigError, CustomersHeld

if TYPE_CHECKING:
    from crmsync.bootstrap import App
    from crmsync.service.push import CustomerPush, HeldCustomer, PushResult

__all__ = ["push_command", "result_json"]

out = make_console()

#: Outcomes a text report lists one by one (created and updated are only counted).
_LISTED = ("conflict", "failed")
#: Held customers a text report shows (``--json`` lists them all).
HELD_SHOWN = 20


def _customer_json(done: CustomerPush) -> dict[str, Any]:
    return {
        "customer_id": done.customer_id,
        "name": done.name,
        "alias": done.alias,
        "outcome": done.outcome,
        "billing_customer_id": done.billing_customer_id,
        "error": done.error,
        "conflicts": [{"alias": c.alias, "held_by": c.held_by} for c in done.clashes],
        "requests": [{"method": r.method, "path": r.path, "body": r.body} for r in done.requests],
    }


def _held_json(held: HeldCustomer) -> dict[str, Any]:
    return {
        "customer_id": held.customer_id,
        "name": held.name,
        "reasons": [{"code": r.code, "message": r.message} for r in held.reasons],
    }


def result_json(result: PushResult) -> dict[str, Any]:
    """The stable ``push --json`` shape."""
    outcomes = ("created", "updated", "conflict", "failed", "planned")
    return {
        "dry_run": result.dry_run,
        "stopped": result.stopped,
        "counts": {o: result.count(o) for o in outcomes}
        | {
            "unchanged": result.unchanged,
            "held": len(result.held),
            "waiting": result.waiting,
            "merged_away": len(result.merged_away),
        },
        "requests_sent": result.requests_sent,
        "readiness_refreshed": result.refreshed,
        "customers": [_customer_json(p) for p in result.pushed],
        "held": [_held_json(h) for h in result.held],
        "merged_away": [
            {
                "customer_id": m.customer_id,
                "billing_customer_id": m.billing_customer_id,
                "merged_into": m.survivor_id,
                "merged_into_billing_customer_id": m.survivor_billing_customer_id,
            }
            for m in result.merged_away
        ],
    }


def _print(result: PushResult) -> None:
    if result.dry_run:
        out.print(
            line(
                f"Dry run: {result.count('planned')} would be sent, {result.unchanged}"
                f" unchanged, {len(result.held)} held (nothing was sent)"
            )
        )
        for done in result.pushed:
            for request in done.requests:
                out.print(line(f"  {request.method} {request.path}", ("  ", ""), done.customer_id))
                if request.body is not None:
                    out.print(line("    ", to_json(request.body, indent=None)))
    else:
        out.print(
            line(
                ("Push: ", "bold"),
                (f"{result.count('created')} created", "green"),
                f", {result.count('updated')} updated, {result.unchanged} unchanged, ",
                (f"{result.count('conflict')} in conflict", "yellow"),
                ", ",
                (f"{result.count('failed')} failed", "red"),
                f", {len(result.held)} held - {result.requests_sent}"
                f" {plural('request', result.requests_sent)}",
            )
        )
    listed = [p for p in result.pushed if p.outcome in _LISTED or p.error]
    for done in listed:
        out.print(line((f"  {done.outcome}: ", "red"), done.customer_id, " ", done.error or ""))
    if result.stopped:
        out.print(line(("stopped: ", "red"), result.stopped))
    if result.waiting:
        out.print(line(f"{result.waiting} changed during the push: sent by the next one"))
    for merged in result.merged_away:
        out.print(
            line(
                ("  merged away: ", "yellow"),
                f"{merged.customer_id} (billing customer {merged.billing_customer_id}) was"
                f" merged into {merged.survivor_id} (billing customer"
                f" {merged.survivor_billing_customer_id or 'none yet'}): reconcile them in"
                " the billing platform",
            )
        )
    if result.held:
        out.print()
        out.print(line(f"Held customers, not sent ({len(result.held)}):"))
        table = DataTable("id", Column("name", overflow="fold"), Column("why", overflow="fold"))
        for held in result.held[:HELD_SHOWN]:
            why = "; ".join(f"{r.code}: {r.message}" for r in held.reasons) or "not ready"
            table.add_row(held.customer_id, held.name or "", why)
        out.print(table)
        more = len(result.held) - HELD_SHOWN
        if more > 0:
            out.print(
                line(f"... and {more} more: crm-sync push --json, or customers list --blocked")
            )


def _service_for(application: App) -> Any:
    from crmsync.domain.push import integration_service

    connectors = application.settings.connectors

    def service_for(name: str) -> Any:
        config = connectors.get(name)
        return integration_service(config.type) if config is not None else None

    return service_for


def push_command(
    ctx: typer.Context,
    customer: Annotated[
        list[str] | None,
        typer.Option(
            "--customer",
            metavar="ID_OR_ALIAS",
            help="Only this customer (id, alias or CRM record id); repeat for more.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the requests; send and record nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Send ready customers that changed to the billing platform; list the held ones."""
    from crmsync.billing.client import SequenceClient
    from crmsync.entrypoints.cli import _app
    from crmsync.service.push import push

    application = _app(ctx)
    billing = application.settings.app.billing
    if billing is None and not dry_run:
        raise ConfigError(
            "no `billing:` section: add one to push (config.example.yaml shows it)",
            source=application.settings.source,
            key="billing",
        )
    store = application.open_store()
    client = SequenceClient(billing) if billing is not None and not dry_run else None
    try:
        result = push(
            store,
            client,
            customers=customer,
            dry_run=dry_run,
            order_for=application.order_for,
            service_for=_service_for(application),
            clock=application.clock,
            redact=application.redact,
        )
    finally:
        if client is not None:
            client.close()
    if as_json:
        sys.stdout.write(to_json(result_json(result)) + "\n")
    else:
        _print(result)
    if not result.ok:
        raise typer.Exit(code=1)
    if result.needs_a_person:
        conflicts, merged = result.count("conflict"), len(result.merged_away)
        raise CustomersHeld(
            f"{len(result.held)} {plural('customer', len(result.held))} held, {conflicts}"
            f" in an alias conflict, {merged} merged away after a push: a person decides"
            " (listed with the reasons)"
        )
