import type { ExitCode } from '../errors.js';
import type { Logger } from '../log.js';
import { durationMs } from '../report/summary.js';
import type { BatchKind, BatchSummary } from '../types.js';

/**
 * The log events a log shipper alerts on (docs/design.md §13): the event name is the JSON line's
 * `event` field, and every batch has one `batch.start` and exactly one closing event.
 */
export type LogEvent = 'batch.start' | 'batch.end' | 'batch.abort' | 'run.refused' | 'target.failed' | 'd1.failing' | 'd1.recovered';

export function logBatchStart(log: Logger, batchId: string, kind: BatchKind, parentBatchId: string | null, message: string): void {
  log.info(message, { event: 'batch.start' satisfies LogEvent, batchId, kind, parentBatchId });
}

/**
 * `batch.end` (info when COMPLETED, warn with failures) or `batch.abort` (error, with the reason),
 * with the figures an alert or a dashboard wants without opening summary.json.
 */
export function logBatchClose(log: Logger, s: BatchSummary, exitCode: ExitCode): void {
  const fields = {
    batchId: s.batchId,
    kind: s.kind,
    parentBatchId: s.parentBatchId,
    status: s.status,
    exitCode,
    rows: s.rows,
    outcomes: s.outcomes,
    carriedOver: s.carriedOver,
    requestsByStatus: s.d1.requestsByStatus,
    durationMs: durationMs(s),
    reportDir: s.reportDir,
  };
  if (s.status === 'ABORTED') {
    log.error(`batch ${s.batchId} aborted: ${s.abortReason ?? 'unknown reason'}`, { event: 'batch.abort' satisfies LogEvent, ...fields, reason: s.abortReason });
  } else if (s.status === 'COMPLETED_WITH_FAILURES') {
    log.warn(`batch ${s.batchId} completed with failures (see ${s.reportDir}/failures.csv)`, { event: 'batch.end' satisfies LogEvent, ...fields });
  } else {
    log.info(`batch ${s.batchId} completed`, { event: 'batch.end' satisfies LogEvent, ...fields });
  }
}
