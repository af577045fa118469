import { problemFrom } from "./errors.js";
import { sseEvents } from "./sse.js";
import {
  FINAL_EVENTS,
  type Applied,
  type BatchItem,
  type Json,
  type Module,
  type Obj,
  type Run,
  type RunEvent,
  type Sent,
  type Started,
} from "./types.js";

export const VERSION = "0.1.0";
const DEFAULT_URL = "http://127.0.0.1:8080";

/** Seconds (`30`, `1.5`) or the server's text (`"30s"`, `"500ms"`). */
export type Wait = number | string;

export interface Options {
  /** Default: `SANDSTEP_URL` (Node), else `http://127.0.0.1:8080`. */
  url?: string;
  /** Default: `SANDSTEP_TOKEN` (Node). */
  token?: string;
  /** How long a request may take, in milliseconds, besides a `wait` (default 30,000). */
  timeoutMs?: number;
  /** The `fetch` to send requests with (default: the global one). */
  fetch?: typeof fetch;
}

interface Call<T> {
  method: string;
  path: string;
  parse: (response: Response) => Promise<T>;
  query?: Record<string, string | number | undefined>;
  json?: unknown;
  body?: Uint8Array | string;
  headers?: Record<string, string>;
  /** Seconds the server may hold the request before it answers (`?wait=`). */
  hold?: number;
}

type Page<T> = [T[], string | null];

const json = (response: Response): Promise<any> => response.json();
const nothing = async (): Promise<void> => undefined;
const key =
  (name: string) =>
  async (response: Response): Promise<any> =>
    ((await response.json()) as Obj)[name];
const page =
  <T>(name: string) =>
  async (response: Response): Promise<Page<T>> => {
    const body = (await response.json()) as Obj;
    return [body[name] as T[], (body.next_cursor as string | null) ?? null];
  };
const seg = encodeURIComponent;

function env(name: string): string | undefined {
  const process = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return process?.env?.[name];
}

const UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/** A wait as the server reads it, and in seconds. */
function duration(wait: Wait | undefined): [string | undefined, number] {
  if (wait === undefined) return [undefined, 0];
  if (typeof wait === "number") {
    if (!(wait >= 0)) throw new RangeError(`wait must be a number of seconds, 0 or more; got ${wait}`);
    return [`${Math.round(wait * 1000)}ms`, wait];
  }
  let seconds = 0;
  for (const [, n, unit] of wait.matchAll(/(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)/g)) seconds += Number(n) * UNITS[unit!]!;
  return [wait, seconds];
}

async function readFile(path: string): Promise<Uint8Array> {
  const specifier = "node:fs/promises";
  const fs = (await import(specifier)) as { readFile(path: string): Promise<Uint8Array> };
  return fs.readFile(path);
}

function looksLikePath(text: string): boolean {
  return !text.includes("\n") && !text.trimStart().startsWith("{") && /(\.ya?ml|\.json)$|\//.test(text);
}

const NAME = /^name:[ \t]*(?:"([^"]*)"|'([^']*)'|([^\s#]+))/m;

/** A definition's workflow name, text and content type, from its text or its file's path. */
async function definition(textOrPath: string, name?: string): Promise<[string, string, string]> {
  const fromFile = looksLikePath(textOrPath);
  const text = fromFile ? new TextDecoder().decode(await readFile(textOrPath)) : textOrPath;
  const where = fromFile ? textOrPath : "the definition";
  const isJson = text.trimStart().startsWith("{");
  if (name === undefined) {
    if (isJson) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch (error) {
        throw new SyntaxError(`${where} is not JSON: ${(error as Error).message}`);
      }
      const found = (parsed as Obj | null)?.name;
      name = typeof found === "string" ? found : undefined;
    } else {
      const found = NAME.exec(text);
      name = found ? (found[1] ?? found[2] ?? found[3]) : undefined;
    }
    if (!name) throw new TypeError(`${where} has no top-level \`name\`; pass { name }`);
  }
  return [name, text, isJson ? "application/json" : "application/yaml"];
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A Sandstep server's API. A refused request rejects with a
 * {@link ProblemError}.
 *
 * ```ts
 * const sandstep = new Sandstep({ url, token });
 * const run = await sandstep.runs.start("hello", { name: "Ada" }, { wait: 30 });
 * ```
 */
