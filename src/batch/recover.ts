import type { Ledger } from '../ledger/index.js';
import type { Logger } from '../log.js';
import { finishBatch } from './finish.js';

/**
 * Closes the batches a killed process left RUNNING (we hold the lock, so nobody else runs them):
 * half-read files are forgotten so they are read again (their targets, already queued, are
 * carried over like the rest of the batch's), and the batch is reported as ABORTED.
 */
export async function recoverAbandoned(ledger: Ledger, reportsDir: string, log: Logger): Promise<string[]> {
  const recovered: string[] = [];
  for (const b of ledger.batches.running()) {
    const discarded = ledger.tx(() => ledger.files.discardHalfIngested(b.id));
    await finishBatch(ledger, b.id, reportsDir, 'the process running this batch stopped before finishing; its unfinished targets are carried over by the next run', b.stats);
    log.warn(`batch ${b.id} was left RUNNING by a process that died; marked ABORTED${discarded ? ` (${discarded} half-read file(s) will be read again)` : ''}`);
    recovered.push(b.id);
  }
  return recovered;
}
