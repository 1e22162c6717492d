import type { Ledger } from '../ledger/index.js';
import { terminalSafe } from '../text.js';
import { OUTCOMES, type BatchOverview, type Outcome } from '../types.js';
import { formatCount, formatDuration, formatUtc, textTable } from './format.js';
import { durationMs, outcomeCount, rowsOf } from './summary.js';

/** The most recent batches, newest first, as `status` lists them. */
export function batchOverviews(ledger: Ledger, limit: number): BatchOverview[] {
  return ledger.batches.list(limit).map((b) => {
    const { rows, carriedOver } = ledger.items.counts(b.id);
    return { id: b.id, kind: b.kind, parent: b.parentId, startedAt: b.startedAt, endedAt: b.endedAt, durationMs: durationMs(b), status: b.status, rows: rowsOf(ledger.files.inputs(b.id)), outcomes: rows, carriedOver, prunedAt: ledger.prunes.ofBatch(b.id)?.prunedAt ?? null };
  });
}

/** Column headings of `status`, short enough for the table to fit a terminal. */
const SHORT: Record<Outcome, string> = {
  OPTED_OUT: 'OPTED_OUT',
  PENDING: 'PENDING',
  FAILED_RETRYABLE: 'FAIL_RETRY',
  FAILED_PERMANENT: 'FAIL_PERM',
  NOT_ATTEMPTED: 'NOT_ATT',
  SKIPPED_DUPLICATE: 'SKIP_DUP',
  SKIPPED_ALREADY_OPTED_OUT: 'SKIP_DONE',
  SKIPPED_ALREADY_PENDING: 'SKIP_PEND',
  SKIPPED_COVERED_BY_CONSUMER: 'SKIP_CONS',
  SKIPPED_PREVIOUSLY_FAILED: 'SKIP_FAIL',
};

/**
 * `status`: one line per batch, newest first. Outcome columns appear when some listed batch has
 * that outcome; each count adds the batch's input rows and its carried-over targets (all of a
 * rerun's items are carried over).
 */
export function formatStatus(batches: readonly BatchOverview[], targets: Record<string, number>): string {
  const lines: string[] = [];
  if (batches.length === 0) lines.push('No batches yet.');
  else {
    const shown = OUTCOMES.filter((o) => batches.some((b) => outcomeCount(b, o) > 0));
    const header = ['BATCH', 'KIND', 'PARENT', 'STARTED (UTC)', 'DURATION', 'STATUS', 'ROWS', 'REJECTED', ...shown.map((o) => SHORT[o])];
    const rows = batches.map((b) => [
      b.id,
      b.kind,
      b.parent ?? '-',
      formatUtc(b.startedAt),
      b.durationMs === null ? '-' : formatDuration(b.durationMs),
      b.prunedAt ? `${b.status}*` : b.status,
      formatCount(b.rows.total),
      formatCount(b.rows.rejected),
      ...shown.map((o) => formatCount(outcomeCount(b, o))),
    ]);
    lines.push(...textTable(header, rows, header.map((_, i) => i >= 4 && i !== 5)));
    const legend = shown.filter((o) => SHORT[o] !== o).map((o) => `${SHORT[o]}=${o}`);
    if (legend.length) lines.push('', `Columns: ${legend.join(', ')}; counts include carried-over targets.`);
    if (batches.some((b) => b.prunedAt)) lines.push('* history pruned (d1-optout prune): its rows and D1 requests, and so its outcome counts, are gone; targets keep their states.');
  }
  const states = Object.entries(targets)
    .map(([k, v]) => `${k}=${formatCount(v)}`)
    .join(' ');
  lines.push(`Targets in the ledger: ${states || 'none'}`);
  if (batches[0]) lines.push(`Details: d1-optout status --batch ${batches[0].id}`);
  return terminalSafe(lines.join('\n'));
}
