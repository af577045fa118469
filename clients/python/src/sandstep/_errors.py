"""Errors: a problem+json answer of the server becomes a ProblemError."""

from __future__ import annotations

import json
from typing import Any

import httpx


class SandstepError(Exception):
    """Base of the errors this package raises itself."""


class ProblemError(SandstepError):
    """The server refused a request: its RFC 9457 problem details.

    ``type`` is stable (``https://sandstep.dev/problems/invalid-input``, ...),
    ``errors`` lists located errors (``{"location": ..., "message": ...}``)
    where the server gave them, and ``field`` names the failing field.
    """

    def __init__(
        self,
        status: int,
        type: str,
        title: str,
        detail: str,
        field: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        retry_after: str | None = None,
        body: Any = None,
    ) -> None:
        located = "".join(f"; {e.get('location')}: {e.get('message')}" for e in (errors or [])[:5])
        super().__init__(f"{status} {detail or title}{located} ({type})")
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.field = field
        self.errors = errors or []
        self.retry_after = retry_after
        self.body = body

    @property
    def kind(self) -> str:
        """The last part of ``type``: ``invalid-input``, ``not-found``, ..."""
        return self.type.rsplit("/", 1)[-1]


def problem_from(response: httpx.Response) -> ProblemError:
    """The error an unsuccessful response stands for (problem+json or not)."""
    body: Any = None
    try:
        body = json.loads(response.content) if response.content else None
    except ValueError:
        body = None
    retry_after = response.headers.get("retry-after")
    if isinstance(body, dict) and "type" in body:
        return ProblemError(
            status=int(body.get("status", response.status_code)),
            type=str(body["type"]),
            title=str(body.get("title", "")),
            detail=str(body.get("detail", "")),
            field=body.get("field"),
            errors=body.get("errors"),
            retry_after=retry_after,
            body=body,
        )
    text = response.text.strip()[:500]
    return ProblemError(
        status=response.status_code,
        type="about:blank",
        title=response.reason_phrase,
        detail=text or response.reason_phrase,
        retry_after=retry_after,
        body=text,
    )
