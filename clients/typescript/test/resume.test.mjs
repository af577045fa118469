// Following a run across a server restart: the stream resumes where it stopped.
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";

import { Sandstep } from "../dist/index.js";
import { APPROVAL, GUESTS, Serve } from "./server.mjs";

test("follow resumes across a server restart", async () => {
  const serve = new Serve();
  try {
    await serve.start();
    const sandstep = new Sandstep({ url: serve.url, token: serve.token });
    await sandstep.modules.push(join(GUESTS, "echo.wasm"), "echo", { tag: "v1" });
    await sandstep.workflows.apply(APPROVAL);
    const run = await sandstep.runs.start("approval", { ticket: "R-1" });
    const seen = [];
    let waiting;
    const paused = new Promise((resolve) => (waiting = resolve));
    const following = (async () => {
      for await (const event of sandstep.runs.follow(run.id, { retries: 20 })) {
        seen.push(event);
        if (event.type === "step.waiting") waiting();
      }
    })();
    await paused;
    await serve.stop();
    await serve.start(); // the same address and data directory
    await sandstep.events.send("approval.R-1", { by: "Kim" });
    await following;
    assert.deepEqual(
      seen.map((e) => e.seq),
      seen.map((_, i) => i + 1),
      "no event is lost or given twice",
    );
    assert.equal(seen.at(-1).type, "run.completed");
    assert.deepEqual((await sandstep.runs.get(run.id)).output, { approved_by: "Kim" });
  } finally {
    await serve.remove();
  }
});
