// The public /v1 API, with the tab's bearer token when the server wants one.

const KEY = 'sandstep.token';

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

/** A problem+json answer (or a failed request). */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem && problem.detail ? problem.detail : `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

function headers(extra) {
  const all = { Accept: 'application/json', ...extra };
  const t = token();
  if (t) all.Authorization = `Bearer ${t}`;
  return all;
}

/** One API call; answers the JSON body. A 401 asks for a token. */
export async function api(method, path, body, signal) {
  const init = { method, headers: headers(body === undefined ? {} : { 'Content-Type': 'application/json' }), signal };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text };
  }
  if (response.status === 401) window.dispatchEvent(new CustomEvent('sandstep:unauthorized'));
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const get = (path, signal) => api('GET', path, undefined, signal);

/** Saves what GET `path` answers as `filename` (with the tab's token, which a plain link would not send). */
export async function download(path, filename) {
  const response = await fetch(path, { headers: headers({ Accept: '*/*' }) });
  if (response.status === 401) window.dispatchEvent(new CustomEvent('sandstep:unauthorized'));
  if (!response.ok) {
    const text = await response.text();
    let problem = null;
    try { problem = JSON.parse(text); } catch { problem = { detail: text }; }
    throw new ApiError(response.status, problem);
  }
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
export const post = (path, body) => api('POST', path, body);

/**
 * Follows a run's event stream (SSE over fetch, so the token goes in a
 * header): calls `onEvent(event)` for each, resumes after a dropped
 * connection from the last id, and resolves when the run's stream ends.
 */
export async function follow(path, onEvent, signal) {
  let last = null;
  for (;;) {
    try {
      const extra = { Accept: 'text/event-stream' };
      if (last !== null) extra['Last-Event-ID'] = last;
      const response = await fetch(path, { headers: headers(extra), signal });
      if (response.status === 401) window.dispatchEvent(new CustomEvent('sandstep:unauthorized'));
      if (!response.ok) throw new ApiError(response.status, null);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      let data = [];
      let id = null;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value;
        let newline;
        while ((newline = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, newline).replace(/\r$/, '');
          buffer = buffer.slice(newline + 1);
          if (line === '') {
            if (data.length) {
              if (id !== null) last = id;
              onEvent(JSON.parse(data.join('\n')));
            }
            data = [];
          } else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          else if (line.startsWith('id:')) id = line.slice(3).trim();
        }
      }
    } catch (error) {
      if (signal.aborted || (error instanceof ApiError && error.status < 500)) return;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}
