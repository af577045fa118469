"""The sync client against a real server: what an application does with it."""

from __future__ import annotations

import itertools
import uuid

import pytest
from conftest import APPROVAL, BROKEN, GREET, Server

import sandstep

pytestmark = pytest.mark.usefixtures("modules")


def test_start_and_wait_answers_the_ended_run(client: sandstep.Client) -> None:
    applied = client.workflows.apply(GREET)
    assert applied["name"] == "greet" and applied["steps"] == 1
    run = client.runs.start("greet", {"name": "Ada"}, wait=30)
    assert run.status == "completed" and run.ended
    assert run.output == {"greeting": "hello Ada"}
    assert run.error is None and run.workflow == "greet"
    again = client.runs.get(run.id)
    assert again.output == run.output and again.steps[0]["status"] == "succeeded"
    # Applying the same text again stores no new version.
    assert client.workflows.apply(GREET)["created"] is False
    assert client.workflows.get("greet")["version"] == applied["version"]


def test_an_idempotency_key_answers_the_first_run(client: sandstep.Client) -> None:
    client.workflows.apply(GREET)
    key = str(uuid.uuid4())
    first = client.runs.start("greet", {"name": "Bo"}, idempotency_key=key, wait="10s")
    second = client.runs.start("greet", {"name": "Cy"}, idempotency_key=key)
    assert second.id == first.id and second.input == {"name": "Bo"}


def test_a_batch_starts_every_run_and_lists_page_by_page(client: sandstep.Client) -> None:
    client.workflows.apply(GREET)
    key = str(uuid.uuid4())
    started = client.runs.start_batch(
        "greet",
        [{"input": {"name": f"n{i}"}} for i in range(3)] + [{"input": {"name": "k"}, "idempotency_key": key}],
    )
    assert [s["created"] for s in started] == [True, True, True, True]
    again = client.runs.start_batch("greet", [{"input": {"name": "k"}, "idempotency_key": key}])
    assert again == [{"id": started[3]["id"], "created": False}]
    ids = [s["id"] for s in started]
    for run_id in ids:
        assert list(client.runs.follow(run_id))[-1].type == "run.completed"
    listed = [r.id for r in itertools.islice(client.runs.list(workflow="greet", page_size=1), 50)]
    assert set(ids) <= set(listed), "pages of one run each reach every run"
    completed = list(client.runs.list(workflow="greet", status="completed", page_size=2))
    assert all(r.status == "completed" and r.workflow == "greet" for r in completed)


def test_follow_yields_events_to_the_end_and_resumes_after_a_seq(client: sandstep.Client) -> None:
    client.workflows.apply(GREET)
    run = client.runs.start("greet", {"name": "Di"})
    events = list(client.runs.follow(run.id))
    kinds = [e.type for e in events]
    assert kinds == ["run.queued", "run.started", "step.started", "step.succeeded", "run.completed"]
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[3]["output"] == {"greeting": "hello Di"} and events[-1].final
    resumed = list(client.runs.follow(run.id, after=3))
    assert [e.seq for e in resumed] == [4, 5]


def test_an_event_resumes_a_waiting_run(client: sandstep.Client) -> None:
    client.workflows.apply(APPROVAL)
    ticket = uuid.uuid4().hex[:8]
    run = client.runs.start("approval", {"ticket": ticket}, wait="200ms")
    assert run.status in ("running", "paused") and not run.ended
    seen = 0
    for event in client.runs.follow(run.id):
        seen = event.seq
        if event.type == "step.waiting":
            break
    sent = client.events.send(f"approval.{ticket}", {"by": "Ada"}, idempotency_key=f"approve-{ticket}")
    assert sent["created"] is True
    assert client.events.send(f"approval.{ticket}", {"by": "Eve"}, idempotency_key=f"approve-{ticket}") == {
        "id": sent["id"],
        "created": False,
    }
    rest = list(client.runs.follow(run.id, after=seen))
    assert rest[0].seq == seen + 1 and rest[-1].type == "run.completed"
    assert client.runs.get(run.id).output == {"approved_by": "Ada"}
    listed = list(client.events.list(topic=f"approval.{ticket}"))
    assert [e["id"] for e in listed] == [sent["id"]] and listed[0]["resumed"] == [run.id]


def test_a_failed_run_carries_its_error(client: sandstep.Client) -> None:
    client.workflows.apply(BROKEN)
    run = client.runs.start("broken", wait=30)
    assert run.status == "failed"
    assert run.error is not None and run.error.startswith("step no failed: guest_error: invalid input")
    assert run.steps[0]["error"]["kind"] == "guest_error"


