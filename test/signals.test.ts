import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, lstatSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, closeWorldsAfterEach, csv, makeWorld, optOutCalls, runCli, type World } from './helpers.js';

// What the people on call see (docs/design.md §13): events a log shipper can alert on.
const HEADER = 'card_id,consumer_id,reason,scope';
closeWorldsAfterEach();

interface LogLine {
  level: string;
  message: string;
  timestamp: string;
  event?: string;
  batchId?: string;
  status?: string;
  exitCode?: number;
  reason?: string;
  rows?: { total: number; valid: number; rejected: number };
  outcomes?: Record<string, number>;
  requestsByStatus?: Record<string, number>;
  durationMs?: number;
  [k: string]: unknown;
}

/** Every line of the log file is one JSON object. */
function logLines(w: World): LogLine[] {
  if (!existsSync(w.config.log.file)) return [];
  return readFileSync(w.config.log.file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as LogLine);
}

const events = (lines: LogLine[], name: string) => lines.filter((l) => l.event === name);

/** The one opening and the one closing event of each batch, checked against each other. */
function closing(lines: LogLine[]): LogLine {
  const starts = events(lines, 'batch.start');
  const closes = lines.filter((l) => l.event === 'batch.end' || l.event === 'batch.abort');
  expect(starts).toHaveLength(1);
  expect(closes).toHaveLength(1);
  expect(closes[0]!.batchId).toBe(starts[0]!.batchId);
  expect(starts[0]!.level).toBe('info');
  // Nothing of the batch is logged after it closed.
  expect(lines[lines.length - 1]).toEqual(closes[0]);
  return closes[0]!;
}

