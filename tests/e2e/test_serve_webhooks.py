"""``crm-sync serve`` end to end: the real server (uvicorn on a free port, as a subprocess)
takes signed HubSpot deliveries sent with httpx, and its worker fetches the records from a
fake HubSpot the test starts on 127.0.0.1. On SQLite and PostgreSQL.

Nothing here sleeps: each test waits until the store, or the server, shows what it
expects (``wait_until``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from crmsync.adapters.store import Store, create_store
from crmsync.adapters.tables import contacts, customers, external_refs, sync_runs, webhook_inbox
from crmsync_hubspot.webhooks import signature_v3
from tests.e2e.conftest import CLI, free_port, run_cli
from tests.fakes.hubspot import FakeHubSpot, HubSpotData, run_fake_hubspot
from tests.support.stores import wait_until

pytestmark = pytest.mark.slow

SECRET = "client-secret-for-the-e2e-tests-0001"
CONNECTOR = "hubspot"


def _environment(extra: dict[str, str]) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    environ.update(extra)
    return environ


@dataclass
class Service:
    """A config on a fake HubSpot and a store, and the ``crm-sync serve`` running on it."""

    folder: Path
    fake: FakeHubSpot
    store_url: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    log: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = {"HUBSPOT_TOKEN": self.fake.token or "", "HUBSPOT_SECRET": SECRET}
        document = {
            "database_url": self.store_url,
            "log_level": "WARNING",
            "webhooks": {"claim_seconds": 2, "poll_seconds": 0.2, "retry_seconds": 0.5},
            "connectors": {
                CONNECTOR: {
                    "type": "hubspot",
                    "base_url": self.fake.url,
                    "access_token": "${HUBSPOT_TOKEN}",
                    "webhook_secret": "${HUBSPOT_SECRET}",
                    "requests_per_window": None,
                    "search_lag_seconds": 0,
                    "timeout_seconds": 10,
                }
            },
        }
        self.config.write_text(yaml.safe_dump(document, sort_keys=False))

    @property
    def config(self) -> Path:
        return self.folder / "crm-sync.yaml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> Any:
        return run_cli("--config", str(self.config), *args, cwd=self.folder, env=self.env)

    def start(self, role: str = "both", *options: str) -> None:
        """Start ``crm-sync serve`` (``role``: both, serve-only (--no-worker), or
        worker-only (--no-webhooks)) and wait until it answers."""
        roles = {"both": [], "serve-only": ["--no-worker"], "worker-only": ["--no-webhooks"]}
        self.starts += 1
        self.log = self.folder / f"serve-{self.starts}.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [str(CLI), "--config", str(self.config), *options, "serve",
                 "--port", str(self.port), "--no-scheduler", "--log-format", "json",
                 *roles[role]],
                cwd=self.folder,
                env=_environment(self.env),
                stdout=subprocess.DEVNULL,
                stderr=log,
            )  # fmt: skip
        wait_until(self._healthy, "the server answers /healthz")

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited {self.process.returncode}: {self.stderr()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stderr(self) -> str:
        return self.log.read_text() if self.log is not None else ""

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=60)

    def send(
        self,
        body: bytes,
        *,
        sent_ms: int | None = None,
        secret: str = SECRET,
        client: httpx.Client | None = None,
        connector: str = CONNECTOR,
    ) -> httpx.Response:
        url = f"{self.url}/webhooks/{connector}"
        timestamp = str(sent_ms if sent_ms is not None else int(time.time() * 1000))
        headers = {
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": signature_v3(secret, "POST", url, body, timestamp),
            "X-HubSpot-Request-Timestamp": timestamp,
        }
        post = client.post if client is not None else httpx.post
        return post(url, content=body, headers=headers, timeout=10)


def change(company_id: str, name: str, *, event_id: int = 1) -> dict[str, Any]:
    """A HubSpot company.propertyChange event."""
    return {
        "eventId": event_id,
        "subscriptionId": 11,
        "portalId": 62515,
        "appId": 99,
        "occurredAt": int(time.time() * 1000),
        "subscriptionType": "company.propertyChange",
        "attemptNumber": 0,
        "objectId": int(company_id),
        "propertyName": "name",
        "propertyValue": name,
        "changeSource": "CRM_UI",
    }


def _version(name: str | None) -> int:
    """The n of a name "version n" (-1 for any other name)."""
    text = name or ""
    return int(text.removeprefix("version ")) if text.startswith("version ") else -1


def body(*events: dict[str, Any]) -> bytes:
    return json.dumps(list(events)).encode()


@pytest.fixture
def service(tmp_path: Path, store_url: str) -> Iterator[Service]:
    data = HubSpotData.generate(companies=20, contacts=40, seed=3)
    fake = run_fake_hubspot(data)
    running = Service(tmp_path, fake, store_url)
    synced = running.cli("sync", CONNECTOR, "--json")
    assert synced.code == 0, synced.stderr
    yield running
    if running.process is not None and running.process.poll() is None:
        running.process.kill()
        running.process.wait()
    fake.stop()


@pytest.fixture
def store(service: Service) -> Iterator[Store]:
    opened = create_store(service.store_url)
    yield opened
    opened.dispose()


def names(store: Store) -> dict[str, str | None]:
    with store.begin() as conn:
        rows = conn.execute(
            sa.select(external_refs.c.external_id, customers.c.company_name)
            .join(customers, customers.c.id == external_refs.c.customer_id)
            .where(external_refs.c.connector == CONNECTOR, external_refs.c.object_type == "company")
        )
        return {str(row[0]): row[1] for row in rows}


def inbox(store: Store) -> list[Any]:
    with store.begin() as conn:
        return list(conn.execute(sa.select(webhook_inbox).order_by(webhook_inbox.c.id)))


def webhook_runs(store: Store) -> int:
    with store.begin() as conn:
        count = conn.execute(
            sa.select(sa.func.count()).select_from(sync_runs).where(sync_runs.c.mode == "webhook")
        ).scalar_one()
        return int(count)


def test_a_signed_change_lands_in_the_store_with_no_sync(service: Service, store: Store) -> None:
    company = service.fake.data.ids("companies")[0]
    service.fake.data.update("companies", company, {"name": "Renamed by HubSpot"})
    service.start()

    answer = service.send(body(change(company, "Renamed by HubSpot")))

    assert answer.status_code == 200
    wait_until(lambda: names(store)[company] == "Renamed by HubSpot", "the change lands")
    wait_until(lambda: [r.status for r in inbox(store)] == ["done"], "the event is done")
    assert service.stop() == 0


def test_bad_deliveries_are_refused_and_store_nothing(service: Service, store: Store) -> None:
    company = service.fake.data.ids("companies")[0]
    good = body(change(company, "x"))
    service.start()
    six_minutes_ago = int(time.time() * 1000) - 6 * 60 * 1000

    forged = service.send(good, secret="not-the-secret")
    replayed = service.send(good, sent_ms=six_minutes_ago)
    oversize = service.send(b"[" + b" " * (1024 * 1024) + b"]")
    malformed = service.send(b"{this is not json")
    unknown = service.send(good, connector="nope")

    assert [r.status_code for r in (forged, replayed, oversize, malformed, unknown)] == [
        401, 401, 413, 400, 404,
    ]  # fmt: skip
    assert inbox(store) == []
    assert service.stop() == 0


def test_a_redelivery_changes_nothing_further(service: Service, store: Store) -> None:
    company = service.fake.data.ids("companies")[1]
    service.fake.data.update("companies", company, {"name": "Once"})
    delivery = body(change(company, "Once"))
    service.start()
    assert service.send(delivery).status_code == 200
    wait_until(lambda: [r.status for r in inbox(store)] == ["done"], "the event is applied")
    runs = webhook_runs(store)

    again = service.send(delivery)

    assert again.status_code == 200
    assert len(inbox(store)) == 1
    assert webhook_runs(store) == runs == 1
    assert service.stop() == 0


class Load:
    """Deliveries sent one after the other from a thread, each after a change in the fake
    HubSpot ("version n" as the name of the next company in turn), until the server is
    gone or :meth:`stop`; ``acknowledged`` holds the last name each company was
    acknowledged with."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.ids = service.fake.data.ids("companies")
        self.acknowledged: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send)
        self._thread.start()

    def _send(self) -> None:
        with httpx.Client() as client:
            n = 0
            while not self._stop.is_set():
                company = self.ids[n % len(self.ids)]
                name = f"version {n}"
                self.service.fake.data.update("companies", company, {"name": name})
                try:
                    delivery = body(change(company, name, event_id=n))
                    answer = self.service.send(delivery, client=client)
                except httpx.TransportError:
                    return  # the server is gone
                if answer.status_code == 200:
                    self.acknowledged[company] = name
                n += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def behind(self, store: Store) -> dict[str, tuple[str | None, str]]:
        """Acknowledged changes the store does not hold (it holds that version of the
        record or a newer one: the worker fetches the CRM's current record)."""
        stored = names(store)
        return {
            company: (stored[company], name)
            for company, name in self.acknowledged.items()
            if _version(stored[company]) < _version(name)
        }


