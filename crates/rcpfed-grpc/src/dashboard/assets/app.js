// rcpfed dashboard. Reads /dashboard/api/* and draws it. Text from documents goes into the
// page only through textContent and setAttribute, never as HTML.
'use strict';

const SVG = 'http://www.w3.org/2000/svg';
const PALETTE = ['#1b6ac9', '#c2410c', '#15803d', '#7c3aed', '#b91c1c', '#0e7490', '#a16207', '#be185d'];
const MAX_SERIES_DRAWN = 40;

// --- small helpers -------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  for (const child of children) append(node, child);
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  for (const child of children) append(node, child);
  return node;
}

function append(node, child) {
  if (child === undefined || child === null || child === false) return;
  if (Array.isArray(child)) { child.forEach((c) => append(node, c)); return; }
  node.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

function byId(id) { return document.getElementById(id); }

async function api(path) {
  const response = await fetch('/dashboard/api/' + path, { headers: { Accept: 'application/json' } });
  if (!response.ok) {
    const text = await response.text();
    throw new Error(response.status + ' ' + text.trim());
  }
  return response.json();
}

function showError(node, what, error) {
  clear(node);
  append(node, el('p', { class: 'error', role: 'alert' }, what + ' could not be loaded: ' + error.message));
}

function time(ms) {
  if (ms === null || ms === undefined) return '—';
  const d = new Date(ms);
  return isNaN(d) ? '—' : d.toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
}

function shortHex(hex) { return hex ? hex.slice(0, 12) + '…' : '—'; }

const MULT_WORDS = { 3: 'thousand', 6: 'million', 9: 'bn', 12: 'trillion' };

function plainNumber(v) {
  return Number(v).toLocaleString('en-US', { maximumFractionDigits: 6 });
}

// "275 million persons", "647 bn current USD", "8,938 persons"; "deleted" for a tombstone.
function formatValue(o) {
  if (!o || o.value === null || o.value === undefined) return 'deleted';
  let text = plainNumber(o.value);
  if (o.unit_mult) text += MULT_WORDS[o.unit_mult] ? ' ' + MULT_WORDS[o.unit_mult] : ' ×10^' + o.unit_mult;
  if (o.unit_measure) text += ' ' + o.unit_measure;
  return text;
}

function scaled(o) { return o.value * Math.pow(10, o.unit_mult || 0); }

function keyText(k) {
  if (!k) return '—';
  const dims = (k.dimensions || []).map((d) => d.id + '=' + d.value);
  return [k.indicator, k.ref_area, k.time_period].concat(dims).join(' · ');
}

function table(node, head, rows) {
  clear(node);
  append(node, el('thead', {}, el('tr', {}, head.map((h) => el('th', { scope: 'col' }, h)))));
  const body = el('tbody');
  for (const row of rows) {
    append(body, el('tr', {}, row.map((cell, i) => (i === 0 ? el('th', { scope: 'row' }, cell) : el('td', {}, cell)))));
  }
  append(node, body);
}

function provenanceLine(p) {
  if (!p) return '—';
  return el('span', { class: 'prov' },
    p.node_id + ' · signed statement ',
    el('code', { title: p.statement_digest }, shortHex(p.statement_digest)),
    ' · log index ' + p.log_index);
}

// --- state shared between sections ----------------------------------------------------------

const memberNames = new Map();
// Members that publish: the rows of the coverage matrix, reporting or not.
const publishers = [];

// --- sections --------------------------------------------------------------------------------

async function loadOverview() {
  const o = await api('overview');
  byId('overview').textContent = 'Served by the ' + o.server + ' ' + o.server_id + ' of federation ' + o.federation_id +
    ' · registry version ' + o.registry_version + ' · feed size ' + o.feed_size;
}

async function loadMembers() {
  const m = await api('members');
  for (const member of m.members) {
    memberNames.set(member.id, member.name);
    if (member.roles.includes('publisher')) publishers.push(member.id);
  }
  byId('members-note').textContent = m.members.length + ' members in registry version ' +
    m.registry_version + ' (hub: ' + m.hub_id + ')';
  table(byId('members-table'), ['Member', 'Name', 'Kind', 'Roles', 'Signing keys', 'Member states'],
    m.members.map((member) => [
      member.id,
      member.name,
      member.kind,
      member.roles.join(', '),
      el('ul', { class: 'plain' }, member.keys.map((k) =>
        el('li', {}, el('code', {}, k.key_id), ' ', el('span', { class: 'badge ' + k.status }, k.status),
          k.status_at_ms ? ' since ' + time(k.status_at_ms) : ''))),
      member.states.length ? member.states.map((s) => s.iso3).join(' ') : '—',
    ]));
}

async function loadLog() {
  const l = await api('log');
  byId('log-viewpoint').textContent = 'Shown: ' + l.viewpoint + '.';
  const facts = clear(byId('log-summary'));
  const fact = (name, value) => append(facts, [el('dt', {}, name), el('dd', {}, value)]);
  if (!l.checkpoint) {
    fact('Checkpoint', 'the log is empty');
  } else {
    fact('Tree size', String(l.checkpoint.size));
    fact('Root hash', el('code', { class: 'hash' }, l.checkpoint.root));
    if (l.checkpoint.created_at_ms !== null) fact('Signed at', time(l.checkpoint.created_at_ms));
    if (l.quorum) fact('Cosignatures', l.cosignatures.length + ' (final at ' + l.quorum + ')');
    byId('log-note').textContent = l.checkpoint.note;
  }
  if (l.quorum) fact('Latest final checkpoint', l.final_size === null ? 'none yet' : 'tree size ' + l.final_size);
  table(byId('log-cosignatures'), ['Witness', 'Cosigned at'],
    l.cosignatures.map((c) => [c.witness_id, time(c.timestamp_ms)]));
  table(byId('log-witnesses'), ['Witness', 'State', 'Largest size cosigned'],
    l.witnesses.map((w) => [w.id, w.state, w.cosigned_size === null ? '—' : String(w.cosigned_size)]));
}

// The browser's first language the summary is written in: the same tag, else the same
// primary language ("pt-BR" reads "pt" or "pt-PT"); English next; else the first one given.
function preferredLanguage(languages) {
  const primary = (tag) => tag.toLowerCase().split('-')[0];
  const wanted = (navigator.languages || [navigator.language || 'en']).concat(['en']);
  for (const w of wanted) {
    const same = languages.find((l) => l.toLowerCase() === w.toLowerCase()) ||
      languages.find((l) => primary(l) === primary(w));
    if (same) return same;
  }
  return languages[0];
}

function policyCard(p) {
  const languages = [];
  for (const t of p.title.concat(p.summary)) if (!languages.includes(t.language)) languages.push(t.language);
  const title = el('h4', { class: 'policy-title' });
  const summary = el('p', { class: 'policy-summary' });
  const select = el('select', { class: 'lang', 'aria-label': 'Language of this summary' },
    languages.map((l) => el('option', { value: l }, l)));
  const show = (language) => {
    // A text missing in this language falls back to the first one written.
    const pick = (texts) => texts.find((t) => t.language === language) || texts[0];
    for (const [node, texts] of [[title, p.title], [summary, p.summary]]) {
      const t = pick(texts);
      node.textContent = t ? t.text : '';
      node.setAttribute('lang', t ? t.language : '');
      node.setAttribute('dir', t ? t.dir : 'ltr');
    }
  };
  select.addEventListener('change', () => show(select.value));
  const initial = preferredLanguage(languages);
  select.value = initial;
  show(initial);
  const refs = el('ul', { class: 'plain' }, p.references.map((r) => {
    let safe = null;
    try { const u = new URL(r.url); if (u.protocol === 'https:' || u.protocol === 'http:') safe = u.href; } catch (e) { safe = null; }
    return el('li', {}, safe ? el('a', { href: safe, rel: 'noopener noreferrer external' }, r.title || safe) : r.title);
  }));
  return el('article', { class: 'card policy', 'data-document': p.document },
    el('div', { class: 'card-head' }, title, select),
    summary,
    el('dl', { class: 'facts' },
      el('dt', {}, 'Status'), el('dd', {}, p.status),
      el('dt', {}, 'Meeting'), el('dd', {}, (p.meeting || '—') + (p.meeting_date ? ' (' + p.meeting_date + ')' : '')),
      el('dt', {}, 'GCM objectives'), el('dd', {}, p.gcm_objectives.join(', ') || '—'),
      el('dt', {}, 'SDG targets'), el('dd', {}, p.sdg_targets.join(', ') || '—'),
      el('dt', {}, 'Countries'), el('dd', {}, p.countries.join(' ') || '—'),
      el('dt', {}, 'Signed statement'), el('dd', {},
        el('code', { title: p.digest }, shortHex(p.digest)), ' · revision ' + p.revision + ' · log index ' + p.log_index)),
    p.references.length ? refs : null);
}

async function loadPolicies() {
  const data = await api('policies');
  const list = clear(byId('policy-list'));
  byId('policies-note').textContent = data.total_documents + ' policy documents, latest revision of each' +
    (data.truncated ? ' (list cut: only the first ones are shown)' : '');
  const byRegion = new Map();
  for (const p of data.documents) {
    if (!byRegion.has(p.node_id)) byRegion.set(p.node_id, []);
    byRegion.get(p.node_id).push(p);
  }
  for (const [region, docs] of byRegion) {
    append(list, el('div', { class: 'region', 'data-region': region },
      el('h3', {}, (memberNames.get(region) || region) + ' (' + region + ')'),
      docs.map(policyCard)));
  }
  if (!data.documents.length) append(list, el('p', { class: 'muted' }, 'No policy summary published yet.'));
}

// "2024" → 2024, "2024-Q3" → 2024.5, "2024-S2" → 2024.5, "2024-05" → 2024.33, "2024-05-17" → ~2024.37.
function periodPosition(period) {
  const m = /^(\d{4})(?:-(Q|S|W)?(\d{1,2})(?:-(\d{2}))?)?$/.exec(period);
  if (!m) return NaN;
  const year = Number(m[1]);
  if (m[3] === undefined) return year;
  const n = Number(m[3]);
  if (m[2] === 'Q') return year + (n - 1) / 4;
  if (m[2] === 'S') return year + (n - 1) / 2;
  if (m[2] === 'W') return year + (n - 1) / 52;
  const day = m[4] === undefined ? 0 : (Number(m[4]) - 1) / 31;
  return year + (n - 1 + day) / 12;
}

function showProvenance(point) {
  const o = point.observation;
  const p = point.provenance;
  const box = clear(byId('provenance'));
  box.hidden = false;
  append(box, [
    el('h3', {}, 'Provenance'),
    el('dl', { class: 'facts' },
      el('dt', {}, 'Member'), el('dd', { class: 'prov-member' }, (memberNames.get(p.node_id) || p.node_id) + ' (' + p.node_id + ')'),
      el('dt', {}, 'Observation'), el('dd', {}, o.ref_area + ' · ' + o.time_period + ' = ' + formatValue(o)),
      el('dt', {}, 'Source'), el('dd', {}, o.source || '—'),
      el('dt', {}, 'Signed statement'), el('dd', {}, el('code', { class: 'hash prov-digest' }, p.statement_digest)),
      el('dt', {}, 'Document'), el('dd', {}, p.document + ' (revision ' + p.revision + ')'),
      el('dt', {}, 'Log index'), el('dd', { class: 'prov-log-index' }, String(p.log_index)),
      el('dt', {}, 'Accepted by the hub'), el('dd', {}, time(p.accepted_at_ms))),
  ]);
}

function drawChart(data) {
  const chart = clear(byId('chart'));
  const legend = clear(byId('chart-legend'));
  byId('provenance').hidden = true;
  const points = data.points.filter((pt) => pt.observation && pt.observation.value !== null &&
    isFinite(periodPosition(pt.observation.time_period)));
  byId('chart-note').textContent = points.length + ' observations in force' +
    (data.name ? ' — ' + data.name : '') + (data.truncated ? ' (cut at the first ones)' : '') +
    '. Select a point for its provenance.';
  if (!points.length) { append(chart, el('p', { class: 'muted' }, 'No observation of this indicator yet.')); return; }
  const series = new Map();
  for (const pt of points) {
    const o = pt.observation;
    const dims = o.dimensions.map((d) => d.id + '=' + d.value).join(' ');
    const id = pt.provenance.node_id + ' · ' + o.ref_area + (dims ? ' · ' + dims : '');
    if (!series.has(id)) series.set(id, { node: pt.provenance.node_id, points: [] });
    series.get(id).points.push(pt);
  }
  const nodes = [...new Set(points.map((pt) => pt.provenance.node_id))].sort();
  const color = (node) => PALETTE[nodes.indexOf(node) % PALETTE.length];
  const drawn = [...series.entries()].slice(0, MAX_SERIES_DRAWN);
  const all = drawn.flatMap(([, s]) => s.points);
  const xs = all.map((pt) => periodPosition(pt.observation.time_period));
  const ys = all.map((pt) => scaled(pt.observation));
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  let [y0, y1] = [Math.min(0, ...ys), Math.max(...ys)];
  if (y0 === y1) y1 = y0 + 1;
  // Drawn at the container's width in CSS pixels, so text keeps its size on any screen.
  const W = Math.max(300, Math.min(1200, Math.floor(chart.clientWidth - 16) || 640));
  const H = W < 600 ? 240 : 320, L = 56, R = 16, T = 16, B = 36;
  // Members reporting the same period are set slightly apart, so every point can be selected.
  const dodge = (node) => (nodes.indexOf(node) - (nodes.length - 1) / 2) * 9;
  const sx = (x) => L + 12 + (x - x0) / (x1 - x0) * (W - L - R - 24);
  const sy = (y) => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  const root = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': 'Chart of ' + (data.indicator || '') });
  // Axes with a few ticks.
  append(root, svg('line', { x1: L, y1: H - B, x2: W - R, y2: H - B, class: 'axis' }));
  append(root, svg('line', { x1: L, y1: T, x2: L, y2: H - B, class: 'axis' }));
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (y1 - y0) * i / 4;
    append(root, svg('line', { x1: L, y1: sy(y), x2: W - R, y2: sy(y), class: 'grid' }));
    append(root, svg('text', { x: L - 6, y: sy(y) + 4, 'text-anchor': 'end', class: 'tick' }, compact(y)));
  }
  const years = [];
  for (let y = Math.ceil(x0); y <= Math.floor(x1); y++) years.push(y);
  const step = Math.max(1, Math.ceil(years.length / 8));
  years.filter((_, i) => i % step === 0).forEach((y) =>
    append(root, svg('text', { x: sx(y), y: H - B + 18, 'text-anchor': 'middle', class: 'tick' }, String(y))));
  for (const [id, s] of drawn) {
    s.points.sort((a, b) => periodPosition(a.observation.time_period) - periodPosition(b.observation.time_period));
    const c = color(s.node);
    if (s.points.length > 1) {
      const d = s.points.map((pt, i) => (i ? 'L' : 'M') + (sx(periodPosition(pt.observation.time_period)) + dodge(s.node)).toFixed(1) +
        ' ' + sy(scaled(pt.observation)).toFixed(1)).join(' ');
      append(root, svg('path', { d, fill: 'none', stroke: c, 'stroke-width': 2 }));
    }
    for (const pt of s.points) {
      const o = pt.observation;
      const circle = svg('circle', {
        cx: (sx(periodPosition(o.time_period)) + dodge(s.node)).toFixed(1), cy: sy(scaled(o)).toFixed(1), r: 6,
        fill: c, class: 'point', tabindex: 0, role: 'button',
        'data-member': pt.provenance.node_id, 'data-ref-area': o.ref_area, 'data-period': o.time_period,
        'aria-label': id + ', ' + o.time_period + ': ' + formatValue(o),
      }, svg('title', {}, id + ', ' + o.time_period + ': ' + formatValue(o)));
      const select = () => {
        root.querySelectorAll('.point.selected').forEach((n) => n.classList.remove('selected'));
        circle.classList.add('selected');
        showProvenance(pt);
      };
      circle.addEventListener('click', select);
      circle.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); select(); } });
      append(root, circle);
    }
    append(legend, el('span', { class: 'legend-item' }, el('span', { class: 'swatch', style: null, 'data-color': c }), id));
  }
  // Swatch colours through the DOM property, not a style attribute string built from data.
  legend.querySelectorAll('.swatch').forEach((n) => { n.style.background = n.getAttribute('data-color'); });
  if (series.size > MAX_SERIES_DRAWN) {
    append(legend, el('span', { class: 'muted' }, (series.size - MAX_SERIES_DRAWN) + ' more series not drawn'));
  }
  append(chart, root);
}

