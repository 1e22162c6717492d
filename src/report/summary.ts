import { join } from 'node:path';
import type { Ledger } from '../ledger/index.js';
import type { BatchSummary } from '../types.js';

/** summary.json of DESIGN.md §4, computed from the ledger alone so any batch can be reported again. */
export function buildSummary(ledger: Ledger, batchId: string, reportsDir: string): BatchSummary {
  const batch = ledger.batches.get(batchId);
  if (!batch) throw new Error(`no batch ${batchId} in ledger ${ledger.path}`);
  const inputs = ledger.files.inputs(batchId);
  const total = inputs.reduce((n, i) => n + i.rows, 0);
  const rejected = inputs.reduce((n, i) => n + i.rejected, 0);
  const { rows, carriedOver } = ledger.items.counts(batchId);
  const requestsByStatus = ledger.attempts.requestsByStatus(batchId);
  const span = ledger.attempts.optOutSpan(batchId);
  const peakRps = ledger.attempts.perSecond(batchId).reduce((m, s) => Math.max(m, s.requests), 0);
  const stats = batch.stats as { throttledMs?: number; lowestRps?: number | null; tokenRequests?: number };
  return {
    batchId,
    kind: batch.kind,
    parentBatchId: batch.parentId,
    startedAt: batch.startedAt,
    endedAt: batch.endedAt,
    status: batch.status,
    abortReason: batch.abortReason,
    inputs,
    rows: { total, valid: total - rejected, rejected },
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
    },
    reportDir: join(reportsDir, batchId),
  };
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

export function hasFailures(s: BatchSummary): boolean {
  const failed = (o: Partial<Record<string, number>>) => (o['FAILED_RETRYABLE'] ?? 0) + (o['FAILED_PERMANENT'] ?? 0) + (o['NOT_ATTEMPTED'] ?? 0);
  return failed(s.outcomes) + failed(s.carriedOver) > 0;
}
