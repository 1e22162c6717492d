import { OUTCOMES, type BatchSummary, type Outcome } from '../types.js';

function table(counts: Partial<Record<Outcome, number>>): string[] {
  return OUTCOMES.filter((o) => (counts[o] ?? 0) > 0).map((o) => `  ${o.padEnd(28)} ${String(counts[o]).padStart(8)}`);
}

function seconds(s: BatchSummary): string {
  if (!s.endedAt) return '';
  return ` in ${((Date.parse(s.endedAt) - Date.parse(s.startedAt)) / 1000).toFixed(1)} s`;
}

/** The readable end-of-run summary for stdout: what happened, where the report is, what to type next. */
export function formatSummary(s: BatchSummary, opts: { dryRun?: boolean } = {}): string {
  const lines: string[] = [];
  if (opts.dryRun) {
    lines.push(`DRY RUN: nothing was sent to D1, nothing was written. NOT_ATTEMPTED below means "would be submitted".`);
  }
  lines.push(`Batch ${s.batchId} (${s.kind}${s.parentBatchId ? ` of ${s.parentBatchId}` : ''}): ${opts.dryRun ? 'planned' : s.status}${seconds(s)}`);
  if (s.abortReason) lines.push(`Aborted: ${s.abortReason}`);
  const read = s.inputs.filter((i) => !i.seenBefore);
  const seen = s.inputs.filter((i) => i.seenBefore);
  lines.push(`Inputs: ${read.length} file(s) read${seen.length ? `, ${seen.length} already ingested before and skipped` : ''}; rows ${s.rows.total} = ${s.rows.valid} valid + ${s.rows.rejected} rejected`);
  for (const i of seen) lines.push(`  skipped ${i.path}: ingested by batch ${i.firstBatchId ?? '?'} (use --force to read it again)`);
  const rowLines = table(s.outcomes);
  lines.push('Outcomes (input rows):', ...(rowLines.length ? rowLines : ['  (none)']));
  const carried = table(s.carriedOver);
  if (carried.length) lines.push('Carried over from earlier batches:', ...carried);
  const byStatus = Object.entries(s.d1.requestsByStatus)
    .map(([k, v]) => `${k === '0' ? 'no answer' : k}: ${v}`)
    .join(', ');
  lines.push(
    `D1: ${s.d1.requests} request(s)${byStatus ? ` (${byStatus})` : ''}, ${s.d1.retries} retr${s.d1.retries === 1 ? 'y' : 'ies'}, ${s.d1.http429} throttled (429), ${(s.d1.throttledMs / 1000).toFixed(1)} s paused`,
  );
  if (!opts.dryRun) lines.push(`Report: ${s.reportDir}/`);
  const failed = (o: Partial<Record<Outcome, number>>) => (o.FAILED_RETRYABLE ?? 0) + (o.NOT_ATTEMPTED ?? 0);
  const retryable = failed(s.outcomes) + failed(s.carriedOver);
  const permanent = (s.outcomes.FAILED_PERMANENT ?? 0) + (s.carriedOver.FAILED_PERMANENT ?? 0);
  const pending = (s.outcomes.PENDING ?? 0) + (s.carriedOver.PENDING ?? 0);
  if (!opts.dryRun) {
    if (retryable > 0) lines.push(`Next: ${retryable} to retry: d1-optout rerun --batch ${s.batchId}`);
    if (permanent > 0) lines.push(`Next: ${permanent} failed permanently (see failures.csv); after fixing: d1-optout rerun --batch ${s.batchId} --include-permanent`);
    if (pending > 0) lines.push(`Next: ${pending} still pending at D1: d1-optout poll --batch ${s.batchId}`);
  }
  return lines.join('\n');
}
