import pLimit, { type LimitFunction } from 'p-limit';
import { realClock, type Clock } from './clock.js';

/**
 * How far behind its even schedule the limiter may fall while requests wait, and still catch up.
 * Timers fire a millisecond or two late, and the event loop stalls now and then: a collection, or
 * a commit's fsync on a busy disk (better-sqlite3 commits on this thread). Without catching up,
 * each delay is slots lost for good: at 1,000 req/s they cost a few percent of the rate. The
 * starts that catch up leave close together, but each is counted by the one-second window below
 * from the moment it really left, so the bound holds through them.
 */
const CATCH_UP_MS = 250;
/**
 * Catching up goes at twice the rate, with at most this much of it at once (a timer wakes a
 * millisecond apart at best). Sent all together, the catch-up would queue at the receiver and
 * arrive spread over several milliseconds: the jitter the guard band has to absorb.
 */
const CATCH_UP_BURST_MS = 2;

/** See LimiterOptions.guardMs; chosen with `npm run bench` (docs/design.md §8). */
export const DEFAULT_GUARD_MS = 8;

export interface LimiterOptions {
  requestsPerSecond: number;
  concurrency: number;
  clock?: Clock;
  /**
   * Extra milliseconds added to the one-second window. Requests leave on time but arrive with a few
   * milliseconds of jitter, so a sender that fills the window exactly is seen over quota by D1.
   * It costs guardMs / 1000 of the rate.
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
 * Guarantees that in any sliding one-second window at most `requestsPerSecond` requests leave
 * (an exact log of when each was handed to its socket, not an approximation), and at most
 * `concurrency` are in flight.
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
  /**
   * When the most recent requests left, oldest first, at most ceil(maxRps) of them: the moment the
   * request's bytes were handed to the socket, not the moment it took its start. Between the two the
   * event loop may stall (a commit's fsync, a collection); a request started before a stall leaves
   * after it, next to the ones started after it, and D1 counts it where it arrives.
   */
  private readonly left: number[] = [];
  /** Requests that took their start and have not yet left: each counts in every window until it does. */
  private leaving = 0;
  /** When the next start is due on the even schedule. */
  private due = -Infinity;
  /** When the next start may leave while catching up: at twice the rate, not all at once. */
  private catchUpDue = -Infinity;
  /** Requests waiting for their start. */
  private waiting = 0;
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
    this.guardMs = Math.max(0, opts.guardMs ?? DEFAULT_GUARD_MS);
    this.recoverAfterMs = opts.recoverAfterMs ?? 2000;
    this.increaseStep = Math.max(0.5, opts.requestsPerSecond * (opts.increaseFraction ?? 0.1));
    this.probeAfterMs = opts.probeAfterMs ?? 10_000;
    this.probeStep = Math.max(0.5, opts.requestsPerSecond * (opts.probeFraction ?? 0.01));
    this.s = { started: 0, http429: 0, throttledMs: 0, lowestRps: this.rps, currentRps: this.rps };
  }

  /**
   * Runs `fn` (one HTTP request) once both a concurrency slot and a start slot are free. `fn` calls
   * `left()` once the request's bytes are handed to the socket; the window counts it from then.
   * `prepare` runs first, in the concurrency slot but before a start slot is taken: what a request
   * must wait for before it can leave (its access token) must not hold a start, or the request
   * leaves late and bunches with the ones started after it. When `prepare` says `skip`, nothing is
   * sent and no start is used.
   */
  schedule<T>(fn: (left: () => void) => Promise<T>, prepare?: () => Promise<{ skip: T } | null>): Promise<T> {
    return this.inFlight(async () => {
      const skipped = prepare ? await prepare() : null;
      if (skipped) return skipped.skip;
      await this.takeStartSlot();
      let leaving = true;
      const left = () => {
        if (!leaving) return;
        leaving = false;
        this.noteLeft(this.clock.now());
      };
      try {
        return await fn(left);
      } finally {
        // A request that failed before it said so may still have reached the wire: it left at the latest now.
        left();
      }
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
    // The schedule resumes after the pause: no catching up on what the pause held back.
    this.due = Math.max(this.due, this.pausedUntil);
    // One cut per burst of 429s: the requests already in flight when the first came back were
    // sent at the old rate and say nothing new.
    if (now - this.last429 > 1000) {
      const startedLastSecond = this.leaving + this.left.filter((t) => t > now - 1000).length;
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
    // Behind schedule with nobody waiting is idleness, not delay: nothing to catch up on.
    if (this.waiting++ === 0) this.due = Math.max(this.due, this.clock.now());
    // Slots are handed out strictly in arrival order, one at a time.
    const turn = this.queue.then(() => this.waitForSlot()).finally(() => this.waiting--);
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
        this.leaving++;
        // Behind schedule by less than CATCH_UP_MS: the schedule stands and the next starts follow
        // at once until it is met again. Further behind (a pause, an idle spell): it starts afresh.
        this.due = Math.max(this.due, now - CATCH_UP_MS) + this.spacing();
        this.catchUpDue = Math.max(this.catchUpDue, now - CATCH_UP_BURST_MS) + this.spacing() / 2;
        this.s.started++;
        return;
      }
      // An infinite wait is a full window of requests that have not left yet: the next to leave wakes it.
      const woken = new Promise<void>((resolve) => (this.wake = resolve));
      await (Number.isFinite(wait) ? Promise.race([this.clock.sleep(wait), woken]) : woken);
      this.wake = null;
    }
  }

  /**
   * Milliseconds between starts on the even schedule: the rate the window allows, so that the
   * window check below is a bound that seldom has to act, not a pause every thousand requests.
   */
  private spacing(): number {
    return (1000 + this.guardMs) / this.rps;
  }

  /** The earliest instant a new request may start without breaking any guarantee (may be past). */
  private earliestStart(): number {
    // Even spacing keeps arrivals smooth; the window check over the times requests left makes the bound exact.
    const at = Math.max(this.pausedUntil, this.due, this.catchUpDue);
    const fromLeft = Math.max(1, Math.floor(this.rps)) - this.leaving;
    if (fromLeft <= 0) return Infinity;
    const n = this.left.length;
    return n >= fromLeft ? Math.max(at, this.left[n - fromLeft]! + 1000 + this.guardMs) : at;
  }

  /** Kept in order: requests leave nearly in the order they started, so this seldom looks back more than a step. */
  private noteLeft(at: number): void {
    this.leaving--;
    let i = this.left.length;
    while (i > 0 && this.left[i - 1]! > at) i--;
    this.left.splice(i, 0, at);
    const keep = Math.ceil(this.maxRps);
    if (this.left.length > keep) this.left.splice(0, this.left.length - keep);
    this.wake?.();
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