function compact(v) {
  const a = Math.abs(v);
  if (a >= 1e12) return (v / 1e12).toPrecision(3) + 'T';
  if (a >= 1e9) return (v / 1e9).toPrecision(3) + 'bn';
  if (a >= 1e6) return (v / 1e6).toPrecision(3) + 'M';
  if (a >= 1e3) return (v / 1e3).toPrecision(3) + 'k';
  return String(Math.round(v * 100) / 100);
}

async function loadIndicators() {
  const catalogue = await api('catalogue');
  const select = clear(byId('indicator-select'));
  for (const i of catalogue.indicators) append(select, el('option', { value: i.code }, i.code + ' — ' + i.name));
  if (!catalogue.indicators.length) { byId('chart-note').textContent = 'No catalogue issued yet.'; return; }
  const load = async () => {
    try { drawChart(await api('series?indicator=' + encodeURIComponent(select.value))); }
    catch (e) { showError(byId('chart'), 'The series', e); }
  };
  select.addEventListener('change', load);
  const preferred = catalogue.indicators.find((i) => i.code === 'MIG_STOCK') || catalogue.indicators[0];
  select.value = preferred.code;
  await load();
}

function side(v) {
  const o = v && v.observation;
  const p = v && v.provenance;
  return el('div', { class: 'side' },
    el('div', { class: 'side-member' }, p ? (memberNames.get(p.node_id) || p.node_id) + ' (' + p.node_id + ')' : '—'),
    el('div', { class: 'side-value' }, formatValue(o)),
    el('div', { class: 'side-source' }, o && o.source ? o.source : '—'),
    el('div', { class: 'muted' }, p ? provenanceLine(p) : '—'));
}

