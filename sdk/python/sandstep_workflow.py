"""Sandstep workflows as code, in Python (for componentize-py).

A workflow is a function from its input to its output that reaches the
world only through its `Ctx`: steps, sub-workflows, sleeps, waits for
events, the time and random numbers. Every call is recorded in the run's
journal; after a crash or a pause the function runs again and each recorded
call is answered from the journal, so it must make the same calls in the
same order given the same answers (use `ctx.now()` and `ctx.random()`,
never a clock or a random source of its own).

    from sandstep_workflow import Ctx, Failure, WitWorld, workflow

    @workflow
    def run(ctx: Ctx, order: dict) -> dict:
        charge = ctx.step("charge", "payments:v1", order, retry=3)
        shipped = ctx.gather(*[ctx.submit_step(f"ship-{i}", "shipping:v1", item)
                               for i, item in enumerate(order["items"])])
        return {"charge": charge["id"], "shipped": shipped}

Build it against wit/workflow.wit (the module must expose `WitWorld`):

    componentize-py -d wit/workflow.wit -w workflow componentize order_flow \\
        -p . -p sdk/python -o order-flow.wasm
"""

import json
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

import wit_world
from componentize_py_types import Err, Ok
from wit_world.imports import ctx as _ctx
from wit_world.imports import types as _types

__all__ = ["Call", "Ctx", "Event", "Failure", "RunInfo", "WitWorld", "workflow"]


class Failure(Exception):
    """Why a call (or the workflow) failed. `kind` is the run resource's
    failure kind (`guest_error`, `wait_timeout`, `child_failed`, ...).
    Raising one from the workflow fails the run with that kind; any other
    exception fails it with `workflow_error`."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message

    @staticmethod
    def error(message: str) -> "Failure":
        """The workflow's own error: the run fails with `workflow_error`."""
        return Failure("workflow_error", message)


@dataclass(frozen=True)
class Call:
    """A call started without waiting (`submit_step`, `submit_child`)."""

    id: int
    name: str


@dataclass(frozen=True)
class Event:
    """A posted event that ended a wait; `data` is its decoded JSON."""

    id: str
    topic: str
    data: Any


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    workflow: str
    version: int
    created_ms: int
    started_ms: int
    trigger: Any
    token: Optional[str]
    parent_run_id: Optional[str]


def _failure(value: _types.Failure) -> Failure:
    return Failure(value.kind, value.message)


