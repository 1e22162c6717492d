import { terminalSafe } from '../text.js';
import { OUTCOMES, type BatchSummary, type Outcome } from '../types.js';
import { formatCount, formatDuration, textTable } from './format.js';
import { commandLine } from './command-line.js';
import { durationMs, outcomeCount } from './summary.js';

type Counts = Partial<Record<Outcome, number>>;

const sum = (counts: Counts) => Object.values(counts).reduce((n: number, v) => n + (v ?? 0), 0);

function outcomeTable(counts: Counts, heading: string, withShare: boolean): string[] {
  const present = OUTCOMES.filter((o) => (counts[o] ?? 0) > 0);
  if (present.length === 0) return [`  ${heading}`, '  (none)'];
  const total = sum(counts);
  const rows = present.map((o) => {
    const n = counts[o] ?? 0;
    return withShare ? [o, formatCount(n), `${((n / total) * 100).toFixed(1)}%`] : [o, formatCount(n)];
  });
  const header = withShare ? [heading, 'rows', 'share'] : [heading, 'targets'];
  return textTable(header, rows, [false, true, true], '  ');
}

function figures(s: BatchSummary): string[] {
  const byStatus = Object.entries(s.d1.requestsByStatus)
    .map(([k, v]) => `${k === '0' ? 'no answer' : k}: ${formatCount(v)}`)
    .join(', ');
  const ms = durationMs(s);
  const rows: string[][] = [
    ['Rejected rows', formatCount(s.rows.rejected), s.rows.rejected > 0 ? 'see rejects.csv' : ''],
    ['Duration', ms === null ? 'running' : formatDuration(ms), ''],
    ['D1 requests', formatCount(s.d1.requests), d1RequestsDetail(s, byStatus)],
    ...(s.d1.tokenFailures > 0
      ? [['Token requests', formatCount(s.d1.tokenRequests), `${formatCount(s.d1.tokenFailures)} got no access token from D1's token endpoint`]]
      : []),
    ['Achieved rate', s.d1.achievedRps === null ? '-' : `${s.d1.achievedRps.toFixed(1)} req/s`, s.d1.peakRps > 0 ? `opt-outs, first to last; peak ${s.d1.peakRps} in one second` : ''],
    ['429 answers', formatCount(s.d1.http429), s.d1.lowestRps !== null && s.d1.http429 > 0 ? `rate lowered to ${s.d1.lowestRps.toFixed(1)} req/s at most` : ''],
    ['Time paused', formatDuration(s.d1.throttledMs), s.d1.throttledMs > 0 ? 'all requests waited for the Retry-After D1 asked for' : ''],
  ];
  return textTable(['', '', ''], rows, [false, true, false], '  ').slice(1);
}

/** What the API requests were; with none at all because the token endpoint failed, that instead. */
function d1RequestsDetail(s: BatchSummary, byStatus: string): string {
  if (byStatus) return `(${byStatus}), ${formatCount(s.d1.retries)} retr${s.d1.retries === 1 ? 'y' : 'ies'}`;
  if (s.d1.tokenFailures > 0) return `none sent: the token endpoint failed ${formatCount(s.d1.tokenFailures)} time(s), so there was no access token`;
  return '';
}

