"""The contract suite, run against the file connector over CSV and over JSON Lines files."""

from __future__ import annotations

from pathlib import Path

import pytest

from crmsync.sdk.testing import ConnectorContract, ConnectorHarness
from crmsync_file.tests.harness import FileHarness


class TestFileConnectorContract(ConnectorContract):
    @pytest.fixture(params=["csv", "jsonl"])
    def harness(self, request: pytest.FixtureRequest, tmp_path: Path) -> ConnectorHarness:
        return FileHarness(tmp_path, request.param)
