import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import parsePrometheusTextFormat, { type PromFamily } from 'parse-prometheus-text-format';
import { describe, expect, it } from 'vitest';
import { OUTCOMES, type BatchSummary } from '../src/types.js';
import { CLI, ROOT, csv, makeWorld, optOutCalls, runCli, type World, closeWorldsAfterEach } from './helpers.js';

// --metrics-file: the Prometheus textfile-collector format, read back with a real parser of it.
const HEADER = 'card_id,consumer_id,reason,scope';

let world: World | null = null;
closeWorldsAfterEach();

function families(path: string): Map<string, PromFamily> {
  const text = readFileSync(path, 'utf8');
  // The exposition grammar, line by line: the parser below is lenient about what it skips.
  for (const line of text.trimEnd().split('\n')) {
    expect(line).toMatch(/^(# (HELP|TYPE) d1_optout_[a-z0-9_]+ .+|d1_optout_[a-z0-9_]+(\{([a-z_]+="([^"\\\n]|\\.)*",?)*\})? -?[0-9.e+]+)$/);
  }
  const parsed = parsePrometheusTextFormat(text);
  return new Map(parsed.map((f) => [f.name, f]));
}

function value(fams: Map<string, PromFamily>, name: string, labels: Record<string, string> = {}): number {
  const fam = fams.get(`d1_optout_${name}`);
  expect(fam, name).toBeDefined();
  const sample = fam!.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
  expect(sample, `${name} ${JSON.stringify(labels)}`).toBeDefined();
  return Number(sample!.value);
}

const summaryOf = (stdout: string) => JSON.parse(stdout) as BatchSummary;

describe('--metrics-file', () => {
  it('run: every figure of the last run, as gauges named d1_optout_*, agreeing with summary.json', async () => {
    world = await makeWorld({ scenario: { unknownIds: ['CARD-404'], quotaRps: 10 }, config: { rate: { requestsPerSecond: 20 } } });
    const rows = [...Array.from({ length: 24 }, (_, i) => `CARD-M${i},,CLOSED,`), 'CARD-404,,FRAUD,', 'CARD-M1,,CLOSED,', 'CARD-BAD,,NOPE,'];
    const metricsDir = join(world.dir, 'textfile');
    mkdirSync(metricsDir);
    const path = join(metricsDir, 'd1_optout.prom');
    const run = await runCli(['run', '--json', '--config', world.configFile, '--metrics-file', path, world.file('a.csv', csv(HEADER, rows))]);
    expect(run.code).toBe(1);
    const s = summaryOf(run.stdout);
    expect(s.d1.http429).toBeGreaterThan(0); // the quota of 10/s against a job configured for 20/s

    const fams = families(path);
    for (const f of fams.values()) {
      expect(f.name.startsWith('d1_optout_')).toBe(true);
      expect(f.type).toBe('GAUGE');
      expect(f.help.length).toBeGreaterThan(10);
    }
    expect(fams.get('d1_optout_last_run_info')!.metrics[0]!.labels).toEqual({ batch_id: s.batchId, kind: 'run', parent_batch_id: '' });
    expect(value(fams, 'last_run_start_timestamp_seconds')).toBe(Date.parse(s.startedAt) / 1000);
    expect(value(fams, 'last_run_end_timestamp_seconds')).toBe(Date.parse(s.endedAt!) / 1000);
    expect(value(fams, 'last_run_duration_seconds')).toBeCloseTo((Date.parse(s.endedAt!) - Date.parse(s.startedAt)) / 1000, 3);
    expect(fams.get('d1_optout_last_run_status')!.metrics.filter((m) => m.value === '1').map((m) => m.labels?.['status'])).toEqual(['COMPLETED_WITH_FAILURES']);
    expect(value(fams, 'last_run_exit_code')).toBe(1);
    expect(value(fams, 'last_run_rows', { kind: 'total' })).toBe(27);
    expect(value(fams, 'last_run_rows', { kind: 'valid' })).toBe(s.rows.valid);
    expect(value(fams, 'last_run_rows', { kind: 'rejected' })).toBe(1);
    for (const o of OUTCOMES) {
      expect(value(fams, 'last_run_outcomes', { outcome: o }), o).toBe(s.outcomes[o] ?? 0);
      expect(value(fams, 'last_run_carried_over', { outcome: o }), o).toBe(s.carriedOver[o] ?? 0);
    }
    expect(value(fams, 'last_run_outcomes', { outcome: 'OPTED_OUT' })).toBe(24);
    expect(value(fams, 'last_run_d1_requests')).toBe(s.d1.requests);
    expect(value(fams, 'last_run_d1_http_429')).toBe(s.d1.http429);
    expect(value(fams, 'last_run_throttled_seconds')).toBe(s.d1.throttledMs / 1000);
    expect(value(fams, 'last_run_achieved_requests_per_second')).toBe(s.d1.achievedRps);

    // Written whole under a temporary name and renamed: nothing else is left in the folder, and
    // the collector (another user) can read it.
    expect(readdirSync(metricsDir)).toEqual(['d1_optout.prom']);
    expect(statSync(path).mode & 0o777).toBe(0o644);
  });

  it('replaces the file by rename, so a reader of the old file never sees it half rewritten; rerun labels its kind and parent', async () => {
    world = await makeWorld({ scenario: { fail5xxRate: 1 }, config: { rate: { maxAttempts: 1 } } });
    const path = join(world.dir, 'd1_optout.prom');
    const old = '# HELP d1_optout_marker old file\n# TYPE d1_optout_marker gauge\nd1_optout_marker 1\n';
    writeFileSync(path, old);
    const fd = openSync(path, 'r');
    try {
      const inodeBefore = statSync(path).ino;
      const run = await runCli(['run', '--json', '--config', world.configFile, '--metrics-file', path, world.file('a.csv', csv(HEADER, ['CARD-R1,,CLOSED,']))]);
      expect(run.code).toBe(1);
      expect(statSync(path).ino).not.toBe(inodeBefore);
      // The reader that had the old file open still reads the old file, whole.
      const buf = Buffer.alloc(old.length + 10);
      expect(buf.toString('utf8', 0, readSync(fd, buf, 0, buf.length, 0))).toBe(old);
      const parent = summaryOf(run.stdout).batchId;
      expect(families(path).has('d1_optout_marker')).toBe(false);

      const rerun = await runCli(['rerun', '--last', '--json', '--config', world.configFile, '--metrics-file', path]);
      expect(rerun.code).toBe(1);
      const fams = families(path);
      expect(fams.get('d1_optout_last_run_info')!.metrics[0]!.labels).toEqual({ batch_id: summaryOf(rerun.stdout).batchId, kind: 'rerun', parent_batch_id: parent });
      expect(value(fams, 'last_run_carried_over', { outcome: 'FAILED_RETRYABLE' })).toBe(1);
      expect(value(fams, 'last_run_rows', { kind: 'total' })).toBe(0);
    } finally {
      closeSync(fd);
    }
  });

  it('a folder that cannot take the file stops the run before anything is done (exit 2); --dry-run writes no file', async () => {
    world = await makeWorld();
    const a = world.file('a.csv', csv(HEADER, ['CARD-1,,CLOSED,']));
    const missing = join(world.dir, 'no-such-dir', 'd1_optout.prom');
    const run = await runCli(['run', '--config', world.configFile, '--metrics-file', missing, a]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('no-such-dir');
    expect(world.ledgerUntouched()).toBe(true);
    expect(world.sim.state().requests).toBe(0);
    // A folder given where the file belongs, and an empty path, are refused the same way.
    for (const bad of [world.dir, '']) {
      const r = await runCli(['run', '--config', world.configFile, '--metrics-file', bad, a]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/--metrics-file/);
    }
    expect(world.ledgerUntouched()).toBe(true);

    const path = join(world.dir, 'dry.prom');
    const dry = await runCli(['run', '--dry-run', '--config', world.configFile, '--metrics-file', path, a]);
    expect(dry.code).toBe(0);
    expect(existsSync(path)).toBe(false);
  });

  it('every exit writes the file, 2 and 3 included; the last success is carried over by every run that did not succeed', async () => {
    world = await makeWorld({ scenario: { latencyMs: 100, unknownIds: ['CARD-404'] }, config: { rate: { requestsPerSecond: 5, concurrency: 1 } } });
    const w = world;
    const path = join(w.dir, 'd1_optout.prom');
    const success = () => value(families(path), 'last_success_timestamp_seconds');
    const exitCode = () => value(families(path), 'last_run_exit_code');

    // No success yet: 0, so a staleness alert fires for a job that never succeeded.
    expect((await runCli(['run', '--config', w.configFile, '--metrics-file', path, join(w.dir, 'missing.csv')])).code).toBe(2);
    expect(exitCode()).toBe(2);
    expect(success()).toBe(0);
    // A refused run has no batch: no batch figures that would belong to an older batch.
    expect(families(path).has('d1_optout_last_run_info')).toBe(false);
    expect(value(families(path), 'last_run_end_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000 - 60);

    const ok = await runCli(['run', '--json', '--config', w.configFile, '--metrics-file', path, w.file('a.csv', csv(HEADER, ['CARD-1,,CLOSED,']))]);
    expect(ok.code).toBe(0);
    const okAt = Date.parse(summaryOf(ok.stdout).endedAt!) / 1000;
    expect(success()).toBe(okAt);
    expect(exitCode()).toBe(0);

    // Exit 1 (a batch with failures is no success), 2 (bad input; a config that cannot be loaded,
    // by the CLI and by the nightly job) keep it.
    expect((await runCli(['run', '--config', w.configFile, '--metrics-file', path, w.file('f.csv', csv(HEADER, ['CARD-404,,CLOSED,']))])).code).toBe(1);
    expect([exitCode(), success()]).toEqual([1, okAt]);
    expect((await runCli(['run', '--config', w.configFile, '--metrics-file', path, w.file('bad.csv', 'no header\u0000')])).code).toBe(2);
    expect([exitCode(), success()]).toEqual([2, okAt]);
    expect((await runCli(['run', '--config', join(w.dir, 'no-config.json'), '--metrics-file', path, join(w.dir, 'a.csv')])).code).toBe(2);
    expect([exitCode(), success()]).toEqual([2, okAt]);
    const nightly = await new Promise<number | null>((resolve) => {
      const child = spawn(process.execPath, [join(ROOT, 'dist', 'jobs', 'nightly-optout.js'), '--config', join(w.dir, 'no-config.json'), '--metrics-file', path]);
      child.on('close', resolve);
    });
    expect(nightly).toBe(2);
    expect([exitCode(), success()]).toEqual([2, okAt]);

    // Exit 3 while another run holds the lock; exit 4 when that holder is stopped by SIGTERM.
    const holder = spawn(process.execPath, [CLI, 'run', '--config', w.configFile, '--metrics-file', path, w.file('b.csv', csv(HEADER, Array.from({ length: 30 }, (_, i) => `CARD-H${i},,CLOSED,`)))]);
    while (optOutCalls(w.sim) < 3) await new Promise((r) => setTimeout(r, 20));
    expect((await runCli(['run', '--config', w.configFile, '--metrics-file', path, w.file('c.csv', csv(HEADER, ['CARD-C,,CLOSED,']))])).code).toBe(3);
    expect([exitCode(), success()]).toEqual([3, okAt]);
    holder.kill('SIGTERM');
    const [code] = (await once(holder, 'exit')) as [number];
    expect(code).toBe(4);
    const fams = families(path);
    expect(value(fams, 'last_run_exit_code')).toBe(4);
    expect(value(fams, 'last_success_timestamp_seconds')).toBe(okAt);
    expect(value(fams, 'last_run_status', { status: 'ABORTED' })).toBe(1);
  });
});
