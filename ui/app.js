// Sandstep's web UI: a page per route of the hash (#/runs, #/runs/ID,
// #/workflows, #/workflows/NAME, #/modules), each using only /v1.

import { setToken, token } from './api.js';
import { fill, h } from './dom.js';
import { runsPage } from './runs.js';
import { runPage } from './run.js';
import { workflowPage, workflowsPage } from './workflows.js';
import { modulesPage } from './modules.js';

const routes = [
  [/^#\/runs\/([^/?]+)$/, 'runs', runPage],
  [/^#\/workflows\/([^/?]+)(?:\?(.*))?$/, 'workflows', workflowPage],
  [/^#\/workflows$/, 'workflows', workflowsPage],
  [/^#\/modules$/, 'modules', modulesPage],
  [/^(?:#\/runs)?(?:\?(.*))?$/, 'runs', runsPage],
];

const main = document.getElementById('main');
let leave = null;
let asking = false;

function route() {
  if (leave) leave.abort();
  leave = new AbortController();
  asking = false;
  const hash = location.hash || '#/runs';
  for (const [pattern, section, page] of routes) {
    const match = hash.match(pattern);
    if (!match) continue;
    for (const link of document.querySelectorAll('nav a')) {
      if (link.dataset.section === section) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    fill(main);
    page(main, match.slice(1).map((m) => (m === undefined ? m : decodeURIComponent(m))), leave.signal);
    return;
  }
  fill(main, h('h1', null, 'Not found'), h('p', null, 'No page here. ', h('a', { href: '#/runs' }, 'See the runs.')));
}

/** The server wants a token: hide every page and ask for one. */
function askForToken() {
  if (asking) return;
  asking = true;
  if (leave) leave.abort();
  const had = token() !== null;
  setToken(null);
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'off', required: true });
  const form = h('form', {
    class: 'token-prompt', 'aria-labelledby': 'token-title',
    onsubmit: (event) => {
      event.preventDefault();
      setToken(input.value.trim());
      updateForget();
      route();
    },
  },
  h('h1', { id: 'token-title' }, 'API token'),
  h('p', null, had ? 'The server refused that token. Enter another.' : 'This server needs an API token. It is kept in this tab only.'),
  h('label', { for: 'token' }, 'Token'), input,
  h('button', { type: 'submit' }, 'Continue'));
  fill(main, form);
  updateForget();
  input.focus();
}

const forget = document.getElementById('forget-token');
function updateForget() {
  forget.hidden = token() === null;
}
forget.addEventListener('click', () => {
  setToken(null);
  updateForget();
  route();
});

window.addEventListener('sandstep:unauthorized', askForToken);
window.addEventListener('hashchange', route);
updateForget();
route();
