import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PAN_REJECT } from '../src/cards/index.js';
import { loadConfig } from '../src/config.js';
import type { SimServer } from '../src/sim/index.js';
import { spawnSync } from 'node:child_process';
import { closeWorldsAfterEach, install, makeWorld, readCsv, ROOT, runCli, type World } from './helpers.js';

// docs/design.md §14: card data never leaves in clear. Card numbers written in any grouping, glued
// to other digits, split across fields or put in a file name, and D1 answers carrying a card number
// or a terminal escape, go through the whole job (the built CLI against the simulator); nothing it
// writes or prints, and nothing D1 is sent, holds the number, and no CSV cell is a formula.

closeWorldsAfterEach();

/**
 * Characters that may stand between the digits of a number and still leave it readable: the
 * separators of docs/design.md §14, CSV delimiters and quotes, and the escapes the job's writers
 * use (JSON `\n` and `\u00a0`, HTML `&#34;`, a reject's `\n`). Deliberately wider than the job's own
 * definition, so that the check cannot miss what an eye would see.
 */
const BETWEEN = String.raw`(?:[\s.\-_/,;|"'\u00a0\u00ad\u00b7\u1680\u180e\u2000-\u2015\u2024\u2027-\u2029\u202f\u2044\u205f\u2060\u2212\u2215\u3000\u30fb\ufe58\ufe63\ufeff\uff0d-\uff0f]|\\[nrt"\\]|\\u[0-9a-fA-F]{4}|&#\d+;|&[a-z]+;)*`;

/** `pan`'s digits in order with nothing but separators (or escapes of them) between them. */
function inClear(pan: string): RegExp {
  return new RegExp(pan.replace(/\D/g, '').split('').join(BETWEEN));
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}

/** What D1 was sent: every request's URL (decoded) and body. */
function sentToD1(sim: SimServer): string[] {
  return sim.state().calls.flatMap((c) => {
    let url = c.url ?? c.path;
    try {
      url = decodeURIComponent(url);
    } catch {
      // kept as sent
    }
    return [url, c.body ?? ''];
  });
}

/** A config for one case: its own ledger, reports and log, the world's simulator and key. */
function caseConfig(world: World, dir: string): string {
  const raw = JSON.parse(readFileSync(world.configFile, 'utf8')) as Record<string, unknown>;
  Object.assign(raw, {
    ledger: join(dir, 'ledger.sqlite'),
    reportsDir: join(dir, 'reports'),
    inbox: join(dir, 'inbox'),
    archive: join(dir, 'archive'),
    quarantine: join(dir, 'quarantine'),
    log: { level: 'debug', file: join(dir, 'log', 'd1-optout.log') },
  });
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify(raw));
  install(loadConfig(file)); // the ledger the operator's `init` would make
  return file;
}

/** Runs FILE through the CLI (expecting exit 0) and reads the batch's rejects.csv. */
async function runAndReadRejects(world: World, file: string) {
  const run = await runCli(['run', '--config', world.configFile, file]);
  expect(run.code, run.stderr).toBe(0);
  const reportDir = join(world.config.reportsDir, /Batch (\S+) /.exec(run.stdout)![1]!);
  const rejects = readCsv<{ source_line: string; error: string; raw: string }>(join(reportDir, 'rejects.csv'));
  return { run, rejects };
}

