// Workflows: the list, and one workflow's versions, source, triggers with
// their next fire times, and a start form built from its declared inputs.

import { get, post } from './api.js';
import { add, fill, h, problemText, time } from './dom.js';

export async function workflowsPage(main, _params, signal) {
  const body = h('tbody');
  const status = h('p', { class: 'error', role: 'alert' });
  fill(main, h('h1', null, 'Workflows'), status,
    h('div', { class: 'scroll' }, h('table', null,
      h('thead', null, h('tr', null, ['Name', 'Latest version', 'Applied'].map((c) => h('th', { scope: 'col' }, c)))), body)));
  try {
    const { workflows } = await get('/v1/workflows', signal);
    fill(body, workflows.length ? workflows.map((w) => h('tr', null,
      h('td', null, h('a', { href: `#/workflows/${encodeURIComponent(w.name)}` }, w.name)),
      h('td', null, `v${w.version}`),
      h('td', null, time(w.created_ms)))) : h('tr', null, h('td', { colspan: 3 }, 'No workflows yet.')));
  } catch (error) {
    if (!signal.aborted) fill(status, problemText(error));
  }
}

export async function workflowPage(main, [name, query], signal) {
  const version = new URLSearchParams(query || '').get('version');
  const status = h('p', { class: 'error', role: 'alert' });
  fill(main, h('h1', null, 'Workflow ', name), status);
  let w;
  try {
    w = await get(`/v1/workflows/${encodeURIComponent(name)}${version ? `?version=${encodeURIComponent(version)}` : ''}`, signal);
  } catch (error) {
    if (!signal.aborted) fill(status, problemText(error));
    return;
  }
  const latest = Math.max(...w.versions);
  const versions = h('nav', { class: 'versions', 'aria-label': 'Versions' }, 'Versions: ',
    w.versions.map((v) => h('a', {
      href: `#/workflows/${encodeURIComponent(name)}?version=${v}`,
      'aria-current': v === w.version ? 'page' : null,
    }, `v${v}`)));
  add(main,
    versions,
    w.description ? h('p', null, w.description) : null,
    h('p', null, `Version ${w.version} applied ${time(w.created_ms)}. `,
      h('a', { href: `#/runs?workflow=${encodeURIComponent(name)}` }, 'Its runs')),
    h('h2', null, 'Triggers'),
    triggers(w.triggers, w.version === latest),
    h('h2', null, 'Agents (MCP)'),
    w.mcp
      ? h('p', { class: 'mcp' }, 'An MCP tool: agents call ', h('span', { class: 'mono' }, w.mcp.tool),
        ' at ', h('span', { class: 'mono' }, 'POST /mcp'), w.mcp.description ? ` — ${w.mcp.description}` : null)
      : h('p', { class: 'hint' }, 'Not an MCP tool (mcp: true in the definition offers it to agents).'),
    h('h2', null, 'Start a run'),
    w.version === latest ? startForm(w) : h('p', { class: 'hint' }, `Runs start on the latest version (v${latest}).`),
    h('h2', null, 'Source'),
    h('pre', { class: 'source', tabindex: 0, 'aria-label': 'Workflow source' }, w.source));
}

function triggers(list, live) {
  if (!list.length) return h('p', { class: 'hint' }, 'None: runs start through the API or the CLI.');
  return h('ul', { class: 'triggers' }, list.map((t) => {
    if (t.schedule) {
      return h('li', null, h('span', { class: 'mono' }, t.schedule), ` (${t.timezone}) — next: `,
        t.next_fire || (live ? 'none' : 'not active (an older version)'));
    }
    if (t.webhook) {
      return h('li', { class: 'hook' }, 'Webhook ', h('span', { class: 'mono' }, `POST /hooks/${t.webhook}`),
        ` (signature: ${t.signature})`, t.event ? [' — posts event ', h('span', { class: 'mono' }, t.event)] : ' — starts a run');
    }
    return h('li', null, 'Event ', h('span', { class: 'mono' }, t.on_event));
  }));
}

/** One field per declared input; the API's errors appear beside them. */
function startForm(w) {
  const fields = [];
  const general = h('p', { class: 'error', role: 'alert', id: 'start-error' });
  for (const [name, def] of Object.entries(w.inputs)) {
    const id = `input-${name}`;
    const error = h('p', { class: 'error field-error', id: `${id}-error`, role: 'alert' });
    let control;
    if (def.type === 'boolean') {
      control = h('select', { id, 'aria-describedby': `${id}-error` },
        h('option', { value: '' }, def.default !== undefined ? `default (${def.default})` : 'not given'),
        h('option', { value: 'true' }, 'true'), h('option', { value: 'false' }, 'false'));
    } else if (['object', 'array', 'any'].includes(def.type)) {
      control = h('textarea', { id, rows: 3, spellcheck: 'false', 'aria-describedby': `${id}-error`, placeholder: def.default !== undefined ? JSON.stringify(def.default) : 'JSON' });
    } else {
      control = h('input', {
        id, type: def.type === 'string' ? 'text' : 'number', step: def.type === 'integer' ? '1' : 'any',
        'aria-describedby': `${id}-error`, 'aria-required': def.required ? 'true' : null,
        placeholder: def.default !== undefined ? String(def.default) : null,
      });
    }
    fields.push({ name, def, control, error });
  }
  async function submit(event) {
    event.preventDefault();
    for (const f of fields) fill(f.error);
    fill(general);
    const input = {};
    for (const { name, def, control, error } of fields) {
      const text = control.value;
      if (text === '') continue;
      if (def.type === 'string') input[name] = text;
      else if (def.type === 'number' || def.type === 'integer') input[name] = Number(text);
      else if (def.type === 'boolean') input[name] = text === 'true';
      else {
        try {
          input[name] = JSON.parse(text);
        } catch (e) {
          fill(error, `${name} is not JSON: ${e.message}`);
          return;
        }
      }
    }
    try {
      const run = await post(`/v1/workflows/${encodeURIComponent(w.name)}/runs`, { input });
      location.hash = `#/runs/${run.id}`;
    } catch (error) {
      showErrors(error, fields, general);
    }
  }
  return h('form', { class: 'start', novalidate: true, onsubmit: submit },
    fields.length ? fields.map(({ name, def, control, error }) => h('div', { class: 'field' },
      h('label', { for: control.id }, name, ` (${def.type}${def.required ? ', required' : ''})`),
      def.description ? h('p', { class: 'hint' }, def.description) : null,
      control, error)) : h('p', { class: 'hint' }, 'This workflow declares no inputs.'),
    general,
    h('button', { type: 'submit', id: 'start' }, 'Start run'));
}

/** Each located API error beside its field (`input.NAME`), the rest above the button. */
function showErrors(error, fields, general) {
  const located = (error.problem && error.problem.errors) || [];
  const rest = [];
  for (const e of located) {
    const field = fields.find((f) => e.location === `input.${f.name}`);
    if (field) field.error.append(h('span', null, e.message));
    else rest.push(`${e.location}: ${e.message}`);
  }
  if (!located.length) {
    const field = fields.find((f) => error.problem && error.problem.field === `input.${f.name}`);
    if (field) fill(field.error, problemText(error));
    else rest.push(problemText(error));
  }
  fill(general, rest.join('\n'));
}
