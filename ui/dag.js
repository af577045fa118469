// A run's steps as a graph laid out by dependency level: a step's column is
// one past the deepest step it needs. A code run's calls are laid out in
// call order instead, one row after another, calls submitted together side
// by side. Nodes are built once per set of steps and updated in place, so
// live updates keep the keyboard focus where it is.

import { badge, fill, h, svg } from './dom.js';

const W = 210;
const H = 82;
const GAP_X = 56;
const GAP_Y = 18;

/** Column of each step: 0 without needs, else one past its deepest need. */
export function levels(steps) {
  const byId = new Map(steps.map((s) => [s.id, s]));
  const level = new Map();
  const visit = (step) => {
    if (level.has(step.id)) return level.get(step.id);
    level.set(step.id, 0);
    const needs = step.needs.map((n) => byId.get(n)).filter(Boolean);
    const l = needs.length ? 1 + Math.max(...needs.map(visit)) : 0;
    level.set(step.id, l);
    return l;
  };
  steps.forEach(visit);
  return level;
}

/** What a node says under its id: the module, topic or child workflow. */
function what(step) {
  switch (step.kind) {
    case 'module': return step.module;
    case 'workflow': return `workflow ${step.workflow}`;
    case 'wait': return step.wait ? `wait for ${step.wait.topic}` : 'wait';
    default: return step.kind;
  }
}

/** for_each progress: items that succeeded (run or cached) of all. */
export function itemProgress(step) {
  if (step.items === undefined || step.items === null) return null;
  const done = new Set(step.attempts.filter((a) => a.status === 'succeeded').map((a) => a.item));
  const ok = Math.min(step.items, done.size + (step.cached_items || 0));
  return `items ${ok}/${step.items}`;
}

/** Where each step goes: by dependency level, or a code run's calls by row. */
function layout(steps) {
  const place = new Map();
  const counts = [];
  const calls = steps.length > 0 && steps.every((s) => s.call !== undefined && s.call !== null);
  const level = calls ? null : levels(steps);
  for (const step of steps) {
    const l = calls ? (step.row ?? 0) : level.get(step.id);
    counts[l] = (counts[l] || 0) + 1;
    const across = (calls ? counts[l] - 1 : l) * (W + GAP_X);
    const down = (calls ? l : counts[l] - 1) * (H + GAP_Y);
    place.set(step.id, { x: across, y: down });
  }
  const widest = Math.max(...counts.filter(Boolean), 1);
  const columns = calls ? widest : Math.max(1, counts.length);
  const rows = calls ? Math.max(1, counts.length) : widest;
  return { place, calls, width: columns * (W + GAP_X) - GAP_X, height: rows * (H + GAP_Y) - GAP_Y };
}

/** A key that changes when the graph's shape does (new calls, new rows). */
export function shapeKey(steps) {
  return steps.map((s) => `${s.id}:${s.row ?? ''}`).join('|');
}

export class Dag {
  constructor(steps, onSelect) {
    this.nodes = new Map();
    this.key = shapeKey(steps);
    const { place, calls, width, height } = layout(steps);
    const edges = svg('svg', { class: 'edges', width, height, 'aria-hidden': 'true' });
    const label = calls ? 'Calls in call order' : 'Steps by dependency level';
    this.el = h('div', { class: 'dag', role: 'group', 'aria-label': label });
    this.el.style.width = `${width}px`;
    this.el.style.height = `${height}px`;
    this.el.append(edges);
    for (const step of steps) {
      const to = place.get(step.id);
      for (const need of step.needs) {
        const from = place.get(need);
        if (!from) continue;
        const x1 = from.x + W;
        const y1 = from.y + H / 2;
        const x2 = to.x;
        const y2 = to.y + H / 2;
        const mid = (x1 + x2) / 2;
        edges.append(svg('path', { d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, 'data-from': need, 'data-to': step.id }));
      }
      const button = h('button', { type: 'button', class: 'select', 'aria-pressed': 'false', onclick: () => onSelect(step.id) });
      const links = h('div', { class: 'links' });
      const node = h('div', { class: 'node', 'data-step': step.id }, button, links);
      node.style.left = `${to.x}px`;
      node.style.top = `${to.y}px`;
      node.style.width = `${W}px`;
      node.style.height = `${H}px`;
      this.el.append(node);
      this.nodes.set(step.id, { node, button, links });
    }
  }

  /** Shows each step's status (colour and word), progress and links. */
  update(steps, selected) {
    for (const step of steps) {
      const parts = this.nodes.get(step.id);
      if (!parts) continue;
      parts.node.dataset.status = step.status;
      parts.node.className = `node st-${step.status}${step.id === selected ? ' selected' : ''}`;
      parts.button.setAttribute('aria-pressed', String(step.id === selected));
      const progress = itemProgress(step);
      fill(parts.button,
        h('span', { class: 'id' }, step.id),
        h('span', { class: 'what' }, what(step)),
        h('span', { class: 'line' }, badge(step.status), progress ? h('span', { class: 'progress' }, progress) : null));
      const children = step.child_run_ids || [];
      fill(parts.links, children.slice(0, 3).map((id, i) =>
        h('a', { href: `#/runs/${id}`, title: `child run ${id}` }, children.length === 1 ? 'child run' : `child ${i + 1}`)),
      children.length > 3 ? h('span', null, `+${children.length - 3}`) : null);
    }
  }
}
