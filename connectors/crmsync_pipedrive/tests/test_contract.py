"""The shared connector contract, run against the Pipedrive connector over a Pipedrive double.

A Pipedrive person belongs to at most one organization (``org_id``), so the kit's
contacts with two companies cannot be rendered: their links are left out of the field
comparisons (``companies``); the unit tests check links and billing designations.
"""

from __future__ import annotations

import pytest

from crmsync.sdk.connector import Connector
from crmsync.sdk.testing import ConnectorContract, ConnectorHarness, Dataset, FakeTime
from crmsync_pipedrive.tests.doubles import DatasetPipedrive, make_config, make_connector


class PipedriveHarness(ConnectorHarness):
    """Renders the dataset as a Pipedrive account (respx) and builds a connector reading it."""

    supports_rate_limits = True
    unsupported_fields = frozenset({"companies"})

    def __init__(self) -> None:
        self.time = FakeTime()

    def build(self, dataset: Dataset, *, page_size: int, rate_limited: bool = False) -> Connector:
        account = DatasetPipedrive(dataset, rate_limited=rate_limited)
        return make_connector(
            make_config(page_size=page_size), time=self.time, transport=account.transport
        )


class TestPipedriveConnectorContract(ConnectorContract):
    @pytest.fixture
    def harness(self) -> ConnectorHarness:
        return PipedriveHarness()
