// The TypeScript client against a real server: what an application does with it.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { ProblemError, Sandstep } from "../dist/index.js";
import { APPROVAL, BROKEN, GREET, GUESTS, startServer } from "./server.mjs";

let server;
let sandstep;

before(async () => {
  server = await startServer();
  sandstep = new Sandstep({ url: server.url, token: server.token });
  await sandstep.modules.push(join(GUESTS, "echo.wasm"), "echo", { tag: "v1" });
  await sandstep.modules.push(join(GUESTS, "transform.wasm"), "transform");
});

after(() => server?.remove());

async function collect(iterable) {
  const items = [];
  for await (const item of iterable) items.push(item);
  return items;
}

async function rejection(promise) {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail("expected a rejection");
}

test("start with wait answers the ended run", async () => {
  const applied = await sandstep.workflows.apply(GREET);
  assert.equal(applied.name, "greet");
  assert.equal(applied.steps, 1);
  const run = await sandstep.runs.start("greet", { name: "Ada" }, { wait: 30 });
  assert.equal(run.status, "completed");
  assert.deepEqual(run.output, { greeting: "hello Ada" });
  assert.equal(run.error, null);
  const again = await sandstep.runs.get(run.id);
  assert.equal(again.steps[0].status, "succeeded");
  assert.equal((await sandstep.workflows.apply(GREET)).created, false);
  const key = randomUUID();
  const first = await sandstep.runs.start("greet", { name: "Bo" }, { idempotencyKey: key, wait: "10s" });
  const second = await sandstep.runs.start("greet", { name: "Cy" }, { idempotencyKey: key });
  assert.equal(second.id, first.id);
  assert.deepEqual(second.input, { name: "Bo" });
});

test("a batch starts every run, and runs are listed page by page", async () => {
  await sandstep.workflows.apply(GREET);
  const key = randomUUID();
  const started = await sandstep.runs.startBatch("greet", [
    { input: { name: "n0" } },
    { input: { name: "n1" } },
    { input: { name: "k" }, idempotency_key: key },
  ]);
  assert.deepEqual(
    started.map((s) => s.created),
    [true, true, true],
  );
  assert.deepEqual(await sandstep.runs.startBatch("greet", [{ input: { name: "k" }, idempotency_key: key }]), [
    { id: started[2].id, created: false },
  ]);
  for (const { id } of started) {
    const events = await collect(sandstep.runs.follow(id));
    assert.equal(events.at(-1).type, "run.completed");
  }
  const listed = (await collect(sandstep.runs.list({ workflow: "greet", pageSize: 1 }))).map((r) => r.id);
  for (const { id } of started) assert.ok(listed.includes(id), `${id} is listed`);
  const completed = await collect(sandstep.runs.list({ workflow: "greet", status: "completed", pageSize: 2 }));
  assert.ok(completed.every((r) => r.status === "completed" && r.workflow === "greet"));
});

test("follow yields the events to the end, and resumes after a seq", async () => {
  await sandstep.workflows.apply(GREET);
  const run = await sandstep.runs.start("greet", { name: "Di" });
  const events = await collect(sandstep.runs.follow(run.id));
  assert.deepEqual(
    events.map((e) => e.type),
    ["run.queued", "run.started", "step.started", "step.succeeded", "run.completed"],
  );
  assert.deepEqual(
    events.map((e) => e.seq),
    [1, 2, 3, 4, 5],
  );
  assert.deepEqual(events[3].output, { greeting: "hello Di" });
  const resumed = await collect(sandstep.runs.follow(run.id, { after: 3 }));
  assert.deepEqual(
    resumed.map((e) => e.seq),
    [4, 5],
  );
});

test("an event resumes a waiting run", async () => {
  await sandstep.workflows.apply(APPROVAL);
  const ticket = randomUUID().slice(0, 8);
  const run = await sandstep.runs.start("approval", { ticket }, { wait: 0.2 });
  assert.ok(["running", "paused"].includes(run.status), run.status);
  let seen = 0;
  for await (const event of sandstep.runs.follow(run.id)) {
    seen = event.seq;
    if (event.type === "step.waiting") break;
  }
  const sent = await sandstep.events.send(`approval.${ticket}`, { by: "Ada" }, { idempotencyKey: `approve-${ticket}` });
  assert.equal(sent.created, true);
  assert.deepEqual(await sandstep.events.send(`approval.${ticket}`, { by: "Eve" }, { idempotencyKey: `approve-${ticket}` }), {
    id: sent.id,
    created: false,
  });
  const rest = await collect(sandstep.runs.follow(run.id, { after: seen }));
  assert.equal(rest[0].seq, seen + 1);
  assert.equal(rest.at(-1).type, "run.completed");
  assert.deepEqual((await sandstep.runs.get(run.id)).output, { approved_by: "Ada" });
  const listed = await collect(sandstep.events.list({ topic: `approval.${ticket}` }));
  assert.deepEqual(
    listed.map((e) => e.id),
    [sent.id],
  );
  assert.deepEqual(listed[0].resumed, [run.id]);
});

test("a failed run carries its error", async () => {
  await sandstep.workflows.apply(BROKEN);
  const run = await sandstep.runs.start("broken", undefined, { wait: 30 });
  assert.equal(run.status, "failed");
  assert.match(run.error, /^step no failed: guest_error: invalid input/);
  assert.equal(run.steps[0].error.kind, "guest_error");
});

