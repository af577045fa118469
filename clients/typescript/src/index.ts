export { Sandstep, VERSION, type Options, type Wait, type StartOptions, type ListRunsOptions } from "./client.js";
export { ProblemError, type LocatedError } from "./errors.js";
export type * from "./types.js";
export { FINAL_EVENTS } from "./types.js";
