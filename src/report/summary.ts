import { join } from 'node:path';
import type { Ledger } from '../ledger/index.js';
import { FAILURE_OUTCOMES, type BatchSummary, type BatchStatus, type InputSummary, type Outcome } from '../types.js';

/** summary.json of docs/design.md §4, computed from the ledger alone so any batch can be reported again. */
export function buildSummary(ledger: Ledger, batchId: string, reportsDir: string): BatchSummary {
  const batch = ledger.batches.get(batchId);
  if (!batch) throw new Error(`no batch ${batchId} in ledger ${ledger.path}`);
  const archived = ledger.batches.archivedOf(batchId);
  const inputs = ledger.files.inputs(batchId).map((i) => ({ ...i, archivedTo: archived[i.path] ?? null }));
  const { deferred, quarantined } = ledger.batches.inboxOf(batchId);
  const { rows, carriedOver } = ledger.items.counts(batchId);
  const requestsByStatus = ledger.attempts.requestsByStatus(batchId);
  const span = ledger.attempts.optOutSpan(batchId);
  const peakRps = ledger.attempts.perSecond(batchId).reduce((m, s) => Math.max(m, s.requests), 0);
  const stats = batch.stats as { throttledMs?: number; lowestRps?: number | null; tokenRequests?: number; tokenFailures?: number };
  return {
    batchId,
    kind: batch.kind,
    parentBatchId: batch.parentId,
    startedAt: batch.startedAt,
    endedAt: batch.endedAt,
    status: batch.status,
    abortReason: batch.abortReason,
    inputs,
    deferred,
    quarantined,
    rows: rowsOf(inputs),
    outcomes: rows,
    carriedOver,
    d1: {
      requests: Object.values(requestsByStatus).reduce((n, v) => n + v, 0),
      requestsByStatus,
      retries: ledger.attempts.retries(batchId),
      throttledMs: Math.round(stats.throttledMs ?? 0),
      http429: requestsByStatus['429'] ?? 0,
      lowestRps: stats.lowestRps ?? null,
      achievedRps: achievedRps(span.requests, span.first, span.last),
      peakRps,
      tokenRequests: stats.tokenRequests ?? 0,
      tokenFailures: stats.tokenFailures ?? 0,
    },
    inDoubt: ledger.items.inDoubt(batchId),
    resolvedBy: ledger.items.resolvedBy(batchId),
    reportDir: join(reportsDir, batchId),
  };
}

/** Rows read, valid and rejected, over a batch's input files. */
export function rowsOf(inputs: readonly InputSummary[]): BatchSummary['rows'] {
  const total = inputs.reduce((n, i) => n + i.rows, 0);
  const rejected = inputs.reduce((n, i) => n + i.rejected, 0);
  return { total, valid: total - rejected, rejected };
}

/**
 * Requests per second from the first to the last request. Under a second there is no span to
 * divide by: the count is then what was sent in that second.
 */
function achievedRps(requests: number, first: string | null, last: string | null): number | null {
  if (requests === 0 || !first || !last) return null;
  const spanSec = (Date.parse(last) - Date.parse(first)) / 1000;
  return spanSec < 1 ? requests : Math.round(((requests - 1) / spanSec) * 10) / 10;
}

/** How long the batch ran, or null while it runs. */
export function durationMs(s: { startedAt: string; endedAt: string | null }): number | null {
  return s.endedAt ? Date.parse(s.endedAt) - Date.parse(s.startedAt) : null;
}

type OutcomeCounts = Pick<BatchSummary, 'outcomes' | 'carriedOver'>;

/** Input rows and carried-over targets with outcome `o`. */
export function outcomeCount(s: OutcomeCounts, o: Outcome): number {
  return (s.outcomes[o] ?? 0) + (s.carriedOver[o] ?? 0);
}

/** Whether any line of the batch ended in one of FAILURE_OUTCOMES (the lines of failures.csv). */
export function hasFailures(s: OutcomeCounts): boolean {
  return FAILURE_OUTCOMES.some((o) => outcomeCount(s, o) > 0);
}

/**
 * How a batch that ran to its end closes, from its outcome counts and quarantined files (no
 * summary needed). A quarantined file is a failure: its rows were not read (docs/design.md §11).
 */
export function completedStatus(ledger: Ledger, batchId: string): BatchStatus {
  const { rows, carriedOver } = ledger.items.counts(batchId);
  const quarantined = ledger.batches.inboxOf(batchId).quarantined.length;
  return hasFailures({ outcomes: rows, carriedOver }) || quarantined > 0 ? 'COMPLETED_WITH_FAILURES' : 'COMPLETED';
}
