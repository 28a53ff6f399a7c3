"""End-to-end helpers: run the installed ``crm-sync`` command as a user would."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("crm-sync")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, for a server a test starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 120
) -> Result:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    environ.update(env or {})
    done = subprocess.run(
        [str(CLI), *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A working directory holding the example config and the sample export."""
    shutil.copy(ROOT / "config.example.yaml", tmp_path / "crm-sync.yaml")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    return tmp_path
