"""The webhook benchmark still runs, for a second (figures not judged).

The module is imported by name at run time: mypy checks ``bench/`` as top-level files,
and a static import would make it see ``bench/webhooks.py`` under two names.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence

import pytest

pytestmark = pytest.mark.slow


def test_the_webhook_benchmark_reports_rate_latency_and_drain(
    capsys: pytest.CaptureFixture[str],
) -> None:
    main: Callable[[Sequence[str]], int] = importlib.import_module("bench.webhooks").main

    code = main(["--seconds", "1", "--companies", "20", "--connections", "2", "--json"])

    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["accepted"] > 0
    assert report["refused"] == 0
    assert report["events_applied"] == report["accepted"]
    assert report["p99_ms"] >= report["p50_ms"] > 0
