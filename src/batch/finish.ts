import { EXIT, type ExitCode } from '../errors.js';
import type { Ledger } from '../ledger/index.js';
import type { Logger } from '../log.js';
import { buildSummary, completedStatus, hasFailures } from '../report/summary.js';
import { writeReport } from '../report/write.js';
import type { BatchStatus, BatchSummary } from '../types.js';
import { logBatchClose } from './events.js';

export interface BatchResult {
  summary: BatchSummary;
  exitCode: ExitCode;
}

export function exitCodeFor(s: BatchSummary): ExitCode {
  if (s.status === 'ABORTED') return EXIT.ABORTED;
  return hasFailures(s) ? EXIT.FAILURES : EXIT.OK;
}

/**
 * Closes a batch: fixes every item's outcome, sets the status, then writes the report from the
 * ledger, and logs the batch's closing event. `abortReason` null means the batch ran to its end.
 */
export async function finishBatch(
  ledger: Ledger,
  batchId: string,
  reportsDir: string,
  abortReason: string | null,
  stats: Record<string, unknown>,
  log: Logger,
): Promise<BatchResult> {
  ledger.committer.flush();
  ledger.tx(() => {
    ledger.items.freezeOutcomes(batchId);
    const status: BatchStatus = abortReason ? 'ABORTED' : completedStatus(ledger, batchId);
    ledger.batches.finish(batchId, status, abortReason, stats);
  });
  const summary = buildSummary(ledger, batchId, reportsDir);
  await writeReport(ledger, summary);
  const exitCode = exitCodeFor(summary);
  logBatchClose(log, summary, exitCode);
  return { summary, exitCode };
}
