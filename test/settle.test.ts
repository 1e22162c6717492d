import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { CLI, closeWorldsAfterEach, csv, makeWorld, runCli, type World } from './helpers.js';

// When a batch ends, no target is left QUEUED or SUBMITTING without a reason a person can read
// (docs/design.md §13).
const HEADER = 'card_id,consumer_id,reason,scope';
closeWorldsAfterEach();

function states(world: World): Record<string, number> {
  const l = world.ledger();
  try {
    return l.targets.countByState();
  } finally {
    l.close();
  }
}

describe('targets settled when a batch ends', () => {
  it('a card covered by a consumer whose opt-out finished while the batch polled is settled in that batch', async () => {
    const world = await makeWorld({ scenario: { consumers: { 'CONS-1': ['CARD-A', 'CARD-B'] }, pendingRate: 1, pendingDelayMs: 100 } });
    const r = await world.run([world.file('a.csv', csv(HEADER, [',CONS-1,CLOSED,CONSUMER', 'CARD-A,CONS-1,CLOSED,CARD', 'CARD-Z,,CLOSED,']))]);
    expect(r.summary.status).toBe('COMPLETED');
    expect(r.summary.outcomes).toEqual({ OPTED_OUT: 2, SKIPPED_COVERED_BY_CONSUMER: 1 });
    expect(states(world)).toEqual({ OPTED_OUT: 3 });
    const show = await runCli(['show', 'CARD-A', '--config', world.configFile]);
    expect(show.stdout).toMatch(/^CARD CARD-A: OPTED_OUT, 0 opt-out request\(s\)/);
    expect(show.stdout).toContain('opted out with consumer CONS-1');
    // A card of a consumer opted out by an earlier batch: settled in the batch that reads it.
    const r2 = await world.run([world.file('b.csv', csv(HEADER, ['CARD-B,CONS-1,CLOSED,CARD']))]);
    expect(r2.summary.outcomes).toEqual({ SKIPPED_COVERED_BY_CONSUMER: 1 });
    expect(states(world)).toEqual({ OPTED_OUT: 4 });
    expect(world.sim.state().optOutCalls['CARD:CARD-A']).toBeUndefined();
  });

  it('a card whose consumer is still PENDING waits with it, and status and show say so; poll settles both', async () => {
    const world = await makeWorld({ scenario: { consumers: { 'CONS-1': ['CARD-A'] }, pendingRate: 1, pendingDelayMs: 1500 }, config: { pending: { maxWaitMs: 0 } } });
    const r = await world.run([world.file('a.csv', csv(HEADER, [',CONS-1,CLOSED,CONSUMER', 'CARD-A,CONS-1,CLOSED,CARD']))]);
    expect(r.summary.outcomes).toEqual({ PENDING: 1, SKIPPED_COVERED_BY_CONSUMER: 1 });
    expect(states(world)).toEqual({ PENDING: 1, QUEUED: 1 });
    const show = await runCli(['show', 'CARD-A', '--config', world.configFile]);
    expect(show.stdout).toMatch(/^CARD CARD-A: QUEUED \(waiting for consumer CONS-1, whose opt-out is PENDING at D1/);
    const status = await runCli(['status', '--config', world.configFile]);
    expect(status.stdout).toContain('1 card(s) QUEUED, waiting for consumer CONS-1 (its opt-out is PENDING at D1)');
    const json = JSON.parse((await runCli(['status', '--json', '--config', world.configFile])).stdout) as { waiting: unknown };
    expect(json.waiting).toEqual([{ consumerId: 'CONS-1', cards: 1 }]);

    await new Promise((res) => setTimeout(res, 1600));
    expect((await runCli(['poll', '--wait', '0', '--config', world.configFile])).code).toBe(0);
    expect(states(world)).toEqual({ OPTED_OUT: 2 });
    expect((await runCli(['status', '--config', world.configFile])).stdout).not.toContain('waiting for consumer');
    expect(world.sim.state().optOutCalls['CARD:CARD-A']).toBeUndefined();
  });

  it('if the consumer opt-out fails, the card that waited is sent on its own by the next run', async () => {
    // One attempt across runs: the consumer is not sent again, so the card cannot wait for it twice.
    const world = await makeWorld({ scenario: { pendingRate: 1, pendingDelayMs: 200, pendingFailRate: 1 }, config: { pending: { maxWaitMs: 0 }, rate: { maxAttemptsAcrossRuns: 1 } } });
    await world.run([world.file('a.csv', csv(HEADER, [',CONS-1,CLOSED,CONSUMER', 'CARD-A,CONS-1,CLOSED,CARD']))]);
    await new Promise((res) => setTimeout(res, 300));
    expect((await runCli(['poll', '--wait', '0', '--config', world.configFile])).code).toBe(0);
    const show = await runCli(['show', 'CARD-A', '--config', world.configFile]);
    expect(show.stdout).toMatch(/^CARD CARD-A: QUEUED \(waited for consumer CONS-1, whose opt-out is FAILED_PERMANENT; the next run sends it/);
    const next = await world.run([]);
    expect(world.sim.state().optOutCalls['CARD:CARD-A']).toBe(1);
    expect(world.sim.state().optOutCalls['CONSUMER:CONS-1']).toBe(1);
  });

  it('a killed batch: its in-flight targets are in doubt in status and show, not failures', async () => {
    const world = await makeWorld({ scenario: { latencyMs: 5000 }, config: { rate: { concurrency: 2 }, d1: { timeoutMs: 10_000 } } });
    const rows = Array.from({ length: 6 }, (_, i) => `CARD-K${i},,CLOSED,`);
    const child = spawn(process.execPath, [CLI, 'run', '--config', world.configFile, world.file('a.csv', csv(HEADER, rows))]);
    const submittingNow = (): number => {
      try {
        const l = world.ledger();
        try {
          return l.targets.countByState()['SUBMITTING'] ?? 0;
        } finally {
          l.close();
        }
      } catch {
        return 0; // not created or not migrated yet
      }
    };
    while (submittingNow() < 2) await new Promise((res) => setTimeout(res, 20));
    child.kill('SIGKILL');
    await once(child, 'close');
    // Taken by a worker and committed SUBMITTING: sent, or about to be, when the process died.
    const l0 = world.ledger();
    const submitting = l0.targets.countByState()['SUBMITTING'] ?? 0;
    l0.close();
    expect(submitting).toBeGreaterThanOrEqual(2);
    const n = String(submitting);
    // poll closes the dead batch (ABORTED) and sends nothing for it.
    await runCli(['poll', '--wait', '0', '--config', world.configFile]);
    const status = await runCli(['status', '--config', world.configFile]);
    const [header, row] = status.stdout.split('\n');
    const cols = header!.trim().split(/\s{2,}/);
    const cells = row!.trim().split(/\s{2,}/);
    expect(cols).not.toContain('FAIL_RETRY');
    expect(cells[cols.indexOf('IN_DOUBT')]).toBe(n);
    expect(cells[cols.indexOf('STATUS')]).toBe('ABORTED');
    expect(status.stdout).toContain(`SUBMITTING=${n} (in doubt)`);
    const s = JSON.parse((await runCli(['status', '--json', '--config', world.configFile])).stdout) as { batches: { inDoubt: number }[] };
    expect(s.batches[0]!.inDoubt).toBe(submitting);
    const l = world.ledger();
    const inDoubt = l.batches.list(1)[0]!.id;
    l.close();
    const detail = await runCli(['status', '--batch', inDoubt, '--config', world.configFile]);
    expect(detail.stdout).toContain(`In doubt: ${n} of the FAILED_RETRYABLE were in flight`);
    const shows = await Promise.all(rows.map((r) => runCli(['show', r.split(',')[0]!, '--config', world.configFile])));
    expect(shows.filter((x) => /: SUBMITTING \(in doubt: the process stopped while its request was in flight/.test(x.stdout))).toHaveLength(submitting);
  });
});
