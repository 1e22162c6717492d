import { describe, expect, it } from 'vitest';
import { TOKEN_PATH } from '../src/sim/index.js';
import { assertReconciles, csv, makeWorld, optOutCalls, closeWorldsAfterEach } from './helpers.js';

// The limiter's two guarantees (docs/design.md §6), checked where they matter: on the server,
// whose ground truth counts what actually arrived, not what the job believes it sent.
const HEADER = 'card_id,consumer_id,reason,scope';
const cards = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i},,CLOSED,`);

closeWorldsAfterEach();

/** The most arrivals in any window (t - 1000, t], as the simulator counts them. */
function maxInAnyWindow(sorted: number[]): number {
  let max = 0;
  for (let i = 0, j = 0; j < sorted.length; j++) {
    while (sorted[i]! <= sorted[j]! - 1000) i++;
    max = Math.max(max, j - i + 1);
  }
  return max;
}

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
    // The token endpoint takes a while, as a real one does: the first requests must not leave late
    // together with the ones started after them (a request waiting for its token held its start).
    const world = await makeWorld({ scenario: { latencyMs: 5, tokenLatencyMs: 150 }, config: { rate: { requestsPerSecond: 8, concurrency: 8 } } });
    const started = Date.now();
    const { summary } = await world.run([world.file('a.csv', csv(HEADER, cards('CARD-R', 26)))]);
    const elapsedMs = Date.now() - started;
    assertReconciles(summary);
    expect(summary.outcomes).toEqual({ OPTED_OUT: 26 });
    const truth = world.sim.state();
    const arrivals = truth.calls.filter((c) => c.path !== TOKEN_PATH).map((c) => c.at).sort((a, b) => a - b);
    expect(arrivals).toHaveLength(26);
    expect(maxInAnyWindow(arrivals)).toBeLessThanOrEqual(8);
    expect(truth.maxOptOutsInAnyWindow).toBeLessThanOrEqual(8);
    expect(maxInAnyWindow(arrivals)).toBeGreaterThanOrEqual(7);
    // 26 requests at 8 a second take at least three full windows.
    expect(elapsedMs).toBeGreaterThanOrEqual(3000);
  });
});