export class Sandstep {
  readonly url: string;
  readonly modules = new Modules(this);
  readonly workflows = new Workflows(this);
  readonly runs = new Runs(this);
  readonly events = new Events(this);
  readonly secrets = new Secrets(this);
  readonly schedules = new Schedules(this);
  readonly hooks = new Hooks(this);
  readonly cache = new Cache(this);
  readonly #headers: Record<string, string>;
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;

  constructor(options: Options = {}) {
    this.url = (options.url ?? env("SANDSTEP_URL") ?? DEFAULT_URL).replace(/\/+$/, "");
    const token = options.token ?? env("SANDSTEP_TOKEN");
    this.#headers = token ? { authorization: `Bearer ${token}` } : {};
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** The nodes serving this store whose lease has not ended. */
  nodes(): Promise<Obj[]> {
    return this.request({ method: "GET", path: "/v1/nodes", parse: key("nodes") });
  }

  /** Every node's receipt signing key. */
  keys(): Promise<Obj[]> {
    return this.request({ method: "GET", path: "/v1/keys", parse: key("keys") });
  }

  /** Runs started and fuel used per token and workflow on a UTC day (`YYYY-MM-DD`, default today). */
  usage(day?: string): Promise<Obj[]> {
    return this.request({ method: "GET", path: "/v1/usage", query: { day }, parse: key("usage") });
  }

  /** @internal */
  async request<T>(call: Call<T>): Promise<T> {
    const headers: Record<string, string> = { ...this.#headers, ...call.headers };
    let body = call.body;
    if (call.json !== undefined) {
      body = JSON.stringify(call.json);
      headers["content-type"] = "application/json";
    }
    const response = await this.#fetch(this.#address(call.path, call.query), {
      method: call.method,
      headers,
      body,
      signal: AbortSignal.timeout(this.#timeoutMs + (call.hold ?? 0) * 1000),
    });
    if (!response.ok) throw await problemFrom(response);
    return call.parse(response);
  }

  /** @internal */
  async *pages<T>(next: (cursor: string | undefined) => Call<Page<T>>): AsyncGenerator<T> {
    let cursor: string | undefined;
    do {
      const [items, after] = await this.request(next(cursor));
      yield* items;
      cursor = after ?? undefined;
    } while (cursor);
  }

  /** @internal */
  async *stream(path: string, after: number, retries: number, signal?: AbortSignal): AsyncGenerator<RunEvent> {
    let last = after;
    let failures = 0;
    for (;;) {
      try {
        const response = await this.#fetch(this.#address(path), {
          headers: { ...this.#headers, accept: "text/event-stream", "last-event-id": String(last) },
          signal,
        });
        if (!response.ok) throw await problemFrom(response);
        for await (const event of sseEvents(response.body!)) {
          last = event.seq;
          failures = 0;
          yield event;
          if (FINAL_EVENTS.has(event.type)) return;
        }
      } catch (error) {
        // A refusal or an abort ends the stream; a dropped connection is resumed.
        if (!(error instanceof TypeError) || signal?.aborted || failures >= retries) throw error;
      }
      failures += 1;
      await sleep(Math.min(100 * 2 ** failures, 5000));
    }
  }

  #address(path: string, query?: Call<unknown>["query"]): string {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query ?? {})) {
      if (value !== undefined) params.set(name, String(value));
    }
    const text = params.toString();
    return `${this.url}${path}${text ? `?${text}` : ""}`;
  }
}

class Part {
  constructor(protected readonly c: Sandstep) {}
}

export class Modules extends Part {
  /** Uploads a wasm module (a file's path in Node, or its bytes) as `name:tag`. */
  async push(file: string | Uint8Array, name: string, options: { tag?: string } = {}): Promise<Module> {
    const body = typeof file === "string" ? await readFile(file) : file;
    return this.c.request({
      method: "POST",
      path: "/v1/modules",
      query: { name, tag: options.tag },
      body,
      headers: { "content-type": "application/wasm" },
      parse: json,
    });
  }

  list(): Promise<Module[]> {
    return this.c.request({ method: "GET", path: "/v1/modules", parse: key("modules") });
  }

  /** One module name with its tags. */
  get(name: string): Promise<{ name: string; tags: Module[] }> {
    return this.c.request({ method: "GET", path: `/v1/modules/${seg(name)}`, parse: json });
  }

