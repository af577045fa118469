// Types for Sandstep's step world (wit/step.wit) as componentize-js maps it:
// records become objects with camelCase fields, enums become strings, and an
// exported `result<string, step-error>` is the returned string or a thrown
// step error.
declare module 'sandstep:step/host@0.1.0' {
  export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
  export function log(level: Level, message: string): void;
}

declare module 'sandstep:step/types@0.1.0' {
  export interface Context {
    runId: string;
    stepId: string;
    attempt: number;
    idempotencyKey: string;
  }
  export interface StepError {
    message: string;
    retryable: boolean;
  }
}
