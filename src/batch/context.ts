import type { D1Client } from '../d1/client.js';
import type { Ledger } from '../ledger/index.js';
import type { Logger } from '../log.js';
import type { RateLimiter } from '../throttle/limiter.js';
import type { Config } from '../types.js';
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
}
