"""The shared connector contract, run against the Salesforce connector over the fake org.

The org answers in-process (``httpx.MockTransport``) with the fake's SOQL subset, its
query batches (at least 200 rows, so the kit's small pages split answers) and, for the
rate-limit check, a 403 ``REQUEST_LIMIT_EXCEEDED`` (concurrent requests) every third
request. It runs with the text address fields and with state and country picklists.
"""

from __future__ import annotations

import pytest

from crmsync.sdk.connector import Connector
from crmsync.sdk.testing import ConnectorContract, ConnectorHarness, Dataset, FakeTime
from crmsync_salesforce.tests.doubles import dataset_org, make_config, make_connector, make_fake


class SalesforceHarness(ConnectorHarness):
    """Loads the dataset into a fake org and builds a connector reading it."""

    supports_rate_limits = True

    def __init__(self, picklists: bool) -> None:
        self.picklists = picklists
        self.time = FakeTime()

    def build(self, dataset: Dataset, *, page_size: int, rate_limited: bool = False) -> Connector:
        fake = make_fake(dataset_org(dataset, picklists=self.picklists))
        if rate_limited:
            fake.throttle_every = 3
        config = make_config(page_size=page_size, state_country_picklists=self.picklists)
        return make_connector(config, fake=fake, time=self.time)


class TestSalesforceConnectorContract(ConnectorContract):
    @pytest.fixture(params=[False, True], ids=["text-fields", "picklists"])
    def harness(self, request: pytest.FixtureRequest) -> ConnectorHarness:
        return SalesforceHarness(request.param)
