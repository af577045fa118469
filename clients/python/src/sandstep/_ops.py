"""Every API operation as a request description, shared by the sync and
async clients: they differ only in how they send it."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar, Union
from urllib.parse import quote

import httpx

from ._model import Run, RunEvent

T = TypeVar("T")
Dicts = list[dict[str, Any]]
Page = tuple[list[T], Union[str, None]]
Wait = Union[float, int, str, timedelta, None]
Source = Union[str, "os.PathLike[str]"]


def _json(response: httpx.Response) -> Any:
    return response.json()


def _none(response: httpx.Response) -> None:
    return None


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and how to read its answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds the server may hold the request before it answers (?wait=).
    hold: float = 0.0


def seg(value: str) -> str:
    """A path segment, escaped."""
    return quote(str(value), safe="")


def params(**values: Any) -> dict[str, str]:
    """Query parameters, without the ones not given."""
    return {k: str(v) for k, v in values.items() if v is not None}


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration(wait: Wait) -> tuple[str | None, float]:
    """A wait as the server reads it (``30s``, ``500ms``) and in seconds."""
    if wait is None:
        return None, 0.0
    if isinstance(wait, timedelta):
        wait = wait.total_seconds()
    if isinstance(wait, (int, float)):
        if wait < 0:
            raise ValueError(f"wait must not be negative, got {wait}")
        return f"{round(wait * 1000)}ms", float(wait)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", wait)
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    return wait, seconds


def run(response: httpx.Response) -> Run:
    return Run.from_json(response.json())


def _key(name: str) -> Callable[[httpx.Response], Any]:
    # The answer's one field, as ``{"modules": [...]}`` holds the list.
    return lambda response: response.json()[name]


# Modules


def push_module(path: Source, name: str, tag: str | None) -> Call[dict[str, Any]]:
    return Call(
        "POST",
        "/v1/modules",
        parse=_json,
        params=params(name=name, tag=tag),
        content=Path(path).read_bytes(),
        headers={"content-type": "application/wasm"},
    )


def list_modules() -> Call[Dicts]:
    return Call("GET", "/v1/modules", parse=_key("modules"))


def get_module(name: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/modules/{seg(name)}", parse=_json)


def delete_module(name: str, tag: str | None) -> Call[None]:
    return Call("DELETE", f"/v1/modules/{seg(name)}", params=params(tag=tag), parse=_none)


# Workflows


_NAME = re.compile(r"""^name:[ \t]*(?:"([^"]*)"|'([^']*)'|([^\s#]+))""", re.MULTILINE)


def definition(text_or_path: Source, name: str | None) -> tuple[str, bytes, str]:
    """A definition's workflow name, body and content type, from its text or
    its file's path."""
    if isinstance(text_or_path, os.PathLike) or _looks_like_path(text_or_path):
        text = Path(text_or_path).read_text(encoding="utf-8")
        where = str(text_or_path)
    else:
        text = text_or_path
        where = "the definition"
    is_json = text.lstrip().startswith("{")
    if name is None:
        if is_json:
            try:
                name = json.loads(text).get("name")
            except ValueError as error:
                raise ValueError(f"{where} is not JSON: {error}") from None
        else:
            found = _NAME.search(text)
            name = next((g for g in found.groups() if g), None) if found else None
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where} has no top-level `name`; pass name=")
    kind = "application/json" if is_json else "application/yaml"
    return name, text.encode("utf-8"), kind


def _looks_like_path(text: str) -> bool:
    """A one-line string naming a file (which may be missing: reading it
    then says so) rather than a definition's text."""
    if "\n" in text or text.lstrip().startswith("{"):
        return False
    return os.path.exists(text) or text.endswith((".yaml", ".yml", ".json")) or os.sep in text


def apply_workflow(text_or_path: Source, name: str | None) -> Call[dict[str, Any]]:
    name, body, kind = definition(text_or_path, name)
    return Call("PUT", f"/v1/workflows/{seg(name)}", content=body, headers={"content-type": kind}, parse=_json)


def check_workflow(text_or_path: Source, name: str | None) -> Call[dict[str, Any]]:
    name, body, kind = definition(text_or_path, name)
    return Call("POST", f"/v1/workflows/{seg(name)}/check", content=body, headers={"content-type": kind}, parse=_json)


def list_workflows() -> Call[Dicts]:
    return Call("GET", "/v1/workflows", parse=_key("workflows"))


def get_workflow(name: str, version: int | None) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/workflows/{seg(name)}", params=params(version=version), parse=_json)


# Runs


def start_run(
    workflow: str,
    input: Any,
    wait: Wait,
    idempotency_key: str | None,
    budget: dict[str, Any] | None,
) -> Call[Run]:
    text, seconds = duration(wait)
    body: dict[str, Any] = {}
    if input is not None:
        body["input"] = input
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    if budget is not None:
        body["budget"] = budget
    return Call(
        "POST",
        f"/v1/workflows/{seg(workflow)}/runs",
        params=params(wait=text),
        json=body,
        parse=run,
        hold=seconds,
    )