  delete(name: string, options: { tag?: string } = {}): Promise<void> {
    return this.c.request({ method: "DELETE", path: `/v1/modules/${seg(name)}`, query: { tag: options.tag }, parse: nothing });
  }
}

export class Workflows extends Part {
  /** Stores a YAML or JSON definition (its text, or a file's path in Node) as a new version. */
  async apply(textOrPath: string, options: { name?: string } = {}): Promise<Applied> {
    const [name, body, kind] = await definition(textOrPath, options.name);
    return this.c.request({
      method: "PUT",
      path: `/v1/workflows/${seg(name)}`,
      body,
      headers: { "content-type": kind },
      parse: json,
    });
  }

  /** Whether each unfinished run could be upgraded to this definition. */
  async check(textOrPath: string, options: { name?: string } = {}): Promise<{ runs: Obj[] }> {
    const [name, body, kind] = await definition(textOrPath, options.name);
    return this.c.request({
      method: "POST",
      path: `/v1/workflows/${seg(name)}/check`,
      body,
      headers: { "content-type": kind },
      parse: json,
    });
  }

  list(): Promise<Obj[]> {
    return this.c.request({ method: "GET", path: "/v1/workflows", parse: key("workflows") });
  }

  get(name: string, options: { version?: number } = {}): Promise<Obj> {
    return this.c.request({ method: "GET", path: `/v1/workflows/${seg(name)}`, query: options, parse: json });
  }
}

export interface StartOptions {
  /** Answer the run as it ended, or stands when the wait is over. */
  wait?: Wait;
  idempotencyKey?: string;
  budget?: { fuel?: number };
}

export interface ListRunsOptions {
  workflow?: string;
  status?: string;
  createdAfter?: number;
  createdBefore?: number;
  pageSize?: number;
}

export class Runs extends Part {
  /** Starts a run; with `wait`, answers it as it ended or stands when the wait is over. */
  start(workflow: string, input?: Json, options: StartOptions = {}): Promise<Run> {
    const [wait, hold] = duration(options.wait);
    const body: Obj = {};
    if (input !== undefined) body.input = input;
    if (options.idempotencyKey !== undefined) body.idempotency_key = options.idempotencyKey;
    if (options.budget !== undefined) body.budget = options.budget;
    return this.c.request({
      method: "POST",
      path: `/v1/workflows/${seg(workflow)}/runs`,
      query: { wait },
      json: body,
      hold,
      parse: json,
    });
  }

  /** Starts many runs in one transaction: `{id, created}` per item. */
  startBatch(workflow: string, runs: BatchItem[]): Promise<Started[]> {
    return this.c.request({
      method: "POST",
      path: `/v1/workflows/${seg(workflow)}/runs/batch`,
      json: { runs },
      parse: key("runs"),
    });
  }

  get(runId: string): Promise<Run> {
    return this.c.request({ method: "GET", path: `/v1/runs/${seg(runId)}`, parse: json });
  }

  /** Runs newest first, fetching pages as the iteration goes. */
  list(options: ListRunsOptions = {}): AsyncGenerator<Run> {
    return this.c.pages((cursor) => ({
      method: "GET",
      path: "/v1/runs",
      query: {
        workflow: options.workflow,
        status: options.status,
        created_after: options.createdAfter,
        created_before: options.createdBefore,
        limit: options.pageSize,
        cursor,
      },
      parse: page<Run>("runs"),
    }));
  }

  cancel(runId: string, options: { wait?: Wait } = {}): Promise<Run> {
    const [wait, hold] = duration(options.wait);
    return this.c.request({ method: "POST", path: `/v1/runs/${seg(runId)}/cancel`, query: { wait }, hold, parse: json });
  }

  /** A new run of the same version reusing every other succeeded step's output. */
  rerun(runId: string, options: { fromStep?: string; failed?: boolean; input?: Json; wait?: Wait }): Promise<Run> {
    if ((options.fromStep === undefined) === !options.failed) {
      throw new TypeError("rerun takes fromStep or failed: true, not both and not neither");
    }
    const body: Obj = options.fromStep !== undefined ? { from: options.fromStep } : { failed: true };
    if (options.input !== undefined) body.input = options.input;
    const [wait, hold] = duration(options.wait);
    return this.c.request({
      method: "POST",
      path: `/v1/runs/${seg(runId)}/rerun`,
      query: { wait },
      json: body,
      hold,
      parse: json,
    });
  }

