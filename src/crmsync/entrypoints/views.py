"""What the commands print for people: customers, held customers and why, runs, quarantine.

Each function takes the ``--json`` shapes the services return (documented in the
README) and returns rich renderables; every value in them goes through
:mod:`crmsync.entrypoints.present`, so it is shown literally. A held customer is shown
with the CRM record it comes from (``connector:id``, which names the customer on the
command line too) and a short reason a billing person understands.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Column
from rich.text import Text

from crmsync.entrypoints.present import DataTable, line, literal, plural

__all__ = [
    "CONTACTS",
    "WIDE",
    "blocked_groups",
    "connectors_table",
    "crm_record",
    "customer_details",
    "customers_table",
    "detail",
    "held_table",
    "quarantine_table",
    "reason_title",
    "runs_table",
    "short_reason",
]

CONTACTS = 110
"""From this many columns on, the customer list also shows the billing contact."""
WIDE = 160
"""From this many columns on, the customer list also shows the crm-sync id."""

_TITLES = {
    "missing_company_name": "No company name",
    "incomplete_billing_address": "Incomplete address",
    "missing_tax_status": "No tax status",
    "no_primary_billing_contact": "No primary billing contact",
    "ambiguous_primary_billing_contact": "Several billing contacts",
    "primary_contact_without_email": "Billing contact has no email",
    "primary_contact_invalid_email": "Billing email invalid",
    "alias_conflict": "Alias taken by another customer",
    "source_deleted": "Deleted in the CRM",
    "archived": "Archived",
    "merged": "Merged into another customer",
}

_FIXES = {
    "missing_company_name": "set the name in the CRM",
    "incomplete_billing_address": "complete the address in the CRM",
    "missing_tax_status": (
        "set it in the CRM, or: crm-sync customers set-tax-status CUSTOMER STATUS"
    ),
    "no_primary_billing_contact": (
        "mark one in the CRM, or: crm-sync contacts set-primary CUSTOMER CONTACT"
    ),
    "ambiguous_primary_billing_contact": (
        "mark only one in the CRM, or: crm-sync contacts set-primary CUSTOMER CONTACT"
    ),
    "primary_contact_without_email": "add the email address in the CRM",
    "primary_contact_invalid_email": "correct the email address in the CRM",
    "alias_conflict": "remove the alias from one of the two records in the CRM",
    "source_deleted": "restore the record in the CRM, or: crm-sync customers archive CUSTOMER",
}


def reason_title(code: str) -> str:
    """A heading for a reason code (``no_primary_billing_contact`` -> "No primary ...")."""
    return _TITLES.get(code) or code.replace("_", " ").capitalize()


def _address_problems(message: str) -> str | None:
    """``missing state (required for US)`` from the domain's address sentence."""
    head, sep, problems = message.partition(": ")
    return problems.rstrip(".") if sep and "address" in head else None


def short_reason(reason: Mapping[str, Any]) -> str:
    """A few words for a list: the reason's title (``No primary billing contact``), and
    for an address what is missing (``Incomplete address: missing postal code``)."""
    code, message = str(reason.get("code") or ""), str(reason.get("message") or "")
    if code == "incomplete_billing_address" and (problems := _address_problems(message)):
        return f"{reason_title(code)}: {problems}"
    if code in _TITLES or not message:
        return reason_title(code)
    return detail(reason)


def detail(reason: Mapping[str, Any]) -> str:
    """The reason's sentence without its advice on what to do (what follows the first
    ``;``) and without repeating its title: ``None of the 3 contacts is designated as
    the billing contact``; for an address, what is missing."""
    code, message = str(reason.get("code") or ""), str(reason.get("message") or "")
    if code == "incomplete_billing_address" and (problems := _address_problems(message)):
        return problems
    text = message.split("; ", 1)[0].rstrip(".")
    return text.removeprefix(reason_title(code) + ". ") or reason_title(code)


