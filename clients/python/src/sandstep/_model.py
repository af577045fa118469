"""What the API answers, as typed objects (each keeps the whole answer in ``data``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FINAL_EVENTS = frozenset({"run.completed", "run.failed", "run.canceled"})
ENDED = frozenset({"completed", "failed", "canceled"})


@dataclass
class Run:
    """A run as the server stores it (``GET /v1/runs/{id}``)."""

    id: str
    workflow: str
    version: int
    status: str
    input: Any = None
    output: Any = None
    error: str | None = None
    created_ms: int = 0
    updated_ms: int = 0
    steps: Any = None
    data: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ended(self) -> bool:
        """Whether the run is completed, failed or canceled."""
        return self.status in ENDED

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        return cls(
            id=data["id"],
            workflow=data.get("workflow", ""),
            version=int(data.get("version", 0)),
            status=data["status"],
            input=data.get("input"),
            output=data.get("output"),
            error=data.get("error"),
            created_ms=int(data.get("created_ms", 0)),
            updated_ms=int(data.get("updated_ms", 0)),
            steps=data.get("steps"),
            data=data,
        )


@dataclass
class RunEvent:
    """One event of a run's journal (``GET /v1/runs/{id}/events``)."""

    seq: int
    type: str
    run_id: str
    at_ms: int
    data: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def final(self) -> bool:
        """Whether this event ends the run."""
        return self.type in FINAL_EVENTS

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunEvent:
        return cls(
            seq=int(data["seq"]),
            type=str(data["type"]),
            run_id=str(data.get("run_id", "")),
            at_ms=int(data.get("at_ms", 0)),
            data=data,
        )
