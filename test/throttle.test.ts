import { describe, expect, it } from 'vitest';
import { backoffMs, parseRetryAfter } from '../src/throttle/backoff.js';
import type { Clock } from '../src/throttle/clock.js';
import { RateLimiter } from '../src/throttle/limiter.js';

/** Virtual time: sleeping moves the clock forward at once, so a 30-second schedule runs in milliseconds. */
function fakeClock(): Clock & { t: number } {
  const c = {
    t: 1_000_000,
    now: () => c.t,
    sleep: async (ms: number) => {
      c.t += Math.max(0, ms);
      await Promise.resolve();
    },
  };
  return c;
}

/** The most starts in any window [t, t + 1000). */
function maxInAnyWindow(starts: number[]): number {
  let max = 0;
  for (let i = 0, j = 0; j < starts.length; j++) {
    while (starts[j]! - starts[i]! >= 1000) i++;
    max = Math.max(max, j - i + 1);
  }
  return max;
}

describe('rate limiter', () => {
  it('never starts more than requestsPerSecond in any sliding one-second window', async () => {
    for (const rps of [1, 7, 20, 50, 333]) {
      const clock = fakeClock();
      const limiter = new RateLimiter({ requestsPerSecond: rps, concurrency: 64, clock, guardMs: 0 });
      const starts: number[] = [];
      await Promise.all(Array.from({ length: rps * 5 + 3 }, () => limiter.schedule(async () => void starts.push(clock.now()))));
      expect(maxInAnyWindow(starts)).toBeLessThanOrEqual(rps);
      // ...and uses the whole budget: the last start is no later than the rate allows.
      expect(starts[starts.length - 1]! - starts[0]!).toBeLessThanOrEqual(((starts.length - 1) / rps) * 1000 + 1);
    }
  });

  it('keeps the bound while retries and polls join the same queue, and holds concurrency', async () => {
    const clock = fakeClock();
    const limiter = new RateLimiter({ requestsPerSecond: 10, concurrency: 3, clock });
    const starts: number[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const request = () =>
      limiter.schedule(async () => {
        starts.push(clock.now());
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await clock.sleep(250);
        inFlight--;
      });
    // "Opt-outs" that each retry once and then "poll".
    await Promise.all(Array.from({ length: 40 }, async () => {
      await request();
      await request();
      await request();
    }));
    expect(starts).toHaveLength(120);
    expect(maxInAnyWindow(starts)).toBeLessThanOrEqual(10);
    expect(maxInFlight).toBeLessThanOrEqual(3);
  });

  it('pauses everyone for Retry-After on 429, halves its rate, then climbs back', async () => {
    const clock = fakeClock();
    const limiter = new RateLimiter({ requestsPerSecond: 40, concurrency: 8, clock, recoverAfterMs: 2000, increaseFraction: 0.1 });
    await limiter.schedule(async () => undefined);
    const t429 = clock.now();
    limiter.onThrottled(3000);
    limiter.onThrottled(3000); // a burst of 429s from requests already in flight is one signal
    const starts: number[] = [];
    await limiter.schedule(async () => void starts.push(clock.now()));
    expect(starts[0]! - t429).toBeGreaterThanOrEqual(3000);
    let s = limiter.stats();
    expect(s.http429).toBe(2);
    expect(s.currentRps).toBe(20);
    expect(s.lowestRps).toBe(20);
    expect(s.throttledMs).toBe(3000);
    // Quiet for long enough: the rate climbs step by step back to 40, never above.
    await Promise.all(Array.from({ length: 400 }, () => limiter.schedule(async () => undefined)));
    s = limiter.stats();
    expect(s.currentRps).toBe(40);
    // A second 429 cuts again, never below 1 rps.
    for (let i = 0; i < 10; i++) {
      clock.t += 1500;
      limiter.onThrottled(0);
    }
    expect(limiter.stats().currentRps).toBe(1);
  });
});

describe('Retry-After and backoff', () => {
  const now = Date.parse('2026-11-29T02:00:00Z');
  it('reads delta seconds, HTTP dates, past dates and garbage', () => {
    expect(parseRetryAfter('7', now)).toBe(7000);
    expect(parseRetryAfter('0', now)).toBe(0);
    expect(parseRetryAfter('Sun, 29 Nov 2026 02:00:05 GMT', now)).toBe(5000);
    expect(parseRetryAfter('Sun, 29 Nov 2026 01:59:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBe(1000);
    expect(parseRetryAfter(null, now)).toBe(1000);
    expect(parseRetryAfter('', now)).toBe(1000);
    expect(parseRetryAfter('-3', now)).toBe(1000);
  });

  it('backs off exponentially with full jitter, capped, with Retry-After as a floor', () => {
    expect(backoffMs(1, 500, 30_000, null, () => 0.999)).toBe(499);
    expect(backoffMs(3, 500, 30_000, null, () => 0.999)).toBe(1998);
    expect(backoffMs(20, 500, 30_000, null, () => 0.999)).toBe(29_970);
    expect(backoffMs(3, 500, 30_000, null, () => 0)).toBe(0);
    expect(backoffMs(1, 500, 30_000, 4000, () => 0.5)).toBe(4000);
  });
});
