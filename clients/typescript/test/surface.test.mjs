// Every operation of the server's OpenAPI document has a client method, and
// the package is versioned with the server.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { Sandstep, VERSION } from "../dist/index.js";
import { ROOT, startServer } from "./server.mjs";

// One call of each client method; the test checks that together they reach
// every operation the server documents.
const CALLS = [
  (c) => c.modules.push(new Uint8Array([0, 97, 115, 109]), "m", { tag: "t" }),
  (c) => c.modules.list(),
  (c) => c.modules.get("m"),
  (c) => c.modules.delete("m", { tag: "t" }),
  (c) => c.workflows.apply("name: w\nsteps: []\n"),
  (c) => c.workflows.check('{"name": "w"}'),
  (c) => c.workflows.list(),
  (c) => c.workflows.get("w", { version: 2 }),
  (c) => c.runs.start("w", { a: 1 }, { wait: 1.5 }),
  (c) => c.runs.startBatch("w", [{ input: {} }]),
  (c) => c.runs.get("r"),
  (c) => collect(c.runs.list({ workflow: "w", status: "failed", pageSize: 5 })),
  (c) => c.runs.cancel("r", { wait: 0 }),
  (c) => c.runs.rerun("r", { failed: true }),
  (c) => c.runs.upgrade("r", { version: 3 }),
  (c) => c.runs.bundle("r"),
  (c) => c.runs.receipt("r"),
  (c) => c.runs.verify("r"),
  (c) => collect(c.runs.follow("r")),
  (c) => c.events.send("t", { x: 1 }, { idempotencyKey: "k" }),
  (c) => collect(c.events.list({ topic: "t" })),
  (c) => c.secrets.set("S", "v"),
  (c) => c.secrets.list(),
  (c) => c.secrets.delete("S"),
  (c) => c.schedules.list(),
  (c) => c.hooks.list(),
  (c) => c.hooks.deliver("h", { x: 1 }),
  (c) => c.cache.clear({ module: "m" }),
  (c) => c.nodes(),
  (c) => c.keys(),
  (c) => c.usage("2026-01-01"),
];

const ANSWER = {
  id: "r",
  workflow: "w",
  version: 1,
  status: "completed",
  next_cursor: null,
  deleted: 0,
  ...Object.fromEntries(
    ["modules", "workflows", "runs", "events", "secrets", "schedules", "hooks", "nodes", "keys", "usage"].map((k) => [k, []]),
  ),
};
const FINAL = 'id: 1\nevent: run.completed\ndata: {"seq":1,"run_id":"r","at_ms":1,"type":"run.completed"}\n\n';

let server;
before(async () => {
  server = await startServer();
});
after(() => server?.remove());

async function collect(iterable) {
  const items = [];
  for await (const item of iterable) items.push(item);
  return items;
}

test("every OpenAPI operation has a client method", async () => {
  const response = await fetch(`${server.url}/v1/openapi.json`, { headers: { authorization: `Bearer ${server.token}` } });
  const document = await response.json();
  const operations = [];
  for (const [path, item] of Object.entries(document.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (["get", "post", "put", "delete", "patch"].includes(method)) {
        const pattern = new RegExp(`^${path.replace(/\{[^}]+\}/g, "[^/]+")}$`);
        operations.push({ method: method.toUpperCase(), pattern, id: op.operationId });
      }
    }
  }
  const sent = [];
  const recording = async (url, init = {}) => {
    const { pathname } = new URL(url);
    const method = init.method ?? "GET";
    sent.push([method, pathname]);
    if (method === "GET" && /^\/v1\/runs\/[^/]+\/events$/.test(pathname)) {
      return new Response(FINAL, { headers: { "content-type": "text/event-stream" } });
    }
    return new Response(JSON.stringify(ANSWER), { headers: { "content-type": "application/json" } });
  };
  const client = new Sandstep({ url: "http://sandstep.test", token: "t", fetch: recording });
  for (const call of CALLS) await call(client);
  const reached = new Set();
  for (const [method, path] of sent) {
    const matches = operations.filter((op) => op.method === method && op.pattern.test(path));
    assert.ok(matches.length > 0, `${method} ${path} is not an operation of the OpenAPI document`);
    for (const op of matches) reached.add(op.id);
  }
  const missing = operations.map((op) => op.id).filter((id) => !reached.has(id));
  assert.deepEqual(missing, [], `operations without a client method: ${missing}`);
});

test("the package is versioned with the server", () => {
  const cargo = readFileSync(join(ROOT, "Cargo.toml"), "utf8").match(/^version = "([^"]+)"/m)[1];
  const pkg = JSON.parse(readFileSync(fileURLToPath(new URL("../package.json", import.meta.url)), "utf8"));
  assert.equal(pkg.version, cargo);
  assert.equal(VERSION, cargo);
});