describe('log events', () => {
  it('a completed run: batch.start and batch.end at info, with the counts and the duration', async () => {
    const world = await makeWorld();
    const r = await runCli(['run', '--config', world.configFile, world.file('a.csv', csv(HEADER, ['CARD-1,,CLOSED,', 'CARD-2,,CLOSED,', 'CARD-X,,NOPE,']))]);
    expect(r.code).toBe(0);
    const end = closing(logLines(world));
    expect(end).toMatchObject({ event: 'batch.end', level: 'info', status: 'COMPLETED', exitCode: 0, rows: { total: 3, valid: 2, rejected: 1 }, outcomes: { OPTED_OUT: 2 } });
    expect(end.requestsByStatus).toEqual({ '200': 2 });
    expect(end.durationMs).toBeGreaterThanOrEqual(0);
    expect(logLines(world).filter((l) => l.level !== 'info' && l.level !== 'debug')).toEqual([]);
  });

  it('a report folder that cannot be written after the batch ran: a warning naming it, and the batch still closes with its own exit code, summary and one batch.end', async () => {
    const world = await makeWorld();
    const r = await runCli(['run', '--config', world.configFile, world.file('a.csv', csv(HEADER, ['CARD-1,,CLOSED,', 'CARD-2,,FRAUD,']))], { D1_OPTOUT_FAULT: 'plant-report-link' });
    expect(r.code, r.stderr).toBe(0);
    const end = closing(logLines(world));
    expect(end).toMatchObject({ event: 'batch.end', status: 'COMPLETED', exitCode: 0, outcomes: { OPTED_OUT: 2 } });
    expect(optOutCalls(world.sim)).toBe(2);
    const dir = join(world.config.reportsDir, end.batchId!);
    expect(r.stdout).toContain('OPTED_OUT');
    expect(r.stderr).toContain(`batch ${end.batchId} ran to its close, but its report cannot be written to ${dir} (`);
    expect(r.stderr).toMatch(new RegExp(`once the folder is fixed, write the report with .* report --batch ${end.batchId}`));
    expect(logLines(world).filter((l) => l.level === 'warn' && l.message.includes(dir))).toHaveLength(1);
    expect(lstatSync(dir).isSymbolicLink()).toBe(true); // refused, not written through
    rmSync(dir);
    const later = await runCli(['report', '--config', world.configFile, '--batch', end.batchId!]);
    expect(later.code, later.stderr).toBe(0);
    expect(existsSync(join(dir, 'summary.json'))).toBe(true);
  });

  it('a run with failures (exit 1): batch.end at warn, and the 404 a warning', async () => {
    const world = await makeWorld({ scenario: { unknownIds: ['CARD-404'] } });
    const r = await runCli(['run', '--config', world.configFile, world.file('a.csv', csv(HEADER, ['CARD-1,,CLOSED,', 'CARD-404,,FRAUD,']))]);
    expect(r.code).toBe(1);
    const lines = logLines(world);
    const end = closing(lines);
    expect(end).toMatchObject({ event: 'batch.end', level: 'warn', status: 'COMPLETED_WITH_FAILURES', exitCode: 1, outcomes: { OPTED_OUT: 1, FAILED_PERMANENT: 1 } });
    expect(end.requestsByStatus).toEqual({ '200': 1, '404': 1 });
    const failed = events(lines, 'target.failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ level: 'warn', targetId: 'CARD-404', httpStatus: 404, errorClass: 'permanent', batchId: end.batchId });
  });

  it('retryable failures are warnings; a streak of 5xx is one error, and D1 answering again one info line', async () => {
    // CARD-1 fails 6 times (a streak however the two workers interleave), the others twice each: one streak in all.
    const busy = (times: number) => ({ status: 503, body: { errorCode: 'SERVICE_UNAVAILABLE', error: 'busy' }, times });
    const answers = { 'CARD-1': busy(6), 'CARD-2': busy(2), 'CARD-3': busy(2) };
    const world = await makeWorld({ scenario: { answers }, config: { rate: { concurrency: 1, maxAttempts: 8 } } });
    const r = await runCli(['run', '--config', world.configFile, world.file('a.csv', csv(HEADER, ['CARD-1,,CLOSED,', 'CARD-2,,CLOSED,', 'CARD-3,,CLOSED,']))]);
    expect(r.code).toBe(0);
    const lines = logLines(world);
    expect(events(lines, 'target.failed').map((l) => [l.level, l.errorClass, l.httpStatus])).toEqual(Array.from({ length: 10 }, () => ['warn', 'retryable', 503]));
    expect(events(lines, 'd1.failing').map((l) => [l.level, l.failuresInRow])).toEqual([['error', 5]]);
    const recovered = events(lines, 'd1.recovered');
    expect(recovered.map((l) => l.level)).toEqual(['info']);
    expect(recovered[0]!.failuresInRow).toBeGreaterThanOrEqual(5);
    expect(closing(lines)).toMatchObject({ level: 'info', status: 'COMPLETED', exitCode: 0 });
  });

  it('an outage (exit 4): one d1.failing error per streak and batch.abort at error with the reason', async () => {
    const world = await makeWorld({
      scenario: { outages: [{ startMs: 0, endMs: 600_000 }] },
      config: { rate: { concurrency: 1, maxAttempts: 2 }, abort: { maxConsecutiveFailures: 12 } },
    });
    const rows = Array.from({ length: 30 }, (_, i) => `CARD-O${i},,CLOSED,`);
    const r = await runCli(['run', '--config', world.configFile, world.file('a.csv', csv(HEADER, rows))]);
    expect(r.code).toBe(4);
    const lines = logLines(world);
    const abort = closing(lines);
    expect(abort).toMatchObject({ event: 'batch.abort', level: 'error', status: 'ABORTED', exitCode: 4 });
    expect(abort.reason).toMatch(/^D1's token endpoint looks unavailable: 12 requests in a row got no access token/);
    const failing = events(lines, 'd1.failing');
    expect(failing).toHaveLength(1);
    expect(failing[0]!.level).toBe('error');
  });

  it('the token endpoint down (exit 4): summary and abort reason name it, and D1 requests 0 does not contradict the failures in a row', async () => {
    const world = await makeWorld({
      scenario: { tokenAnswer: { status: 503, body: { errorCode: 'SERVICE_UNAVAILABLE', error: 'down' } } },
      config: { rate: { concurrency: 2, maxAttempts: 3 }, abort: { maxConsecutiveFailures: 8 } },
    });
    const rows = Array.from({ length: 20 }, (_, i) => `CARD-T${i},,CLOSED,`);
    const r = await runCli(['run', '--config', world.configFile, world.file('a.csv', csv(HEADER, rows))]);
    expect(r.code).toBe(4);
    expect(world.sim.state().requests - world.sim.state().tokenRequests).toBe(0); // nothing reached the API
    const tokenRequests = world.sim.state().tokenRequests;
    expect(tokenRequests).toBeGreaterThan(0);
    expect(r.stdout).toMatch(/^Aborted: D1's token endpoint looks unavailable: 8 requests in a row got no access token and were not sent \(last: token endpoint answered HTTP 503 \(SERVICE_UNAVAILABLE: down\)\)$/m);
    expect(r.stdout).toMatch(new RegExp(`^  D1 requests +0 +none sent: the token endpoint failed ${tokenRequests} time\\(s\\), so there was no access token$`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^  Token requests +${tokenRequests} +${tokenRequests} got no access token from D1's token endpoint$`, 'm'));
    expect(r.stdout).not.toMatch(/retryable failures in a row/);
    const abort = closing(logLines(world));
    expect(abort.reason).toMatch(/^D1's token endpoint looks unavailable/);
    const summary = JSON.parse(readFileSync(`${/Report: (\S+)\/report\.html/.exec(r.stdout)![1]}/summary.json`, 'utf8')) as { d1: Record<string, number> };
    expect(summary.d1).toMatchObject({ requests: 0, tokenRequests, tokenFailures: tokenRequests });
  });

  it('the API failing while tokens are issued (exit 4): the reason blames D1, not the token endpoint', async () => {
    const world = await makeWorld({ scenario: { fail5xxRate: 1 }, config: { rate: { concurrency: 1, maxAttempts: 2 }, abort: { maxConsecutiveFailures: 4 } } });
    const r = await runCli(['run', '--config', world.configFile, world.file('a.csv', csv(HEADER, Array.from({ length: 5 }, (_, i) => `CARD-U${i},,CLOSED,`)))]);
    expect(r.code).toBe(4);
    expect(r.stdout).toMatch(/^Aborted: D1 looks unavailable: 4 retryable failures in a row \(last: Service unavailable\)$/m);
    expect(r.stdout).toMatch(/^  D1 requests +4 +\(5\d\d: \d+(, 5\d\d: \d+)?\), \d+ retr(y|ies)$/m);
    expect(r.stdout).not.toMatch(/Token requests/);
  });

  it('SIGTERM (exit 4): batch.abort at error, naming the signal, is the last line', async () => {
    const world = await makeWorld({ scenario: { latencyMs: 20 }, config: { rate: { requestsPerSecond: 40, concurrency: 4 } } });
    const rows = Array.from({ length: 120 }, (_, i) => `CARD-S${i},,CLOSED,`);
    const child = spawn(process.execPath, [CLI, 'run', '--config', world.configFile, world.file('a.csv', csv(HEADER, rows))]);
    while (optOutCalls(world.sim) < 10) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number];
    expect(code).toBe(4);
    const abort = closing(logLines(world));
    expect(abort).toMatchObject({ event: 'batch.abort', level: 'error', status: 'ABORTED', exitCode: 4, reason: 'received SIGTERM' });
    expect(abort.outcomes!['NOT_ATTEMPTED']).toBeGreaterThan(0);
  });

  it('refused runs: exit 2 logs run.refused at error, exit 3 at warn, and neither opens a batch', async () => {
    const world = await makeWorld({ scenario: { latencyMs: 200 }, config: { rate: { requestsPerSecond: 5, concurrency: 1 } } });
    const bad = await runCli(['run', '--config', world.configFile, world.file('bad.csv', 'no header here\u0000\u0001')]);
    expect(bad.code).toBe(2);
    let lines = logLines(world);
    expect(lines.map((l) => [l.event, l.level, l.exitCode])).toEqual([['run.refused', 'error', 2]]);

    const holder = spawn(process.execPath, [CLI, 'run', '--config', world.configFile, world.file('a.csv', csv(HEADER, Array.from({ length: 20 }, (_, i) => `CARD-L${i},,CLOSED,`)))]);
    try {
      while (optOutCalls(world.sim) === 0) await new Promise((r) => setTimeout(r, 20));
      const locked = await runCli(['run', '--config', world.configFile, world.file('b.csv', csv(HEADER, ['CARD-B,,CLOSED,']))]);
      expect(locked.code).toBe(3);
      lines = logLines(world);
      const refused = events(lines, 'run.refused');
      expect(refused.map((l) => [l.level, l.exitCode])).toEqual([
        ['error', 2],
        ['warn', 3],
      ]);
      expect(refused[1]!.message).toMatch(/holds the ledger lock/);
    } finally {
      holder.kill('SIGKILL');
      await once(holder, 'close');
    }
  });
});
