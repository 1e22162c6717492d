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

/**
 * Virtual time that runs like a discrete-event simulation: a sleep waits until every sleep due
 * earlier has woken and the program has gone idle again, so work that overlaps in real life
 * overlaps here too (the fake clock above wakes each sleeper at once, one after the other).
 */
function eventClock(): Clock & { stop(): void } {
  let t = 1_000_000;
  let seq = 0;
  const timers: { at: number; seq: number; wake: () => void }[] = [];
  let stopped = false;
  const tick = (): void => {
    if (stopped) return;
    timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
    const next = timers.shift();
    if (next) {
      t = Math.max(t, next.at);
      next.wake();
    }
    setImmediate(tick);
  };
  setImmediate(tick);
  return {
    now: () => t,
    sleep: (ms: number) => new Promise<void>((wake) => timers.push({ at: t + Math.max(0, ms), seq: seq++, wake })),
    stop: () => void (stopped = true),
  };
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
      await Promise.all(Array.from({ length: rps * 5 + 3 }, () => limiter.schedule(async (left) => {
        starts.push(clock.now());
        left();
      })));
      expect(maxInAnyWindow(starts)).toBeLessThanOrEqual(rps);
      // ...and uses the whole budget: the last start is no later than the rate allows, give or
      // take the smallest guard band (2 ms a window).
      expect(starts[starts.length - 1]! - starts[0]!).toBeLessThanOrEqual(((starts.length - 1) / rps) * 1000 + Math.ceil(starts.length / rps) * 2 + 1);
    }
  });

  it('catches up with timers that fire late and an event loop that stalls, and still keeps the bound', async () => {
    // Every timer wakes a millisecond late and every 40th 12 ms late (a commit, a collection): a
    // limiter that lost those slots for good ran a few percent below its rate at 1,000 req/s.
    const clock = fakeClock();
    let sleeps = 0;
    const sleep = clock.sleep;
    clock.sleep = (ms: number) => sleep(ms + (++sleeps % 40 === 0 ? 12 : 1));
    const guardMs = 8;
    const limiter = new RateLimiter({ requestsPerSecond: 1000, concurrency: 64, clock, guardMs });
    const starts: number[] = [];
    await Promise.all(Array.from({ length: 20_000 }, () => limiter.schedule(async (left) => {
        starts.push(clock.now());
        left();
      })));
    expect(maxInAnyWindow(starts)).toBeLessThanOrEqual(1000);
    const achieved = (starts.length - 1) / ((starts[starts.length - 1]! - starts[0]!) / 1000);
    // The guard band alone allows 1000 / 1.008 = 992 a second; the delays cost almost nothing more.
    expect(achieved).toBeGreaterThanOrEqual(0.99 * 1000);
    expect(achieved).toBeLessThanOrEqual(1000 / (1 + guardMs / 1000) + 0.5);
  });

  it('counts a request from when it left, not from its start, so a stall in between does not bunch arrivals', async () => {
    // Every 1.4 s the event loop stalls for 40 ms: a request that took its start in the stall is
    // written to its socket only when the stall ends, together with those started after it. D1
    // counts them where they arrive. Counted from their starts, 208 left in one second at 200 rps.
    const clock = eventClock();
    const rps = 200;
    const limiter = new RateLimiter({ requestsPerSecond: rps, concurrency: 64, clock, guardMs: 0 });
    const leftAt: number[] = [];
    try {
      await Promise.all(
        Array.from({ length: rps * 8 }, () =>
          limiter.schedule(async (left) => {
            const start = clock.now();
            const phase = (start - 1_000_000) % 1400;
            if (phase >= 300 && phase < 340) await clock.sleep(340 - phase);
            leftAt.push(clock.now());
            left();
            await clock.sleep(5);
          }),
        ),
      );
    } finally {
      clock.stop();
    }
    leftAt.sort((a, b) => a - b);
    expect(leftAt).toHaveLength(rps * 8);
    expect(maxInAnyWindow(leftAt)).toBeLessThanOrEqual(rps);
    // ...and the stalls cost little of the rate: the starts held back are caught up.
    expect((leftAt.length - 1) / ((leftAt[leftAt.length - 1]! - leftAt[0]!) / 1000)).toBeGreaterThanOrEqual(0.97 * rps);
  });

  it('counts a request that has not left yet in every window until it does', async () => {
    // The first request waits 1.2 s for its connection; the others leave at once. The second and
    // third must not both leave in the same second as the first.
    const clock = eventClock();
    const limiter = new RateLimiter({ requestsPerSecond: 2, concurrency: 4, clock, guardMs: 0 });
    const leftAt: number[] = [];
    try {
      await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          limiter.schedule(async (left) => {
            if (i === 0) await clock.sleep(1200);
            leftAt.push(clock.now());
            left();
          }),
        ),
      );
    } finally {
      clock.stop();
    }
    leftAt.sort((a, b) => a - b);
    expect(leftAt).toHaveLength(6);
    expect(maxInAnyWindow(leftAt)).toBeLessThanOrEqual(2);
  });

  it('keeps the bound while retries and polls join the same queue, and holds concurrency', async () => {
    // Each request takes 1 s of virtual time; at 10 rps, ten would overlap without the cap of 3.
    const clock = eventClock();
    const limiter = new RateLimiter({ requestsPerSecond: 10, concurrency: 3, clock });
    const starts: number[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const request = () =>
      limiter.schedule(async () => {
        starts.push(clock.now());
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await clock.sleep(1000);
        inFlight--;
      });
    // "Opt-outs" that each retry once and then "poll".
    try {
      await Promise.all(Array.from({ length: 40 }, async () => {
        await request();
        await request();
        await request();
      }));
    } finally {
      clock.stop();
    }
    expect(starts).toHaveLength(120);
    expect(maxInAnyWindow(starts)).toBeLessThanOrEqual(10);
    expect(maxInFlight).toBe(3);
  });

  it('pauses everyone for Retry-After on 429, cuts to what D1 admitted, climbs back fast to it and slowly beyond', async () => {
    const clock = fakeClock();
    const limiter = new RateLimiter({ requestsPerSecond: 40, concurrency: 8, clock, guardMs: 0, recoverAfterMs: 2000, probeAfterMs: 10_000 });
    // 30 requests at 40 rps, then D1 says 429: it admitted about 30 a second.
    await Promise.all(Array.from({ length: 30 }, () => limiter.schedule(async (left) => left())));
    const t429 = clock.now();
    limiter.onThrottled(3000);
    limiter.onThrottled(3000); // a burst of 429s from requests already in flight is one signal
    const starts: number[] = [];
    await limiter.schedule(async (left) => {
        starts.push(clock.now());
        left();
      });
    expect(starts[0]! - t429).toBeGreaterThanOrEqual(3000);
    let s = limiter.stats();
    expect(s.http429).toBe(2);
    expect(s.currentRps).toBeCloseTo(28.5, 5);
    expect(s.lowestRps).toBeCloseTo(28.5, 5);
    expect(s.throttledMs).toBe(3000);
    // Quiet: it stays at or below 95% of the ceiling (30) until the long quiet of a probe, then
    // adds a little at a time, up to the configured rate and never above it.
    await Promise.all(Array.from({ length: 200 }, () => limiter.schedule(async (left) => left())));
    expect(limiter.stats().currentRps).toBeLessThanOrEqual(28.5);
    await Promise.all(Array.from({ length: 2500 }, () => limiter.schedule(async (left) => left())));
    s = limiter.stats();
    expect(s.currentRps).toBe(40);
    // Repeated 429s with nothing admitted cut it down to the floor of 1 rps.
    for (let i = 0; i < 10; i++) {
      clock.t += 1500;
      limiter.onThrottled(0);
    }
    expect(limiter.stats().currentRps).toBe(1);
  });

  it('keeps the window bound while the rate changes', async () => {
    const clock = fakeClock();
    const limiter = new RateLimiter({ requestsPerSecond: 50, concurrency: 8, clock, guardMs: 0, recoverAfterMs: 500, probeAfterMs: 1000 });
    const starts: number[] = [];
    await Promise.all(
      Array.from({ length: 1500 }, (_, i) =>
        limiter.schedule(async (left) => {
          starts.push(clock.now());
          left();
          if (i % 300 === 299) limiter.onThrottled(1000);
        }),
      ),
    );
    expect(maxInAnyWindow(starts)).toBeLessThanOrEqual(50);
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
