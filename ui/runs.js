// The runs list: filters (workflow, status, time range) kept in the URL,
// cursor pages, and the first page refreshed every 2 s.

import { get } from './api.js';
import { badge, fill, h, problemText, runDuration, time } from './dom.js';

const STATUSES = ['queued', 'running', 'paused', 'completed', 'failed', 'canceling', 'canceled'];
const REFRESH_MS = 2000;

/** `datetime-local` text as RFC 3339 (the browser's zone), or null. */
function rfc3339(local) {
  if (!local) return null;
  const at = new Date(local);
  return Number.isNaN(at.getTime()) ? null : at.toISOString();
}

export async function runsPage(main, [query], signal) {
  const params = new URLSearchParams(query || '');
  const filters = {
    workflow: params.get('workflow') || '',
    status: params.get('status') || '',
    after: params.get('after') || '',
    before: params.get('before') || '',
  };
  const cursors = [null];
  const status = h('p', { class: 'error', role: 'alert' });
  const body = h('tbody');
  const newer = h('button', { type: 'button', disabled: true }, 'Newer');
  const older = h('button', { type: 'button', disabled: true }, 'Older');
  const workflowSelect = h('select', { id: 'f-workflow', name: 'workflow' }, h('option', { value: '' }, 'Any workflow'));
  const statusSelect = h('select', { id: 'f-status', name: 'status' }, h('option', { value: '' }, 'Any status'),
    STATUSES.map((s) => h('option', { value: s, selected: s === filters.status }, s)));
  const after = h('input', { id: 'f-after', name: 'after', type: 'datetime-local', value: filters.after });
  const before = h('input', { id: 'f-before', name: 'before', type: 'datetime-local', value: filters.before });
  const form = h('form', {
    class: 'filters', 'aria-label': 'Filter runs',
    onsubmit: (event) => {
      event.preventDefault();
      const next = new URLSearchParams();
      for (const [key, el] of [['workflow', workflowSelect], ['status', statusSelect], ['after', after], ['before', before]]) {
        if (el.value) next.set(key, el.value);
      }
      location.hash = `#/runs?${next}`;
    },
  },
  h('label', { for: 'f-workflow' }, 'Workflow'), workflowSelect,
  h('label', { for: 'f-status' }, 'Status'), statusSelect,
  h('label', { for: 'f-after' }, 'Created after'), after,
  h('label', { for: 'f-before' }, 'Created before'), before,
  h('button', { type: 'submit' }, 'Filter'));
  fill(main, h('h1', null, 'Runs'), form, status,
    h('div', { class: 'scroll' }, h('table', { class: 'runs' },
      h('caption', { class: 'visually-hidden' }, 'Runs, newest first'),
      h('thead', null, h('tr', null, ['Run', 'Workflow', 'Status', 'Created', 'Duration', 'Steps'].map((c) => h('th', { scope: 'col' }, c)))),
      body)),
    h('div', { class: 'pager' }, newer, older));

  get('/v1/workflows', signal).then((answer) => {
    for (const w of answer.workflows) {
      workflowSelect.append(h('option', { value: w.name, selected: w.name === filters.workflow }, w.name));
    }
  }).catch(() => {});

  let page = 0;
  let timer = null;
  async function load() {
    clearTimeout(timer);
    const q = new URLSearchParams({ limit: '50' });
    if (filters.workflow) q.set('workflow', filters.workflow);
    if (filters.status) q.set('status', filters.status);
    if (rfc3339(filters.after)) q.set('created_after', rfc3339(filters.after));
    if (rfc3339(filters.before)) q.set('created_before', rfc3339(filters.before));
    if (cursors[page]) q.set('cursor', cursors[page]);
    try {
      const answer = await get(`/v1/runs?${q}`, signal);
      fill(status);
      cursors[page + 1] = answer.next_cursor || null;
      older.disabled = !answer.next_cursor;
      newer.disabled = page === 0;
      fill(body, answer.runs.length ? answer.runs.map(row) : h('tr', null, h('td', { colspan: 6 }, 'No runs match.')));
      if (!performance.getEntriesByName('runs-shown').length) performance.mark('runs-shown');
    } catch (error) {
      if (signal.aborted) return;
      fill(status, problemText(error));
    }
    // The first page follows new runs and status changes.
    if (page === 0 && !signal.aborted) timer = setTimeout(load, REFRESH_MS);
  }
  older.addEventListener('click', () => { page += 1; load(); });
  newer.addEventListener('click', () => { page = Math.max(0, page - 1); load(); });
  signal.addEventListener('abort', () => clearTimeout(timer));
  load();
}

function row(run) {
  const steps = run.steps;
  const ended = steps.succeeded + steps.failed + steps.skipped + steps.canceled;
  const counts = [`${ended}/${steps.total}`];
  if (steps.failed) counts.push(`${steps.failed} failed`);
  if (steps.skipped) counts.push(`${steps.skipped} skipped`);
  return h('tr', { 'data-run': run.id, 'data-status': run.status },
    h('td', null, h('a', { href: `#/runs/${run.id}`, class: 'mono' }, run.id)),
    h('td', null, `${run.workflow} v${run.version}`),
    h('td', null, badge(run.status)),
    h('td', null, time(run.created_ms)),
    h('td', null, runDuration(run)),
    h('td', { class: 'steps' }, counts.join(', ')));
}
