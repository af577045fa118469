"""Start the approval example, watch it wait, approve it, and print its output.

    SANDSTEP_URL=http://127.0.0.1:8080 python clients/python/examples/approval.py T-1

From the repository root. Needs a server with the Rust example guests pushed as `wordcount` and `hello`
and examples/approval.yaml applied (see the README's tour).
"""

import sys

import sandstep

ticket = sys.argv[1] if len(sys.argv) > 1 else "T-1"
with sandstep.Client() as client:
    client.workflows.apply("examples/approval.yaml")
    run = client.runs.start("approval", {"ticket": ticket, "text": "the cat and the dog"})
    for event in client.runs.follow(run.id):
        print(event.seq, event.type, event.get("step", ""))
        if event.type == "step.waiting":
            client.events.send(f"approval.{ticket}", {"approved": True, "by": "Ada"})
    print(client.runs.get(run.id).output)
