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
# The workflows both clients' tests apply.
TESTDATA = ROOT / "clients/testdata"


@dataclass
class Server:
    url: str
    token: str
    log: list[str]


class Serve:
    """`sandstep serve` on a data directory and address that outlive a restart."""

    def __init__(self, data: Path, listen: str = "127.0.0.1:0") -> None:
        self.data, self.listen = data, listen
        self.token = "py-" + secrets.token_hex(12)
        self.key = secrets.token_hex(32)
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> Server:
        binary = os.environ.get("SANDSTEP_BIN", str(ROOT / "target/release/sandstep"))
        env = {**os.environ, "SANDSTEP_API_TOKENS": f"client-tests:{self.token}", "SANDSTEP_SECRETS_KEY": self.key}
        env.pop("SANDSTEP_URL", None)
        env.pop("SANDSTEP_DATABASE_URL", None)
        self.process = subprocess.Popen(
            [binary, "serve", "--data-dir", str(self.data), "--listen", self.listen, "--allow-unsigned-webhooks"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,  # where the server says where it listens, first
            text=True,
            env=env,
        )
        assert self.process.stderr is not None
        first = self.process.stderr.readline()
        assert first.startswith("sandstep listening on "), first
        log = [first]
        threading.Thread(target=lambda: log.extend(self.process.stderr or []), daemon=True).start()  # type: ignore[union-attr]
        url = first.removeprefix("sandstep listening on ").strip()
        self.listen = url.removeprefix("http://")
        return Server(url, self.token, log)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    serve = Serve(tmp_path_factory.mktemp("sandstep-data"))
    yield serve.start()
    serve.stop()


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


GREET = (TESTDATA / "greet.yaml").read_text()

APPROVAL = (TESTDATA / "approval.yaml").read_text()

BROKEN = (TESTDATA / "broken.yaml").read_text()
