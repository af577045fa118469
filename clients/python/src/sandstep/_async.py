"""The asynchronous client: ``sandstep.AsyncClient``, the same surface as
``sandstep.Client`` with every call awaited and iterators async."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable, TypeVar

import httpx

from . import _ops as ops
from ._errors import problem_from
from ._model import Run, RunEvent
from ._sync import backoff, settings

T = TypeVar("T")


class AsyncClient:
    """A Sandstep server's API, for asyncio. See :class:`sandstep.Client`."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        base, headers = settings(url, token)
        self.url = base
        self._timeout = timeout
        self._http = httpx.AsyncClient(base_url=base, headers=headers, timeout=timeout, transport=transport)
        self.modules = Modules(self)
        self.workflows = Workflows(self)
        self.runs = Runs(self)
        self.events = Events(self)
        self.secrets = Secrets(self)
        self.schedules = Schedules(self)
        self.hooks = Hooks(self)
        self.cache = Cache(self)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def nodes(self) -> list[dict[str, Any]]:
        return await self._do(ops.list_nodes())

    async def keys(self) -> list[dict[str, Any]]:
        return await self._do(ops.list_keys())

    async def usage(self, day: str | None = None) -> list[dict[str, Any]]:
        return await self._do(ops.get_usage(day))

    async def _do(self, call: ops.Call[T]) -> T:
        timeout: Any = self._timeout + call.hold if call.hold else httpx.USE_CLIENT_DEFAULT
        response = await self._http.request(
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

    async def _pages(self, page: Callable[[str | None], ops.Call[ops.Page[T]]]) -> AsyncIterator[T]:
        cursor: str | None = None
        while True:
            items, cursor = await self._do(page(cursor))
            for item in items:
                yield item
            if not cursor:
                return


class _Part:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client


class Modules(_Part):
    async def push(self, path: ops.Source, name: str, tag: str | None = None) -> dict[str, Any]:
        return await self._c._do(ops.push_module(path, name, tag))

    async def list(self) -> list[dict[str, Any]]:
        return await self._c._do(ops.list_modules())

    async def get(self, name: str) -> dict[str, Any]:
        return await self._c._do(ops.get_module(name))

    async def delete(self, name: str, tag: str | None = None) -> None:
        await self._c._do(ops.delete_module(name, tag))


class Workflows(_Part):
    async def apply(self, text_or_path: ops.Source, name: str | None = None) -> dict[str, Any]:
        return await self._c._do(ops.apply_workflow(text_or_path, name))

    async def check(self, text_or_path: ops.Source, name: str | None = None) -> dict[str, Any]:
        return await self._c._do(ops.check_workflow(text_or_path, name))

    async def list(self) -> list[dict[str, Any]]:
        return await self._c._do(ops.list_workflows())

    async def get(self, name: str, version: int | None = None) -> dict[str, Any]:
        return await self._c._do(ops.get_workflow(name, version))


class Runs(_Part):
    async def start(
        self,
        workflow: str,
        input: Any = None,
        *,
        wait: ops.Wait = None,
        idempotency_key: str | None = None,
        budget: dict[str, Any] | None = None,
    ) -> Run:
        return await self._c._do(ops.start_run(workflow, input, wait, idempotency_key, budget))

    async def start_batch(self, workflow: str, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return await self._c._do(ops.start_batch(workflow, runs))

    async def get(self, run_id: str) -> Run:
        return await self._c._do(ops.get_run(run_id))

    def list(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        created_after: int | None = None,
        created_before: int | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Run]:
        return self._c._pages(
            lambda cursor: ops.list_runs(workflow, status, created_after, created_before, page_size, cursor)
        )

    async def cancel(self, run_id: str, *, wait: ops.Wait = None) -> Run:
        return await self._c._do(ops.cancel_run(run_id, wait))

    async def rerun(
        self,
        run_id: str,
        *,
        from_step: str | None = None,
        failed: bool = False,
        input: Any = None,
        wait: ops.Wait = None,
    ) -> Run:
        return await self._c._do(ops.rerun_run(run_id, from_step, failed, input, wait))

    async def upgrade(self, run_id: str, version: int | None = None) -> Run:
        return await self._c._do(ops.upgrade_run(run_id, version))

    async def bundle(self, run_id: str) -> bytes:
        return await self._c._do(ops.run_bundle(run_id))

    async def receipt(self, run_id: str) -> dict[str, Any]:
        return await self._c._do(ops.run_receipt(run_id))

    async def verify(self, run_id: str) -> dict[str, Any]:
        return await self._c._do(ops.verify_run(run_id))

    async def follow(self, run_id: str, *, after: int = 0, retries: int = 5) -> AsyncIterator[RunEvent]:
        """The run's events from ``after`` on, until its final one; a dropped
        connection is resumed where it stopped (``Last-Event-ID``)."""
        last, failures = after, 0
        while True:
            try:
                async with self._c._http.stream(
                    "GET",
                    ops.run_events_path(run_id),
                    headers={"last-event-id": str(last), "accept": "text/event-stream"},
                    timeout=httpx.Timeout(self._c._timeout, read=60.0),
                ) as response:
                    if response.is_error:
                        await response.aread()
                        raise problem_from(response)
                    parser = ops.SseParser()
                    async for line in response.aiter_lines():
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
            await asyncio.sleep(backoff(failures))


class Events(_Part):
    async def send(self, topic: str, data: Any = None, *, idempotency_key: str | None = None) -> dict[str, Any]:
        return await self._c._do(ops.send_event(topic, data, idempotency_key))

    def list(self, *, topic: str | None = None, page_size: int | None = None) -> AsyncIterator[dict[str, Any]]:
        return self._c._pages(lambda cursor: ops.list_events(topic, page_size, cursor))


class Secrets(_Part):
    async def set(self, name: str, value: str) -> None:
        await self._c._do(ops.put_secret(name, value))

    async def list(self) -> list[dict[str, Any]]:
        return await self._c._do(ops.list_secrets())

    async def delete(self, name: str) -> None:
        await self._c._do(ops.delete_secret(name))


class Schedules(_Part):
    async def list(self) -> list[dict[str, Any]]:
        return await self._c._do(ops.list_schedules())


class Hooks(_Part):
    async def list(self) -> list[dict[str, Any]]:
        return await self._c._do(ops.list_hooks())

    async def deliver(self, name: str, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
        return await self._c._do(ops.deliver_hook(name, body, headers))


class Cache(_Part):
    async def clear(self, module: str | None = None) -> int:
        return await self._c._do(ops.clear_cache(module))
