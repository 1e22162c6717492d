import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse, valid, type HTMLElement } from 'node-html-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatCount, formatDuration } from '../src/report/format.js';
import { OUTCOMES, type BatchSummary, type Outcome } from '../src/types.js';
import { chromiumPath } from './browser.js';
import { csv, makeWorld, readCsv, type World } from './helpers.js';

// report.html, held to summary.json and the CSV files beside it by a real HTML parser, and
// rendered by a real browser that must not report a single console error.
const HEADER = 'card_id,consumer_id,reason,scope';
const HOSTILE_ERROR = '<script>alert("d1")</script> & \'quoted\' <img src=x onerror=alert(1)>';
const HOSTILE_FILE = `cards <img src=x onerror=alert(1)> & "q".csv`;
const HOSTILE_ROW = '<script>alert(2)</script>,,CLOSED,';

let world: World;
let summary: BatchSummary;
let html: string;
let root: HTMLElement;

beforeAll(async () => {
  // A batch with everything the page draws: opt-outs, pending operations, permanent failures
  // whose D1 error text is hostile HTML, rejects, duplicates, and 429s from a quota below our rate.
  world = await makeWorld({
    scenario: {
      quotaRps: 12,
      unknownIds: ['CARD-404'],
      pendingRate: 0.3,
      pendingDelayMs: 100,
      seed: 5,
      answers: { 'CARD-409': { status: 409, body: { errorCode: 'CONFLICT<x>', error: HOSTILE_ERROR } } },
    },
    config: { rate: { requestsPerSecond: 24 } },
  });
  const rows = [
    ...Array.from({ length: 40 }, (_, i) => `CARD-H${String(i).padStart(2, '0')},,CLOSED,`),
    'CARD-404,,FRAUD,',
    'CARD-409,,FRAUD,',
    'CARD-H01,,CLOSED,',
    HOSTILE_ROW,
    'CARD-X,,NOT_A_REASON,',
  ];
  const file = world.file(HOSTILE_FILE, csv(HEADER, rows));
  ({ summary } = await world.run([file]));
  html = readFileSync(join(summary.reportDir, 'report.html'), 'utf8');
  root = parse(html);
});

afterAll(async () => {
  await world.close();
});

const attr = (el: HTMLElement, name: string) => el.getAttribute(name) ?? '';
const num = (el: HTMLElement, name: string) => Number(attr(el, name));
const both = (o: Outcome) => (summary.outcomes[o] ?? 0) + (summary.carriedOver[o] ?? 0);

