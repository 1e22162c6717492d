import { createHash } from 'node:crypto';
import type { RejectLine } from '../ledger/index.js';
import { FAILURE_OUTCOMES, OUTCOMES, type BatchSummary, type RequestSecond, type ResultLine } from '../types.js';
import { formatCount, formatDuration, formatUtc } from './format.js';
import { durationMs, outcomeCount } from './summary.js';
import { cliExecutable, commandLine } from './command-line.js';
import { nextSteps } from './terminal.js';

/** Rows of the failures and rejects tables; the CSV files beside the page have them all. */
export const HTML_TABLE_ROWS = 1000;
/** Columns of the rate chart at most: a long run is drawn in buckets of several seconds. */
const MAX_COLUMNS = 600;
/** The time axis spans at least this many seconds, so that a short run does not look like a wall. */
const MIN_COLUMNS = 20;

export interface HtmlReportData {
  summary: BatchSummary;
  /** The first failure lines (at most HTML_TABLE_ROWS) and how many there are in all. */
  failures: ResultLine[];
  failuresTotal: number;
  rejects: RejectLine[];
  rejectsTotal: number;
  perSecond: RequestSecond[];
  generatedAt: string;
}

/** Every value that reaches the page goes through here: file names, ids and D1's error texts included. */
function esc(value: string | number | null | undefined): string {
  return String(value ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const STYLE = `
:root { --fg: #1d2329; --muted: #5f6b76; --line: #d8dee4; --bg: #f6f8fa; --card: #fff; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg); background: var(--bg); }
main { max-width: 1240px; margin: 0 auto; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 0 0 12px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 16px 18px; margin: 16px 0; }
.meta, .note, footer { color: var(--muted); }
.badge { display: inline-block; padding: 2px 10px; border-radius: 12px; font-size: 13px; font-weight: 600; color: #fff; vertical-align: middle; margin-left: 8px; }
.badge.COMPLETED { background: #2e7d32; } .badge.COMPLETED_WITH_FAILURES { background: #c77700; }
.badge.ABORTED { background: #c62828; } .badge.RUNNING { background: #1565c0; }
.abort { color: #c62828; font-weight: 600; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; background: none; border: 0; padding: 0; }
.tile { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.tile .v { font-size: 24px; font-weight: 650; font-variant-numeric: tabular-nums; }
.tile .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.tile.good .v { color: #2e7d32; } .tile.bad .v { color: #c62828; } .tile.warn .v { color: #c77700; }
ul.next { margin: 0; padding-left: 18px; } ul.next code { background: var(--bg); padding: 1px 5px; border-radius: 4px; }
svg { width: 100%; height: auto; display: block; }
svg text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: var(--fg); }
svg .axis { stroke: #8c959f; } svg .grid { stroke: #eaeef2; } svg .tick { fill: var(--muted); }
svg .req { fill: #4a7fc1; } svg .r429, svg .mark429 { fill: #d62728; } svg .r5xx, svg .mark5xx { fill: #7b1fa2; } svg .rnoanswer, svg .marknoanswer { fill: #616161; }
svg .carried { fill-opacity: .45; }
.o-OPTED_OUT { fill: #2e7d32; } .o-PENDING { fill: #f2a900; } .o-FAILED_RETRYABLE { fill: #e8590c; }
.o-FAILED_PERMANENT { fill: #c62828; } .o-NOT_ATTEMPTED { fill: #795548; }
.o-SKIPPED_DUPLICATE { fill: #90a4ae; } .o-SKIPPED_ALREADY_OPTED_OUT { fill: #607d8b; } .o-SKIPPED_ALREADY_PENDING { fill: #9e9d24; }
.o-SKIPPED_COVERED_BY_CONSUMER { fill: #5c6bc0; } .o-SKIPPED_PREVIOUSLY_FAILED { fill: #8d6e63; }
.o-NOT_ENROLLED { fill: #26a69a; } .o-SKIPPED_NOT_ENROLLED { fill: #80cbc4; }
.legend span { margin-right: 14px; } .legend i { display: inline-block; width: 10px; height: 10px; margin-right: 5px; border-radius: 2px; }
.legend .l-req { background: #4a7fc1; } .legend .l-429 { background: #d62728; } .legend .l-5xx { background: #7b1fa2; } .legend .l-noanswer { background: #616161; } .legend .l-rows { background: #555; } .legend .l-carried { background: #555; opacity: .45; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--bg); position: sticky; top: 0; cursor: pointer; white-space: nowrap; user-select: none; }
th[aria-sort=ascending]::after { content: " \\25B2"; } th[aria-sort=descending]::after { content: " \\25BC"; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.mono, td.id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; word-break: break-all; }
td.id { white-space: nowrap; word-break: normal; }
footer { font-size: 12px; margin: 8px 0 24px; } footer a { color: inherit; }
@media print { body { background: #fff; } section, .tile { break-inside: avoid; } th { position: static; } }
`;

/** Click (or Enter on) a column heading to sort the table by it; again to reverse. */
const SCRIPT = `
for (const table of document.querySelectorAll('table[data-sortable]')) {
  const head = table.tHead.rows[0];
  Array.from(head.cells).forEach((th, col) => {
    th.tabIndex = 0;
    const sort = () => {
      const dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
      for (const other of head.cells) other.removeAttribute('aria-sort');
      th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
      const numeric = th.classList.contains('num');
      const key = (row) => {
        const text = row.cells[col].textContent;
        return numeric ? Number(text.replace(/,/g, '')) || 0 : text;
      };
      const body = table.tBodies[0];
      const rows = Array.from(body.rows).sort((a, b) => (key(a) < key(b) ? -dir : key(a) > key(b) ? dir : 0));
      body.append(...rows);
    };
    th.addEventListener('click', sort);
    th.addEventListener('keydown', (e) => { if (e.key === 'Enter') sort(); });
  });
}
`;

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('base64');

/**
 * Nothing may load from anywhere: the page is read on operators' machines and may be mailed on.
 * Only the page's own style and script run, pinned by their hashes.
 */
const CSP = `default-src 'none'; style-src 'sha256-${sha256(STYLE)}'; script-src 'sha256-${sha256(SCRIPT)}'; img-src data:; base-uri 'none'; form-action 'none'`;

function tile(metric: string, label: string, value: number, shown: string, tone = ''): string {
  return `<div class="tile${tone ? ` ${tone}` : ''}" data-metric="${esc(metric)}" data-value="${esc(value)}"><div class="v">${esc(shown)}</div><div class="k">${esc(label)}</div></div>`;
}

function tiles(s: BatchSummary): string {
  const failed = FAILURE_OUTCOMES.reduce((n, o) => n + outcomeCount(s, o), 0);
  const skipped = OUTCOMES.filter((o) => o.startsWith('SKIPPED_')).reduce((n, o) => n + outcomeCount(s, o), 0);
  const ms = durationMs(s) ?? 0;
  const rate = s.d1.achievedRps ?? 0;
  return [
    tile('rows-total', 'Rows read', s.rows.total, formatCount(s.rows.total)),
    tile('rows-valid', 'Valid rows', s.rows.valid, formatCount(s.rows.valid)),
    tile('rows-rejected', 'Rejected rows', s.rows.rejected, formatCount(s.rows.rejected), s.rows.rejected > 0 ? 'warn' : ''),
    tile('opted-out', 'Opted out', outcomeCount(s, 'OPTED_OUT'), formatCount(outcomeCount(s, 'OPTED_OUT')), 'good'),
    tile('not-enrolled', 'Not enrolled (nothing to opt out)', outcomeCount(s, 'NOT_ENROLLED'), formatCount(outcomeCount(s, 'NOT_ENROLLED'))),
    tile('pending', 'Pending at D1', outcomeCount(s, 'PENDING'), formatCount(outcomeCount(s, 'PENDING')), outcomeCount(s, 'PENDING') > 0 ? 'warn' : ''),
    tile('failed', 'Failed or not attempted', failed, formatCount(failed), failed > 0 ? 'bad' : ''),
    tile('skipped', 'Skipped', skipped, formatCount(skipped)),
    tile('requests', 'D1 requests', s.d1.requests, formatCount(s.d1.requests)),
    ...(s.d1.tokenFailures > 0 ? [tile('token-failures', 'Token requests that got no token', s.d1.tokenFailures, formatCount(s.d1.tokenFailures), 'bad')] : []),
    tile('achieved-rps', 'Achieved req/s', rate, rate.toFixed(1)),
    tile('http429', '429 answers', s.d1.http429, formatCount(s.d1.http429), s.d1.http429 > 0 ? 'warn' : ''),
    tile('paused-ms', 'Time paused', s.d1.throttledMs, formatDuration(s.d1.throttledMs)),
    tile('duration-ms', 'Duration', ms, formatDuration(ms)),
  ].join('\n');
}

/** Horizontal bars, one per outcome present: input rows solid, carried-over targets lighter. */
function outcomeChart(s: BatchSummary): string {
  const present = OUTCOMES.filter((o) => outcomeCount(s, o) > 0);
  if (present.length === 0) return '<p class="note">This batch had no rows and no carried-over targets.</p>';
  const labelW = 230;
  const valueW = 110;
  const rowH = 28;
  const width = 960;
  const plotW = width - labelW - valueW;
  const max = Math.max(...present.map((o) => outcomeCount(s, o)));
  const rows = present.map((o, i) => {
    const input = s.outcomes[o] ?? 0;
    const carried = s.carriedOver[o] ?? 0;
    const y = i * rowH;
    const w1 = (input / max) * plotW;
    const w2 = (carried / max) * plotW;
    const label = carried > 0 ? `${formatCount(input)} + ${formatCount(carried)}` : formatCount(input);
    return (
      `<g class="outcome" data-outcome="${esc(o)}" data-rows="${input}" data-carried="${carried}">` +
      `<title>${esc(o)}: ${formatCount(input)} input row(s), ${formatCount(carried)} carried over</title>` +
      `<text x="${labelW - 8}" y="${y + 18}" text-anchor="end">${esc(o)}</text>` +
      `<rect class="o-${esc(o)}" x="${labelW}" y="${y + 5}" width="${w1.toFixed(1)}" height="${rowH - 10}"/>` +
      `<rect class="o-${esc(o)} carried" x="${(labelW + w1).toFixed(1)}" y="${y + 5}" width="${w2.toFixed(1)}" height="${rowH - 10}"/>` +
      `<text x="${(labelW + w1 + w2 + 6).toFixed(1)}" y="${y + 18}">${esc(label)}</text></g>`
    );
  });
  const legend = sumCarried(s) > 0 ? '<p class="legend"><span><i class="l-rows"></i>input rows</span><span><i class="l-carried"></i>carried over from earlier batches</span></p>' : '';
  return `<svg id="outcome-chart" viewBox="0 0 ${width} ${present.length * rowH}" role="img" aria-label="Outcomes">${rows.join('')}</svg>${legend}`;
}

function sumCarried(s: BatchSummary): number {
  return Object.values(s.carriedOver).reduce((n: number, v) => n + (v ?? 0), 0);
}

/** A round axis maximum at or above `n`: 1, 2 or 5 times a power of ten. */
function niceMax(n: number): number {
  const p = 10 ** Math.floor(Math.log10(Math.max(n, 1)));
  return [1, 2, 5, 10].map((m) => m * p).find((v) => v >= n) ?? 10 * p;
}

/** Steps of the time axis, in seconds: round numbers a reader adds up without thinking. */
const TICK_STEPS_SEC = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];

function elapsedLabel(sec: number): string {
  if (sec < 120) return `${sec} s`;
  if (sec < 7200) return `${Math.round(sec / 60)} min`;
  return `${(sec / 3600).toFixed(1)} h`;
}

/**
 * What the rate chart stacks on top of the answered requests, bottom to top, each also marked in a
 * row of its own under the axis: a 429 is D1 turning us away for our rate, a 5xx or no answer at
 * all (a timeout, a network error) is D1 failing, so an outage reads as one at a glance.
 */
const FAILURE_KINDS = [
  { key: 'http429', css: '429', label: 'answered 429 (too many requests)', mark: (x: number, y: number) => `M${x.toFixed(2)} ${y} l5 8 h-10 z` },
  { key: 'http5xx', css: '5xx', label: 'answered 5xx (D1 failing)', mark: (x: number, y: number) => `M${(x - 4).toFixed(2)} ${y} h8 v8 h-8 z` },
  { key: 'noAnswer', css: 'noanswer', label: 'no answer (timeout or network error)', mark: (x: number, y: number) => `M${x.toFixed(2)} ${y} l4 4 l-4 4 l-4 -4 z` },
] as const;

type FailureKey = (typeof FAILURE_KINDS)[number]['key'];

/**
 * Requests started per second over the run, seconds without any request included (a 429 pause
 * shows as a gap), with the 429s, 5xx answers and requests that got no answer stacked in their
 * colours and marked under the axis.
 */
function rateChart(perSecond: readonly RequestSecond[]): string {
  const first = perSecond[0];
  const last = perSecond[perSecond.length - 1];
  if (!first || !last) return '<p class="note">No request was sent to D1 in this batch.</p>';
  const t0 = Date.parse(`${first.second}Z`);
  const span = (Date.parse(`${last.second}Z`) - t0) / 1000 + 1;
  const bucketSec = Math.ceil(span / MAX_COLUMNS);
  const n = Math.ceil(span / bucketSec);
  const buckets = Array.from({ length: n }, () => ({ requests: 0, http429: 0, http5xx: 0, noAnswer: 0 }));
  for (const s of perSecond) {
    const b = buckets[Math.floor((Date.parse(`${s.second}Z`) - t0) / 1000 / bucketSec)]!;
    b.requests += s.requests;
    for (const k of FAILURE_KINDS) b[k.key] += s[k.key];
  }
  const width = 960;
  const height = 272;
  const left = 48;
  const right = 12;
  const top = 12;
  const bottom = 58;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const yMax = niceMax(Math.max(...buckets.map((b) => b.requests / bucketSec)));
  const colW = plotW / Math.max(n, MIN_COLUMNS);
  const y = (v: number) => top + plotH - (v / yMax) * plotH;
  const parts: string[] = [];
  for (const v of [0, yMax / 2, yMax]) {
    parts.push(`<line class="grid" x1="${left}" x2="${width - right}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}"/>`);
    parts.push(`<text class="tick" x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${esc(Number.isInteger(v) ? v : v.toFixed(1))}</text>`);
  }
  const markRow = (i: number) => top + plotH + 3 + i * 10;
  buckets.forEach((b, i) => {
    if (b.requests === 0) return;
    const x = left + i * colW;
    const w = Math.max(colW - (colW > 3 ? 1 : 0), 0.5);
    const failed = FAILURE_KINDS.reduce((sum, k) => sum + b[k.key], 0);
    let base = (b.requests - failed) / bucketSec;
    const at = new Date(t0 + i * bucketSec * 1000).toISOString().slice(11, 19);
    const said = [
      b.http429 ? `${b.http429} answered 429` : '',
      b.http5xx ? `${b.http5xx} answered 5xx` : '',
      b.noAnswer ? `${b.noAnswer} got no answer` : '',
    ].filter(Boolean);
    let stacked = `<rect class="req" x="${x.toFixed(2)}" y="${y(base).toFixed(2)}" width="${w.toFixed(2)}" height="${(top + plotH - y(base)).toFixed(2)}"/>`;
    FAILURE_KINDS.forEach((k, row) => {
      const count = b[k.key];
      if (!count) return;
      const v = count / bucketSec;
      stacked +=
        `<rect class="r${k.css}" x="${x.toFixed(2)}" y="${y(base + v).toFixed(2)}" width="${w.toFixed(2)}" height="${(y(base) - y(base + v)).toFixed(2)}"/>` +
        `<path class="mark${k.css}" d="${k.mark(x + w / 2, markRow(row))}"/>`;
      base += v;
    });
    parts.push(
      `<g class="sec" data-offset="${i * bucketSec}" data-requests="${b.requests}" data-http429="${b.http429}" data-http5xx="${b.http5xx}" data-no-answer="${b.noAnswer}">` +
        `<title>${esc(`${at} UTC: ${b.requests} request(s)${said.length ? `, ${said.join(', ')}` : ''}${bucketSec > 1 ? ` in ${bucketSec} s` : ''}`)}</title>` +
        stacked +
        `</g>`,
    );
  });
  parts.push(`<line class="axis" x1="${left}" x2="${width - right}" y1="${top + plotH}" y2="${top + plotH}"/>`);
  const axisSec = Math.max(n, MIN_COLUMNS) * bucketSec;
  const step = TICK_STEPS_SEC.find((st) => axisSec / st <= 8) ?? Math.ceil(axisSec / 8 / 3600) * 3600;
  for (let t = 0; t <= axisSec; t += step) {
    parts.push(`<text class="tick" x="${(left + (t / bucketSec) * colW).toFixed(1)}" y="${height - 10}" text-anchor="${t === 0 ? 'start' : 'middle'}">${esc(elapsedLabel(t))}</text>`);
  }
  const total = (k: 'requests' | FailureKey) => buckets.reduce((a, b) => a + b[k], 0);
  const caption =
    `Started ${esc(formatUtc(new Date(t0).toISOString()))} UTC; ${bucketSec > 1 ? `each column averages ${bucketSec} seconds; ` : 'one column per second; '}` +
    `${formatCount(total('requests'))} request(s): ${formatCount(total('http429'))} answered 429 (red), ${formatCount(total('http5xx'))} answered 5xx (purple), ` +
    `${formatCount(total('noAnswer'))} got no answer (grey); each is also marked under the axis.`;
  const legend = FAILURE_KINDS.map((k) => `<span><i class="l-${k.css}"></i>${esc(k.label)}</span>`).join('');
  return (
    `<svg id="rate-chart" viewBox="0 0 ${width} ${height}" role="img" aria-label="Requests per second" data-bucket-seconds="${bucketSec}">${parts.join('')}</svg>` +
    `<p class="legend" id="rate-legend"><span><i class="l-req"></i>requests per second</span>${legend}</p>` +
    `<p class="note">${caption}</p>`
  );
}

function table(id: string, head: readonly [string, boolean][], rows: readonly (readonly [string, string?][])[]): string {
  const th = head.map(([h, num]) => `<th${num ? ' class="num"' : ''}>${esc(h)}</th>`).join('');
  const body = rows.map((r) => `<tr>${r.map(([v, cls]) => `<td${cls ? ` class="${cls}"` : ''}>${esc(v)}</td>`).join('')}</tr>`).join('\n');
  return `<div class="scroll"><table id="${id}" data-sortable><thead><tr>${th}</tr></thead><tbody>\n${body}\n</tbody></table></div>`;
}

function shownOf(shown: number, total: number, file: string): string {
  return shown < total
    ? `<p class="note">Showing the first ${formatCount(shown)} of ${formatCount(total)}; <a href="${esc(file)}">${esc(file)}</a> has them all.</p>`
    : '';
}

function failuresSection(d: HtmlReportData): string {
  if (d.failuresTotal === 0) return '<section id="failures"><h2>Failures</h2><p class="note">None: every target of this batch was opted out, is pending, or was skipped for a reason.</p></section>';
  const rows = d.failures.map((f) => [
    [`${f.scope} ${f.target_id}`, 'id'],
    [f.outcome],
    [f.http_status, 'num'],
    [f.error_code],
    [f.error_message],
    [String(f.attempts), 'num'],
    [f.correlation_id, 'mono'],
    [f.source_line ? `${f.source_file}:${f.source_line}` : f.source_file, 'mono'],
  ] as [string, string?][]);
  return (
    `<section id="failures"><h2>Failures (${formatCount(d.failuresTotal)})</h2>` +
    `<p class="note">Retryable ones and those not attempted go again with <code>${esc(commandLine('rerun', '--batch', d.summary.batchId))}</code>; give the correlation id to Thales support when asking about a request.</p>` +
    shownOf(d.failures.length, d.failuresTotal, 'failures.csv') +
    table(
      'failures-table',
      [['target', false], ['outcome', false], ['HTTP', true], ['error code', false], ['reason', false], ['attempts', true], ['correlation id', false], ['source', false]],
      rows,
    ) +
    '</section>'
  );
}

function rejectsSection(d: HtmlReportData): string {
  if (d.rejectsTotal === 0) return '<section id="rejects"><h2>Rejected rows</h2><p class="note">None: every row of the input was valid.</p></section>';
  const rows = d.rejects.map((r) => [[`${r.source_file}:${r.source_line}`, 'mono'], [r.error], [r.raw, 'mono']] as [string, string?][]);
  return (
    `<section id="rejects"><h2>Rejected rows (${formatCount(d.rejectsTotal)})</h2>` +
    '<p class="note">Fix these rows at the source and deliver them in a new file; card numbers are shown masked.</p>' +
    shownOf(d.rejects.length, d.rejectsTotal, 'rejects.csv') +
    table('rejects-table', [['source', false], ['why rejected', false], ['row as read', false]], rows) +
    '</section>'
  );
}

function inputsSection(s: BatchSummary): string {
  if (s.inputs.length === 0) return '';
  // Where each file is now: an inbox file is in the archive once its rows are in the ledger.
  const rows = s.inputs.map((i) => [
    [i.archivedTo ?? i.path, 'mono'],
    [i.sha256.slice(0, 16), 'mono'],
    [formatCount(i.rows), 'num'],
    [formatCount(i.rejected), 'num'],
    [[i.seenBefore ? `already ingested by batch ${i.firstBatchId ?? '?'}; not read again` : 'read', i.archivedTo ? `archived from ${i.path}` : ''].filter(Boolean).join('; ')],
  ] as [string, string?][]);
  return `<section id="inputs"><h2>Input files</h2>${table('inputs-table', [['file', false], ['sha256', false], ['rows', true], ['rejected', true], ['', false]], rows)}</section>`;
}

/** The inbox files the batch did not read: quarantined (a failure) or left for a later run (docs/design.md §11). */
function notTakenSection(s: BatchSummary): string {
  if (s.quarantined.length === 0 && s.deferred.length === 0) return '';
  const rows = [
    ...s.quarantined.map((q) => [[q.path, 'mono'], ['quarantined'], [q.reason], [q.movedTo ?? 'could not be moved: still in the inbox', 'mono']] as [string, string?][]),
    ...s.deferred.map((d) => [[d.path, 'mono'], ['left for a later run'], [d.reason], ['']] as [string, string?][]),
  ];
  return (
    '<section id="not-taken"><h2>Inbox files not read</h2>' +
    '<p class="note">A quarantined file cannot be read at all: fix it at the source and deliver it again. A file left in the inbox was still arriving (or changed while it was read) and is taken by a later run.</p>' +
    table('not-taken-table', [['file', false], ['what happened', false], ['why', false], ['now at', false]], rows) +
    '</section>'
  );
}

/** report.html: one self-contained page (no network, no external script or font) for people. */
export function renderReportHtml(d: HtmlReportData): string {
  const s = d.summary;
  const ms = durationMs(s);
  const meta = [
    `${s.kind}${s.parentBatchId ? ` of batch ${s.parentBatchId}` : ''}`,
    `started ${formatUtc(s.startedAt)} UTC`,
    s.endedAt ? `ended ${formatUtc(s.endedAt)} UTC` : 'still running',
    ms === null ? '' : `took ${formatDuration(ms)}`,
  ].filter(Boolean);
  const cli = cliExecutable();
  const next = nextSteps(s)
    .map((step) => {
      const at = step.indexOf(cli);
      return at < 0 ? `<li>${esc(step)}</li>` : `<li>${esc(step.slice(0, at))}<code>${esc(step.slice(at))}</code></li>`;
    })
    .join('');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${esc(CSP)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>d1-optout batch ${esc(s.batchId)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
<header>
<h1>Batch <span id="batch-id">${esc(s.batchId)}</span><span class="badge ${esc(s.status)}" id="status">${esc(s.status)}</span></h1>
<div class="meta">${meta.map(esc).join(' · ')}</div>
${s.abortReason ? `<p class="abort">Aborted: ${esc(s.abortReason)}</p>` : ''}
${s.resolvedBy ? `<p class="resolved" id="resolved-by">Resolved by batch ${esc(s.resolvedBy)}: every target this batch left undone has been finished since.</p>` : ''}
</header>
<section class="tiles" id="tiles">
${tiles(s)}
</section>
<section id="next"><h2>What next</h2><ul class="next">${next}</ul></section>
<section id="outcomes"><h2>Outcomes</h2>${outcomeChart(s)}</section>
<section id="rate"><h2>Requests per second</h2>${rateChart(d.perSecond)}</section>
${failuresSection(d)}
${rejectsSection(d)}
${notTakenSection(s)}
${inputsSection(s)}
<footer>Written ${esc(formatUtc(d.generatedAt))} UTC by d1-optout from its ledger. In this folder:
<a href="summary.json">summary.json</a> · <a href="results.csv">results.csv</a> · <a href="failures.csv">failures.csv</a> · <a href="rejects.csv">rejects.csv</a>.</footer>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
