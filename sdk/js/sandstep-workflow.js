// Sandstep workflows as code, in JavaScript and TypeScript (componentize-js).
//
// A workflow is an async function from its input to its output that reaches
// the world only through its `ctx`: steps, sub-workflows, sleeps, waits for
// events, the time and random numbers. Every call is recorded in the run's
// journal; after a crash or a pause the function runs again and each
// recorded call is answered from the journal, so it must make the same calls
// in the same order given the same answers (use `ctx.now()` and
// `ctx.random()`, never `Date.now()` or `Math.random()`).
//
//   import { ctx, workflow } from './sandstep-workflow.js';
//   export const run = workflow(async (order) => {
//     const charge = await ctx.step('charge', 'payments:v1', order);
//     const shipped = await Promise.all(order.items.map((item, i) =>
//       ctx.step(`ship-${i}`, 'shipping:v1', item)));
//     return { charge: charge.id, shipped };
//   });
//
// `ctx.step` and `ctx.child` start their call at once and return a promise;
// the promises of calls started together settle in the order the calls end
// (on replay: the order the journal recorded), so `Promise.all`,
// `Promise.race` and plain `await` work as usual.
import * as host from 'sandstep:workflow/ctx@0.1.0';

/** Why a call (or the workflow) failed; `kind` is the run resource's failure kind. */
export class Failure extends Error {
  constructor(kind, message) {
    super(`${kind}: ${message}`);
    this.name = 'Failure';
    this.kind = kind;
    this.detail = message;
  }

  /** The workflow's own error: the run fails with `workflow_error`. */
  static error(message) {
    return new Failure('workflow_error', message);
  }
}

function failureOf(error) {
  // componentize-js throws an imported `result`'s error as the error value
  // itself (a `{ kind, message }` record), or wrapped with a `payload`.
  const value = error && typeof error === 'object' && 'payload' in error ? error.payload : error;
  if (value && typeof value.kind === 'string') return new Failure(value.kind, String(value.message));
  return new Failure('workflow_error', String(error));
}

function decode(what, text) {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Failure('invalid_output', `${what}: ${error.message}`);
  }
}

function hostCall(call) {
  try {
    return call();
  } catch (error) {
    throw failureOf(error);
  }
}

const options = (value) => JSON.stringify(value ?? {});

// Calls started and not yet ended: id -> { name, resolve, reject }. Once the
// code has run as far as it can (its microtasks are drained), a macrotask
// asks the host for whichever of them ends next and settles its promise.
const pending = new Map();
let pumping = false;

function pump() {
  pumping = false;
  if (pending.size === 0) return;
  const [id, result] = host.awaitNext([...pending.keys()]);
  const call = pending.get(id);
  pending.delete(id);
  if (result.tag === 'ok') {
    try {
      call.resolve(decode(`call "${call.name}" output`, result.val));
    } catch (failure) {
      call.reject(failure);
    }
  } else {
    call.reject(failureOf(result.val));
  }
  schedule();
}

function schedule() {
  if (!pumping && pending.size > 0) {
    pumping = true;
    setTimeout(pump, 0);
  }
}

function started(name, id) {
  const promise = new Promise((resolve, reject) => pending.set(id, { name, resolve, reject }));
  schedule();
  return promise;
}

export const ctx = {
  /** The run: `{ runId, workflow, version, createdMs, startedMs, trigger, token, parentRunId }`. */
  info() {
    const info = host.info();
    return {
      ...info,
      version: Number(info.version),
      createdMs: Number(info.createdMs),
      startedMs: Number(info.startedMs),
      trigger: info.trigger === undefined || info.trigger === null ? null : JSON.parse(info.trigger),
    };
  },

  /** Runs a module step; resolves to its output. `opts`: the YAML step fields
   * `retry`, `limits`, `timeout`, `cache`, `grants`, `env`, `throttle`,
   * `idempotency_key`. */
  step(name, module, input, opts) {
    const id = hostCall(() => host.submitStep(name, module, JSON.stringify(input ?? null), options(opts)));
    return started(name, id);
  },

  /** Runs a sub-workflow (YAML or code); resolves to its output. */
  child(name, workflow, input, opts) {
    const id = hostCall(() => host.submitChild(name, workflow, JSON.stringify(input ?? null), options(opts)));
    return started(name, id);
  },

  /** Starts a run of another workflow without waiting; returns its run id. */
  startChild(name, workflow, input) {
    return hostCall(() => host.startChild(name, workflow, JSON.stringify(input ?? null)));
  },

  /** A durable sleep: a long one parks the run. */
  async sleep(name, ms) {
    hostCall(() => host.sleep(name, BigInt(Math.round(ms))));
  },

  /** Waits for a posted event of `topic`: `{ id, topic, data }`; rejects with
   * kind `wait_timeout` after `timeoutMs`. */
  async waitForEvent(name, topic, timeoutMs) {
    const timeout = timeoutMs === undefined || timeoutMs === null ? undefined : BigInt(Math.round(timeoutMs));
    const event = hostCall(() => host.waitForEvent(name, topic, timeout));
    return { id: event.id, topic: event.topic, data: decode(`event of "${name}"`, event.data) };
  },

  /** Milliseconds since the Unix epoch, recorded. */
  now() {
    return Number(host.now());
  },

  /** A random 64-bit number (a BigInt), recorded. */
  random() {
    return host.random();
  },

  log(level, message) {
    host.log(level, String(message));
  },

  /** True when running code newer than the change named `id`; false when
   * replaying a journal recorded before it. */
  patched(id) {
    return host.patched(id);
  },
};

/** Makes `fn(input, ctx)` the workflow: export the result as `run`. */
export function workflow(fn) {
  return async function run(input) {
    try {
      return JSON.stringify((await fn(JSON.parse(input), ctx)) ?? null);
    } catch (error) {
      const failure = error instanceof Failure ? error : new Failure('workflow_error', error?.message ?? String(error));
      throw { kind: failure.kind, message: failure.detail };
    }
  };
}
