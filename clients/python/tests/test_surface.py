"""Every operation of the server's OpenAPI document has a client method, and
the async client has every method the sync one has, with the same parameters."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from conftest import ROOT, Server

import sandstep

# One call of each client method; the test below checks that together they
# reach every operation the server documents.
CALLS: list[Callable[[sandstep.Client], Any]] = [
    lambda c: c.modules.push(Path(__file__), "m", tag="t"),
    lambda c: c.modules.list(),
    lambda c: c.modules.get("m"),
    lambda c: c.modules.delete("m", tag="t"),
    lambda c: c.workflows.apply("name: w\nsteps: []\n"),
    lambda c: c.workflows.check('{"name": "w"}'),
    lambda c: c.workflows.list(),
    lambda c: c.workflows.get("w", version=2),
    lambda c: c.runs.start("w", {"a": 1}, wait=1.5),
    lambda c: c.runs.start_batch("w", [{"input": {}}]),
    lambda c: c.runs.get("r"),
    lambda c: list(c.runs.list(workflow="w", status="failed", page_size=5)),
    lambda c: c.runs.cancel("r", wait=0),
    lambda c: c.runs.rerun("r", failed=True),
    lambda c: c.runs.upgrade("r", version=3),
    lambda c: c.runs.bundle("r"),
    lambda c: c.runs.receipt("r"),
    lambda c: c.runs.verify("r"),
    lambda c: list(c.runs.follow("r")),
    lambda c: c.events.send("t", {"x": 1}, idempotency_key="k"),
    lambda c: list(c.events.list(topic="t")),
    lambda c: c.secrets.set("S", "v"),
    lambda c: c.secrets.list(),
    lambda c: c.secrets.delete("S"),
    lambda c: c.schedules.list(),
    lambda c: c.hooks.list(),
    lambda c: c.hooks.deliver("h", {"x": 1}),
    lambda c: c.cache.clear(module="m"),
    lambda c: c.nodes(),
    lambda c: c.keys(),
    lambda c: c.usage(day="2026-01-01"),
]

ANSWER = {
    "id": "r",
    "workflow": "w",
    "version": 1,
    "status": "completed",
    "next_cursor": None,
    "deleted": 0,
    **{
        k: []
        for k in ("modules", "workflows", "runs", "events", "secrets", "schedules", "hooks", "nodes", "keys", "usage")
    },
}
FINAL = b'id: 1\nevent: run.completed\ndata: {"seq":1,"run_id":"r","at_ms":1,"type":"run.completed"}\n\n'


def test_every_openapi_operation_has_a_client_method(server: Server) -> None:
    document = httpx.get(f"{server.url}/v1/openapi.json", headers={"authorization": f"Bearer {server.token}"}).json()
    operations = {
        (method.upper(), path): op["operationId"]
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "delete", "patch")
    }
    sent: list[tuple[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append((request.method, request.url.path))
        if request.url.path.endswith("/events") and request.method == "GET" and "/runs/" in request.url.path:
            return httpx.Response(200, content=FINAL, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, content=json.dumps(ANSWER).encode(), headers={"content-type": "application/json"})

    with sandstep.Client("http://sandstep.test", "t", transport=httpx.MockTransport(answer)) as client:
        for call in CALLS:
            call(client)
    reached = set()
    for method, path in sent:
        matches = [
            name
            for (m, template), name in operations.items()
            if m == method and re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path)
        ]
        assert matches, f"{method} {path} is not an operation of the OpenAPI document"
        reached.update(matches)
    missing = sorted(set(operations.values()) - reached)
    assert not missing, f"operations without a client method: {missing}"


def test_the_async_client_has_the_sync_surface() -> None:
    sync, aio = sandstep.Client("http://x"), sandstep.AsyncClient("http://x")
    for part in ("modules", "workflows", "runs", "events", "secrets", "schedules", "hooks", "cache", None):
        s_obj = getattr(sync, part) if part else sync
        a_obj = getattr(aio, part) if part else aio
        for name, method in inspect.getmembers(s_obj, inspect.ismethod):
            if name.startswith("_") or name in ("close",):
                continue
            twin = getattr(a_obj, name, None)
            assert twin is not None, f"AsyncClient.{part}.{name} is missing"
            assert (
                inspect.signature(twin).parameters.keys() == inspect.signature(method).parameters.keys()
            ), f"{part}.{name} takes other parameters in the async client"


def test_the_package_is_versioned_with_the_server() -> None:
    cargo = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.MULTILINE)
    assert cargo is not None and sandstep.__version__ == cargo.group(1)
