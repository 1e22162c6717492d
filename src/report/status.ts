import type { Ledger } from '../ledger/index.js';
import { terminalSafe } from '../text.js';
import { OUTCOMES, type BatchOverview, type Outcome, type WaitingCards } from '../types.js';
import { commandLine } from './command-line.js';
import { formatCount, formatDuration, formatUtc, textTable } from './format.js';
import { durationMs, outcomeCount, rowsOf } from './summary.js';

/** The most recent batches, newest first, as `status` lists them. */
export function batchOverviews(ledger: Ledger, limit: number): BatchOverview[] {
  return ledger.batches.list(limit).map((b) => {
    const { rows, carriedOver } = ledger.items.counts(b.id);
    return { id: b.id, kind: b.kind, parent: b.parentId, startedAt: b.startedAt, endedAt: b.endedAt, durationMs: durationMs(b), status: b.status, rows: rowsOf(ledger.files.inputs(b.id)), outcomes: rows, carriedOver, inDoubt: ledger.items.inDoubt(b.id), resolvedBy: ledger.items.resolvedBy(b.id), prunedAt: ledger.prunes.ofBatch(b.id)?.prunedAt ?? null };
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
  NOT_ENROLLED: 'NOT_ENROL',
  SKIPPED_NOT_ENROLLED: 'SKIP_NOENR',
};

/**
 * `status`: one line per batch, newest first. Outcome columns appear when some listed batch has
 * that outcome; each count adds the batch's input rows and its carried-over targets (all of a
 * rerun's items are carried over).
 */
export function formatStatus(batches: readonly BatchOverview[], targets: Record<string, number>, waiting: readonly WaitingCards[] = []): string {
  const lines: string[] = [];
  if (batches.length === 0) lines.push('No batches yet.');
  else {
    // In-doubt targets are counted FAILED_RETRYABLE in the reports, but they are not known to
    // have failed: they get their own column here.
    const count = (b: BatchOverview, o: Outcome) => outcomeCount(b, o) - (o === 'FAILED_RETRYABLE' ? b.inDoubt : 0);
    const shown = OUTCOMES.filter((o) => batches.some((b) => count(b, o) > 0));
    const doubt = batches.some((b) => b.inDoubt > 0);
    const resolved = batches.some((b) => b.resolvedBy !== null);
    const header = ['BATCH', 'KIND', 'PARENT', 'STARTED (UTC)', 'DURATION', 'STATUS', 'ROWS', 'REJECTED', ...shown.map((o) => SHORT[o]), ...(doubt ? ['IN_DOUBT'] : []), ...(resolved ? ['RESOLVED BY'] : [])];
    const rows = batches.map((b) => [
      b.id,
      b.kind,
      b.parent ?? '-',
      formatUtc(b.startedAt),
      b.durationMs === null ? '-' : formatDuration(b.durationMs),
      b.prunedAt ? `${b.status}*` : b.status,
      formatCount(b.rows.total),
      formatCount(b.rows.rejected),
      ...shown.map((o) => formatCount(count(b, o))),
      ...(doubt ? [formatCount(b.inDoubt)] : []),
      ...(resolved ? [b.resolvedBy ?? ''] : []),
    ]);
    lines.push(...textTable(header, rows, header.map((h, i) => i >= 4 && i !== 5 && h !== 'RESOLVED BY')));
    const legend = shown.filter((o) => SHORT[o] !== o).map((o) => `${SHORT[o]}=${o}`);
    if (resolved) legend.push('RESOLVED BY=the later batch that finished what this one left undone');
    if (doubt) legend.push('IN_DOUBT=stopped while its request was in flight (D1 may have it; the next run sends it again)');
    if (legend.length) lines.push('', `Columns: ${legend.join(', ')}; counts include carried-over targets.`);
    if (batches.some((b) => b.prunedAt)) lines.push('* history pruned (d1-optout prune): its rows and D1 requests, and so its outcome counts, are gone; targets keep their states.');
  }
  const states = Object.entries(targets)
    .map(([k, v]) => `${k}=${formatCount(v)}${k === 'SUBMITTING' ? ' (in doubt)' : ''}`)
    .join(' ');
  lines.push(`Targets in the ledger: ${states || 'none'}`);
  for (const w of waiting) lines.push(`  ${formatCount(w.cards)} card(s) QUEUED, waiting for consumer ${w.consumerId} (its opt-out is PENDING at D1)`);
  if (batches[0]) lines.push(`Details: ${commandLine('status', '--batch', batches[0].id)}`);
  return terminalSafe(lines.join('\n'));
}
