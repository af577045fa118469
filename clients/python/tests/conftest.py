"""A real `sandstep serve` (the release binary) with an API token and a
secrets key, started once for the tests, and the Rust example guests."""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import sandstep

ROOT = Path(__file__).resolve().parents[3]
GUESTS = Path(os.environ.get("SANDSTEP_TEST_GUESTS", ROOT / "target/guests/rust"))


@dataclass
class Server:
    url: str
    token: str
    log: list[str]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    binary = os.environ.get("SANDSTEP_BIN", str(ROOT / "target/release/sandstep"))
    token = "py-" + secrets.token_hex(12)
    env = {
        **os.environ,
        "SANDSTEP_API_TOKENS": f"client-tests:{token}",
        "SANDSTEP_SECRETS_KEY": secrets.token_hex(32),
    }
    env.pop("SANDSTEP_URL", None)
    env.pop("SANDSTEP_DATABASE_URL", None)
    data = tmp_path_factory.mktemp("sandstep-data")
    process = subprocess.Popen(
        [binary, "serve", "--data-dir", str(data), "--listen", "127.0.0.1:0", "--allow-unsigned-webhooks"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,  # where the server says where it listens, first
        text=True,
        env=env,
    )
    assert process.stderr is not None
    first = process.stderr.readline()
    assert first.startswith("sandstep listening on "), first
    log = [first]
    threading.Thread(target=lambda: log.extend(process.stderr or []), daemon=True).start()
    yield Server(first.removeprefix("sandstep listening on ").strip(), token, log)
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture()
def client(server: Server) -> Iterator[sandstep.Client]:
    with sandstep.Client(server.url, server.token) as c:
        yield c


@pytest.fixture(scope="session")
def modules(server: Server) -> None:
    """The guests the test workflows use, pushed once."""
    with sandstep.Client(server.url, server.token) as c:
        c.modules.push(GUESTS / "echo.wasm", "echo", tag="v1")
        c.modules.push(GUESTS / "transform.wasm", "transform")


GREET = """
# Echoes a name back.
name: greet
inputs:
  name: { type: string, required: true }
steps:
  - id: say
    module: echo:v1
    input: { greeting: "hello {{ inputs.name }}" }
output:
  greeting: "{{ steps.say.output.greeting }}"
"""

APPROVAL = """
name: approval
inputs:
  ticket: { type: string, required: true }
steps:
  - id: approve
    wait:
      event: "approval.{{ inputs.ticket }}"
      timeout: 1h
  - id: thank
    needs: [approve]
    module: echo:v1
    input: { by: "{{ steps.approve.output.by }}" }
output:
  approved_by: "{{ steps.thank.output.by }}"
"""

BROKEN = """
name: broken
steps:
  - id: no
    module: transform
    input: { items: "not a list" }
"""
