import pLimit, { type LimitFunction } from 'p-limit';
import { realClock, type Clock } from './clock.js';

/** How late a timer may fire and the slot still count as started on time. */
const TIMER_SLACK_MS = 2;

export interface LimiterOptions {
  requestsPerSecond: number;
  concurrency: number;
  clock?: Clock;
  /**
   * Extra milliseconds added to the one-second window. Requests leave on time but arrive with a few
   * milliseconds of jitter, so a sender that fills the window exactly is seen over quota by D1.
   */
  guardMs?: number;
  /**
   * How long without a 429 before the rate climbs again below the last known ceiling, and by how
   * much of the configured rate per second (fast: the ceiling is known to be safe).
   */
  recoverAfterMs?: number;
  increaseFraction?: number;
  /** Above the ceiling (probing for more), how long to stay quiet first and how much to add per second. */
  probeAfterMs?: number;
  probeFraction?: number;
  /** The longest pause a Retry-After may impose (rate.backoffMaxMs). */
  maxPauseMs?: number;
}

export interface LimiterStats {
  started: number;
  http429: number;
  throttledMs: number;
  lowestRps: number;
  currentRps: number;
}

/**
 * The one gate every D1 request passes: opt-outs, retries and Get Operation polls alike.
 * Guarantees that in any sliding one-second window at most `requestsPerSecond` requests start
 * (an exact log of start times, not an approximation), and at most `concurrency` are in flight.
 *
 * On 429 it pauses everything for Retry-After and cuts its rate multiplicatively: to 95% of what
 * it started in the last second (about what D1 admitted), never above its current rate, never
 * below 1 rps. That second's count is the ceiling. After a quiet period it climbs back (additive
 * increase): quickly up to 95% of the ceiling, then slowly and only after a long quiet spell, so
 * that probing for more costs one pause now and then, not one every few seconds. A ceiling with
 * no 429 for a minute is forgotten.
 */
export class RateLimiter {
  private readonly inFlight: LimitFunction;
  private readonly clock: Clock;
  private readonly guardMs: number;
  private readonly recoverAfterMs: number;
  private readonly increaseStep: number;
  private readonly probeAfterMs: number;
  private readonly probeStep: number;
  private ceiling: number | null = null;
  private readonly maxRps: number;
  private readonly maxPauseMs: number;
  private rps: number;
  /** Start times of the most recent requests, oldest first, at most ceil(maxRps) of them. */
  private readonly starts: number[] = [];
  private pausedUntil = 0;
  private last429 = -Infinity;
  private lastIncrease = 0;
  private queue: Promise<void> = Promise.resolve();
  private interrupted = false;
  private readonly s: LimiterStats;

  constructor(opts: LimiterOptions) {
    this.clock = opts.clock ?? realClock;
    this.inFlight = pLimit(opts.concurrency);
    this.maxRps = opts.requestsPerSecond;
    this.maxPauseMs = opts.maxPauseMs ?? 30_000;
    this.rps = opts.requestsPerSecond;
    // Never less than the timer slack: the bound on actual starts is the window plus the guard
    // less the slack.
    this.guardMs = Math.max(TIMER_SLACK_MS, opts.guardMs ?? 20);
    this.recoverAfterMs = opts.recoverAfterMs ?? 2000;
    this.increaseStep = Math.max(0.5, opts.requestsPerSecond * (opts.increaseFraction ?? 0.1));
    this.probeAfterMs = opts.probeAfterMs ?? 10_000;
    this.probeStep = Math.max(0.5, opts.requestsPerSecond * (opts.probeFraction ?? 0.01));
    this.s = { started: 0, http429: 0, throttledMs: 0, lowestRps: this.rps, currentRps: this.rps };
  }

  /** Runs `fn` (one HTTP request) once both a concurrency slot and a start slot are free. */
  schedule<T>(fn: () => Promise<T>): Promise<T> {
    return this.inFlight(async () => {
      await this.takeStartSlot();
      return fn();
    });
  }

