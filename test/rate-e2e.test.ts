import { describe, expect, it } from 'vitest';
import { assertReconciles, csv, makeWorld, optOutCalls, closeWorldsAfterEach } from './helpers.js';

// The limiter's two guarantees (docs/design.md §6), checked where they matter: on the server,
// whose ground truth counts what actually arrived, not what the job believes it sent.
const HEADER = 'card_id,consumer_id,reason,scope';
const cards = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i},,CLOSED,`);

closeWorldsAfterEach();

describe('rate and concurrency as D1 sees them', () => {
  it('never more than rate.concurrency requests in flight, and the cap is reached', async () => {
    // At 50 rps with 200 ms answers, ten requests would be open at once without the cap; the job
    // runs concurrency × 2 workers, so an uncapped limiter shows up as 4 here.
    const world = await makeWorld({ scenario: { latencyMs: 200 }, config: { rate: { requestsPerSecond: 50, concurrency: 2 } } });
    const { summary } = await world.run([world.file('a.csv', csv(HEADER, cards('CARD-C', 16)))]);
    assertReconciles(summary);
    expect(summary.outcomes).toEqual({ OPTED_OUT: 16 });
    const truth = world.sim.state();
    expect(optOutCalls(world.sim)).toBe(16);
    expect(truth.maxInFlight).toBe(2);
  });

  it('never more than rate.requestsPerSecond requests in any one-second window, and the budget is used', async () => {
    const world = await makeWorld({ scenario: { latencyMs: 5 }, config: { rate: { requestsPerSecond: 8, concurrency: 8 } } });
    const started = Date.now();
    const { summary } = await world.run([world.file('a.csv', csv(HEADER, cards('CARD-R', 24)))]);
    const elapsedMs = Date.now() - started;
    assertReconciles(summary);
    expect(summary.outcomes).toEqual({ OPTED_OUT: 24 });
    const truth = world.sim.state();
    expect(truth.maxRequestsInAnyWindow).toBeLessThanOrEqual(8);
    expect(truth.maxRequestsInAnyWindow).toBeGreaterThanOrEqual(7);
    // 24 requests at 8 a second take at least two full windows.
    expect(elapsedMs).toBeGreaterThanOrEqual(2000);
  });
});