def _decode(what: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        raise Failure("invalid_output", f"{what}: {error}") from None


def _options(options: dict) -> str:
    # `idempotency_key` and friends are passed as keyword arguments; None
    # means "not given".
    return json.dumps({key: value for key, value in options.items() if value is not None})


_LEVELS = {
    "trace": _types.Level.TRACE,
    "debug": _types.Level.DEBUG,
    "info": _types.Level.INFO,
    "warn": _types.Level.WARN,
    "error": _types.Level.ERROR,
}


class Ctx:
    """Everything a workflow does to the world. `name` is unique within the
    run (a loop names its calls `check-{i}`); inputs and outputs are any
    JSON-encodable values. Options are the YAML step fields as keyword
    arguments: `retry`, `limits`, `timeout`, `cache`, `grants`, `env`,
    `throttle`, `idempotency_key`."""

    def info(self) -> RunInfo:
        info = _ctx.info()
        trigger = None if info.trigger is None else json.loads(info.trigger)
        return RunInfo(info.run_id, info.workflow, info.version, info.created_ms, info.started_ms,
                       trigger, info.token, info.parent_run_id)

    def step(self, name: str, module: str, input: Any = None, **options: Any) -> Any:
        """Runs a module step and returns its output; raises `Failure`."""
        try:
            output = _ctx.step(name, module, json.dumps(input), _options(options))
        except Err as error:
            raise _failure(error.value) from None
        return _decode(f"step {name!r} output", output)

    def submit_step(self, name: str, module: str, input: Any = None, **options: Any) -> Call:
        """Starts a step without waiting for it."""
        return Call(_ctx.submit_step(name, module, json.dumps(input), _options(options)), name)

    def child(self, name: str, workflow: str, input: Any = None, version: Optional[int] = None) -> Any:
        """Runs a sub-workflow (YAML or code) and returns its output."""
        try:
            output = _ctx.child(name, workflow, json.dumps(input), _options({"version": version}))
        except Err as error:
            raise _failure(error.value) from None
        return _decode(f"child {name!r} output", output)

    def submit_child(self, name: str, workflow: str, input: Any = None, version: Optional[int] = None) -> Call:
        """Starts a sub-workflow run without waiting for it."""
        return Call(_ctx.submit_child(name, workflow, json.dumps(input), _options({"version": version})), name)

    def start_child(self, name: str, workflow: str, input: Any = None) -> str:
        """Starts a run of another workflow and returns its run id at once."""
        return _ctx.start_child(name, workflow, json.dumps(input))

    def gather(self, *calls: Call, return_exceptions: bool = False) -> List[Any]:
        """The outputs of `calls`, in the given order. The first failure is
        raised, unless `return_exceptions`, which puts each `Failure` in
        its place instead (as `asyncio.gather` does)."""
        results = []
        for call, result in zip(calls, _ctx.await_all([call.id for call in calls])):
            if isinstance(result, Ok):
                results.append(_decode(f"call {call.name!r} output", result.value))
            elif return_exceptions:
                results.append(_failure(result.value))
            else:
                raise _failure(result.value)
        return results

    def next(self, calls: List[Call]) -> Tuple[Call, Any]:
        """Whichever of `calls` ends first, with its output; raises its
        `Failure`. On replay, the one the journal recorded."""
        ended, result = _ctx.await_next([call.id for call in calls])
        call = next(call for call in calls if call.id == ended)
        if isinstance(result, Err):
            raise _failure(result.value)
        return call, _decode(f"call {call.name!r} output", result.value)

    def sleep(self, name: str, seconds: float) -> None:
        """A durable sleep: a long one parks the run."""
        _ctx.sleep(name, round(seconds * 1000))

    def wait_for_event(self, name: str, topic: str, timeout: Optional[float] = None) -> Event:
        """Waits for a posted event of `topic`; raises `Failure` with kind
        `wait_timeout` after `timeout` seconds."""
        timeout_ms = None if timeout is None else round(timeout * 1000)
        try:
            event = _ctx.wait_for_event(name, topic, timeout_ms)
        except Err as error:
            raise _failure(error.value) from None
        return Event(event.id, event.topic, _decode(f"event of {name!r}", event.data))

    def now(self) -> int:
        """Milliseconds since the Unix epoch, recorded."""
        return _ctx.now()

    def random(self) -> int:
        """A random 64-bit number, recorded."""
        return _ctx.random()

    def log(self, level: str, message: str) -> None:
        _ctx.log(_LEVELS[level], message)

    def patched(self, id: str) -> bool:
        """True when running code newer than the change named `id`; false
        when replaying a journal recorded before it."""
        return _ctx.patched(id)


_workflow: Optional[Callable[[Ctx, Any], Any]] = None


def workflow(function: Callable[[Ctx, Any], Any]) -> Callable[[Ctx, Any], Any]:
    """Makes `function(ctx, input)` the module's workflow."""
    global _workflow
    _workflow = function
    return function


class WitWorld(wit_world.WitWorld):
    """The `sandstep:workflow/workflow` export: the module naming the
    workflow must expose this class (`from sandstep_workflow import WitWorld`)."""

    def run(self, input: str) -> str:
        if _workflow is None:
            raise Err(_types.Failure("workflow_error", "no function was marked @workflow"))
        try:
            output = _workflow(Ctx(), json.loads(input))
            return json.dumps(output)
        except Failure as failure:
            raise Err(_types.Failure(failure.kind, failure.message)) from None
        except Exception as error:
            raise Err(_types.Failure("workflow_error", f"{type(error).__name__}: {error}")) from None
