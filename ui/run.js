// One run: its header and actions, its DAG and the selected step, kept
// current from the run's event stream.

import { download, follow, get, post } from './api.js';
import { Dag, shapeKey } from './dag.js';
import { badge, fill, h, json, number, problemText, RUN_ENDED, runDuration, time } from './dom.js';
import { stepPanel } from './step.js';

export function runPage(main, [id], signal) {
  const header = h('section', { class: 'run-header', 'aria-labelledby': 'run-title' });
  const notice = h('p', { class: 'error', role: 'alert' });
  const graph = h('section', { class: 'graph', 'aria-label': 'Steps' });
  const panel = h('section', { id: 'step-panel', class: 'panel', 'aria-live': 'polite' });
  const io = h('section', { class: 'io' });
  fill(main, header, notice, graph, panel, io);

  let run = null;
  let dag = null;
  let selected = null;
  const typed = new Map();

  const ui = {
    runId: id,
    typed,
    refresh: () => load(),
    show: (message) => fill(notice, message),
  };

  function select(step) {
    selected = step;
    render();
    const target = panel.querySelector('h2');
    if (target) target.focus();
  }

  function render() {
    if (!run) return;
    renderHeader();
    // A code run grows a step per call: build the graph again when it does.
    if (!dag || dag.key !== shapeKey(run.steps)) {
      dag = new Dag(run.steps, select);
      fill(graph, h('h2', { class: 'visually-hidden' }, 'Steps'), h('div', { class: 'scroll' }, dag.el));
    }
    dag.update(run.steps, selected);
    const step = run.steps.find((s) => s.id === selected);
    // Redrawing the panel replaces its heading: keep the keyboard user's
    // focus on it when an event redraws the page under them.
    const headed = document.activeElement !== null && document.activeElement === panel.querySelector('h2');
    if (step) stepPanel(panel, run, step, ui);
    else fill(panel, h('p', { class: 'hint' }, 'Select a step to see its input, output, logs and attempts.'));
    fill(io,
      h('details', null, h('summary', null, 'Run input'), json(run.input, 'Run input')),
      run.output !== null && run.output !== undefined
        ? h('details', { open: true }, h('summary', null, 'Run output'), json(run.output, 'Run output')) : null);
    if (headed) panel.querySelector('h2')?.focus();
  }

  function renderHeader() {
    const ended = RUN_ENDED.includes(run.status);
    const facts = [
      ['Workflow', h('a', { href: `#/workflows/${encodeURIComponent(run.workflow)}?version=${run.version}` }, `${run.workflow} v${run.version}`)],
      ['Status', badge(run.status)],
      ['Created', time(run.created_ms)],
      ['Duration', runDuration(run)],
      ['Fuel', number(run.fuel_consumed) + (run.budget_fuel ? ` of ${number(run.budget_fuel)}` : '')],
    ];
    if (run.upgraded_from) {
      facts.push(['Upgraded from', h('a', { id: 'upgraded-from', href: `#/workflows/${encodeURIComponent(run.workflow)}?version=${run.upgraded_from}` }, `v${run.upgraded_from}`)]);
    }
    if (run.rerun_of) facts.push(['Re-run of', h('a', { href: `#/runs/${run.rerun_of}`, class: 'mono' }, run.rerun_of)]);
    if (run.parent_run_id) facts.push(['Parent run', h('a', { href: `#/runs/${run.parent_run_id}`, class: 'mono' }, run.parent_run_id)]);
    if (run.trigger) facts.push(['Trigger', JSON.stringify(run.trigger)]);
    const actions = h('div', { class: 'actions' });
    if (!ended && run.status !== 'canceling') {
      actions.append(h('button', { type: 'button', id: 'cancel', class: 'danger', onclick: cancel }, 'Cancel run'));
    }
    if (run.status === 'failed') {
      actions.append(h('button', { type: 'button', id: 'rerun-failed', onclick: () => rerun({ failed: true }) }, 'Re-run failed steps'));
    }
    actions.append(h('a', { id: 'download-bundle', href: `/v1/runs/${id}/bundle`, onclick: save(`/v1/runs/${id}/bundle`, `run-${id}.zip`) }, 'Download bundle'));
    if (ended) {
      actions.append(h('a', { id: 'download-receipt', href: `/v1/runs/${id}/receipt`, onclick: save(`/v1/runs/${id}/receipt`, `receipt-${id}.json`) }, 'Receipt'));
    }
    fill(header,
      h('h1', { id: 'run-title' }, 'Run ', h('span', { class: 'mono' }, run.id)),
      h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', null, k), h('dd', null, v)])),
      run.error ? h('p', { class: 'run-error' }, h('strong', null, 'Error: '), run.error) : null,
      actions);
  }

  // A link's click, as a download with the tab's token.
  function save(path, filename) {
    return (event) => {
      event.preventDefault();
      download(path, filename).then(() => fill(notice), (error) => fill(notice, problemText(error)));
    };
  }

  async function cancel() {
    try {
      await post(`/v1/runs/${id}/cancel?wait=0s`);
      fill(notice);
      load();
    } catch (error) {
      fill(notice, problemText(error));
    }
  }

  async function rerun(body) {
    try {
      const next = await post(`/v1/runs/${id}/rerun`, body);
      location.hash = `#/runs/${next.id}`;
    } catch (error) {
      fill(notice, problemText(error));
    }
  }
  ui.rerun = rerun;

  let loading = null;
  let again = false;
  async function load() {
    if (loading) { again = true; return loading; }
    loading = (async () => {
      try {
        run = await get(`/v1/runs/${id}`, signal);
        render();
      } catch (error) {
        if (!signal.aborted) fill(notice, problemText(error));
      }
    })();
    await loading;
    loading = null;
    if (again) { again = false; load(); }
  }

  // Each event refreshes the resource (coalesced); the stream ends with the run.
  let pending = null;
  const changed = () => {
    if (pending) return;
    pending = setTimeout(() => { pending = null; load(); }, 60);
  };
  signal.addEventListener('abort', () => clearTimeout(pending));
  load().then(() => follow(`/v1/runs/${id}/events`, changed, signal)).then(() => { if (!signal.aborted) load(); });
}
