import { describe, expect, it } from 'vitest';
import { assertReconciles, csv, makeWorld, optOutCalls, results, type World, closeWorldsAfterEach } from './helpers.js';

// One test per outcome class (docs/design.md §4, §8): outcome, recorded error code, attempts made.
const HEADER = 'card_id,reason';

let world: World | null = null;
closeWorldsAfterEach();

describe('outcome classes', () => {
  it('success: OPTED_OUT with the operation id, one attempt', async () => {
    world = await makeWorld();
    const { summary, exitCode } = await world.run([world.file('a.csv', csv(HEADER, ['CARD-1,CLOSED']))]);
    const [line] = results(summary);
    expect(line).toMatchObject({ outcome: 'OPTED_OUT', http_status: '200', attempts: '1', error_code: '' });
    expect(line!.operation_id).toBe(world.sim.state().targets['CARD:CARD-1']?.operationId);
    expect(exitCode).toBe(0);
    expect(summary.status).toBe('COMPLETED');
  });

  it('202 is success too', async () => {
    world = await makeWorld({ scenario: { successStatus: 202 } });
    const { summary } = await world.run([world.file('a.csv', csv(HEADER, ['CARD-1,CLOSED']))]);
    expect(results(summary)[0]).toMatchObject({ outcome: 'OPTED_OUT', http_status: '202' });
  });

  it('pending: polled until final within maxWaitMs', async () => {
    world = await makeWorld({ scenario: { pendingRate: 1, pendingDelayMs: 150 } });
    const { summary } = await world.run([world.file('a.csv', csv(HEADER, ['CARD-1,CLOSED']))]);
    expect(results(summary)[0]).toMatchObject({ outcome: 'OPTED_OUT', attempts: '1' });
    expect(summary.d1.requestsByStatus['200']).toBeGreaterThanOrEqual(2); // the opt-out and at least one Get Operation
    expect(optOutCalls(world.sim)).toBe(1);
  });

  it('pending that does not settle in time stays PENDING (exit 0), and a FAILED operation is retryable next run', async () => {
    world = await makeWorld({ scenario: { pendingRate: 1, pendingDelayMs: 400, pendingFailRate: 1 }, config: { pending: { maxWaitMs: 100 } } });
    const first = await world.run([world.file('a.csv', csv(HEADER, ['CARD-1,CLOSED']))]);
    expect(first.summary.outcomes).toEqual({ PENDING: 1 });
    expect(first.exitCode).toBe(0);
    await new Promise((r) => setTimeout(r, 450));
    const second = await world.run([], {});
    // The next run polls it: D1 ended it FAILED, so it is FAILED_RETRYABLE with D1's errorCode.
    expect(second.summary.carriedOver).toEqual({ FAILED_RETRYABLE: 1 });
    expect(results(second.summary)[0]).toMatchObject({ outcome: 'FAILED_RETRYABLE', error_code: 'OPT_OUT_FAILED', source_file: `carry-over:${first.summary.batchId}` });
    expect(second.exitCode).toBe(1);
  });

  it('retryable: 5xx retried maxAttempts times, then FAILED_RETRYABLE', async () => {
    world = await makeWorld({ scenario: { fail5xxRate: 1 }, config: { rate: { maxAttempts: 3 } } });
    const { summary, exitCode } = await world.run([world.file('a.csv', csv(HEADER, ['CARD-1,CLOSED']))]);
    const [line] = results(summary);
    expect(line).toMatchObject({ outcome: 'FAILED_RETRYABLE', attempts: '3' });
    expect(Number(line!.http_status)).toBeGreaterThanOrEqual(500);
    expect(summary.d1.retries).toBe(2);
    expect(world.sim.state().optOutArrivals['CARD:CARD-1']).toBe(3);
    expect(exitCode).toBe(1);
  });

  it('retryable: a dropped connection is retried and then succeeds', async () => {
    // resetRate 0.5 with this seed drops some requests; every target ends opted out anyway.
    world = await makeWorld({ scenario: { resetRate: 0.5, seed: 3 }, config: { rate: { maxAttempts: 10 } } });
    const rows = Array.from({ length: 10 }, (_, i) => `CARD-R${i},CLOSED`);
    const { summary } = await world.run([world.file('a.csv', csv(HEADER, rows))]);
    expect(summary.outcomes).toEqual({ OPTED_OUT: 10 });
    expect(summary.d1.requestsByStatus['0']).toBeGreaterThan(0);
    expect(summary.d1.retries).toBe(summary.d1.requestsByStatus['0']);
  });

  it('permanent: 404 keeps D1 errorCode and error, one attempt, no retry', async () => {
    world = await makeWorld({ scenario: { unknownIds: ['CARD-404'] } });
    const { summary } = await world.run([world.file('a.csv', csv(HEADER, ['CARD-404,CLOSED']))]);
    expect(results(summary)[0]).toMatchObject({ outcome: 'FAILED_PERMANENT', http_status: '404', error_code: 'NOT_FOUND', error_message: 'Card not found', attempts: '1' });
    expect(world.sim.state().optOutArrivals['CARD:CARD-404']).toBe(1);
  });

  it('already opted out: a configured error code counts as OPTED_OUT', async () => {
    world = await makeWorld({ scenario: { repeat: 'ALREADY_OPTED_OUT' }, config: { d1: { alreadyOptedOutErrorCodes: ['ALREADY_OPTED_OUT'] } } });
    const a = world.file('a.csv', csv(HEADER, ['CARD-1,CLOSED']));
    await world.run([a]);
    // Lose the ledger's memory of it (a new ledger), so the job calls D1 a second time.
    const other = await world.run([a], { force: true });
    expect(other.summary.outcomes).toEqual({ SKIPPED_ALREADY_OPTED_OUT: 1 });
    world.config.ledger = `${world.config.ledger}.second`;
    world.init();
    const fresh = await world.run([a]);
    expect(results(fresh.summary)[0]).toMatchObject({ outcome: 'OPTED_OUT', http_status: '409', error_code: 'ALREADY_OPTED_OUT' });
  });

  it('the same 409 without the code configured is a permanent failure', async () => {
    world = await makeWorld({ scenario: { repeat: 'ALREADY_OPTED_OUT' } });
    const a = world.file('a.csv', csv(HEADER, ['CARD-1,CLOSED']));
    await world.run([a]);
    world.config.ledger = `${world.config.ledger}.second`;
    world.init();
    const fresh = await world.run([a]);
    expect(results(fresh.summary)[0]).toMatchObject({ outcome: 'FAILED_PERMANENT', http_status: '409' });
  });

  it('circuit breaker: consecutive retryable failures abort the run (exit 4); the rest is NOT_ATTEMPTED and a later run finishes it', async () => {
    world = await makeWorld({
      scenario: { outages: [{ startMs: 0, endMs: 1500 }] },
      config: { rate: { maxAttempts: 1, concurrency: 1, requestsPerSecond: 50 }, abort: { maxConsecutiveFailures: 3 } },
    });
    const rows = Array.from({ length: 20 }, (_, i) => `CARD-B${String(i).padStart(2, '0')},CLOSED`);
    const a = world.file('a.csv', csv(HEADER, rows));
    const first = await world.run([a]);
    expect(first.exitCode).toBe(4);
    expect(first.summary.status).toBe('ABORTED');
    expect(first.summary.abortReason).toMatch(/token endpoint looks unavailable: 3 requests in a row got no access token/);
    assertReconciles(first.summary);
    expect(first.summary.outcomes.FAILED_RETRYABLE).toBe(3);
    expect(first.summary.outcomes.NOT_ATTEMPTED).toBe(17);

    await new Promise((r) => setTimeout(r, 1600));
    const second = await world.run([]);
    expect(second.exitCode).toBe(0);
    expect(second.summary.carriedOver).toEqual({ OPTED_OUT: 20 });
    for (const r of rows) expect(world.sim.state().targets[`CARD:${r.split(',')[0]}`]?.state).toBe('OPTED_OUT');
  });

  it('after maxAttemptsAcrossRuns the target is FAILED_PERMANENT: gave up after N attempts', async () => {
    world = await makeWorld({ scenario: { fail5xxRate: 1 }, config: { rate: { maxAttempts: 2, maxAttemptsAcrossRuns: 3 } } });
    const first = await world.run([world.file('a.csv', csv(HEADER, ['CARD-1,CLOSED']))]);
    expect(first.summary.outcomes).toEqual({ FAILED_RETRYABLE: 1 });
    const second = await world.run([]);
    expect(second.summary.carriedOver).toEqual({ FAILED_PERMANENT: 1 });
    expect(results(second.summary)[0]!.error_message).toMatch(/gave up after 3 attempts/);
    const third = await world.run([]);
    expect(third.summary.carriedOver).toEqual({});
    expect(world.sim.state().optOutArrivals['CARD:CARD-1']).toBe(3);
  });

  it('authentication refused: the run aborts with exit 4 and a clear line, no target is left in doubt', async () => {
    world = await makeWorld();
    world.config.d1.keyId = 'not-the-registered-kid';
    const { summary, exitCode } = await world.run([world.file('a.csv', csv(HEADER, ['CARD-1,CLOSED', 'CARD-2,CLOSED']))]);
    expect(exitCode).toBe(4);
    expect(summary.abortReason).toMatch(/D1 refused the client assertion .*unknown kid/);
    assertReconciles(summary);
    expect(optOutCalls(world.sim)).toBe(0);
  });
});
