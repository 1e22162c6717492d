import { D1Client } from '../d1/client.js';
import { identityOf, Ledger } from '../ledger/index.js';
import type { Logger } from '../log.js';
import { RateLimiter } from '../throttle/limiter.js';
import type { Config, ProgressListener } from '../types.js';
import { NO_PROGRESS, type BatchContext } from './context.js';
import { recoverAbandoned } from './recover.js';
import { CircuitBreaker, type StopSignal } from './stop.js';

/** An open ledger with its lock held, and a D1 client ready to call: what run, rerun and poll start from. */
export interface Session {
  ledger: Ledger;
  context(batchId: string, log: Logger): BatchContext;
  close(): void;
}

/**
 * Opens the existing ledger for writing, checks it is sound and bound to this config's issuer and
 * D1, and takes its lock (exit 3 if held), then closes batches a dead process left behind. The private key is loaded first: a bad key stops the job before it touches
 * the ledger.
 */
export async function openSession(config: Config, command: string, log: Logger, stop: StopSignal, progress: ProgressListener = NO_PROGRESS): Promise<Session> {
  const limiter = new RateLimiter({ requestsPerSecond: config.rate.requestsPerSecond, concurrency: config.rate.concurrency, maxPauseMs: config.rate.backoffMaxMs });
  const client = new D1Client(config.d1, limiter, undefined, config.rate.concurrency);
  stop.onStop(() => limiter.interrupt());
  let ledger: Ledger | null = null;
  try {
    // Never created here (docs/design.md §12): a missing, damaged or foreign ledger is exit 2 before anything is sent.
    ledger = Ledger.open(config.ledger);
    const bound = ledger.bindTo(identityOf(config));
    if (bound) log.warn(bound);
    ledger.committer.onFailure = (err) => stop.stop(`the ledger cannot be written: ${(err as Error).message}`);
    const lock = ledger.lock(config.lock.staleAfterSec, () => stop.stop('another process took over the ledger lock; stopping so that two runs never send at once'));
    const warning = lock.acquire(command);
    if (warning) log.warn(warning);
    const open = ledger;
    try {
      await recoverAbandoned(open, config.reportsDir, log);
    } catch (err) {
      lock.release();
      throw err;
    }
    const breaker = new CircuitBreaker(config.abort.maxConsecutiveFailures, stop);
    return {
      ledger: open,
      context: (batchId, batchLog) => ({ batchId, config, ledger: open, client, limiter, log: batchLog, stop, breaker, freshBudget: new Set(), progress }),
      close: () => {
        try {
          open.committer.flush();
        } finally {
          lock.release();
          open.close();
          client.close();
        }
      },
    };
  } catch (err) {
    ledger?.close();
    client.close();
    throw err;
  }
}
