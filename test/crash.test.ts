import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { COMMIT_MAX_OPS, Ledger } from '../src/ledger/index.js';
import { mulberry32 } from '../src/sim/index.js';
import type { BatchSummary } from '../src/types.js';
import { assertReconciles, CLI, csv, makeWorld, runCli, type World, closeWorldsAfterEach } from './helpers.js';

// Crash safety (issue 5), with the built CLI in real child processes against the simulator.
const HEADER = 'card_id,reason';

let world: World | null = null;
closeWorldsAfterEach();

/** Starts the CLI and SIGKILLs it after `ms`; resolves with its exit code (null when killed). */
async function runAndKill(args: string[], ms: number): Promise<number | null> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: 'ignore' });
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return code;
}

function batchReports(w: World): BatchSummary[] {
  const dir = w.config.reportsDir;
  return readdirSync(dir).map((b) => JSON.parse(readFileSync(join(dir, b, 'summary.json'), 'utf8')) as BatchSummary);
}

const KILLS = Number(process.env['D1_OPTOUT_KILLS'] ?? 5);

describe('kill anywhere, rerun, lose nothing', () => {
  it('SIGKILL at seeded random instants: every target ends opted out, no call after a recorded success, duplicates only in doubt', { timeout: 60_000 + KILLS * 6_000 }, async () => {
    const kills = KILLS;
    const seed = Number(process.env['D1_OPTOUT_KILL_SEED'] ?? 20261129);
    const concurrency = 8;
    world = await makeWorld({
      scenario: { latencyMs: [5, 40], pendingRate: 0.1, pendingDelayMs: 200, seed },
      config: { rate: { requestsPerSecond: 150, concurrency }, pending: { pollIntervalMs: 100, maxWaitMs: 2000 } },
    });
    const n = Math.max(300, kills * 100); // enough work that the kills land while opt-outs are in flight
    const ids = Array.from({ length: n }, (_, i) => `CARD-K${String(i).padStart(4, '0')}`);
    const file = world.file('cards.csv', csv(HEADER, ids.map((id) => `${id},FRAUD`)));
    const rand = mulberry32(seed);
    const base = ['--config', world.configFile];

    let runs = 0;
    let killed = 0;
    // Runs alternate between the nightly `run` (the same file again: read once, then seen) and
    // `rerun --last`, as an operator would.
    const command = (i: number) => (i % 2 === 0 ? ['run', ...base, file] : ['rerun', '--last', ...base]);
    const hasBatch = () => {
      if (!existsSync(world!.config.ledger)) return false;
      const l = world!.ledger();
      const any = l.batches.list(1).length > 0;
      l.close();
      return any;
    };
    // Once the work is done a run takes less than a typical kill delay, so the loop also stops
    // after kills * 6 runs; the kills that landed are asserted below.
    for (; killed < kills && runs < kills * 6; runs++) {
      const batchBefore = hasBatch();
      const code = await runAndKill(command(runs), 150 + Math.floor(rand() * 1200));
      if (code === null) killed++;
      // It finished before the kill: fine, go on. A rerun before any batch exists is a usage error.
      else expect(code === 2 ? runs % 2 === 1 && !batchBefore : [0, 1, 4].includes(code)).toBe(true);
    }
    expect(killed).toBeGreaterThanOrEqual(Math.min(kills, 5));
    let last: number | null = null;
    for (let i = 0; i < 6 && last !== 0; i++, runs++) {
      // The nightly `run` carries over every unfinished target of every batch, so its exit 0 means
      // done; `rerun --last` answers only for the last batch, which may be an empty run killed
      // before it planned ("Nothing to rerun", exit 0) while earlier batches still hold targets.
      last = (await runCli(command(0))).code;
      expect([0, 1]).toContain(last);
    }
    expect(last).toBe(0);

    // Every target is opted out, in the ledger and at D1.
    const db = new Database(world.config.ledger, { readonly: true });
    try {
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      const states = db.prepare(`SELECT state, count(*) AS n FROM targets GROUP BY state`).all();
      expect(states).toEqual([{ state: 'OPTED_OUT', n }]);
      const truth = world.sim.state();
      for (const id of ids) expect(truth.targets[`CARD:${id}`]?.state).toBe('OPTED_OUT');

      // No call reached D1 after the call whose success the ledger recorded.
      const recorded = db
        .prepare(`SELECT t.target_id AS id, a.correlation_id AS cid FROM attempts a JOIN targets t ON t.pk = a.target_pk
                   WHERE a.kind = 'OPT_OUT' AND a.class IN ('done', 'pending')`)
        .all() as { id: string; cid: string }[];
      const arrivals = new Map<string, { at: number; cid: string | null }[]>();
      for (const c of truth.calls) {
        if (!c.key || !c.path.endsWith(':clickToPayOptOut')) continue;
        arrivals.set(c.key, [...(arrivals.get(c.key) ?? []), { at: c.at, cid: c.correlationId }]);
      }
      const successAt = new Map<string, number>();
      for (const r of recorded) {
        const at = arrivals.get(`CARD:${r.id}`)?.find((c) => c.cid === r.cid)?.at;
        expect(at, `the recorded success of ${r.id} reached D1`).toBeDefined();
        successAt.set(r.id, Math.min(successAt.get(r.id) ?? Infinity, at!));
      }
      let callsAfterSuccess = 0;
      for (const id of ids) {
        const first = successAt.get(id);
        expect(first, `${id} has a recorded success`).toBeDefined();
        callsAfterSuccess += (arrivals.get(`CARD:${id}`) ?? []).filter((c) => c.at > first!).length;
      }
      expect(callsAfterSuccess).toBe(0);

      // Duplicates are in-doubt requests only: at most what was in flight or awaiting its group
      // commit at each kill.
      const calls = Object.values(truth.optOutCalls).reduce((s, v) => s + v, 0);
      const duplicates = calls - n;
      expect(duplicates).toBeLessThanOrEqual(killed * (concurrency + COMMIT_MAX_OPS));
      process.stdout.write(`kill test: ${killed} kills, ${runs} runs, ${duplicates} duplicate opt-out calls (bound ${killed * (concurrency + COMMIT_MAX_OPS)})\n`);
    } finally {
      db.close();
    }
    // Every batch, the killed ones included (closed by the next run), has a report that reconciles.
    // (A run killed while starting up may not have created its batch yet.)
    const reports = batchReports(world);
    const ledger = world.ledger();
    const batches = ledger.batches.list(1000);
    ledger.close();
    expect(reports.map((r) => r.batchId).sort()).toEqual(batches.map((b) => b.id).sort());
    expect(batches.every((b) => b.status !== 'RUNNING')).toBe(true);
    expect(batches.length).toBeGreaterThanOrEqual(runs - killed);
    for (const s of reports) assertReconciles(s);
  });

  it('SIGTERM mid-run: exit 4, an ABORTED report, and a rerun finishes the rest', async () => {
    world = await makeWorld({ scenario: { latencyMs: 20 }, config: { rate: { requestsPerSecond: 40, concurrency: 4 } } });
    const ids = Array.from({ length: 120 }, (_, i) => `CARD-S${String(i).padStart(3, '0')}`);
    const file = world.file('cards.csv', csv(HEADER, ids.map((id) => `${id},CLOSED`)));
    const child = spawn(process.execPath, [CLI, 'run', '--config', world.configFile, file]);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    while (Object.keys(world.sim.state().optOutCalls).length < 20) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number];
    expect(code).toBe(4);
    expect(stderr).toMatch(/SIGTERM received/);
    const [report] = batchReports(world);
    expect(report!.status).toBe('ABORTED');
    expect(report!.abortReason).toBe('received SIGTERM');
    assertReconciles(report!);
    expect(report!.outcomes.NOT_ATTEMPTED).toBeGreaterThan(0);
    // Nothing in doubt: every request that left was answered and recorded.
    expect(report!.outcomes.FAILED_RETRYABLE ?? 0).toBe(0);
    const sent = Object.keys(world.sim.state().optOutCalls).length;
    expect(report!.outcomes.OPTED_OUT).toBe(sent);

    const rerun = await runCli(['rerun', '--last', '--config', world.configFile]);
    expect(rerun.code).toBe(0);
    expect(rerun.stdout).toMatch(/\(rerun of \S+\): COMPLETED/);
    for (const id of ids) expect(world.sim.state().targets[`CARD:${id}`]?.state).toBe('OPTED_OUT');
    expect(Object.values(world.sim.state().optOutCalls).every((v) => v === 1)).toBe(true);
  });

  it('a crash between commit and archive move: the file is neither lost nor ingested twice', async () => {
    world = await makeWorld();
    const inbox = world.config.inbox;
    mkdirSync(inbox, { recursive: true });
    writeFileSync(join(inbox, 'a.csv'), csv(HEADER, ['CARD-A1,CLOSED', 'CARD-A2,CLOSED']));
    const crashed = await runCli(['run', '--inbox', inbox, '--archive', world.config.archive, '--config', world.configFile], { D1_OPTOUT_FAULT: 'kill-before-archive' });
    expect(crashed.code).toBe(null); // SIGKILLed by the fault injection
    expect(existsSync(join(inbox, 'a.csv'))).toBe(true);
    expect(world.sim.state().optOutCalls).toEqual({});

    const next = await runCli(['run', '--inbox', inbox, '--archive', world.config.archive, '--config', world.configFile]);
    expect(next.code).toBe(0);
    expect(next.stdout).toMatch(/already ingested before and skipped/);
    expect(next.stdout).toMatch(/Carried over from earlier batches:\s+OPTED_OUT\s+2/);
    expect(existsSync(join(inbox, 'a.csv'))).toBe(false);
    expect(existsSync(join(world.config.archive, 'a.csv'))).toBe(true);
    expect(world.sim.state().optOutCalls).toEqual({ 'CARD:CARD-A1': 1, 'CARD:CARD-A2': 1 });
  });

  it.each([
    ['while the file is staged', 'kill-while-staging'],
    ['inside the transaction that admits it', 'kill-before-ingest-commit'],
  ])('a kill %s: nothing of the file is in the ledger, and the next run reads it whole', async (_when, fault) => {
    // More rows than one staged chunk; a fast rate, so their opt-outs do not make a slow test.
    world = await makeWorld({ config: { rate: { requestsPerSecond: 5000, concurrency: 32 } } });
    const inbox = world.config.inbox;
    mkdirSync(inbox, { recursive: true });
    const ids = Array.from({ length: 3000 }, (_, i) => `CARD-I${i}`);
    writeFileSync(join(inbox, 'a.csv'), csv(HEADER, ids.map((id) => `${id},CLOSED`)));
    const args = ['run', '--inbox', inbox, '--archive', world.config.archive, '--config', world.configFile];
    const crashed = await runCli(args, { D1_OPTOUT_FAULT: fault });
    expect(crashed.code).toBe(null); // SIGKILLed by the fault injection
    const ledger = Ledger.open(world.config.ledger, { readonly: true });
    try {
      expect(ledger.db.prepare(`SELECT count(*) AS n FROM items`).get()).toEqual({ n: 0 });
      expect(ledger.targets.countByState()).toEqual({});
      expect(ledger.db.prepare(`SELECT count(*) AS n FROM files WHERE state = 'INGESTED'`).get()).toEqual({ n: 0 });
    } finally {
      ledger.close();
    }
    expect(existsSync(join(inbox, 'a.csv'))).toBe(true);

    const next = await runCli(args);
    expect(next.code).toBe(0);
    expect(next.stderr).toMatch(/left RUNNING by a process that died; marked ABORTED \(1 half-read file\(s\) will be read again\)/);
    expect(existsSync(join(world.config.archive, 'a.csv'))).toBe(true);
    const calls = world.sim.state().optOutCalls;
    expect(Object.keys(calls).length).toBe(ids.length);
    expect(Object.values(calls).every((n) => n === 1)).toBe(true);
    const reports = batchReports(world);
    expect(reports.map((r) => `${r.status} ${r.rows.total}`).sort()).toEqual(['ABORTED 0', `COMPLETED ${ids.length}`]);
  });
});