test("a 422 rejects with its located errors", async () => {
  const refused = await rejection(sandstep.workflows.apply(GREET.replace("inputs.name", "input.name")));
  assert.ok(refused instanceof ProblemError);
  assert.equal(refused.status, 422);
  assert.equal(refused.kind, "invalid-workflow");
  assert.equal(refused.type, "https://sandstep.dev/problems/invalid-workflow");
  assert.deepEqual(
    refused.errors.map((e) => e.location),
    ["steps.say.input"],
  );
  assert.match(refused.errors[0].message, /unknown name/);
  await sandstep.workflows.apply(GREET);
  const badInput = await rejection(sandstep.runs.start("greet", { name: "Ada", age: 3 }));
  assert.equal(badInput.status, 422);
  assert.equal(badInput.kind, "invalid-input");
  assert.equal(badInput.field, "input");
  assert.equal(badInput.detail, "unknown input age (declared: name)");
  const missing = await rejection(sandstep.runs.get("no-such-run"));
  assert.equal(missing.status, 404);
  assert.equal(missing.detail, "run no-such-run");
});

test("a wrong or missing token is 401", async () => {
  for (const token of ["wrong", ""]) {
    const refused = await rejection(new Sandstep({ url: server.url, token }).workflows.list());
    assert.ok(refused instanceof ProblemError);
    assert.equal(refused.status, 401);
    assert.equal(refused.kind, "unauthorized");
  }
});

test("url and token come from the environment", async () => {
  process.env.SANDSTEP_URL = server.url;
  process.env.SANDSTEP_TOKEN = server.token;
  try {
    const fromEnv = new Sandstep();
    assert.equal(fromEnv.url, server.url);
    assert.ok(Array.isArray(await fromEnv.workflows.list()));
  } finally {
    delete process.env.SANDSTEP_URL;
    delete process.env.SANDSTEP_TOKEN;
  }
});

test("cancel, rerun and upgrade", async () => {
  await sandstep.workflows.apply(APPROVAL);
  const waiting = await sandstep.runs.start("approval", { ticket: randomUUID().slice(0, 8) });
  const v2 = await sandstep.workflows.apply(APPROVAL.replace("name: approval", "name: approval\ndescription: v2"));
  const checked = await sandstep.workflows.check(APPROVAL);
  assert.ok(checked.runs.some((r) => r.id === waiting.id));
  const moved = await sandstep.runs.upgrade(waiting.id);
  assert.equal(moved.version, v2.version);
  const canceled = await sandstep.runs.cancel(waiting.id, { wait: 10 });
  assert.equal(canceled.status, "canceled");
  assert.equal((await rejection(sandstep.runs.cancel(waiting.id))).status, 409);

  await sandstep.workflows.apply(GREET);
  const done = await sandstep.runs.start("greet", { name: "Flo" }, { wait: 30 });
  const again = await sandstep.runs.rerun(done.id, { fromStep: "say", input: { name: "Gus" }, wait: 30 });
  assert.notEqual(again.id, done.id);
  assert.equal(again.rerun_of, done.id);
  assert.deepEqual(again.output, { greeting: "hello Gus" });
  assert.throws(() => sandstep.runs.rerun(done.id, {}), TypeError);
});

test("bundle, receipt and verify", async () => {
  await sandstep.workflows.apply(GREET);
  const run = await sandstep.runs.start("greet", { name: "Hal" }, { wait: 30 });
  const bundle = await sandstep.runs.bundle(run.id);
  assert.deepEqual([...bundle.slice(0, 2)], [0x50, 0x4b]);
  const receipt = await sandstep.runs.receipt(run.id);
  assert.equal(receipt.payloadType, "application/vnd.in-toto+json");
  const keyIds = (await sandstep.keys()).map((k) => k.keyid);
  assert.ok(keyIds.includes(receipt.signatures[0].keyid));
  const verified = await sandstep.runs.verify(run.id);
  assert.equal(verified.ok, true);
  assert.equal(verified.events, 5);
});

test("modules, secrets, hooks and the rest", async () => {
  const names = (await sandstep.modules.list()).map((m) => m.name);
  assert.ok(names.includes("echo") && names.includes("transform"));
  assert.deepEqual(
    (await sandstep.modules.get("echo")).tags.map((t) => t.tag),
    ["v1"],
  );
  await sandstep.secrets.set("API_KEY", "s3cret");
  const listed = await sandstep.secrets.list();
  assert.deepEqual(
    listed.map((s) => s.name),
    ["API_KEY"],
  );
  assert.ok(!("value" in listed[0]));
  await sandstep.secrets.delete("API_KEY");
  assert.equal((await rejection(sandstep.secrets.delete("API_KEY"))).status, 404);
  await sandstep.workflows.apply(
    "name: hooked\ntriggers:\n  - webhook: hooked-in\n    signature: none\n" +
      "steps:\n  - id: e\n    module: echo:v1\n    input: { got: '{{ inputs.n }}' }\n",
  );
  const delivered = await sandstep.hooks.deliver("hooked-in", { n: 1 });
  assert.equal((await sandstep.runs.get(delivered.run_id)).trigger.webhook, "hooked-in");
  assert.deepEqual(
    (await sandstep.hooks.list()).map((h) => h.name),
    ["hooked-in"],
  );
  assert.deepEqual(await sandstep.schedules.list(), []);
  assert.equal(await sandstep.cache.clear({ module: "echo" }), 0);
  assert.equal((await sandstep.nodes()).length, 1);
  assert.ok((await sandstep.usage()).some((u) => u.token === "client-tests" && u.runs >= 1));
  await sandstep.modules.push(join(GUESTS, "hello.wasm"), "hello", { tag: "old" });
  await sandstep.modules.delete("hello", { tag: "old" });
  assert.ok((await sandstep.modules.list()).every((m) => m.name !== "hello"));
});
