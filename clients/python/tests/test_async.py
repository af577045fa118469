"""The async client against a real server."""

from __future__ import annotations

import uuid

import pytest
from conftest import APPROVAL, GREET, Server

import sandstep

pytestmark = pytest.mark.usefixtures("modules")


async def test_start_follow_and_resume_with_the_async_client(server: Server) -> None:
    async with sandstep.AsyncClient(server.url, server.token) as client:
        await client.workflows.apply(GREET)
        run = await client.runs.start("greet", {"name": "Ida"}, wait=30)
        assert (run.status, run.output) == ("completed", {"greeting": "hello Ida"})
        kinds = [e.type async for e in client.runs.follow(run.id)]
        assert kinds[0] == "run.queued" and kinds[-1] == "run.completed"

        await client.workflows.apply(APPROVAL)
        ticket = uuid.uuid4().hex[:8]
        waiting = await client.runs.start("approval", {"ticket": ticket})
        async for event in client.runs.follow(waiting.id):
            if event.type == "step.waiting":
                break
        await client.events.send(f"approval.{ticket}", {"by": "Jo"})
        ended = [e async for e in client.runs.follow(waiting.id, after=event.seq)]
        assert ended[-1].type == "run.completed"
        assert (await client.runs.get(waiting.id)).output == {"approved_by": "Jo"}
        ids = [r.id async for r in client.runs.list(workflow="approval", page_size=1)]
        assert waiting.id in ids

        with pytest.raises(sandstep.ProblemError) as refused:
            await client.runs.start("no-such-workflow")
        assert refused.value.status == 404 and refused.value.kind == "not-found"