def _all_done(store: Store) -> bool:
    return all(r.status == "done" for r in inbox(store))


def test_every_acknowledged_event_is_applied_after_a_kill_9_under_load(
    service: Service, store: Store
) -> None:
    service.start()
    load = Load(service)
    wait_until(
        lambda: len(load.acknowledged) >= len(load.ids) and webhook_runs(store) > 0, "under load"
    )
    assert service.process is not None
    service.process.kill()  # kill -9
    service.process.wait()
    load.stop()

    service.start()
    wait_until(lambda: _all_done(store), "every stored event is applied", seconds=60)

    assert load.behind(store) == {}
    assert service.stop() == 0


def test_sigterm_under_load_exits_0_and_loses_nothing(service: Service, store: Store) -> None:
    service.start()
    load = Load(service)
    wait_until(
        lambda: len(load.acknowledged) >= len(load.ids) and webhook_runs(store) > 0, "under load"
    )

    code = service.stop(signal.SIGTERM)
    load.stop()
    service.start()
    wait_until(lambda: _all_done(store), "every stored event is applied", seconds=60)

    assert code == 0
    assert load.behind(store) == {}
    assert service.stop() == 0


def test_webhook_imports_racing_polling_syncs_leave_the_newest_version(
    service: Service, store: Store
) -> None:
    service.start()
    load = Load(service)
    wait_until(lambda: len(load.acknowledged) >= len(load.ids), "under load")

    for _ in range(3):  # full syncs read the same companies while the worker imports them
        synced = service.cli("sync", CONNECTOR, "--full", "--json")
        assert synced.code == 0, synced.stderr
    load.stop()
    wait_until(lambda: _all_done(store), "every stored event is applied", seconds=60)

    crm = {c: service.fake.data.properties("companies", c)["name"] for c in load.ids}
    wait_until(lambda: names(store) == crm, "the store holds the CRM's newest names")
    assert service.stop() == 0