describe('report.html', () => {
  it('is written with the other report files, before summary.json, private to the job user', () => {
    const dir = summary.reportDir;
    expect(valid(html)).toBe(true);
    expect(statSync(join(dir, 'report.html')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'report.html')).mtimeMs).toBeLessThanOrEqual(statSync(join(dir, 'summary.json')).mtimeMs);
    expect(JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'))).toEqual(JSON.parse(JSON.stringify(summary)));
  });

  it('loads nothing from anywhere: no external reference, a CSP that allows only its own hashed style and script', () => {
    for (const el of root.querySelectorAll('[src], [href]')) {
      const ref = attr(el, 'src') || attr(el, 'href');
      expect(ref, el.outerHTML).toMatch(/^[a-z]+\.(csv|json)$/); // the files beside it, nothing else
    }
    expect(root.querySelectorAll('link, iframe, object, embed, img, image, use, foreignObject')).toHaveLength(0);
    expect(html).not.toMatch(/@import|url\(|@font-face/i);
    const csp = attr(root.querySelector('meta[http-equiv="Content-Security-Policy"]')!, 'content');
    expect(csp).toMatch(/default-src 'none'/);
    const hash = (el: HTMLElement) => `'sha256-${createHash('sha256').update(el.textContent).digest('base64')}'`;
    const styles = root.querySelectorAll('style');
    const scripts = root.querySelectorAll('script');
    expect(styles).toHaveLength(1);
    expect(scripts).toHaveLength(1);
    expect(csp).toContain(`style-src ${hash(styles[0]!)}`);
    expect(csp).toContain(`script-src ${hash(scripts[0]!)}`);
    expect(root.querySelectorAll('[style]')).toHaveLength(0); // inline style attributes would break the CSP
  });

  it('tiles: every figure equals summary.json', () => {
    const tile = (metric: string) => {
      const el = root.querySelector(`.tile[data-metric="${metric}"]`);
      expect(el, metric).not.toBeNull();
      return { value: num(el!, 'data-value'), text: el!.querySelector('.v')!.textContent };
    };
    const counts: [string, number][] = [
      ['rows-total', summary.rows.total],
      ['rows-valid', summary.rows.valid],
      ['rows-rejected', summary.rows.rejected],
      ['opted-out', both('OPTED_OUT')],
      ['pending', both('PENDING')],
      ['failed', both('FAILED_RETRYABLE') + both('FAILED_PERMANENT') + both('NOT_ATTEMPTED')],
      ['skipped', OUTCOMES.filter((o) => o.startsWith('SKIPPED_')).reduce((n, o) => n + both(o), 0)],
      ['requests', summary.d1.requests],
      ['http429', summary.d1.http429],
    ];
    for (const [metric, expected] of counts) {
      expect(tile(metric), metric).toEqual({ value: expected, text: formatCount(expected) });
    }
    expect(tile('rows-total').value).toBe(45);
    expect(tile('rows-rejected').value).toBe(2);
    expect(tile('http429').value).toBeGreaterThan(0);
    expect(tile('paused-ms')).toEqual({ value: summary.d1.throttledMs, text: formatDuration(summary.d1.throttledMs) });
    const ms = Date.parse(summary.endedAt!) - Date.parse(summary.startedAt);
    expect(tile('duration-ms')).toEqual({ value: ms, text: formatDuration(ms) });
    expect(tile('achieved-rps')).toEqual({ value: summary.d1.achievedRps, text: summary.d1.achievedRps!.toFixed(1) });
    expect(root.querySelector('#status')!.textContent).toBe(summary.status);
    expect(root.querySelector('#batch-id')!.textContent).toBe(summary.batchId);
  });

  it('outcome chart: one bar per outcome present, with the counts of summary.json', () => {
    const bars = root.querySelectorAll('#outcome-chart g.outcome');
    const drawn = Object.fromEntries(bars.map((g) => [attr(g, 'data-outcome'), { rows: num(g, 'data-rows'), carried: num(g, 'data-carried') }]));
    const expected = Object.fromEntries(OUTCOMES.filter((o) => both(o) > 0).map((o) => [o, { rows: summary.outcomes[o] ?? 0, carried: summary.carriedOver[o] ?? 0 }]));
    expect(drawn).toEqual(expected);
    expect(Object.keys(drawn)).toEqual(expect.arrayContaining(['OPTED_OUT', 'FAILED_PERMANENT', 'SKIPPED_DUPLICATE']));
    // The longest bar is the largest count.
    const width = (o: string) => Number(root.querySelector(`#outcome-chart g[data-outcome="${o}"] rect`)!.getAttribute('width'));
    expect(width('OPTED_OUT')).toBeGreaterThan(width('FAILED_PERMANENT'));
  });

  it('rate chart: requests per second from the attempts table, adding up to the D1 requests, 429s marked', () => {
    const secs = root.querySelectorAll('#rate-chart g.sec');
    expect(secs.length).toBeGreaterThan(1);
    expect(secs.reduce((n, g) => n + num(g, 'data-requests'), 0)).toBe(summary.d1.requests);
    expect(secs.reduce((n, g) => n + num(g, 'data-http429'), 0)).toBe(summary.d1.http429);
    const with429 = secs.filter((g) => num(g, 'data-http429') > 0);
    expect(with429.length).toBeGreaterThan(0);
    for (const g of with429) {
      expect(g.querySelectorAll('rect.r429')).toHaveLength(1);
      expect(g.querySelectorAll('path.mark429')).toHaveLength(1);
    }
    expect(root.querySelectorAll('#rate-chart .mark429')).toHaveLength(with429.length);
    // No second holds more requests than the peak summary.json reports.
    expect(Math.max(...secs.map((g) => num(g, 'data-requests')))).toBe(summary.d1.peakRps);
  });

  it('failures and rejects tables: the lines of failures.csv and rejects.csv, reasons and hostile text shown as text', () => {
    const cells = (table: string) => root.querySelectorAll(`#${table} tbody tr`).map((tr) => tr.querySelectorAll('td').map((td) => td.textContent));
    const failures = readCsv(join(summary.reportDir, 'failures.csv'));
    expect(failures.map((f) => f['target_id']).sort()).toEqual(['CARD-404', 'CARD-409']);
    expect(cells('failures-table')).toEqual(
      failures.map((f) => [
        `${f['scope']} ${f['target_id']}`,
        f['outcome'],
        f['http_status'],
        f['error_code'],
        f['error_message'],
        f['attempts'],
        f['correlation_id'],
        `${f['source_file']}:${f['source_line']}`,
      ]),
    );
    expect(cells('failures-table').find((r) => r[0] === 'CARD CARD-409')).toContain(HOSTILE_ERROR);

    const rejects = readCsv(join(summary.reportDir, 'rejects.csv'));
    expect(rejects).toHaveLength(2);
    expect(cells('rejects-table')).toEqual(rejects.map((r) => [`${r['source_file']}:${r['source_line']}`, r['error'], r['raw']]));
    expect(cells('rejects-table').map((r) => r[2])).toContain(HOSTILE_ROW);
    expect(root.querySelector('#inputs-table td')!.textContent).toBe(join(world.dir, HOSTILE_FILE));

    // The hostile values stayed text: no element, attribute or handler came out of them.
    expect(root.querySelectorAll('script')).toHaveLength(1);
    expect(root.querySelectorAll('img, x')).toHaveLength(0);
    expect(root.querySelectorAll('*').filter((el) => Object.keys(el.attributes).some((a) => a.startsWith('on')))).toHaveLength(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Headless Chromium over the DevTools protocol on a pipe: every exception, console error and
// browser-level error (a CSP violation, a failed load) of the page is collected.

interface Rendered {
  problems: string[];
  values: unknown[];
}

async function renderInChromium(file: string, expressions: string[] = []): Promise<Rendered> {
  const profile = mkdtempSync(join(tmpdir(), 'd1-optout-chromium-'));
  const child = spawn(
    chromiumPath(),
    [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`, '--remote-debugging-pipe', 'about:blank',
    ],
    { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const toBrowser = child.stdio[3] as NodeJS.WritableStream;
  const fromBrowser = child.stdio[4] as NodeJS.ReadableStream;
  const problems: string[] = [];
  const replies = new Map<number, (m: { result?: Record<string, unknown>; error?: { message: string } }) => void>();
  let loaded: () => void = () => undefined;
  const load = new Promise<void>((resolve) => (loaded = resolve));
  let buffer = '';
  fromBrowser.on('data', (d: Buffer) => {
    buffer += d.toString();
    for (let end = buffer.indexOf('\0'); end >= 0; end = buffer.indexOf('\0')) {
      const m = JSON.parse(buffer.slice(0, end)) as { id?: number; method?: string; params?: Record<string, any>; result?: Record<string, unknown>; error?: { message: string } };
      buffer = buffer.slice(end + 1);
      if (m.id !== undefined) replies.get(m.id)?.(m);
      else if (m.method === 'Runtime.exceptionThrown') {
        const d = m.params!['exceptionDetails'];
        problems.push(`exception: ${d.exception?.description ?? d.text}`);
      } else if (m.method === 'Runtime.consoleAPICalled' && ['error', 'assert'].includes(m.params!['type'])) {
        problems.push(`console.${m.params!['type']}: ${m.params!['args'].map((a: { value?: unknown; description?: string }) => a.value ?? a.description).join(' ')}`);
      } else if (m.method === 'Log.entryAdded' && m.params!['entry'].level === 'error') {
        problems.push(`${m.params!['entry'].source}: ${m.params!['entry'].text}`);
      } else if (m.method === 'Page.loadEventFired') loaded();
    }
  });
  let nextId = 0;
  const send = (method: string, params: Record<string, unknown> = {}, sessionId?: string) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const id = ++nextId;
      replies.set(id, (m) => (m.error ? reject(new Error(`${method}: ${m.error.message}`)) : resolve(m.result ?? {})));
      toBrowser.write(JSON.stringify({ id, method, params, sessionId }) + '\0');
    });
  const within = <T>(p: Promise<T>, what: string) =>
    Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`chromium: no ${what} within 20 s; stderr: ${stderr.slice(-2000)}`)), 20_000).unref())]);
  try {
    const { targetId } = await within(send('Target.createTarget', { url: 'about:blank' }), 'target');
    const { sessionId } = (await send('Target.attachToTarget', { targetId, flatten: true })) as { sessionId: string };
    for (const domain of ['Runtime', 'Log', 'Page']) await send(`${domain}.enable`, {}, sessionId);
    await send('Page.navigate', { url: pathToFileURL(file).href }, sessionId);
    await within(load, 'load event');
    const values: unknown[] = [];
    for (const expression of expressions) {
      const r = (await send('Runtime.evaluate', { expression, returnByValue: true }, sessionId)) as { result: { value?: unknown }; exceptionDetails?: { text: string } };
      if (r.exceptionDetails) problems.push(`evaluate ${expression}: ${r.exceptionDetails.text}`);
      values.push(r.result.value);
    }
    // Late errors (a timer, a deferred load) get a moment to arrive.
    await new Promise((r) => setTimeout(r, 300));
    await send('Browser.close').catch(() => undefined);
    return { problems, values };
  } finally {
    if (child.exitCode === null) {
      const closed = new Promise((r) => child.once('close', r));
      setTimeout(() => child.kill('SIGKILL'), 3000).unref();
      await closed;
    }
    rmSync(profile, { recursive: true, force: true });
  }
}

describe('report.html in headless Chromium', () => {
  it('the harness sees what a broken page does: an exception, a console error, a blocked external load', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'd1-optout-broken-'));
    try {
      const page = join(dir, 'broken.html');
      writeFileSync(
        page,
        `<!doctype html><html><head><meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'"></head>` +
          `<body><img src="http://127.0.0.1:9/x.png"><script>console.error('seen'); null.f();</script></body></html>`,
      );
      const { problems } = await renderInChromium(page);
      expect(problems.some((p) => p.startsWith('exception: TypeError'))).toBe(true);
      expect(problems).toContain('console.error: seen');
      expect(problems.some((p) => p.startsWith('security:') && p.includes('http://127.0.0.1:9/x.png'))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('renders the report without a single console error; its charts are drawn and its tables sort', async () => {
    const { problems, values } = await renderInChromium(join(summary.reportDir, 'report.html'), [
      `document.querySelectorAll('#rate-chart g.sec').length`,
      `document.querySelectorAll('#outcome-chart g.outcome').length`,
      `document.querySelector('#tiles').getBoundingClientRect().height > 50`,
      // Sort the failures by target, descending (two clicks): CARD-409 comes first.
      `(() => { const th = document.querySelector('#failures-table th'); th.click(); th.click();
         return [th.getAttribute('aria-sort'), document.querySelector('#failures-table tbody td').textContent]; })()`,
    ]);
    expect(problems).toEqual([]);
    expect(values[0]).toBe(root.querySelectorAll('#rate-chart g.sec').length);
    expect(values[1]).toBe(OUTCOMES.filter((o) => both(o) > 0).length);
    expect(values[2]).toBe(true);
    expect(values[3]).toEqual(['descending', 'CARD CARD-409']);
  });
});

describe('report.html of a night D1 was failing', () => {
  it('the rate chart marks the 5xx answers and the requests that got no answer, with a legend, as it marks 429s', async () => {
    // D1 answers a share of requests 503 and drops the connection of others: every target is
    // retried until it gets through, so the batch completes and its chart shows the failures.
    const outage = await makeWorld({
      scenario: { fail5xxRate: 0.3, resetRate: 0.2, seed: 11 },
      config: { rate: { requestsPerSecond: 40, maxAttempts: 10 } },
    });
    try {
      const { summary: s } = await outage.run([outage.file('a.csv', csv(HEADER, Array.from({ length: 30 }, (_, i) => `CARD-F${i},,CLOSED,`)))]);
      const page = parse(readFileSync(join(s.reportDir, 'report.html'), 'utf8'));
      const byStatus = s.d1.requestsByStatus;
      const fivexx = Object.entries(byStatus).filter(([k]) => Number(k) >= 500).reduce((n, [, v]) => n + v, 0);
      expect(fivexx).toBeGreaterThan(0);
      expect(byStatus['0']).toBeGreaterThan(0);
      const secs = page.querySelectorAll('#rate-chart g.sec');
      expect(secs.reduce((n, g) => n + num(g, 'data-requests'), 0)).toBe(s.d1.requests);
      expect(secs.reduce((n, g) => n + num(g, 'data-http5xx'), 0)).toBe(fivexx);
      expect(secs.reduce((n, g) => n + num(g, 'data-no-answer'), 0)).toBe(byStatus['0']);
      for (const [data, kind] of [['data-http5xx', '5xx'], ['data-no-answer', 'noanswer']] as const) {
        const marked = secs.filter((g) => num(g, data) > 0);
        expect(marked.length, kind).toBeGreaterThan(0);
        for (const g of marked) {
          expect(g.querySelectorAll(`rect.r${kind}`), kind).toHaveLength(1);
          expect(g.querySelectorAll(`path.mark${kind}`), kind).toHaveLength(1);
        }
        expect(page.querySelectorAll(`#rate-chart .mark${kind}`), kind).toHaveLength(marked.length);
      }
      const legend = page.querySelector('#rate-legend')!.textContent;
      expect(legend).toContain('answered 5xx');
      expect(legend).toContain('no answer (timeout or network error)');
      // The stacked parts of a second never stand taller than its requests.
      for (const g of secs) {
        const heights = g.querySelectorAll('rect').reduce((h, r) => h + Number(attr(r, 'height')), 0);
        const total = Number(attr(g.querySelector('rect.req')!, 'y')) + Number(attr(g.querySelector('rect.req')!, 'height'));
        expect(heights).toBeLessThanOrEqual(total);
      }
      const { problems } = await renderInChromium(join(s.reportDir, 'report.html'));
      expect(problems).toEqual([]);
    } finally {
      await outage.close();
    }
  });
});