/** The readable end-of-run summary for stdout: what happened, where the report is, what to type next. */
export function formatSummary(s: BatchSummary, opts: { dryRun?: boolean } = {}): string {
  const lines: string[] = [];
  if (opts.dryRun) {
    lines.push(`DRY RUN: nothing was sent to D1, nothing was written. NOT_ATTEMPTED below means "would be submitted".`);
  }
  const ms = durationMs(s);
  lines.push(`Batch ${s.batchId} (${s.kind}${s.parentBatchId ? ` of ${s.parentBatchId}` : ''}): ${opts.dryRun ? 'planned' : s.status}${ms === null ? '' : ` in ${formatDuration(ms)}`}`);
  if (s.abortReason) lines.push(`Aborted: ${s.abortReason}`);
  if (s.resolvedBy) lines.push(`Resolved by ${s.resolvedBy}: every target this batch left undone has been finished by that later batch`);
  const read = s.inputs.filter((i) => !i.seenBefore);
  const seen = s.inputs.filter((i) => i.seenBefore);
  lines.push(`Inputs: ${read.length} file(s) read${seen.length ? `, ${seen.length} already ingested before and skipped` : ''}; rows ${s.rows.total} = ${s.rows.valid} valid + ${s.rows.rejected} rejected`);
  for (const i of seen) lines.push(`  skipped ${i.path}: ingested by batch ${i.firstBatchId ?? '?'} (use --force to read it again)`);
  const archived = s.inputs.filter((i) => i.archivedTo);
  if (archived.length > 0) lines.push(`Archived: ${archived.map((i) => `${i.path} -> ${i.archivedTo}`).join(', ')}`);
  if (s.deferred.length > 0) {
    lines.push(`Deferred: ${s.deferred.length} file(s) left in the inbox for a later run, not an error: ${s.deferred.map((d) => `${d.path} (${d.reason})`).join(', ')}`);
  }
  if (s.quarantined.length > 0) {
    lines.push(`Quarantined: ${s.quarantined.length} unreadable file(s)${opts.dryRun ? ' would be' : ''} moved out of the inbox; fix them at the source and deliver them again:`);
    for (const q of s.quarantined) {
      const where = q.movedTo ? ` -> ${q.movedTo}` : opts.dryRun ? '' : ' (could not be moved: still in the inbox)';
      lines.push(`  ${q.path}: ${q.reason}${where}`);
    }
  }
  lines.push('', ...outcomeTable(s.outcomes, 'Outcome (input rows)', true));
  if (sum(s.carriedOver) > 0) lines.push('', 'Carried over from earlier batches:', ...outcomeTable(s.carriedOver, 'Outcome', false).slice(1));
  if (s.inDoubt > 0) {
    lines.push('', `In doubt: ${formatCount(s.inDoubt)} of the FAILED_RETRYABLE were in flight when the process stopped; D1 may have them (opt-out is final, so sending again is safe and the next run does)`);
  }
  if (!opts.dryRun) lines.push('', ...figures(s), '', `Report: ${s.reportDir}/report.html (with summary.json, results.csv, failures.csv, rejects.csv)`);
  if (!opts.dryRun) lines.push(...nextSteps(s).map((n) => `Next: ${n}`));
  // File names and the abort reason come from outside the job.
  return terminalSafe(lines.join('\n'));
}

/**
 * What an operator should type after this batch, for the terminal summary and report.html alike.
 * Each step ends with a command that runs as printed (see commandLine).
 */
export function nextSteps(s: BatchSummary): string[] {
  const both = (o: Outcome) => outcomeCount(s, o);
  const retryable = both('FAILED_RETRYABLE') + both('NOT_ATTEMPTED');
  const permanent = both('FAILED_PERMANENT');
  const pending = both('PENDING');
  const steps: string[] = [];
  if (s.resolvedBy) return [`nothing to do: batch ${s.resolvedBy} finished what this batch left. Recent batches: ${commandLine('status')}`];
  if (retryable > 0) steps.push(`${retryable} to retry: ${commandLine('rerun', '--batch', s.batchId)}`);
  if (permanent > 0) steps.push(`${permanent} failed permanently (see failures.csv); after fixing: ${commandLine('rerun', '--batch', s.batchId, '--include-permanent')}`);
  if (pending > 0) steps.push(`${pending} still pending at D1: ${commandLine('poll', '--batch', s.batchId)}`);
  if (s.quarantined.length > 0) {
    steps.push(`${s.quarantined.length} unreadable inbox file(s) quarantined: have them fixed at the source and delivered again; the list and reasons: ${commandLine('status', '--batch', s.batchId)}`);
  }
  if (steps.length === 0) steps.push(`nothing to do. Recent batches: ${commandLine('status')}`);
  return steps;
}