function quoteField(v: string): string {
  return /[",\r\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v;
}

/** A Luhn-valid number from the body digits `body` (12–18 digits): the check digit appended. */
function withCheckDigit(body: string): string {
  let sum = 0;
  for (let i = 0; i < body.length; i++) {
    let d = body.charCodeAt(body.length - 1 - i) - 48;
    if (i % 2 === 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return body + String((10 - (sum % 10)) % 10);
}

// ---------------------------------------------------------------------------------------------
// The property

const SEED = 20261130;
const RUNS = Number(process.env['PROPERTY_RUNS'] ?? 4);

const panArb = fc
  .tuple(fc.constantFrom('3', '4', '5', '6'), fc.integer({ min: 11, max: 17 }), fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 17, maxLength: 17 }))
  .map(([first, more, digits]) => withCheckDigit(first + digits.slice(0, more).join('')));

const SEPARATORS = [' ', '  ', '-', '--', '_', '.', '/', '\u00a0', '\u2009', '\u202f', '\u200b', '\u2013', '\t', '\n', '\r\n', ' - ', '. '];
/** A file name cannot hold `/`, and one with a line break is too much for any shell. */
const NAME_SEPARATORS = [' ', '  ', '-', '--', '_', '.', '\u00a0', '\u2013'];

/** `pan` cut into groups at random places, with a random run of separators (or none) at each cut. */
function groupedArb(separators: readonly string[]): fc.Arbitrary<{ pan: string; text: string }> {
  return fc
    .tuple(panArb, fc.array(fc.tuple(fc.boolean(), fc.constantFrom(...separators), fc.constantFrom('', ...separators)), { minLength: 18, maxLength: 18 }))
    .map(([pan, gaps]) => {
      let text = pan[0]!;
      for (let i = 1; i < pan.length; i++) {
        const [cut, a, b] = gaps[i - 1]!;
        text += (cut ? a + b : '') + pan[i];
      }
      return { pan, text };
    });
}

const PLACES = ['card_id', 'consumer_id', 'reference', 'note', 'glued-id', 'glued-reference', 'split-fields'] as const;
type Place = (typeof PLACES)[number];

/** One row per place in every case, so that each run covers them all. */
const rowArb = fc.record({
  number: groupedArb(SEPARATORS),
  /** A row rejected for another reason too: its raw goes to rejects.csv. */
  badReason: fc.boolean(),
  /** Digits glued on either side (a window inside a longer run). */
  glue: fc.tuple(fc.constantFrom('', '9', '07', '123'), fc.constantFrom('', '0', '55')),
  splitAt: fc.integer({ min: 1, max: 18 }),
});

const caseArb = fc.record({
  rows: fc.array(rowArb, { minLength: PLACES.length, maxLength: PLACES.length }),
  fileName: fc.option(groupedArb(NAME_SEPARATORS), { nil: null }),
  headerName: fc.option(groupedArb(NAME_SEPARATORS), { nil: null }),
});
type Case = typeof caseArb extends fc.Arbitrary<infer T> ? T : never;

/** The card file of a case, and the numbers in it. */
function render(c: Case, n: number): { content: string; pans: string[] } {
  const pans: string[] = [];
  const header = ['card_id', 'consumer_id', 'reason', 'reference', 'note', c.headerName ? `x ${c.headerName.text}` : 'note2'];
  if (c.headerName) pans.push(c.headerName.pan);
  const lines = [header.map(quoteField).join(',')];
  c.rows.forEach((r, i) => {
    const v: Record<string, string> = { card_id: `CARD-P${n}-${i}`, consumer_id: '', reason: r.badReason || PLACES[i] === 'split-fields' ? 'BOGUS' : 'CLOSED', reference: `ref ${i}`, note: '', note2: '' };
    const { text, pan } = r.number;
    const glued = r.glue[0] + pan + r.glue[1];
    const place: Place = PLACES[i]!;
    switch (place) {
      case 'card_id':
      case 'consumer_id':
      case 'reference':
      case 'note':
        v[place] = place === 'reference' || place === 'note' ? `call about ${text} today` : text;
        break;
      case 'glued-id':
        v['card_id'] = `C${glued}`;
        break;
      case 'glued-reference':
        v['reference'] = `order ${glued}`;
        break;
      case 'split-fields': {
        // The number split across two fields: each half is no card number on its own. Only a
        // rejected row keeps its fields (in raw), so the row is made one (reason BOGUS).
        const at = Math.min(r.splitAt, pan.length - 1);
        v['note'] = `x ${pan.slice(0, at)}`;
        v['note2'] = `${pan.slice(at)} y`;
        break;
      }
    }
    pans.push(pan);
    lines.push([v['card_id']!, v['consumer_id']!, v['reason']!, v['reference']!, v['note']!, v['note2']!].map(quoteField).join(','));
  });
  return { content: lines.join('\n') + '\n', pans };
}

describe('card data never leaves in clear (property)', () => {
  it(`no card number reaches a file, the terminal or D1, however it is written (seed ${SEED}, ${RUNS} runs; PROPERTY_RUNS=N for more)`, async () => {
    const world = await makeWorld({ scenario: { recordRequests: true } });
    let n = 0;
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        const dir = join(world.dir, `case-${++n}`);
        mkdirSync(join(dir, 'in'), { recursive: true });
        const config = caseConfig(world, dir);
        const { content, pans } = render(c, n);
        if (c.fileName) pans.push(c.fileName.pan);
        const file = join(dir, 'in', `cards ${c.fileName ? c.fileName.text : 'plain'}.csv`);
        writeFileSync(file, content);
        const metrics = join(dir, 'metrics.prom');

        const outputs: string[] = [];
        const run = await runCli(['run', '--config', config, '--metrics-file', metrics, file]);
        expect(run.code, run.stderr).toBeLessThanOrEqual(1);
        // Again: the file is skipped as seen before, and the summary names it.
        const again = await runCli(['run', '--config', config, file]);
        const show = await runCli(['show', `CARD-P${n}-0`, '--config', config]);
        for (const r of [run, again, show]) outputs.push(r.stdout, r.stderr);
        expect(again.stdout).toContain('skipped ');

        const written = walk(dir).filter((f) => f !== file && f !== config);
        expect(written.some((f) => f.endsWith('-wal')) || written.some((f) => f.endsWith('ledger.sqlite'))).toBe(true);
        const texts = [...written.map((f) => readFileSync(f).toString('utf8')), ...outputs, ...sentToD1(world.sim)];
        for (const pan of pans) {
          const re = inClear(pan);
          for (const t of texts) expect(re.test(t), `${pan.slice(0, 6)}… in clear`).toBe(false);
        }
      }),
      { seed: SEED, numRuns: RUNS },
    );
  }, 60_000 + RUNS * 20_000);
});