describe('recovery', () => {
  it('a report folder that cannot be written again is a warning, not a job that never runs again', async () => {
    world = await makeWorld();
    const first = await runCli(['run', '--config', world.configFile, world.file('a.csv', csv(HEADER, ['CARD-R1,CLOSED']))]);
    expect(first.code).toBe(0);
    const [report] = batchReports(world);
    const dir = join(world.config.reportsDir, report!.batchId);
    // An interrupted report whose folder someone replaced by a file: it cannot be written again
    // (a permission would not do: the tests may run as root).
    rmSync(dir, { recursive: true });
    writeFileSync(dir, 'not a folder');
    const next = await runCli(['run', '--config', world.configFile, world.file('b.csv', csv(HEADER, ['CARD-R2,CLOSED']))]);
    expect(next.code).toBe(0);
    expect(next.stderr).toMatch(new RegExp(`report of batch ${report!.batchId} .* cannot be written again`));
    expect(world.sim.state().optOutCalls['CARD:CARD-R2']).toBe(1);
  });
});

describe('rerun', () => {
  it('retries the retryable and not-attempted targets of a batch as a new batch naming its parent; permanent ones only with the flag', async () => {
    world = await makeWorld({
      scenario: { unknownIds: ['CARD-GONE'], answers: { 'CARD-FLAKY': { status: 503, body: {}, times: 2 } } },
      config: { rate: { maxAttempts: 2 } },
    });
    const first = await world.run([world.file('a.csv', csv(HEADER, ['CARD-OK,CLOSED', 'CARD-FLAKY,CLOSED', 'CARD-GONE,CLOSED']))]);
    expect(first.summary.outcomes).toEqual({ OPTED_OUT: 1, FAILED_RETRYABLE: 1, FAILED_PERMANENT: 1 });

    const rerun = await world.rerun({ batch: first.summary.batchId, last: false });
    expect(rerun.summary).toMatchObject({ kind: 'rerun', parentBatchId: first.summary.batchId, carriedOver: { OPTED_OUT: 1 } });
    expect(rerun.exitCode).toBe(0);
    expect(world.sim.state().optOutCalls).toEqual({ 'CARD:CARD-OK': 1, 'CARD:CARD-FLAKY': 3, 'CARD:CARD-GONE': 1 });

    // A later batch that skipped the permanent failure: --include-permanent reaches it from there too.
    const skipped = await world.run([world.file('b.csv', csv(HEADER, ['CARD-GONE,FRAUD']))]);
    expect(skipped.summary.outcomes).toEqual({ SKIPPED_PREVIOUSLY_FAILED: 1 });
    // Without the flag there is nothing to rerun, and no empty batch is made for it.
    const nothing = (await world.rerun({ batch: skipped.summary.batchId, last: false })) as unknown;
    expect(nothing).toEqual({ nothingToRerun: true, parentBatchId: skipped.summary.batchId, resolvedBy: null });
    const withPermanent = await world.rerun({ batch: skipped.summary.batchId, last: false, includePermanent: true });
    expect(withPermanent.summary.carriedOver).toEqual({ FAILED_PERMANENT: 1 });
    expect(world.sim.state().optOutCalls['CARD:CARD-GONE']).toBe(2);
  });

  it('rerun --dry-run writes nothing and calls nobody', async () => {
    world = await makeWorld({ scenario: { fail5xxRate: 1 }, config: { rate: { maxAttempts: 1 } } });
    await world.run([world.file('a.csv', csv(HEADER, ['CARD-1,CLOSED']))]);
    const before = readFileSync(world.config.ledger);
    const requests = world.sim.state().requests + world.sim.state().tokenRequests;
    const dry = await runCli(['rerun', '--last', '--dry-run', '--config', world.configFile]);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/DRY RUN/);
    expect(dry.stdout).toMatch(/NOT_ATTEMPTED\s+1/);
    expect(readFileSync(world.config.ledger).equals(before)).toBe(true);
    expect(world.sim.state().requests + world.sim.state().tokenRequests).toBe(requests);
  });
});