def start_batch(workflow: str, runs: list[dict[str, Any]]) -> Call[Dicts]:
    return Call("POST", f"/v1/workflows/{seg(workflow)}/runs/batch", json={"runs": runs}, parse=_key("runs"))


def get_run(run_id: str) -> Call[Run]:
    return Call("GET", f"/v1/runs/{seg(run_id)}", parse=run)


def list_runs(
    workflow: str | None,
    status: str | None,
    created_after: int | None,
    created_before: int | None,
    page_size: int | None,
    cursor: str | None,
) -> Call[Page[Run]]:
    query = params(
        workflow=workflow,
        status=status,
        created_after=created_after,
        created_before=created_before,
        limit=page_size,
        cursor=cursor,
    )
    return Call("GET", "/v1/runs", params=query, parse=lambda r: _page(r, "runs", Run.from_json))


def cancel_run(run_id: str, wait: Wait) -> Call[Run]:
    text, seconds = duration(wait)
    return Call("POST", f"/v1/runs/{seg(run_id)}/cancel", params=params(wait=text), parse=run, hold=seconds)


def rerun_run(run_id: str, from_step: str | None, failed: bool, input: Any, wait: Wait) -> Call[Run]:
    if (from_step is None) == (not failed):
        raise ValueError("rerun takes from_step or failed=True, not both and not neither")
    body: dict[str, Any] = {"from": from_step} if from_step is not None else {"failed": True}
    if input is not None:
        body["input"] = input
    text, seconds = duration(wait)
    return Call("POST", f"/v1/runs/{seg(run_id)}/rerun", params=params(wait=text), json=body, parse=run, hold=seconds)


def upgrade_run(run_id: str, version: int | None) -> Call[Run]:
    body = {} if version is None else {"version": version}
    return Call("POST", f"/v1/runs/{seg(run_id)}/upgrade", json=body, parse=run)


def run_bundle(run_id: str) -> Call[bytes]:
    return Call("GET", f"/v1/runs/{seg(run_id)}/bundle", parse=lambda r: r.content)


def run_receipt(run_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/runs/{seg(run_id)}/receipt", parse=_json)


def verify_run(run_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/runs/{seg(run_id)}/verify", parse=_json)


def run_events_path(run_id: str) -> str:
    return f"/v1/runs/{seg(run_id)}/events"


# Events


def send_event(topic: str, data: Any, idempotency_key: str | None) -> Call[dict[str, Any]]:
    body: dict[str, Any] = {"topic": topic, "data": data}
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    return Call("POST", "/v1/events", json=body, parse=_json)


def list_events(topic: str | None, page_size: int | None, cursor: str | None) -> Call[Page[dict[str, Any]]]:
    query = params(topic=topic, limit=page_size, cursor=cursor)
    return Call("GET", "/v1/events", params=query, parse=lambda r: _page(r, "events", dict))


# Secrets, schedules, hooks, cache, nodes, keys, usage


def put_secret(name: str, value: str) -> Call[None]:
    return Call("PUT", f"/v1/secrets/{seg(name)}", json={"value": value}, parse=_none)


def list_secrets() -> Call[Dicts]:
    return Call("GET", "/v1/secrets", parse=_key("secrets"))


def delete_secret(name: str) -> Call[None]:
    return Call("DELETE", f"/v1/secrets/{seg(name)}", parse=_none)


def list_schedules() -> Call[Dicts]:
    return Call("GET", "/v1/schedules", parse=_key("schedules"))


def list_hooks() -> Call[Dicts]:
    return Call("GET", "/v1/hooks", parse=_key("hooks"))


def deliver_hook(name: str, body: Any, headers: dict[str, str] | None) -> Call[dict[str, Any]]:
    sent = dict(headers or {})
    if isinstance(body, (bytes, bytearray)):
        content = bytes(body)
    elif isinstance(body, str):
        content = body.encode("utf-8")
        sent.setdefault("content-type", "text/plain")
    else:
        content = json.dumps(body).encode("utf-8")
        sent.setdefault("content-type", "application/json")
    return Call("POST", f"/hooks/{seg(name)}", content=content, headers=sent, parse=_json)


def clear_cache(module: str | None) -> Call[int]:
    return Call("DELETE", "/v1/cache", params=params(module=module), parse=_key("deleted"))


def list_nodes() -> Call[Dicts]:
    return Call("GET", "/v1/nodes", parse=_key("nodes"))


def list_keys() -> Call[Dicts]:
    return Call("GET", "/v1/keys", parse=_key("keys"))


def get_usage(day: str | None) -> Call[Dicts]:
    return Call("GET", "/v1/usage", params=params(day=day), parse=_key("usage"))


def _page(response: httpx.Response, key: str, item: Callable[[Any], Any]) -> tuple[list[Any], str | None]:
    body = response.json()
    return [item(x) for x in body[key]], body.get("next_cursor")


class SseParser:
    """Server-Sent Events, one line at a time: a complete event per blank line."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> RunEvent | None:
        if line == "":
            data, self._data = self._data, []
            return RunEvent.from_json(json.loads("\n".join(data))) if data else None
        if line.startswith("data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(" ") else value)
        # id:, event: and comments (keep-alives) carry nothing the data does not.
        return None
