import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ProgressBoard } from '../src/report/progress.js';
import { CLI, csv, makeWorld, ROOT, runCli, type World, closeWorldsAfterEach } from './helpers.js';

// Progress: the board that adds up the pipeline's events, the log lines a cron run writes, and
// the live bars on a real pseudo-terminal.
const HEADER = 'card_id,consumer_id,reason,scope';
const cards = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(3, '0')},,CLOSED,`);

let world: World | null = null;
closeWorldsAfterEach();

describe('ProgressBoard', () => {
  it('adds up each stage, with the rate and ETA of the last seconds, and totals once a stage is over', () => {
    let now = 0;
    const board = new ProgressBoard(() => now);
    board.on({ type: 'batch', batchId: 'B-1' });
    board.on({ type: 'files', files: 2 });
    board.on({ type: 'rows', rows: 0, rejected: 0, fileDone: true }); // the first file was seen before
    now = 2000;
    board.on({ type: 'rows', rows: 1000, rejected: 3, fileDone: false });
    expect(board.describe('read')).toBe('1/2 file(s), 1,000 rows (3 rejected), 500.0 rows/s');
    expect(board.counts('read')).toEqual({ value: 1, total: 2 });
    now = 2500;
    board.on({ type: 'rows', rows: 500, rejected: 0, fileDone: true });

    now = 3000;
    board.on({ type: 'to-send', targets: 100 });
    expect(board.describe('read')).toBe('2/2 file(s), 1,500 rows (3 rejected) in 3.0 s');
    expect(board.describe('send')).toBe('0/100 targets (0%), … req/s, ETA …; 0 × 429, paused 0.0 s');
    for (let i = 1; i <= 40; i++) {
      now = 3000 + i * 100; // 10 targets a second, 2 requests each, one 429 pause of 1.5 s
      board.on({ type: 'sent', d1: { requests: i * 2, http429: 1, throttledMs: 1500 } });
    }
    expect(board.describe('send')).toBe('40/100 targets (40%), 20.0 req/s, ETA 6.0 s; 1 × 429, paused 1.5 s');
    // The consumers are done and covered 30 cards: fewer to send, the total follows.
    board.on({ type: 'to-send', targets: 30 });
    expect(board.counts('send')).toEqual({ value: 40, total: 70 });
    now = 17_000; // nothing sent for 10 s (paused): the rate falls, no ETA is promised
    expect(board.describe('send')).toBe('40/70 targets (57%), 0.0 req/s, ETA …; 1 × 429, paused 1.5 s');

    // Two batches polled at once add up on one display.
    board.on({ type: 'to-poll', operations: 3 });
    board.on({ type: 'to-poll', operations: 2 });
    now = 18_000;
    board.on({ type: 'polled', settled: true, d1: { requests: 81, http429: 1, throttledMs: 1500 } });
    board.on({ type: 'polled', settled: false, d1: { requests: 82, http429: 1, throttledMs: 1500 } });
    board.on({ type: 'polled', settled: true, d1: { requests: 83, http429: 1, throttledMs: 1500 } });
    expect(board.stage).toBe('poll');
    expect(board.counts('poll')).toEqual({ value: 2, total: 5 });
    expect(board.describe('poll')).toBe('2/5 pending operation(s) settled, 3 poll(s), 3.0 req/s');
    expect(board.describe('send')).toBe('40/70 targets in 14.0 s, 5.7 req/s; 1 × 429, paused 1.5 s');
    board.finish();
    expect(board.describe('poll')).toBe('2/5 pending operation(s) settled, 3 poll(s) in 1.0 s; 3 still pending');
    expect(board.batchId).toBe('B-1');
  });
});

describe('progress off a terminal (cron)', () => {
  it('names what D1 answers while it keeps failing, and stops once it answers again', () => {
    const board = new ProgressBoard(() => 0);
    board.on({ type: 'to-send', targets: 10 });
    for (let i = 0; i < 3; i++) board.on({ type: 'answer', failed: true, what: 'HTTP 503 SERVICE_UNAVAILABLE' });
    expect(board.describe('send')).toMatch(/; D1 failing: 3 in a row, last HTTP 503 SERVICE_UNAVAILABLE$/);
    board.on({ type: 'answer', failed: true, what: 'no answer: timeout after 2000 ms' });
    expect(board.describe('send')).toMatch(/; D1 failing: 4 in a row, last no answer: timeout after 2000 ms$/);
    board.on({ type: 'answer', failed: false, what: null });
    expect(board.describe('send')).not.toContain('failing');
  });

  it('during an outage the progress lines off a terminal say D1 is failing, and how', async () => {
    world = await makeWorld({
      scenario: { outages: [{ startMs: 0, endMs: 600_000 }] },
      config: { rate: { concurrency: 1, maxAttempts: 100 }, abort: { maxConsecutiveFailures: 100_000 }, log: { level: 'info', progressEverySec: 1 } },
    });
    const child = spawn(process.execPath, [CLI, 'run', '--config', world.configFile, world.file('a.csv', csv(HEADER, cards('CARD-O', 5)))]);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    while (!/ sending: .*D1 failing/.test(stderr)) await new Promise((r) => setTimeout(r, 50));
    child.kill('SIGTERM');
    await new Promise((r) => child.once('close', r));
    // The outage refuses the token too: nothing leaves, and the line says why.
    expect(stderr).toMatch(/ progress \[\S+\] sending: 0\/5 targets .*; D1 failing: \d+ in a row, last not sent: token endpoint answered HTTP 503 \(SERVICE_UNAVAILABLE/m);
  });

  it('run and poll write one progress line every log.progressEverySec to stderr and the log; --quiet writes none', async () => {
    world = await makeWorld({
      scenario: { pendingRate: 1, pendingDelayMs: 3500 },
      config: { rate: { requestsPerSecond: 20 }, pending: { maxWaitMs: 100 }, log: { level: 'info', progressEverySec: 1 } },
    });
    const run = await runCli(['run', '--config', world.configFile, world.file('a.csv', csv(HEADER, cards('CARD-P', 50)))]);
    expect(run.code).toBe(0);
    const batchId = /Batch (\S+) \(run\)/.exec(run.stdout)![1]!;
    const lines = run.stderr.trim().split('\n');
    // After the opt-outs the run polls for pending.maxWaitMs; a line may fall into that stage too.
    for (const l of lines) expect(l).toMatch(new RegExp(`^d1-optout: \\S+Z progress \\[${batchId}\\] (sending|polling): `));
    const sending = lines.filter((l) => l.includes('] sending: '));
    expect(sending.length).toBeGreaterThanOrEqual(2); // 50 opt-outs at 20/s take 2.5 s
    const line = new RegExp(`^d1-optout: (\\S+Z) progress \\[${batchId}\\] sending: (\\d+)/50 targets \\(\\d+%\\), (?:\\d+\\.\\d|…) req/s, ETA [^;]+; 0 × 429, paused 0\\.0 s$`);
    const parsed = sending.map((l) => {
      const m = line.exec(l);
      expect(m, l).not.toBeNull();
      return { at: Date.parse(m![1]!), done: Number(m![2]) };
    });
    for (let i = 1; i < parsed.length; i++) {
      expect(parsed[i]!.at - parsed[i - 1]!.at).toBeGreaterThanOrEqual(900);
      expect(parsed[i]!.done).toBeGreaterThan(parsed[i - 1]!.done);
    }
    expect(run.stdout).toMatch(/PENDING\s+50/); // the progress went to stderr, the summary to stdout as before

    // D1 settles each operation 3.5 s after its opt-out: poll reports them as they settle.
    const poll = await runCli(['poll', '--wait', '20', '--config', world.configFile]);
    expect(poll.code).toBe(0);
    const polling = poll.stderr.trim().split('\n');
    expect(polling.length).toBeGreaterThanOrEqual(1);
    for (const l of polling) expect(l).toMatch(/^d1-optout: \S+Z progress polling: \d+\/50 pending operation\(s\) settled, \d+ poll\(s\), (\d+\.\d|…) req\/s$/);
    expect(poll.stdout).toContain(`Batch ${batchId}: 0 still pending`);

    const logged = readFileSync(world.config.log.file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { message: string; batchId?: string; progress?: { stage: string; done: number; total: number } })
      .filter((l) => l.message.startsWith('progress '));
    expect(logged.filter((l) => l.progress?.stage === 'send' && l.batchId === batchId && l.progress.total === 50)).toHaveLength(sending.length);
    expect(logged.filter((l) => l.progress?.stage === 'poll')).toHaveLength(polling.length + lines.length - sending.length);

    const quiet = await runCli(['run', '--quiet', '--config', world.configFile, world.file('b.csv', csv(HEADER, cards('CARD-Q', 10)))]);
    expect(quiet.code).toBe(0);
    expect(quiet.stderr).toBe('');
    const quietId = /Batch (\S+) \(run\)/.exec(quiet.stdout)![1]!;
    expect(readFileSync(world.config.log.file, 'utf8')).not.toMatch(new RegExp(`"message":"progress [^"]*"[^\\n]*"batchId":"${quietId}"`));
    expect(readFileSync(world.config.log.file, 'utf8')).toContain(quietId); // the batch did log, just no progress
  });
});

