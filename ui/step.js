// The selected step: what it is, its input and output, its wait (with
// approve and reject), re-run from it, and every attempt with its logs.

import { post } from './api.js';
import { itemProgress } from './dag.js';
import { badge, bytes, duration, fill, h, json, number, problemText, RUN_ENDED } from './dom.js';

export function stepPanel(panel, run, step, ui) {
  const last = step.attempts[step.attempts.length - 1];
  const facts = [['Kind', step.kind === 'module' ? `module ${step.module}` : step.kind === 'workflow' ? `workflow ${step.workflow}` : step.kind]];
  if (step.needs.length) facts.push(['Needs', step.needs.join(', ')]);
  const progress = itemProgress(step);
  if (progress) facts.push(['Items', progress]);
  if (step.reason) facts.push(['Reason', step.reason]);
  if (step.throttle_key) facts.push(['Throttle key', h('span', { class: 'mono' }, step.throttle_key)]);
  if (step.fuel_consumed) facts.push(['Fuel', number(step.fuel_consumed)]);
  if (step.cached) facts.push(['Cached from', h('a', { href: `#/runs/${step.cached_from}`, class: 'mono' }, step.cached_from)]);
  if (step.reused) facts.push(['Reused', `output of ${run.rerun_of}`]);
  const children = step.child_run_ids || [];
  if (children.length) {
    facts.push(['Child runs', h('ul', { class: 'plain' }, children.map((c) => h('li', null, h('a', { href: `#/runs/${c}`, class: 'mono' }, c))))]);
  }
  const ended = RUN_ENDED.includes(run.status);
  fill(panel,
    h('h2', { tabindex: -1 }, 'Step ', step.id, ' ', badge(step.status)),
    h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', null, k), h('dd', null, v)])),
    step.error ? h('p', { class: 'step-error' }, h('strong', { class: 'kind' }, step.error.kind), ': ', step.error.message) : null,
    step.wait ? approval(step, ui) : null,
    ended ? h('div', { class: 'actions' },
      h('button', { type: 'button', id: 'rerun', onclick: () => ui.rerun({ from: step.id }) }, `Re-run from ${step.id}`)) : null,
    h('div', { class: 'io-pair' },
      h('div', null, h('h3', null, 'Input'), last && last.input !== undefined ? json(last.input, 'Step input') : h('p', { class: 'hint' }, 'Not rendered yet.')),
      h('div', { id: 'step-output' }, h('h3', null, 'Output'),
        step.output !== undefined ? json(step.output, 'Step output') : h('p', { class: 'hint' }, 'No output yet.'))),
    h('h3', null, 'Logs'),
    logs(step.attempts),
    h('h3', null, 'Attempts'),
    attempts(step));
}

function logs(list) {
  const lines = list.flatMap((a) => a.logs.map((line) => ({ ...line, attempt: a.attempt, item: a.item })));
  if (!lines.length) return h('p', { class: 'hint' }, 'Nothing logged.');
  return h('ol', { class: 'logs', 'aria-label': 'Logs' }, lines.map((line) =>
    h('li', { class: `log-${line.level}` },
      h('span', { class: 'level' }, line.level),
      h('span', { class: 'where' }, `#${line.attempt}${line.item !== undefined ? ` [${line.item}]` : ''}`),
      h('span', { class: 'message' }, line.message))));
}

function attempts(step) {
  if (!step.attempts.length) return h('p', { class: 'hint' }, 'No attempts.');
  return h('div', { class: 'scroll' }, h('table', { class: 'attempts' },
    h('thead', null, h('tr', null, ['#', 'Item', 'Status', 'Duration', 'Fuel', 'Peak memory', 'Error kind', 'Error', 'Node', 'Input']
      .map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', null, step.attempts.map((a) => h('tr', { 'data-attempt': a.attempt },
      h('td', null, a.attempt),
      h('td', null, a.item ?? ''),
      h('td', null, badge(a.status)),
      h('td', null, a.duration_us !== undefined ? duration(a.duration_us / 1000) : ''),
      h('td', null, number(a.fuel_consumed)),
      h('td', null, bytes(a.peak_memory)),
      h('td', { class: 'kind' }, a.error ? a.error.kind : ''),
      h('td', { class: 'message' }, a.error ? a.error.message : ''),
      h('td', { class: 'mono' }, a.node || ''),
      h('td', null, a.input !== undefined ? h('details', null, h('summary', null, 'input'), json(a.input, `Input of attempt ${a.attempt}`)) : ''))))));
}

/** A waiting step: post its topic's event, approved or rejected, with typed data. */
function approval(step, ui) {
  const key = step.id;
  const message = h('p', { class: 'error', role: 'alert', id: 'approval-error' });
  const area = h('textarea', {
    id: 'approval-data', rows: 3, spellcheck: 'false',
    oninput: () => ui.typed.set(key, area.value),
  });
  area.value = ui.typed.has(key) ? ui.typed.get(key) : '{}';
  async function send(approved) {
    let data;
    try {
      data = JSON.parse(area.value || '{}');
    } catch (error) {
      fill(message, `The data is not JSON: ${error.message}`);
      return;
    }
    if (data === null || typeof data !== 'object' || Array.isArray(data)) {
      fill(message, 'The data must be a JSON object.');
      return;
    }
    try {
      await post('/v1/events', { topic: step.wait.topic, data: { ...data, approved } });
      fill(message);
      ui.typed.delete(key);
      ui.refresh();
    } catch (error) {
      fill(message, problemText(error));
    }
  }
  return h('form', { class: 'approval', 'aria-labelledby': 'approval-title', onsubmit: (e) => e.preventDefault() },
    h('h3', { id: 'approval-title' }, 'Waiting for an event'),
    h('dl', { class: 'facts' },
      h('dt', null, 'Topic'), h('dd', { class: 'mono' }, step.wait.topic),
      h('dt', null, 'Times out'), h('dd', null, step.wait.timeout_at || 'never')),
    h('label', { for: 'approval-data' }, 'Event data (JSON object; approve adds "approved": true, reject "approved": false)'),
    area, message,
    h('div', { class: 'actions' },
      h('button', { type: 'button', id: 'approve', onclick: () => send(true) }, 'Approve'),
      h('button', { type: 'button', id: 'reject', class: 'danger', onclick: () => send(false) }, 'Reject')));
}
