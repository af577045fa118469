// Modules: each name and tag with its digest, kind, size, imports and exports.

import { get } from './api.js';
import { bytes, fill, h, problemText, time } from './dom.js';

export async function modulesPage(main, _params, signal) {
  const body = h('tbody');
  const status = h('p', { class: 'error', role: 'alert' });
  fill(main, h('h1', null, 'Modules'), status,
    h('div', { class: 'scroll' }, h('table', { class: 'modules' },
      h('thead', null, h('tr', null, ['Name', 'Tag', 'Digest', 'Kind', 'Size', 'Imports', 'Exports', 'Updated']
        .map((c) => h('th', { scope: 'col' }, c)))), body)));
  try {
    const { modules } = await get('/v1/modules', signal);
    const list = (items) => h('ul', { class: 'plain mono' }, items.map((i) => h('li', null, i)));
    fill(body, modules.length ? modules.map((m) => h('tr', null,
      h('td', null, m.name),
      h('td', null, m.tag),
      h('td', { class: 'mono digest', title: m.digest }, m.digest.slice(0, 19)),
      h('td', null, m.kind),
      h('td', null, bytes(m.size)),
      h('td', null, list(m.imports)),
      h('td', null, list(m.exports)),
      h('td', null, time(m.updated_ms)))) : h('tr', null, h('td', { colspan: 8 }, 'No modules yet.')));
  } catch (error) {
    if (!signal.aborted) fill(status, problemText(error));
  }
}
