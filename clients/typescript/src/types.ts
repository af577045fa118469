/** What the API answers. Field names are the server's own (snake_case). */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export type RunStatus = "queued" | "running" | "paused" | "canceling" | "completed" | "failed" | "canceled";

/** A run as the server stores it (`GET /v1/runs/{id}`). */
export interface Run {
  id: string;
  workflow: string;
  version: number;
  status: RunStatus;
  input: Json;
  output: Json;
  /** Why the run failed, e.g. `step charge failed: guest_error: ...`. */
  error: string | null;
  created_ms: number;
  updated_ms: number;
  fuel_consumed?: number;
  rerun_of?: string;
  upgraded_from?: number;
  trigger?: Json;
  /** The steps with their attempts (`runs.get`); counts per status in a listing. */
  steps: Step[] | StepCounts;
  [key: string]: unknown;
}

export interface Step {
  id: string;
  kind: string;
  status: string;
  output?: Json;
  error?: { kind: string; message: string; [key: string]: unknown };
  attempts?: Array<Record<string, unknown>>;
  [key: string]: unknown;
}

export interface StepCounts {
  total: number;
  succeeded: number;
  failed: number;
  skipped: number;
  canceled: number;
}

/** One event of a run's journal (`GET /v1/runs/{id}/events`). */
export interface RunEvent {
  seq: number;
  run_id: string;
  at_ms: number;
  /** `run.queued`, `step.started`, `step.waiting`, `run.completed`, ... */
  type: string;
  [key: string]: unknown;
}

export const FINAL_EVENTS: ReadonlySet<string> = new Set(["run.completed", "run.failed", "run.canceled"]);

export interface Module {
  name: string;
  tag: string;
  digest: string;
  kind: string;
  size: number;
  imports: string[];
  exports: string[];
  updated_ms: number;
}

export interface Applied {
  name: string;
  version: number;
  created: boolean;
  steps: number;
}

export interface Started {
  id: string;
  created: boolean;
}

export interface Sent {
  id: string;
  created: boolean;
}

/** What a batch start takes per run. */
export interface BatchItem {
  input?: Json;
  idempotency_key?: string;
}

export type Obj = Record<string, unknown>;
