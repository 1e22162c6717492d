import type { D1Client } from '../d1/client.js';
import type { Ledger } from '../ledger/index.js';
import type { Logger } from '../log.js';
import type { RateLimiter } from '../throttle/limiter.js';
import type { Config, ProgressListener, RequestCounters } from '../types.js';
import type { CircuitBreaker, StopSignal } from './stop.js';

/** What every stage of one batch shares. */
export interface BatchContext {
  batchId: string;
  config: Config;
  ledger: Ledger;
  client: D1Client;
  limiter: RateLimiter;
  log: Logger;
  stop: StopSignal;
  breaker: CircuitBreaker;
  /** Targets an operator re-admitted with `rerun --include-permanent`: the across-runs cap does not stop them this once. */
  freshBudget: Set<number>;
  progress: ProgressListener;
}

/** For callers that show no progress: tests, the benchmark, use as a library. */
export const NO_PROGRESS: ProgressListener = { on: () => undefined };

/** The limiter's counts as a progress display shows them. */
export function requestCounters(ctx: BatchContext): RequestCounters {
  const s = ctx.limiter.stats();
  return { requests: s.started, http429: s.http429, throttledMs: s.throttledMs };
}