  /** D1 said 429: stop everyone for `retryAfterMs` and slow down. */
  onThrottled(retryAfterMs: number): void {
    const now = this.clock.now();
    this.s.http429++;
    const until = now + Math.min(retryAfterMs, this.maxPauseMs);
    if (until > this.pausedUntil) {
      this.s.throttledMs += Math.max(0, until - Math.max(now, this.pausedUntil));
      this.pausedUntil = until;
    }
    // One cut per burst of 429s: the requests already in flight when the first came back were
    // sent at the old rate and say nothing new.
    if (now - this.last429 > 1000) {
      const startedLastSecond = this.starts.filter((t) => t > now - 1000).length;
      this.ceiling = Math.max(1, startedLastSecond);
      this.rps = Math.max(1, Math.min(this.rps, startedLastSecond) * 0.95);
      this.s.lowestRps = Math.min(this.s.lowestRps, this.rps);
    }
    this.last429 = now;
    this.lastIncrease = now;
  }

  /**
   * The run is stopping: every request still waiting for its turn is let through at once, so its
   * caller can see the stop and not send it. Nothing sleeps through a long Retry-After after SIGTERM.
   */
  interrupt(): void {
    this.interrupted = true;
    this.wake?.();
  }

  stats(): LimiterStats {
    return { ...this.s, currentRps: this.rps };
  }

  private takeStartSlot(): Promise<void> {
    // Slots are handed out strictly in arrival order, one at a time.
    const turn = this.queue.then(() => this.waitForSlot());
    this.queue = turn.catch(() => undefined);
    return turn;
  }

  private wake: (() => void) | null = null;

  private async waitForSlot(): Promise<void> {
    for (;;) {
      if (this.interrupted) return;
      const now = this.clock.now();
      this.maybeIncrease(now);
      const earliest = this.earliestStart();
      const wait = earliest - now;
      if (wait <= 0) {
        // A timer fires a millisecond or two late; booking the slot at its planned time (but
        // never more than TIMER_SLACK_MS early) keeps the rate from drifting below the configured
        // one, and the guard band absorbs the difference.
        this.starts.push(Math.max(earliest, now - TIMER_SLACK_MS));
        const keep = Math.ceil(this.maxRps);
        if (this.starts.length > keep) this.starts.splice(0, this.starts.length - keep);
        this.s.started++;
        return;
      }
      await Promise.race([this.clock.sleep(wait), new Promise<void>((resolve) => (this.wake = resolve))]);
      this.wake = null;
    }
  }

  /** The earliest instant a new request may start without breaking any guarantee (may be past). */
  private earliestStart(): number {
    let at = this.pausedUntil;
    const n = this.starts.length;
    if (n > 0) {
      // Even spacing keeps arrivals smooth; the window check makes the bound exact.
      at = Math.max(at, this.starts[n - 1]! + 1000 / this.rps);
      const allowed = Math.max(1, Math.floor(this.rps));
      if (n >= allowed) at = Math.max(at, this.starts[n - allowed]! + 1000 + this.guardMs);
    }
    return at;
  }

  private maybeIncrease(now: number): void {
    if (this.rps >= this.maxRps) return;
    // Quiet is measured from the end of the pause: sleeping through Retry-After is not recovery.
    const quietSince = Math.max(this.last429, this.pausedUntil);
    if (this.ceiling !== null && now - quietSince > 60_000) this.ceiling = null;
    const safe = this.ceiling === null ? this.maxRps : this.ceiling * 0.95;
    const probing = this.rps >= safe;
    if (now - quietSince < (probing ? this.probeAfterMs : this.recoverAfterMs) || now - this.lastIncrease < 1000) return;
    this.rps = Math.min(this.maxRps, probing ? this.rps + this.probeStep : Math.min(safe, this.rps + this.increaseStep));
    this.lastIncrease = now;
  }
}