def hubspot_event(subscription: str, object_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "eventId": 5,
        "subscriptionId": 12,
        "portalId": 62515,
        "occurredAt": int(time.time() * 1000),
        "subscriptionType": subscription,
        "attemptNumber": 0,
        "objectId": int(object_id),
        **fields,
    }


def refs(store: Store) -> dict[str, tuple[str, bool]]:
    """Company id -> (its customer, deleted in the CRM)."""
    with store.begin() as conn:
        rows = conn.execute(
            sa.select(
                external_refs.c.external_id,
                external_refs.c.customer_id,
                external_refs.c.deleted_at.is_not(None),
            ).where(external_refs.c.object_type == "company")
        )
        return {str(r[0]): (str(r[1]), bool(r[2])) for r in rows}


def test_deletions_and_merges_go_through_the_sync_rules(service: Service, store: Store) -> None:
    deleted, survivor, loser = service.fake.data.ids("companies")[4:7]
    service.fake.data.archive("companies", deleted)
    service.fake.data.merge("companies", survivor, loser)
    service.start()

    answer = service.send(
        body(
            hubspot_event("company.deletion", deleted),
            hubspot_event(
                "company.merge",
                survivor,
                primaryObjectId=int(survivor),
                mergedObjectIds=[int(loser)],
            ),
        )
    )

    assert answer.status_code == 200
    wait_until(lambda: _all_done(store) and len(inbox(store)) == 2, "both events are applied")
    found = refs(store)
    assert found[deleted][1] is True  # held as deleted in the CRM, not removed
    assert found[loser][0] == found[survivor][0]  # folded into the survivor's customer
    assert service.stop() == 0


