import { join } from 'node:path';
import type { Ledger } from '../ledger/index.js';
import { commandLine } from '../report/command-line.js';
import { buildSummary } from '../report/summary.js';
import { removeLeftovers, reportInterrupted, writeReport } from '../report/write.js';
import type { Logger } from '../log.js';
import { finishBatch, type BatchResult } from './finish.js';

/** How many recent batches are checked for an interrupted report at each start. */
const RECENT = 5;

/**
 * Closes a batch that cannot go on as ABORTED: a file it was half-way through (none of whose rows
 * reached the ledger) is forgotten, so the next run reads it again from the start, and the report
 * is written.
 */
export async function abortBatch(
  ledger: Ledger,
  batchId: string,
  reportsDir: string,
  reason: string,
  stats: Record<string, unknown>,
  log: Logger,
): Promise<{ result: BatchResult; discardedFiles: number }> {
  const discardedFiles = ledger.tx(() => ledger.files.discardHalfIngested(batchId));
  return { result: await finishBatch(ledger, batchId, reportsDir, reason, stats, log), discardedFiles };
}

/**
 * Closes the batches a killed process left RUNNING (we hold the lock, so nobody else runs them),
 * and writes again the report of a recent batch whose report a kill interrupted (its staging
 * folder is left beside it, or an older folder lacks summary.json, which is written last).
 */
export async function recoverAbandoned(ledger: Ledger, reportsDir: string, log: Logger): Promise<string[]> {
  for (const b of ledger.batches.list(RECENT)) {
    const dir = join(reportsDir, b.id);
    // Only a folder a kill left behind: a batch reported elsewhere (reportsDir changed) is not.
    if (b.status === 'RUNNING' || !reportInterrupted(dir)) continue;
    try {
      await writeReport(ledger, buildSummary(ledger, b.id, reportsDir));
      removeLeftovers(dir);
      log.warn(`the report of batch ${b.id} was incomplete (the process was stopped while writing it); written again`);
    } catch (err) {
      // A broken report folder must not keep every later night from running.
      log.warn(`the report of batch ${b.id} in ${dir} is incomplete and cannot be written again (${(err as Error).message}); run ${commandLine('report', '--batch', b.id)} once the folder is fixed`);
    }
  }
  const recovered: string[] = [];
  for (const b of ledger.batches.running()) {
    const { discardedFiles } = await abortBatch(
      ledger,
      b.id,
      reportsDir,
      'the process running this batch stopped before finishing; its unfinished targets are carried over by the next run',
      b.stats,
      log.child({ batchId: b.id }),
    );
    log.warn(`batch ${b.id} was left RUNNING by a process that died; marked ABORTED${discardedFiles ? ` (${discardedFiles} half-read file(s) will be read again)` : ''}`);
    recovered.push(b.id);
  }
  return recovered;
}