def crm_record(customer: Mapping[str, Any]) -> Text:
    """The CRM record a customer comes from, as ``connector:id`` (and how many more)."""
    refs: Sequence[Mapping[str, Any]] = customer.get("external_refs") or ()
    if not refs:
        return literal("-")
    first = refs[0]
    text = literal(f"{first['connector']}:{first['external_id']}")
    if first.get("deleted_in_source"):
        text.append(" (deleted)", style="red")
    if len(refs) > 1:
        text.append(f" +{len(refs) - 1}")
    return text


def _reasons(customer: Mapping[str, Any]) -> Text:
    return Text("\n").join(literal(short_reason(r)) for r in customer["blocked_reasons"])


def held_table(customers: Iterable[Mapping[str, Any]]) -> DataTable:
    """Held customers: the CRM record each comes from, its name and why it is held."""
    table = DataTable(
        Column("CRM record", overflow="fold", max_width=30),
        Column("company", ratio=1, overflow="fold"),
        Column("held because", ratio=2, overflow="fold"),
    )
    for customer in customers:
        table.add_row(crm_record(customer), customer["company_name"], _reasons(customer))
    return table


def _status(customer: Mapping[str, Any]) -> Text:
    if customer["ready"]:
        return literal("ready", "green")
    return Text("\n").join(literal(short_reason(r), "yellow") for r in customer["blocked_reasons"])


def customers_table(customers: Iterable[Mapping[str, Any]], *, width: int) -> DataTable:
    """Customers: the CRM record, the name, "ready" or why held; from :data:`CONTACTS`
    columns on the billing contact too, from :data:`WIDE` on the crm-sync id."""
    table = DataTable(
        Column("CRM record", overflow="fold", max_width=30),
        Column("company", ratio=2, overflow="fold"),
    )
    if width >= CONTACTS:
        table.add_column("billing contact", ratio=2, overflow="fold")
    table.add_column("ready to bill, or why held", ratio=3, overflow="fold")
    if width >= WIDE:
        table.add_column("id", no_wrap=True)
    for c in customers:
        primary = c["primary_billing_contact"]
        cells: list[RenderableType] = [crm_record(c), literal(c["company_name"])]
        if width >= CONTACTS:
            cells.append(literal(primary["email"] if primary else None))
        cells.append(_status(c))
        if width >= WIDE:
            cells.append(literal(c["id"]))
        table.add_row(*cells)
    return table


def blocked_groups(customers: Iterable[Mapping[str, Any]]) -> list[RenderableType]:
    """Held customers grouped by reason (largest group first), each with what fixes it.

    A customer held for two reasons is in both groups.
    """
    groups: dict[str, list[tuple[Text, Text, Text]]] = defaultdict(list)
    for c in customers:
        record, name = crm_record(c), literal(c["company_name"])
        for reason in c["blocked_reasons"]:
            groups[str(reason["code"])].append((record, name, literal(detail(reason))))
    shown: list[RenderableType] = []
    for code, rows in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        heading = line(
            (reason_title(code), "bold yellow"),
            f": {len(rows)} {plural('customer', len(rows))}",
        )
        if code in _FIXES:
            heading.append_text(line(("  (" + _FIXES[code] + ")", "dim")))
        table = DataTable(
            Column("CRM record", overflow="fold", max_width=30),
            Column("company", ratio=1, overflow="fold"),
            Column("detail", ratio=2, overflow="fold"),
        )
        for row in rows:
            table.add_row(*row)
        shown.extend([heading, table])
    return shown


def _address(address: Mapping[str, Any]) -> str:
    keys = ("line1", "line2", "city", "state", "postal_code", "country")
    return ", ".join(str(address[k]) for k in keys if address[k]) or "-"


def _contact(contact: Mapping[str, Any]) -> Text:
    mark = "* " if contact["billing_preference"] == "PRIMARY" else "  "
    valid = Text("") if contact["email_valid"] else line((" (invalid email)", "red"))
    return line(
        mark,
        contact["name"] or "-",
        " <",
        contact["email"] or "-",
        ">",
        valid,
        "  ",
        contact["id"],
        f" ({contact['origin']})",
    )


