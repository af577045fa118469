"""Following a run across a server restart: the stream resumes where it stopped."""

from __future__ import annotations

import threading
from pathlib import Path

from conftest import APPROVAL, GUESTS, Serve

import sandstep


def test_follow_resumes_across_a_server_restart(tmp_path: Path) -> None:
    serve = Serve(tmp_path)
    server = serve.start()
    try:
        with sandstep.Client(server.url, server.token) as client:
            client.modules.push(GUESTS / "echo.wasm", "echo", tag="v1")
            client.workflows.apply(APPROVAL)
            run = client.runs.start("approval", {"ticket": "R-1"})
            seen: list[sandstep.RunEvent] = []
            waiting = threading.Event()

            def follow() -> None:
                for event in client.runs.follow(run.id, retries=20):
                    seen.append(event)
                    if event.type == "step.waiting":
                        waiting.set()

            follower = threading.Thread(target=follow)
            follower.start()
            assert waiting.wait(30), [e.type for e in seen]
            serve.stop()
            serve.start()  # the same address and data directory
            client.events.send("approval.R-1", {"by": "Kim"})
            follower.join(60)
            assert not follower.is_alive()
            assert [e.seq for e in seen] == list(range(1, len(seen) + 1)), "no event is lost or given twice"
            assert seen[-1].type == "run.completed"
            assert client.runs.get(run.id).output == {"approved_by": "Kim"}
    finally:
        serve.stop()