def test_a_422_raises_its_located_errors(client: sandstep.Client) -> None:
    with pytest.raises(sandstep.ProblemError) as refused:
        client.workflows.apply(GREET.replace("inputs.name", "input.name"))
    problem = refused.value
    assert problem.status == 422 and problem.kind == "invalid-workflow"
    assert problem.type == "https://sandstep.dev/problems/invalid-workflow"
    assert [e["location"] for e in problem.errors] == ["steps.say.input"]
    assert "unknown name" in problem.errors[0]["message"]
    client.workflows.apply(GREET)
    with pytest.raises(sandstep.ProblemError) as bad_input:
        client.runs.start("greet", {"name": "Ada", "age": 3})
    assert bad_input.value.status == 422 and bad_input.value.kind == "invalid-input"
    assert bad_input.value.field == "input" and bad_input.value.detail == "unknown input age (declared: name)"


def test_a_missing_run_is_404_not_found(client: sandstep.Client) -> None:
    with pytest.raises(sandstep.ProblemError) as missing:
        client.runs.get("no-such-run")
    assert missing.value.status == 404 and missing.value.kind == "not-found"
    assert missing.value.detail == "run no-such-run"


def test_a_wrong_or_missing_token_is_401(server: Server) -> None:
    for token in ("wrong", ""):
        with sandstep.Client(server.url, token) as c, pytest.raises(sandstep.ProblemError) as refused:
            c.workflows.list()
        assert refused.value.status == 401 and refused.value.kind == "unauthorized"


def test_url_and_token_come_from_the_environment(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDSTEP_URL", server.url)
    monkeypatch.setenv("SANDSTEP_TOKEN", server.token)
    with sandstep.Client() as c:
        assert c.url == server.url
        assert any(w["name"] == "greet" for w in c.workflows.list()) or c.workflows.list() == []


def test_cancel_rerun_and_upgrade(client: sandstep.Client) -> None:
    client.workflows.apply(APPROVAL)
    waiting = client.runs.start("approval", {"ticket": uuid.uuid4().hex[:8]})
    v2 = client.workflows.apply(APPROVAL.replace("name: approval", "name: approval\ndescription: v2"))
    checked = client.workflows.check(APPROVAL)
    assert any(r["id"] == waiting.id for r in checked["runs"])
    moved = client.runs.upgrade(waiting.id)
    assert moved.version == v2["version"] and moved.id == waiting.id
    canceled = client.runs.cancel(waiting.id, wait=10)
    assert canceled.status == "canceled"
    with pytest.raises(sandstep.ProblemError) as ended:
        client.runs.cancel(waiting.id)
    assert ended.value.status == 409

    client.workflows.apply(GREET)
    done = client.runs.start("greet", {"name": "Flo"}, wait=30)
    again = client.runs.rerun(done.id, from_step="say", input={"name": "Gus"}, wait=30)
    assert again.id != done.id and again.data["rerun_of"] == done.id
    assert again.output == {"greeting": "hello Gus"}
    with pytest.raises(ValueError):
        client.runs.rerun(done.id)


def test_bundle_receipt_and_verify(client: sandstep.Client) -> None:
    client.workflows.apply(GREET)
    run = client.runs.start("greet", {"name": "Hal"}, wait=30)
    assert client.runs.bundle(run.id)[:2] == b"PK"
    receipt = client.runs.receipt(run.id)
    assert receipt["payloadType"] == "application/vnd.in-toto+json" and receipt["signatures"]
    key_ids = {k["keyid"] for k in client.keys()}
    assert receipt["signatures"][0]["keyid"] in key_ids
    verified = client.runs.verify(run.id)
    assert verified["ok"] is True and verified["events"] == 5


def test_modules_secrets_hooks_and_the_rest(client: sandstep.Client) -> None:
    assert {m["name"] for m in client.modules.list()} >= {"echo", "transform"}
    assert [t["tag"] for t in client.modules.get("echo")["tags"]] == ["v1"]
    client.secrets.set("API_KEY", "s3cret")
    listed = client.secrets.list()
    assert [s["name"] for s in listed] == ["API_KEY"] and "value" not in listed[0]
    client.secrets.delete("API_KEY")
    with pytest.raises(sandstep.ProblemError) as gone:
        client.secrets.delete("API_KEY")
    assert gone.value.status == 404
    client.workflows.apply(
        "name: hooked\ntriggers:\n  - webhook: hooked-in\n    signature: none\n"
        "steps:\n  - id: e\n    module: echo:v1\n    input: { got: '{{ inputs.n }}' }\n"
    )
    delivered = client.hooks.deliver("hooked-in", {"n": 1})
    assert client.runs.get(delivered["run_id"]).data["trigger"]["webhook"] == "hooked-in"
    assert [h["name"] for h in client.hooks.list()] == ["hooked-in"]
    assert client.schedules.list() == []
    assert client.cache.clear(module="echo") == 0
    assert len(client.nodes()) == 1
    usage = client.usage()
    assert any(u["token"] == "client-tests" and u["runs"] >= 1 for u in usage)
    client.modules.push(sandstep_guest("hello.wasm"), "hello", tag="old")
    client.modules.delete("hello", tag="old")
    assert all(m["name"] != "hello" for m in client.modules.list())


def sandstep_guest(name: str) -> str:
    from conftest import GUESTS

    return str(GUESTS / name)
