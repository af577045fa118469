// fetch-json: a Sandstep step in JavaScript that calls an API with `fetch`.
//
// Input:  {"url": "https://api.example.com/users/7"}, or with "body" (any
//         JSON) to POST it ("method" overrides).
// Output: {"status": 200, "body": <the JSON answered>}
//
// `fetch` is standard wasi:http underneath: the step must be granted the
// host (`grants: { http: [api.example.com] }`), which the server must allow
// (`sandstep serve --allow-http api.example.com`). Built with
// `--disable fetch-event` only, so the component keeps its wasi:http imports.
// A refused request, a network error or a 5xx answer is a retryable step
// error; a 4xx answer or a body that is not JSON is not.

class StepError {
  constructor(message, retryable) {
    this.message = message;
    this.retryable = retryable;
  }
}

export async function run(ctx, input) {
  let request;
  try {
    request = JSON.parse(input);
  } catch (e) {
    throw new StepError(`input is not JSON: ${e.message}`, false);
  }
  const { url, body } = request;
  if (typeof url !== 'string') throw new StepError('`url` must be a string', false);
  const method = request.method ?? (body === undefined ? 'GET' : 'POST');
  let response;
  try {
    response = await fetch(url, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new StepError(`${method} ${url} failed: ${e.message}`, true);
  }
  if (response.status >= 400) {
    throw new StepError(`${method} ${url} answered ${response.status}`, response.status >= 500);
  }
  const text = await response.text();
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new StepError(`${url} did not answer JSON: ${e.message}`, false);
  }
  return JSON.stringify({ status: response.status, body: parsed });
}