// The number of the latest report (set on the first load) and of the one shown.
const reports = { latest: 0, shown: 0 };

async function loadCoherence(number) {
  const data = await api(number ? 'coherence?number=' + number : 'coherence');
  const r = data.report;
  if (r) {
    if (!number) reports.latest = r.number;
    reports.shown = r.number;
  }
  byId('report-previous').disabled = !r || reports.shown <= 1;
  byId('report-next').disabled = !r || reports.shown >= reports.latest;
  const conflicts = clear(byId('conflicts'));
  const revisions = clear(byId('revisions'));
  if (!r) {
    byId('coherence-note').textContent = 'No coherence report issued yet.';
    return;
  }
  byId('coherence-note').textContent = (r.number === reports.latest ? 'Latest report: ' : 'Earlier report: ') +
    'number ' + r.number + ', signed by the hub at ' + time(r.generated_at_ms) +
    ', covers feed entries 1–' + r.feed_size + '; logged at index ' + r.log_index + ' (digest ' + shortHex(r.digest) + ').';
  for (const c of r.conflicts) {
    append(conflicts, el('article', { class: 'card conflict' },
      el('h4', {}, keyText(c.key), el('span', { class: 'muted' }, ' · relative difference ' + (c.relative_difference * 100).toFixed(1) + '%')),
      el('div', { class: 'sides' }, c.values.map(side))));
  }
  if (!r.conflicts.length) append(conflicts, el('p', { class: 'muted' }, 'No conflict between regions.'));
  else if (r.total_conflicts > r.conflicts.length) append(conflicts, el('p', { class: 'muted' }, r.total_conflicts + ' conflicts in all; the report lists the first ' + r.conflicts.length + '.'));

  // Every publishing member × every indicator of the catalogue: an empty cell is a gap.
  let catalogued = [];
  try { catalogued = (await api('catalogue')).indicators.map((i) => i.code); } catch (e) { catalogued = []; }
  const members = [...new Set(publishers.concat(r.coverage.map((c) => c.node_id)))].sort();
  const indicators = [...new Set(catalogued.concat(r.coverage.map((c) => c.indicator)))].sort();
  table(byId('coverage-matrix'), ['Member'].concat(indicators), members.map((m) => [m].concat(indicators.map((i) => {
    const c = r.coverage.find((x) => x.node_id === m && x.indicator === i);
    if (!c) return el('span', { class: 'muted', title: 'no observation' }, '—');
    return el('span', { title: c.missing_member_states.length ? 'member states without data: ' + c.missing_member_states.join(' ') : 'every member state covered' },
      c.observation_count + ' obs · ' + c.ref_areas.length + ' areas · ' + c.first_period + (c.last_period !== c.first_period ? '–' + c.last_period : ''));
  }))));

  table(byId('gcm-table'), ['Member', 'GCM objectives addressed', 'Policy documents'],
    r.policy_coverage.map((p) => [p.node_id, p.gcm_objectives.join(', ') || '—', String(p.policy_documents)]));
  byId('gcm-unaddressed').textContent = r.unaddressed_gcm_objectives.length
    ? 'Objectives no policy summary addresses: ' + r.unaddressed_gcm_objectives.join(', ')
    : 'Every GCM objective is addressed by at least one policy summary.';

  for (const v of r.revisions) {
    append(revisions, el('article', { class: 'card revision' },
      el('h4', {}, (memberNames.get(v.node_id) || v.node_id) + ' (' + v.node_id + ') revised ' + keyText(v.key)),
      el('div', { class: 'sides' }, side(v.old_value), el('div', { class: 'arrow', 'aria-hidden': 'true' }, '→'), side(v.new_value))));
  }
  if (!r.revisions.length) append(revisions, el('p', { class: 'muted' }, 'No revision since the previous report.'));
  else if (r.total_revisions > r.revisions.length) append(revisions, el('p', { class: 'muted' }, r.total_revisions + ' revisions in all; the report lists the first ' + r.revisions.length + '.'));
}

function navigateReports() {
  const go = (step) => loadCoherence(reports.shown + step).catch((e) => showError(byId('conflicts'), 'The coherence report', e));
  byId('report-previous').addEventListener('click', () => go(-1));
  byId('report-next').addEventListener('click', () => go(1));
}

async function main() {
  navigateReports();
  const sections = [
    [loadOverview, 'overview', 'The overview'],
    [loadLog, 'log-summary', 'The log'],
    [loadIndicators, 'chart', 'The indicators'],
  ];
  // Member names label the other sections: load them first.
  try { await loadMembers(); } catch (e) { showError(byId('members-note'), 'The members', e); }
  await Promise.all([
    ...sections.map(([load, id, what]) => load().catch((e) => showError(byId(id), what, e))),
    loadPolicies().catch((e) => showError(byId('policy-list'), 'The policy summaries', e)),
    loadCoherence(0).catch((e) => showError(byId('conflicts'), 'The coherence report', e)),
  ]);
  document.body.setAttribute('data-loaded', 'true');
}

main();