def _origin(ref: Mapping[str, Any]) -> Text:
    deleted = line((" (deleted in CRM)", "red")) if ref["deleted_in_source"] else Text()
    return line(f"{ref['connector']}:{ref['external_id']} ({ref['object_type']})", deleted)


def _billing(link: Mapping[str, Any]) -> Text:
    """The billing link as ``customer-id (version 3 pushed: created)``."""
    pushed = link["pushed_version"]
    state = "up to date" if link["up_to_date"] else "changed since"
    text = line(
        link["billing_customer_id"] or "(not created)",
        f"  version {pushed if pushed is not None else '-'} pushed, {state}; last: ",
        (
            link["last_outcome"],
            "green" if link["last_outcome"] in ("created", "updated") else "yellow",
        ),
    )
    if link["last_error"]:
        text.append("  ")
        text.append_text(literal(link["last_error"], "yellow"))
    return text


def customer_details(data: Mapping[str, Any]) -> Group:
    """One customer in full: billing details, contacts (``*`` the primary billing
    contact), aliases, the CRM records it comes from, and each reason it is held."""
    state = ("ready", "green") if data["ready"] else ("held", "yellow")
    heading = line((data["company_name"] or "(no name)", "bold"), "  ", data["id"], "  ", state)
    grid = DataTable.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("  address:", _address(data["billing_address"]))
    grid.add_row("  tax status:", f"{data['tax_status'] or '-'} ({data['tax_status_source']})")
    for index, contact in enumerate(data["contacts"]):
        grid.add_row("  contacts:" if index == 0 else "", _contact(contact))
    grid.add_row("  aliases:", ", ".join(a["value"] for a in data["aliases"]))
    for index, ref in enumerate(data["external_refs"]):
        grid.add_row("  from:" if index == 0 else "", _origin(ref))
    if data["archived_at"]:
        grid.add_row("  archived at:", data["archived_at"])
    if data.get("billing") is not None:
        grid.add_row("  billing:", _billing(data["billing"]))
    for index, reason in enumerate(data["blocked_reasons"]):
        grid.add_row("  held because:" if index == 0 else "", literal(reason["message"], "yellow"))
    return Group(heading, grid)


def runs_table(runs: Iterable[Mapping[str, Any]], count_names: Sequence[str]) -> DataTable:
    """Recent runs with their counts (``count_names``, in order) and errors."""
    table = DataTable(
        "id",
        "connector",
        "mode",
        "status",
        "started",
        *count_names,
        Column("error", overflow="fold"),
    )
    for run in runs:
        counts = run["counts"]
        table.add_row(
            str(run["id"]),
            run["connector"],
            run["mode"],
            run["status"],
            run["started_at"][:19],
            *(str(counts.get(name, "")) for name in count_names),
            run["error"] or "",
        )
    return table


def quarantine_table(entries: Iterable[Mapping[str, Any]]) -> DataTable:
    """Quarantined records with their reasons."""
    table = DataTable(
        "connector",
        "type",
        Column("external id", overflow="fold"),
        Column("reason", overflow="fold"),
        "seen",
    )
    for entry in entries:
        table.add_row(
            entry["connector"],
            entry["object_type"],
            entry["external_id"] or "-",
            entry["reason"],
            str(entry["occurrences"]),
        )
    return table


def connectors_table(connectors: Iterable[Mapping[str, Any]]) -> DataTable:
    """Installed connector types, what each reads and what it can do."""
    table = DataTable(
        Column("type", no_wrap=True),
        Column("description", ratio=1, overflow="fold"),
        Column("can", no_wrap=True),
    )
    for connector in connectors:
        table.add_row(
            connector["type"], connector["description"], ", ".join(connector["capabilities"])
        )
    return table