  upgrade(runId: string, options: { version?: number } = {}): Promise<Run> {
    return this.c.request({ method: "POST", path: `/v1/runs/${seg(runId)}/upgrade`, json: options, parse: json });
  }

  /** The run's bundle: a zip of its definition, modules and events. */
  bundle(runId: string): Promise<Uint8Array> {
    return this.c.request({
      method: "GET",
      path: `/v1/runs/${seg(runId)}/bundle`,
      parse: async (r) => new Uint8Array(await r.arrayBuffer()),
    });
  }

  /** An ended run's signed receipt (a DSSE envelope). */
  receipt(runId: string): Promise<Obj> {
    return this.c.request({ method: "GET", path: `/v1/runs/${seg(runId)}/receipt`, parse: json });
  }

  verify(runId: string): Promise<Obj> {
    return this.c.request({ method: "GET", path: `/v1/runs/${seg(runId)}/verify`, parse: json });
  }

  /**
   * The run's events after `after`, until its final one; a dropped
   * connection is resumed where it stopped (`Last-Event-ID`).
   */
  follow(runId: string, options: { after?: number; retries?: number; signal?: AbortSignal } = {}): AsyncGenerator<RunEvent> {
    return this.c.stream(`/v1/runs/${seg(runId)}/events`, options.after ?? 0, options.retries ?? 5, options.signal);
  }
}

export class Events extends Part {
  /** Posts an event: `{id, created}` once stored. */
  send(topic: string, data?: Json, options: { idempotencyKey?: string } = {}): Promise<Sent> {
    const body: Obj = { topic, data: data ?? null };
    if (options.idempotencyKey !== undefined) body.idempotency_key = options.idempotencyKey;
    return this.c.request({ method: "POST", path: "/v1/events", json: body, parse: json });
  }

  /** Events newest first, fetching pages as the iteration goes. */
  list(options: { topic?: string; pageSize?: number } = {}): AsyncGenerator<Obj> {
    return this.c.pages((cursor) => ({
      method: "GET",
      path: "/v1/events",
      query: { topic: options.topic, limit: options.pageSize, cursor },
      parse: page<Obj>("events"),
    }));
  }
}

export class Secrets extends Part {
  set(name: string, value: string): Promise<void> {
    return this.c.request({ method: "PUT", path: `/v1/secrets/${seg(name)}`, json: { value }, parse: nothing });
  }

  /** Secret names and when each was set; never a value. */
  list(): Promise<Array<{ name: string; updated_ms: number }>> {
    return this.c.request({ method: "GET", path: "/v1/secrets", parse: key("secrets") });
  }

  delete(name: string): Promise<void> {
    return this.c.request({ method: "DELETE", path: `/v1/secrets/${seg(name)}`, parse: nothing });
  }
}

export class Schedules extends Part {
  list(): Promise<Obj[]> {
    return this.c.request({ method: "GET", path: "/v1/schedules", parse: key("schedules") });
  }
}

export class Hooks extends Part {
  list(): Promise<Obj[]> {
    return this.c.request({ method: "GET", path: "/v1/hooks", parse: key("hooks") });
  }

  /** Delivers a webhook as its sender would (signature headers included). */
  deliver(name: string, body: Json | Uint8Array, headers: Record<string, string> = {}): Promise<Obj> {
    const sent = { ...headers };
    let content: string | Uint8Array;
    if (body instanceof Uint8Array) {
      content = body;
    } else if (typeof body === "string") {
      content = body;
      sent["content-type"] ??= "text/plain";
    } else {
      content = JSON.stringify(body);
      sent["content-type"] ??= "application/json";
    }
    return this.c.request({ method: "POST", path: `/hooks/${seg(name)}`, body: content, headers: sent, parse: json });
  }
}

export class Cache extends Part {
  /** Drops the step cache's entries of a module (or all): how many were dropped. */
  clear(options: { module?: string } = {}): Promise<number> {
    return this.c.request({ method: "DELETE", path: "/v1/cache", query: options, parse: key("deleted") });
  }
}
