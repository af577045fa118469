/** A located error of a 422 answer: where the input is wrong, and how. */
export interface LocatedError {
  location: string;
  message: string;
}

/**
 * The server refused a request: its RFC 9457 problem details. `type` is
 * stable (`https://sandstep.dev/problems/invalid-input`, ...), `errors` lists
 * located errors where the server gave them, `field` names the failing field.
 */
export class ProblemError extends Error {
  readonly status: number;
  readonly type: string;
  readonly title: string;
  readonly detail: string;
  readonly field: string | undefined;
  readonly errors: LocatedError[];
  readonly retryAfter: string | undefined;
  readonly body: unknown;

  constructor(problem: {
    status: number;
    type: string;
    title: string;
    detail: string;
    field?: string;
    errors?: LocatedError[];
    retryAfter?: string;
    body?: unknown;
  }) {
    const located = (problem.errors ?? [])
      .slice(0, 5)
      .map((e) => `; ${e.location}: ${e.message}`)
      .join("");
    super(`${problem.status} ${problem.detail || problem.title}${located} (${problem.type})`);
    this.name = "ProblemError";
    this.status = problem.status;
    this.type = problem.type;
    this.title = problem.title;
    this.detail = problem.detail;
    this.field = problem.field;
    this.errors = problem.errors ?? [];
    this.retryAfter = problem.retryAfter;
    this.body = problem.body;
  }

  /** The last part of `type`: `invalid-input`, `not-found`, ... */
  get kind(): string {
    return this.type.slice(this.type.lastIndexOf("/") + 1);
  }
}

/** The error an unsuccessful response stands for (problem+json or not). */
export async function problemFrom(response: Response): Promise<ProblemError> {
  const text = await response.text();
  const retryAfter = response.headers.get("retry-after") ?? undefined;
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  if (body && typeof body === "object" && "type" in body) {
    const p = body as Record<string, unknown>;
    return new ProblemError({
      status: typeof p.status === "number" ? p.status : response.status,
      type: String(p.type),
      title: String(p.title ?? ""),
      detail: String(p.detail ?? ""),
      field: typeof p.field === "string" ? p.field : undefined,
      errors: Array.isArray(p.errors) ? (p.errors as LocatedError[]) : undefined,
      retryAfter,
      body,
    });
  }
  const detail = text.trim().slice(0, 500);
  return new ProblemError({
    status: response.status,
    type: "about:blank",
    title: response.statusText,
    detail: detail || response.statusText,
    retryAfter,
    body: detail,
  });
}
