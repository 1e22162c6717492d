import { EXIT, UsageError, type ExitCode } from '../errors.js';
import type { Ledger } from '../ledger/index.js';
import type { Logger } from '../log.js';
import { commandLine } from '../report/command-line.js';
import { buildSummary, completedStatus, hasFailures } from '../report/summary.js';
import { writeReport } from '../report/write.js';
import type { BatchStatus, BatchSummary } from '../types.js';
import { logBatchClose } from './events.js';
import { faultPlantReportLink } from './fault.js';

export interface BatchResult {
  summary: BatchSummary;
  exitCode: ExitCode;
}

export function exitCodeFor(s: BatchSummary): ExitCode {
  if (s.status === 'ABORTED') return EXIT.ABORTED;
  return hasFailures(s) || s.quarantined.length > 0 ? EXIT.FAILURES : EXIT.OK;
}

/**
 * Closes a batch: fixes every item's outcome, sets the status, then writes the report from the
 * ledger, and logs the batch's closing event. `abortReason` null means the batch ran to its end.
 * A report that cannot be written is a warning: the batch's work is done and recorded, and
 * `report --batch` writes the report from the ledger later.
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
  try {
    faultPlantReportLink(summary.reportDir);
    await writeReport(ledger, summary);
  } catch (err) {
    if (!isFolderProblem(err)) throw err;
    log.warn(
      `batch ${batchId} ran to its close, but its report cannot be written to ${summary.reportDir} (${(err as Error).message}); ` +
        `once the folder is fixed, write the report with ${commandLine('report', '--batch', batchId)}`,
    );
  }
  await rewriteResolved(ledger, batchId, reportsDir, log);
  const exitCode = exitCodeFor(summary);
  logBatchClose(log, summary, exitCode);
  return { summary, exitCode };
}

/**
 * The earlier batches whose leftovers this batch finished get their report written again, so
 * their report.html says "resolved by" instead of a "Next:" that has been done. A report that
 * cannot be written again is a warning: this batch's own work and report are complete.
 */
async function rewriteResolved(ledger: Ledger, batchId: string, reportsDir: string, log: Logger): Promise<void> {
  for (const earlier of ledger.items.leftBehindBy(batchId)) {
    const s = buildSummary(ledger, earlier, reportsDir);
    if (s.resolvedBy === null || s.status === 'RUNNING') continue;
    try {
      await writeReport(ledger, s);
      log.info(`batch ${earlier} is resolved by ${s.resolvedBy}; its report is written again`);
    } catch (err) {
      log.warn(`batch ${earlier} is resolved by ${s.resolvedBy}, but its report in ${s.reportDir} cannot be written again (${(err as Error).message})`);
    }
  }
}

/** The report writer's refusals and the file system's errors (EACCES, ENOSPC, ...); not a bug's. */
function isFolderProblem(err: unknown): boolean {
  return err instanceof UsageError || (err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string');
}
