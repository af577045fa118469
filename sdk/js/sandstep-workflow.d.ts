// Types of sandstep-workflow.js (workflows as code for componentize-js).

export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/** Why a call (or the workflow) failed; `kind` is the run resource's failure kind. */
export class Failure extends Error {
  constructor(kind: string, message: string);
  readonly kind: string;
  readonly detail: string;
  /** The workflow's own error: the run fails with `workflow_error`. */
  static error(message: string): Failure;
}

/** The YAML step fields a call may set. */
export interface StepOptions {
  retry?: { max_attempts?: number; initial_interval?: string; backoff?: number; max_interval?: string; jitter?: number };
  limits?: { fuel?: number; memory?: string | number; output?: string | number; logs?: string | number; http_requests?: number; http_bytes?: string | number };
  timeout?: string;
  cache?: boolean | { ttl?: string; [field: string]: unknown };
  grants?: Record<string, unknown>;
  env?: Record<string, string>;
  throttle?: Record<string, unknown>;
  idempotency_key?: string;
}

export interface ChildOptions {
  version?: number;
}

export interface RunInfo {
  runId: string;
  workflow: string;
  version: number;
  createdMs: number;
  startedMs: number;
  trigger: unknown;
  token?: string;
  parentRunId?: string;
}

export interface Event<T = unknown> {
  id: string;
  topic: string;
  data: T;
}

export interface Ctx {
  info(): RunInfo;
  step<T = unknown>(name: string, module: string, input: unknown, opts?: StepOptions): Promise<T>;
  child<T = unknown>(name: string, workflow: string, input: unknown, opts?: ChildOptions): Promise<T>;
  startChild(name: string, workflow: string, input: unknown): string;
  sleep(name: string, ms: number): Promise<void>;
  waitForEvent<T = unknown>(name: string, topic: string, timeoutMs?: number): Promise<Event<T>>;
  now(): number;
  random(): bigint;
  log(level: Level, message: string): void;
  patched(id: string): boolean;
}

export const ctx: Ctx;

/** Makes `fn(input, ctx)` the workflow: export the result as `run`. */
export function workflow<I, O>(fn: (input: I, ctx: Ctx) => Promise<O>): (input: string) => Promise<string>;
