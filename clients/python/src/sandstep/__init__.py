"""Python client for Sandstep's HTTP API.

import sandstep

with sandstep.Client() as client:          # SANDSTEP_URL, SANDSTEP_TOKEN
    client.modules.push("echo.wasm", "echo", tag="v1")
    client.workflows.apply("hello.yaml")
    run = client.runs.start("hello", {"name": "Ada"}, wait=30)
    print(run.status, run.output)
"""

from ._async import AsyncClient
from ._errors import ProblemError, SandstepError
from ._model import Run, RunEvent
from ._sync import Client
from ._version import __version__

__all__ = ["AsyncClient", "Client", "ProblemError", "Run", "RunEvent", "SandstepError", "__version__"]
