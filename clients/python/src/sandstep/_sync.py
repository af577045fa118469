"""The synchronous client: ``sandstep.Client``."""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterator, TypeVar

import httpx

from . import _ops as ops
from ._errors import problem_from
from ._model import Run, RunEvent
from ._version import __version__

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8080"


def settings(url: str | None, token: str | None) -> tuple[str, dict[str, str]]:
    """The base URL and headers, from the arguments or SANDSTEP_URL and SANDSTEP_TOKEN."""
    url = url or os.environ.get("SANDSTEP_URL") or DEFAULT_URL
    token = token if token is not None else os.environ.get("SANDSTEP_TOKEN")
    headers = {"user-agent": f"sandstep-python/{__version__}"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return url.rstrip("/"), headers


def backoff(failures: int) -> float:
    return float(min(0.1 * 2**failures, 5.0))


class Client:
    """A Sandstep server's API.

    ``url`` defaults to ``SANDSTEP_URL`` (else ``http://127.0.0.1:8080``) and
    ``token`` to ``SANDSTEP_TOKEN``. A refused request raises
    :class:`sandstep.ProblemError`. Use it as a context manager, or call
    :meth:`close`.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base, headers = settings(url, token)
        self.url = base
        self._timeout = timeout
        self._http = httpx.Client(base_url=base, headers=headers, timeout=timeout, transport=transport)
        self.modules = Modules(self)
        self.workflows = Workflows(self)
        self.runs = Runs(self)
        self.events = Events(self)
        self.secrets = Secrets(self)
        self.schedules = Schedules(self)
        self.hooks = Hooks(self)
        self.cache = Cache(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def nodes(self) -> list[dict[str, Any]]:
        """The nodes serving this store whose lease has not ended."""
        return self._do(ops.list_nodes())

    def keys(self) -> list[dict[str, Any]]:
        """Every node's receipt signing key."""
        return self._do(ops.list_keys())

    def usage(self, day: str | None = None) -> list[dict[str, Any]]:
        """Runs started and fuel used per token and workflow on a UTC day (default today)."""
        return self._do(ops.get_usage(day))

    def _do(self, call: ops.Call[T]) -> T:
        timeout: Any = self._timeout + call.hold if call.hold else httpx.USE_CLIENT_DEFAULT
        response = self._http.request(
            call.method,
            call.path,
            params=call.params,
            json=call.json if call.content is None and call.method in ("POST", "PUT") else None,
            content=call.content,
            headers=call.headers,
            timeout=timeout,
        )
        if response.is_error:
            raise problem_from(response)
        return call.parse(response)

    def _pages(self, page: Callable[[str | None], ops.Call[ops.Page[T]]]) -> Iterator[T]:
        cursor: str | None = None
        while True:
            items, cursor = self._do(page(cursor))
            yield from items
            if not cursor:
                return


class _Part:
    def __init__(self, client: Client) -> None:
        self._c = client


class Modules(_Part):
    def push(self, path: ops.Source, name: str, tag: str | None = None) -> dict[str, Any]:
        """Uploads a wasm file as ``name:tag``; answers its digest, kind and size."""
        return self._c._do(ops.push_module(path, name, tag))

    def list(self) -> list[dict[str, Any]]:
        return self._c._do(ops.list_modules())

    def get(self, name: str) -> dict[str, Any]:
        """One module name with its tags."""
        return self._c._do(ops.get_module(name))

    def delete(self, name: str, tag: str | None = None) -> None:
        self._c._do(ops.delete_module(name, tag))


class Workflows(_Part):
    def apply(self, text_or_path: ops.Source, name: str | None = None) -> dict[str, Any]:
        """Stores a YAML or JSON definition (its text, or a file's path) as a new
        version: ``{name, version, created, steps}``."""
        return self._c._do(ops.apply_workflow(text_or_path, name))

    def check(self, text_or_path: ops.Source, name: str | None = None) -> dict[str, Any]:
        """Whether each unfinished run could be upgraded to this definition."""
        return self._c._do(ops.check_workflow(text_or_path, name))

    def list(self) -> list[dict[str, Any]]:
        return self._c._do(ops.list_workflows())

    def get(self, name: str, version: int | None = None) -> dict[str, Any]:
        return self._c._do(ops.get_workflow(name, version))


class Runs(_Part):
    def start(
        self,
        workflow: str,
        input: Any = None,
        *,
        wait: ops.Wait = None,
        idempotency_key: str | None = None,
        budget: dict[str, Any] | None = None,
    ) -> Run:
        """Starts a run; with ``wait`` (seconds, or ``"30s"``) answers it as it
        ended or stands when the wait is over."""
        return self._c._do(ops.start_run(workflow, input, wait, idempotency_key, budget))

    def start_batch(self, workflow: str, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Starts many runs in one transaction (``[{"input": ..., "idempotency_key": ...}]``):
        ``[{"id", "created"}]``."""
        return self._c._do(ops.start_batch(workflow, runs))

    def get(self, run_id: str) -> Run:
        return self._c._do(ops.get_run(run_id))

    def list(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        created_after: int | None = None,
        created_before: int | None = None,
        page_size: int | None = None,
    ) -> Iterator[Run]:
        """Runs newest first, fetching pages as the iteration goes."""
        return self._c._pages(
            lambda cursor: ops.list_runs(workflow, status, created_after, created_before, page_size, cursor)
        )

    def cancel(self, run_id: str, *, wait: ops.Wait = None) -> Run:
        return self._c._do(ops.cancel_run(run_id, wait))

    def rerun(
        self,
        run_id: str,
        *,
        from_step: str | None = None,
        failed: bool = False,
        input: Any = None,
        wait: ops.Wait = None,
    ) -> Run:
        """A new run of the same version reusing every other succeeded step's output."""
        return self._c._do(ops.rerun_run(run_id, from_step, failed, input, wait))

    def upgrade(self, run_id: str, version: int | None = None) -> Run:
        return self._c._do(ops.upgrade_run(run_id, version))

    def bundle(self, run_id: str) -> bytes:
        """The run's bundle: a zip of its definition, modules and events."""
        return self._c._do(ops.run_bundle(run_id))

    def receipt(self, run_id: str) -> dict[str, Any]:
        """An ended run's signed receipt (a DSSE envelope)."""
        return self._c._do(ops.run_receipt(run_id))

    def verify(self, run_id: str) -> dict[str, Any]:
        return self._c._do(ops.verify_run(run_id))

    def follow(self, run_id: str, *, after: int = 0, retries: int = 5) -> Iterator[RunEvent]:
        """The run's events from ``after`` on, until its final one; a dropped
        connection is resumed where it stopped (``Last-Event-ID``)."""
        last, failures = after, 0
        while True:
            try:
                with self._c._http.stream(
                    "GET",
                    ops.run_events_path(run_id),
                    headers={"last-event-id": str(last), "accept": "text/event-stream"},
                    timeout=httpx.Timeout(self._c._timeout, read=60.0),
                ) as response:
                    if response.is_error:
                        response.read()
                        raise problem_from(response)
                    parser = ops.SseParser()
                    for line in response.iter_lines():
                        event = parser.feed(line)
                        if event is None:
                            continue
                        last, failures = event.seq, 0
                        yield event
                        if event.final:
                            return
            except httpx.TransportError:
                if failures >= retries:
                    raise
            failures += 1
            time.sleep(backoff(failures))


class Events(_Part):
    def send(self, topic: str, data: Any = None, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Posts an event: ``{"id", "created"}`` once stored."""
        return self._c._do(ops.send_event(topic, data, idempotency_key))

    def list(self, *, topic: str | None = None, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Events newest first, fetching pages as the iteration goes."""
        return self._c._pages(lambda cursor: ops.list_events(topic, page_size, cursor))


class Secrets(_Part):
    def set(self, name: str, value: str) -> None:
        self._c._do(ops.put_secret(name, value))

    def list(self) -> list[dict[str, Any]]:
        """Secret names and when each was set; never a value."""
        return self._c._do(ops.list_secrets())

    def delete(self, name: str) -> None:
        self._c._do(ops.delete_secret(name))


class Schedules(_Part):
    def list(self) -> list[dict[str, Any]]:
        return self._c._do(ops.list_schedules())


class Hooks(_Part):
    def list(self) -> list[dict[str, Any]]:
        return self._c._do(ops.list_hooks())

    def deliver(self, name: str, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
        """Delivers a webhook as its sender would (signature headers included)."""
        return self._c._do(ops.deliver_hook(name, body, headers))


class Cache(_Part):
    def clear(self, module: str | None = None) -> int:
        """Drops the step cache's entries of a module (or all); the number dropped."""
        return self._c._do(ops.clear_cache(module))