def test_an_association_change_moves_the_contact(service: Service, store: Store) -> None:
    data = service.fake.data
    contact = data.ids("contacts")[0]
    (old_company,) = data.contact_associations(contact)
    new_company = next(c for c in data.ids("companies") if c != old_company)
    data.set_association(contact, old_company, remove=True)
    data.set_association(contact, new_company, primary=True)
    service.start()

    answer = service.send(
        body(
            hubspot_event(
                "contact.associationChange", contact, associationType="CONTACT_TO_COMPANY",
                fromObjectId=int(contact), toObjectId=int(new_company),
            )
        )
    )  # fmt: skip

    assert answer.status_code == 200
    wait_until(lambda: _all_done(store) and len(inbox(store)) == 1, "the event is applied")
    with store.begin() as conn:
        holders = {
            str(row[0])
            for row in conn.execute(
                sa.select(external_refs.c.external_id)
                .join(contacts, contacts.c.customer_id == external_refs.c.customer_id)
                .where(
                    contacts.c.external_id == contact,
                    contacts.c.removed_at.is_(None),
                    external_refs.c.object_type == "company",
                )
            )
        }
    assert holders == {new_company}
    assert service.stop() == 0


def test_the_worker_can_run_in_a_process_of_its_own(
    service: Service, store: Store, tmp_path: Path
) -> None:
    company = service.fake.data.ids("companies")[7]
    service.fake.data.update("companies", company, {"name": "Split roles"})
    worker = Service(tmp_path, service.fake, service.store_url)
    service.start("serve-only")
    worker.start("worker-only")
    try:
        answer = service.send(body(change(company, "Split roles")))
        assert answer.status_code == 200
        wait_until(lambda: names(store)[company] == "Split roles", "the worker applies it")
        refused = worker.send(body(change(company, "x")))
        assert refused.status_code == 404  # --no-webhooks: the route is not there
    finally:
        assert worker.stop() == 0
        assert service.stop() == 0


def test_health_and_metrics_show_the_service_and_its_inbox(service: Service, store: Store) -> None:
    company = service.fake.data.ids("companies")[2]
    service.start()
    assert service.send(body(change(company, "x"))).status_code == 200
    wait_until(lambda: [r.status for r in inbox(store)] == ["done"], "the event is applied")

    health = httpx.get(f"{service.url}/healthz", timeout=5)
    metrics = httpx.get(f"{service.url}/metrics", timeout=5)

    assert health.status_code == 200
    assert health.json() == {
        "status": "ok",
        "checks": {"store": True, "jobs": True, "worker": True},
    }
    text = metrics.text
    assert 'crmsync_webhook_ack_seconds_count{connector="hubspot"} 1.0' in text
    assert 'crmsync_runs{connector="hubspot",status="succeeded"} 2.0' in text
    assert 'crmsync_webhook_inbox_events{connector="hubspot",status="pending"} 0.0' in text
    assert "crmsync_webhook_import_lag_seconds_count 1.0" in text
    assert "crmsync_customers_held{" in text
    assert service.stop() == 0


def test_logs_are_json_lines_without_secrets(service: Service, store: Store) -> None:
    service.start("both", "--log-level", "info")
    forged = service.send(body(change("1", "x")), secret="not-the-secret")
    assert forged.status_code == 401
    assert service.stop() == 0

    lines = [json.loads(line) for line in service.stderr().splitlines() if line.strip()]
    assert lines, "serve logged nothing"
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in lines)
    assert SECRET not in service.stderr()
    assert service.env["HUBSPOT_TOKEN"] not in service.stderr()


def test_failed_events_are_listed_and_replayed_from_the_cli(service: Service, store: Store) -> None:
    company = service.fake.data.ids("companies")[3]
    service.fake.data.update("companies", company, {"name": "After the outage"})
    config = yaml.safe_load(service.config.read_text())
    config["webhooks"]["max_attempts"] = 1
    service.config.write_text(yaml.safe_dump(config))
    service.fake.fail_next(50, status=400, path_prefix="/crm/v3/objects/companies/batch")
    service.start()
    assert service.send(body(change(company, "After the outage"))).status_code == 200
    wait_until(lambda: [r.status for r in inbox(store)] == ["failed"], "the event is set aside")
    assert service.stop() == 0

    listed = service.cli("webhooks", "list", "--failed", "--json")
    service.fake.clear_faults()
    replayed = service.cli("webhooks", "replay", "--failed", "--json")

    assert listed.code == 0, listed.stderr
    (event,) = listed.json()
    assert (event["status"], event["external_id"], event["attempts"]) == ("failed", company, 1)
    assert event["last_error"]
    assert replayed.code == 0, replayed.stderr
    assert replayed.json()["applied"] == 1
    assert names(store)[company] == "After the outage"
    assert [r.status for r in inbox(store)] == ["done"]
