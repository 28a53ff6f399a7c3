"""The shared connector contract, run against the HubSpot connector over a HubSpot double.

It runs twice: with contacts' companies read inline from the list answers (the
default) and with v4 batch reads (``associations: batch``).
"""

from __future__ import annotations

from typing import Literal

import pytest

from crmsync.sdk.connector import Connector
from crmsync.sdk.testing import ConnectorContract, ConnectorHarness, Dataset, FakeTime
from crmsync_hubspot.tests.doubles import DatasetHubSpot, make_config, make_connector


class HubSpotHarness(ConnectorHarness):
    """Renders the dataset as a HubSpot account (respx) and builds a connector reading it."""

    supports_rate_limits = True

    def __init__(self, associations: Literal["inline", "batch"]) -> None:
        self.associations = associations
        self.time = FakeTime()

    def build(self, dataset: Dataset, *, page_size: int, rate_limited: bool = False) -> Connector:
        account = DatasetHubSpot(dataset, rate_limited=rate_limited)
        config = make_config(page_size=page_size, associations=self.associations)
        return make_connector(config, time=self.time, transport=account.transport)


class TestHubSpotConnectorContract(ConnectorContract):
    @pytest.fixture(params=["inline", "batch"])
    def harness(self, request: pytest.FixtureRequest) -> ConnectorHarness:
        return HubSpotHarness(request.param)