/** Runs the CLI on a real pseudo-terminal (util-linux `script`), 200 columns wide; returns what the terminal received. */
function runOnTty(args: string[]): Promise<{ code: number | null; out: string }> {
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const command = `stty cols 200; ${[process.execPath, CLI, ...args].map(quote).join(' ')}`;
  return new Promise((resolve) => {
    const child = spawn('script', ['-qfec', command, '/dev/null'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => resolve({ code, out }));
  });
}

describe('progress on a terminal', () => {
  it('draws a live bar per stage (reading, sending with rate and ETA, polling), keeps log lines whole, then the summary; --quiet draws none', async () => {
    world = await makeWorld({
      scenario: { pendingRate: 0.3, pendingDelayMs: 300, seed: 11 },
      config: { rate: { requestsPerSecond: 30 }, pending: { pollIntervalMs: 100 }, log: { level: 'info' } },
    });
    const file = world.file('a.csv', csv(HEADER, cards('CARD-T', 60)));
    const { code, out } = await runOnTty(['run', '--config', world.configFile, file]);
    expect(code).toBe(0);
    expect(out).toMatch(/Reading {2}[█░]{24} 1\/1 file\(s\), 60 rows \(0 rejected\)/);
    expect(out).toMatch(/Sending {2}[█░]{24} \d+\/60 targets \(\d+%\), (\d+\.\d|…) req\/s, ETA [^;]+; 0 × 429/);
    expect(out).toMatch(/Sending {2}█{24} 60\/60 targets in \d+\.\d s, \d+\.\d req\/s/);
    expect(out).toMatch(/Polling {2}[█░]{24} \d+\/\d+ pending operation\(s\) settled/);
    // The logger's lines printed while the bars are up land above them, whole.
    expect(out).toContain(`\x1b[2K`);
    expect(out).toMatch(new RegExp(`info \\[\\S+\\]: ingested ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: 60 rows, 0 rejected`));
    // The bars end before the summary, and the cursor is given back.
    expect(out.lastIndexOf('Sending  ')).toBeLessThan(out.indexOf('Batch '));
    expect(out).toContain('\x1b[?25h');
    expect(out).toMatch(/Batch \S+ \(run\): COMPLETED/);

    const quiet = await runOnTty(['run', '--quiet', '--config', world.configFile, world.file('b.csv', csv(HEADER, cards('CARD-U', 20)))]);
    expect(quiet.code).toBe(0);
    expect(quiet.out).toMatch(/Batch \S+ \(run\): COMPLETED/);
    expect(quiet.out).not.toMatch(/Reading|Sending|Polling|[█░]/);
  });
});
