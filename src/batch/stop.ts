import type { Logger } from '../log.js';

/**
 * The run's stop switch: a signal, a fatal D1 answer or the circuit breaker sets it, and every
 * stage checks it before starting more work. Sleeps end early when it is set.
 */
export class StopSignal {
  reason: string | null = null;
  private readonly wakers = new Set<() => void>();

  get stopped(): boolean {
    return this.reason !== null;
  }

  stop(reason: string): void {
    if (this.reason !== null) return;
    this.reason = reason;
    for (const wake of this.wakers) wake();
    this.wakers.clear();
  }

  /** Calls `fn` when the run stops (at once if it has). */
  onStop(fn: () => void): void {
    if (this.stopped) fn();
    else this.wakers.add(fn);
  }

  /** Waits `ms`, or less if the run is stopped meanwhile. */
  sleep(ms: number): Promise<void> {
    if (this.stopped || ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakers.add(done);
    });
  }
}

/** Retryable failures in a row that make a streak worth an `error` line (or fewer, when the breaker trips sooner). */
export const STREAK = 5;

/**
 * Trips after `limit` retryable failures in a row: D1 is down, and hammering it helps nobody.
 * The rest of the batch stays NOT_ATTEMPTED for the next run. A streak is logged once as an
 * error when it starts (`d1.failing`) and once when D1 answers again (`d1.recovered`), so an
 * outage is one alert, not one per request.
 */
export class CircuitBreaker {
  private consecutive = 0;
  /** Of the failures in a row, those that never left for want of an access token. */
  private withoutToken = 0;
  private streakLogged = false;

  constructor(
    private readonly limit: number,
    private readonly stop: StopSignal,
  ) {}

  /** `notSent`: the request never left because the token endpoint gave no access token. */
  record(kind: 'ok' | 'failure', lastError: string | null, log: Logger, notSent = false): void {
    if (kind === 'ok') {
      if (this.streakLogged) log.info(`D1 answers again after ${this.consecutive} retryable failures in a row`, { event: 'd1.recovered', failuresInRow: this.consecutive });
      this.consecutive = 0;
      this.withoutToken = 0;
      this.streakLogged = false;
      return;
    }
    this.consecutive++;
    if (notSent) this.withoutToken++;
    if (!this.streakLogged && this.consecutive >= Math.min(STREAK, this.limit)) {
      this.streakLogged = true;
      log.error(`D1 is failing: ${this.consecutive} retryable failures in a row (last: ${lastError ?? 'unknown'}); the run stops after ${this.limit}`, {
        event: 'd1.failing',
        failuresInRow: this.consecutive,
        lastError,
      });
    }
    if (this.consecutive >= this.limit) this.stop.stop(this.reason(lastError));
  }

  /**
   * The abort reason names the token endpoint when it is what failed: those requests were never
   * sent, and a reason that blamed the API would contradict a summary of 0 API requests.
   */
  private reason(lastError: string | null): string {
    const last = `last: ${lastError ?? 'unknown'}`;
    if (this.withoutToken === this.consecutive) {
      return `D1's token endpoint looks unavailable: ${this.consecutive} requests in a row got no access token and were not sent (${last})`;
    }
    const some = this.withoutToken > 0 ? `, ${this.withoutToken} of them not sent for want of an access token` : '';
    return `D1 looks unavailable: ${this.consecutive} retryable failures in a row${some} (${last})`;
  }
}