// ---------------------------------------------------------------------------------------------
// The reviewed findings, one by one

const PAN = '4111111111111111';

describe('card numbers in rows, headers and file names (the reviewed findings)', () => {
  it('rejects ids holding a card number however written, masks free text and rejects raw across fields, never calls D1 with one', async () => {
    const world = await makeWorld({ scenario: { recordRequests: true } });
    const file = world.file(
      'cards.csv',
      [
        'card_id,consumer_id,reason,reference,note',
        '4111--1111--1111--1111,,CLOSED,,',
        '41111111111111110,,CLOSED,,',
        'CARD-D0,4111_1111__1111_1111,CLOSED,,',
        'CARD-D1,,CLOSED,ref 4111.1111.1111.1111,',
        'CARD-D2,,CLOSED,ref 4111\u00a01111\u00a01111\u00a01111,',
        'CARD-D3,,CLOSED,ref 4111  1111  1111  1111,',
        'CARD-D4,,CLOSED,"ref 4111\n1111\n1111\n1111",',
        'CARD-D5,,CLOSED,order 41111111111111110,',
        'CARD-D6,,BOGUS,41111111,11111111',
        'CARD-D7,,CLOSED,,',
      ].join('\n') + '\n',
    );
    const { run, rejects } = await runAndReadRejects(world, file);
    expect(rejects.map((r) => [r.source_line, r.error === PAN_REJECT])).toEqual([
      ['2', true],
      ['3', true],
      ['4', true],
      ['5', true],
      ['6', true],
      ['7', true],
      ['8', true],
      ['13', false], // the quoted line breaks above make it line 13
    ]);
    expect(rejects.at(-1)!.raw).toBe('CARD-D6,,BOGUS,411111**,****1111');
    // Only the clean rows were sent.
    expect(Object.keys(world.sim.state().optOutCalls).sort()).toEqual(['CARD:CARD-D5', 'CARD:CARD-D7']);
    const ledger = world.ledger();
    try {
      const ref = ledger.db.prepare(`SELECT reference FROM items WHERE reference LIKE 'order%'`).pluck().get() as string;
      expect(ref).toMatch(/^order 411111\*+/);
    } finally {
      ledger.close();
    }
    const texts = [...walk(world.dir).filter((f) => f !== file).map((f) => readFileSync(f, 'utf8')), run.stdout, run.stderr, ...sentToD1(world.sim)];
    for (const t of texts) expect(inClear(PAN).test(t)).toBe(false);
  });

  it('a card number in fullwidth digits (an East Asian input method) is refused and masked like the ASCII one', async () => {
    const wide = (digits: string) => digits.replace(/[0-9]/g, (d) => String.fromCharCode(0xff10 + Number(d)));
    const world = await makeWorld();
    const file = world.file(
      'cards.csv',
      ['card_id,consumer_id,reason,reference', `CARD-${wide(PAN)},,CLOSED,`, `CARD-W1,,CLOSED,ref ${wide(PAN)}`, `CARD-W2,,BOGUS,ref ${wide(PAN)}`, 'CARD-W3,,CLOSED,'].join('\n') + '\n',
    );
    const { run, rejects } = await runAndReadRejects(world, file);
    expect(rejects.map((r) => [r.source_line, r.error === PAN_REJECT])).toEqual([
      ['2', true],
      ['3', true],
      ['4', true], // the card number is found before the unknown reason
    ]);
    expect(rejects[1]!.raw).toBe(`CARD-W1,,CLOSED,ref ${wide('411111')}******${wide('1111')}`);
    expect(Object.keys(world.sim.state().optOutCalls)).toEqual(['CARD:CARD-W3']);
    const texts = [...walk(world.dir).filter((f) => f !== file).map((f) => readFileSync(f, 'utf8')), run.stdout, run.stderr];
    for (const t of texts) expect(t.includes(wide(PAN))).toBe(false);
  });

  it('masks a header name holding a card number in the refusal on stderr and in the log', async () => {
    const world = await makeWorld();
    const file = world.file('header.csv', 'card_id,4111.1111.1111.1111\nCARD-1,x\n');
    const run = await runCli(['run', '--config', world.configFile, file]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/missing required column "reason"; the header has "card_id", "4111\.11\*\*\.\*\*\*\*\.1111"/);
    const split = world.file('split-header.csv', 'card_id,41111111,11111111\nCARD-1,x,y\n');
    const run2 = await runCli(['run', '--config', world.configFile, split]);
    expect(run2.code).toBe(2);
    expect(run2.stderr).toContain('"411111**", "****1111"');
    for (const t of [run.stderr, run.stdout, run2.stderr, run2.stdout, ...walk(world.dir).filter((f) => !f.endsWith('.csv')).map((f) => readFileSync(f, 'utf8'))]) {
      expect(inClear(PAN).test(t)).toBe(false);
    }
  });

  it('masks a card number in a file name wherever the job writes or prints it; the archive keeps the name', async () => {
    const world = await makeWorld();
    const inbox = join(world.dir, 'inbox');
    mkdirSync(inbox, { recursive: true }); // the install made it already
    const name = 'closed 4111.1111.1111.1111.csv';
    writeFileSync(join(inbox, name), 'card_id,reason\nCARD-F1,CLOSED\nCARD-F2,BOGUS\n');
    const run = await runCli(['run', '--inbox', inbox, '--archive', world.config.archive, '--config', world.configFile]);
    expect(run.code, run.stderr).toBe(0);
    expect(readdirSync(world.config.archive)).toEqual([name]);
    const batchId = /Batch (\S+) /.exec(run.stdout)![1]!;
    const reportDir = join(world.config.reportsDir, batchId);
    const shown = join(inbox, 'closed 4111.11**.****.1111.csv');
    expect(readCsv<{ source_file: string }>(join(reportDir, 'results.csv'))[0]!.source_file).toBe(shown);
    expect(readCsv<{ source_file: string }>(join(reportDir, 'rejects.csv'))[0]!.source_file).toBe(shown);
    const summary = JSON.parse(readFileSync(join(reportDir, 'summary.json'), 'utf8')) as { inputs: { path: string }[] };
    expect(summary.inputs[0]!.path).toBe(shown);
    const show = await runCli(['show', 'CARD-F1', '--config', world.configFile]);
    expect(show.stdout).toContain(`${shown}:2`);
    // The same file again, by name: skipped as seen before, and the summary names it masked.
    writeFileSync(join(world.dir, name), 'card_id,reason\nCARD-F1,CLOSED\nCARD-F2,BOGUS\n');
    const again = await runCli(['run', '--config', world.configFile, join(world.dir, name)]);
    expect(again.stdout).toContain(`skipped ${join(world.dir, 'closed 4111.11**.****.1111.csv')}`);
    const written = walk(world.dir).filter((f) => !f.startsWith(world.config.archive) && !f.endsWith(name));
    for (const t of [...written.map((f) => readFileSync(f, 'utf8')), run.stdout, run.stderr, show.stdout, again.stdout, again.stderr]) {
      expect(inClear(PAN).test(t)).toBe(false);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// CSV formula injection

describe('CSV report cells', () => {
  it('escapes a leading = + - @ tab or CR in rejects raw and in D1 texts, in every CSV the job writes', async () => {
    const world = await makeWorld({
      scenario: {
        answers: {
          'CARD-E1': { status: 400, body: { errorCode: '=HYPERLINK("http://x")', error: '+SUM(1,2)' } },
          'CARD-E2': { status: 404, body: { errorCode: '@cmd', error: '-2+3' } },
        },
      },
    });
    const file = world.file('cards.csv', 'card_id,reason\n=1+2,CLOSED\n\tTAB x,CLOSED\n@x,CLOSED\nCARD-E1,CLOSED\nCARD-E2,CLOSED\n');
    const run = await runCli(['run', '--config', world.configFile, file]);
    expect(run.code, run.stderr).toBe(1);
    const reportDir = join(world.config.reportsDir, /Batch (\S+) /.exec(run.stdout)![1]!);
    const rejects = readCsv<{ raw: string }>(join(reportDir, 'rejects.csv'));
    expect(rejects.map((r) => r.raw)).toEqual(["'=1+2,CLOSED", "'\tTAB x,CLOSED", "'@x,CLOSED"]);
    for (const name of ['results.csv', 'failures.csv']) {
      const lines = readCsv<{ target_id: string; error_code: string; error_message: string }>(join(reportDir, name));
      const e1 = lines.find((l) => l.target_id === 'CARD-E1')!;
      const e2 = lines.find((l) => l.target_id === 'CARD-E2')!;
      expect([e1.error_code, e1.error_message, e2.error_code, e2.error_message], name).toEqual([
        `'=HYPERLINK("http://x")`,
        "'+SUM(1,2)",
        "'@cmd",
        "'-2+3",
      ]);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// D1's texts

describe("D1's texts are not trusted", () => {
  it('masks, cuts and strips control characters from errorCode, error and an unknown status before they are stored or shown', async () => {
    const ESC = '\u001b';
    const world = await makeWorld({
      scenario: {
        answers: {
          'CARD-T1': {
            status: 400,
            body: { errorCode: `BAD_${ESC}[2J4111 1111 1111 1111_${'C'.repeat(300)}`, error: `${ESC}]0;owned\u0007card 4111-1111-1111-1111 \u009b31m${'x'.repeat(1000)}` },
          },
          'CARD-T2': { status: 200, body: { operationId: 'op-T2', status: `WEIRD${ESC}[31m4111.1111.1111.1111` } },
          'CARD-T3': { status: 200, body: { operationId: `op-${PAN}`, status: 'SUCCESSFUL' } },
        },
      },
      config: { pending: { maxWaitMs: 200 } },
    });
    const file = world.file(`cards-${ESC}[31mred.csv`, 'card_id,reason\nCARD-T1,CLOSED\nCARD-T2,CLOSED\nCARD-T3,CLOSED\n');
    const run = await runCli(['run', '--config', world.configFile, file]);
    expect(run.code, run.stderr).toBe(1);
    const reportDir = join(world.config.reportsDir, /Batch (\S+) /.exec(run.stdout)![1]!);

    const ledger = world.ledger();
    let attempts: { error_code: string | null; error: string | null; operation_status: string | null; operation_id: string | null }[];
    try {
      attempts = ledger.db.prepare(`SELECT error_code, error, operation_status, operation_id FROM attempts`).all() as typeof attempts;
    } finally {
      ledger.close();
    }
    const t1 = attempts.find((a) => a.error_code?.startsWith('BAD_'))!;
    expect(t1.error_code!.length).toBeLessThanOrEqual(64);
    expect(t1.error!.length).toBeLessThanOrEqual(200);
    expect(t1.error_code).toMatch(/^BAD_ \[2J4111 11\*\* \*\*\*\* 1111_C+$/);
    expect(t1.error).toMatch(/^\]0;owned card 4111-11\*\*-\*\*\*\*-\*111 31mx+$/); // "31" glued on: one longer run
    const t2 = attempts.find((a) => a.operation_status?.startsWith('WEIRD'))!;
    expect(t2.operation_status).toBe('WEIRD [31m4111.11**.****.1111');
    // An operation id holding a card number is not kept (it would be shown and sent back to D1).
    expect(attempts.filter((a) => a.operation_status === 'SUCCESSFUL').map((a) => a.operation_id)).toEqual([null]);

    const show1 = await runCli(['show', 'CARD-T1', '--config', world.configFile]);
    const show2 = await runCli(['show', 'CARD-T2', '--config', world.configFile]);
    const status = await runCli(['status', '--config', world.configFile, '--batch', /Batch (\S+) /.exec(run.stdout)![1]!]);
    expect(show1.stdout).toContain('BAD_ [2J4111 11** **** 1111_C');
    expect(show1.stdout).toContain('[31mred.csv:2'); // the file name, without its ESC
    const terminal = [run.stdout, run.stderr, show1.stdout, show1.stderr, show2.stdout, show2.stderr, status.stdout, status.stderr];
    for (const t of terminal) expect(t).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/);
    const files = ['results.csv', 'failures.csv', 'report.html', 'summary.json'].map((f) => readFileSync(join(reportDir, f), 'utf8'));
    for (const t of [...terminal, ...files]) expect(inClear(PAN).test(t)).toBe(false);
  });
});

describe('terminal output', () => {
  it('strips control characters and masks card numbers in the error lines of the CLI and the nightly job', async () => {
    const bad = '/nonexistent/x\u001b[2J4111.1111.1111.1111\u009b/c.json';
    const cli = await runCli(['status', '--config', bad]);
    const nightly = spawnSync(process.execPath, [join(ROOT, 'dist', 'jobs', 'nightly-optout.js'), '--config', bad], { encoding: 'utf8' });
    for (const [code, stderr] of [[cli.code, cli.stderr], [nightly.status, nightly.stderr]] as const) {
      expect(code).toBe(2);
      expect(stderr).toContain('x[2J4111.11**.****.1111/c.json');
      expect(stderr).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/);
    }
  });
});
