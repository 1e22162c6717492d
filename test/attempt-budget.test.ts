import { describe, expect, it } from 'vitest';
import { assertReconciles, csv, makeWorld, results, closeWorldsAfterEach } from './helpers.js';

// rate.maxAttemptsAcrossRuns (docs/design.md §8) is enforced twice: by the answer that uses up
// the budget, and by the check before each request. Each test here fails when one of the two is
// lost, which the test of the whole journey cannot see because the other one covers for it.
const HEADER = 'card_id,reason';

closeWorldsAfterEach();

describe('attempts across runs', () => {
  it('the run whose answer uses up the budget reports FAILED_PERMANENT itself, not the next run', async () => {
    const world = await makeWorld({ scenario: { fail5xxRate: 1 }, config: { rate: { maxAttempts: 2, maxAttemptsAcrossRuns: 2 } } });
    const { summary, exitCode } = await world.run([world.file('a.csv', csv(HEADER, ['CARD-B1,CLOSED']))]);
    assertReconciles(summary);
    expect(exitCode).toBe(1);
    expect(summary.outcomes).toEqual({ FAILED_PERMANENT: 1 });
    expect(results(summary)[0]).toMatchObject({ outcome: 'FAILED_PERMANENT', attempts: '2' });
    expect(results(summary)[0]!.error_message).toMatch(/^gave up after 2 attempts; last: /);
    expect(world.sim.state().optOutArrivals['CARD:CARD-B1']).toBe(2);
  });

  it('a target that already had maxAttemptsAcrossRuns attempts is not called again (the limit was lowered since)', async () => {
    const world = await makeWorld({ scenario: { fail5xxRate: 1 }, config: { rate: { maxAttempts: 2, maxAttemptsAcrossRuns: 5 } } });
    const first = await world.run([world.file('a.csv', csv(HEADER, ['CARD-B2,CLOSED']))]);
    expect(first.summary.outcomes).toEqual({ FAILED_RETRYABLE: 1 });
    expect(world.sim.state().optOutArrivals['CARD:CARD-B2']).toBe(2);

    world.config.rate.maxAttemptsAcrossRuns = 2;
    const second = await world.run([]);
    expect(second.summary.carriedOver).toEqual({ FAILED_PERMANENT: 1 });
    expect(world.sim.state().optOutArrivals['CARD:CARD-B2']).toBe(2);
    const ledger = world.ledger();
    try {
      expect(ledger.targets.get('CARD', 'CARD-B2')).toMatchObject({ state: 'FAILED_PERMANENT', attempts: 2, lastError: 'gave up after 2 attempts' });
    } finally {
      ledger.close();
    }
  });
});
