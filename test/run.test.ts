import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { assertReconciles, csv, makeWorld, optOutCalls, readCsv, readSummary, results, type World, closeWorldsAfterEach } from './helpers.js';

const HEADER = 'card_id,consumer_id,reason,scope';

let world: World | null = null;
closeWorldsAfterEach();

describe('run end to end against the simulator', () => {
  it('reconciles every row and agrees with what D1 saw, target by target', async () => {
    world = await makeWorld({
      scenario: { unknownIds: ['CARD-UNKNOWN-1'], consumers: { 'CONS-1': ['CARD-C1-A', 'CARD-C1-B'] }, pendingRate: 0.3, pendingDelayMs: 100, seed: 7 },
    });
    const a = world.file(
      'a.csv',
      csv(HEADER, [
        'CARD-0001,,CLOSED,',
        'CARD-0002,,FRAUD,',
        'CARD-0001,,CLOSED,', // in-file duplicate
        'CARD-C1-A,CONS-1,FRAUD,', // card of a consumer opted out in this same batch
        ',CONS-1,CLOSED,CONSUMER',
        'CARD-C1-B,CONS-1,CLOSED,',
        'CARD-UNKNOWN-1,,CLOSED,',
        'CARD-0003,,NOT_A_REASON,', // reject
        'CARD-0004,,LOST_STOLEN,',
      ]),
    );
    const b = world.file('b.csv', csv('card_id;reason', ['CARD-0002;FRAUD', 'CARD-0005;REGULATORY', 'CARD-0006;CLOSED']));
    const { summary, exitCode } = await world.run([a, b]);

    assertReconciles(summary);
    expect(summary.rows).toEqual({ total: 12, valid: 11, rejected: 1 });
    expect(summary.outcomes).toEqual({
      OPTED_OUT: 6, // 0001 0002 0004 0005 0006 and consumer CONS-1 (pending ones settle within maxWaitMs)
      SKIPPED_DUPLICATE: 2,
      SKIPPED_COVERED_BY_CONSUMER: 2,
      FAILED_PERMANENT: 1,
    });
    expect(exitCode).toBe(1); // the unknown card is a failure an operator must see
    expect(readSummary(summary)).toEqual(JSON.parse(JSON.stringify(summary)));

    // Target by target, the report says what the simulator's ground truth says.
    const truth = world.sim.state();
    const lines = results(summary);
    expect(lines).toHaveLength(11);
    for (const l of lines) {
      const key = `${l.scope}:${l.target_id}`;
      if (l.outcome === 'OPTED_OUT') expect(truth.targets[key]?.state).toBe('OPTED_OUT');
      if (l.outcome === 'SKIPPED_COVERED_BY_CONSUMER') {
        expect(truth.optOutCalls[key] ?? 0).toBe(0);
        expect(truth.targets[key]?.via).toBe('CONS-1');
      }
    }
    // One call per target that needed one: no duplicate, no covered card, no retry.
    expect(truth.optOutCalls).toEqual({
      'CARD:CARD-0001': 1, 'CARD:CARD-0002': 1, 'CARD:CARD-0004': 1, 'CARD:CARD-0005': 1, 'CARD:CARD-0006': 1,
      'CARD:CARD-UNKNOWN-1': 1, 'CONSUMER:CONS-1': 1,
    });
    const unknown = lines.find((l) => l.target_id === 'CARD-UNKNOWN-1')!;
    expect(unknown).toMatchObject({ outcome: 'FAILED_PERMANENT', http_status: '404', error_code: 'NOT_FOUND', attempts: '1', source_file: a, source_line: '8' });
    expect(unknown.correlation_id).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
    expect(lines.find((l) => l.target_id === 'CARD-0005')).toMatchObject({ source_file: b, source_line: '3', reason: 'REGULATORY' });
    expect(lines.filter((l) => l.outcome === 'SKIPPED_DUPLICATE').map((l) => `${l.source_file === a ? 'a' : 'b'}:${l.source_line}`)).toEqual(['a:4', 'b:2']);

    const failures = readCsv(join(summary.reportDir, 'failures.csv'));
    expect(failures.map((f) => f['target_id'])).toEqual(['CARD-UNKNOWN-1']);
    const rejects = readCsv(join(summary.reportDir, 'rejects.csv'));
    expect(rejects).toHaveLength(1);
    expect(rejects[0]).toMatchObject({ source_file: a, source_line: '9' });
    expect(rejects[0]!['error']).toMatch(/reason/);

    // Report and ledger files are private to the job's user.
    for (const f of ['summary.json', 'results.csv', 'failures.csv', 'rejects.csv']) {
      expect(statSync(join(summary.reportDir, f)).mode & 0o777).toBe(0o600);
    }
    expect(statSync(world.config.ledger).mode & 0o777).toBe(0o600);
  });

  it('makes no call when the same files come again, and only new calls for a new file', async () => {
    world = await makeWorld();
    const a = world.file('a.csv', csv(HEADER, ['CARD-A1,,CLOSED,', 'CARD-A2,,CLOSED,', ',CONS-X,FRAUD,CONSUMER']));
    const first = await world.run([a]);
    expect(first.exitCode).toBe(0);
    expect(optOutCalls(world.sim)).toBe(3);

    const again = await world.run([a]);
    expect(optOutCalls(world.sim)).toBe(3);
    expect(again.summary.inputs).toMatchObject([{ path: a, seenBefore: true, firstBatchId: first.summary.batchId }]);
    expect(again.summary.rows).toEqual({ total: 0, valid: 0, rejected: 0 });
    expect(again.exitCode).toBe(0);
    assertReconciles(again.summary);

    // A new file repeating opted-out targets: calls only for the new ones.
    const b = world.file('b.csv', csv(HEADER, ['CARD-A1,,CLOSED,', 'CARD-B1,,FRAUD,', ',CONS-X,FRAUD,CONSUMER', 'CARD-B2,CONS-X,FRAUD,']));
    const third = await world.run([b]);
    assertReconciles(third.summary);
    expect(third.summary.outcomes).toEqual({ OPTED_OUT: 1, SKIPPED_ALREADY_OPTED_OUT: 2, SKIPPED_COVERED_BY_CONSUMER: 1 });
    expect(world.sim.state().optOutCalls).toEqual({ 'CARD:CARD-A1': 1, 'CARD:CARD-A2': 1, 'CONSUMER:CONS-X': 1, 'CARD:CARD-B1': 1 });

    // --force reads a file again, but the ledger still knows every target is done.
    const forced = await world.run([a], { force: true });
    expect(forced.summary.outcomes).toEqual({ SKIPPED_ALREADY_OPTED_OUT: 3 });
    expect(optOutCalls(world.sim)).toBe(4);
  });

  it('uses one token for many calls and fetches a new one after it expires', async () => {
    world = await makeWorld({ scenario: { tokenTtlSec: 1 }, config: { rate: { requestsPerSecond: 20 } } });
    const rows = Array.from({ length: 30 }, (_, i) => `CARD-T${String(i).padStart(3, '0')},,CLOSED,`);
    const { summary } = await world.run([world.file('t.csv', csv(HEADER, rows))]);
    expect(summary.outcomes).toEqual({ OPTED_OUT: 30 });
    // 30 requests at 20/s take about 1.5 s: the 1 s token (renewed a tenth early) is replaced once or twice, never per call.
    const tokens = world.sim.state().tokensIssued;
    expect(tokens).toBeGreaterThanOrEqual(2);
    expect(tokens).toBeLessThanOrEqual(4);
    expect(world.sim.state().byStatus['401'] ?? 0).toBe(0);
  });

  it('writes the log as JSON lines with the batch id, and no token in it', async () => {
    world = await makeWorld();
    const { summary } = await world.run([world.file('a.csv', csv(HEADER, ['CARD-L1,,CLOSED,']))]);
    const log = readFileSync(world.config.log.file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(log.some((l) => l['batchId'] === summary.batchId)).toBe(true);
    const text = readFileSync(world.config.log.file, 'utf8');
    for (const t of world.sim.secrets().tokens) expect(text).not.toContain(t);
    for (const a of world.sim.secrets().assertions) expect(text).not.toContain(a);
    expect(existsSync(join(summary.reportDir, 'summary.json'))).toBe(true);
  });
});
