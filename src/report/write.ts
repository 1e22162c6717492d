import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Ledger, RejectLine } from '../ledger/index.js';
import { FAILURE_OUTCOMES, type BatchSummary, type ResultLine } from '../types.js';
import { CsvFile } from './csv.js';
import { HTML_TABLE_ROWS, renderReportHtml } from './html.js';

export const RESULT_COLUMNS: readonly (keyof ResultLine & string)[] = [
  'scope', 'target_id', 'consumer_id', 'reason', 'outcome', 'operation_id', 'http_status', 'error_code',
  'error_message', 'attempts', 'correlation_id', 'source_file', 'source_line',
];
export const REJECT_COLUMNS = ['source_file', 'source_line', 'error', 'raw'] as const;

/**
 * Writes the report files of DESIGN.md §4, and report.html for people, into
 * `<reportsDir>/<batchId>/`, readable by the job's user only. summary.json goes last, so its
 * presence means the folder is complete.
 */
export async function writeReport(ledger: Ledger, summary: BatchSummary): Promise<string> {
  const dir = summary.reportDir;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const results = new CsvFile<ResultLine>(join(dir, 'results.csv'), RESULT_COLUMNS);
  const failures = new CsvFile<ResultLine>(join(dir, 'failures.csv'), RESULT_COLUMNS);
  const firstFailures: ResultLine[] = [];
  for (const line of ledger.items.results(summary.batchId)) {
    await results.write(line);
    if (!FAILURE_OUTCOMES.includes(line.outcome)) continue;
    await failures.write(line);
    if (firstFailures.length < HTML_TABLE_ROWS) firstFailures.push(line);
  }
  await Promise.all([results.close(), failures.close()]);
  const rejects = new CsvFile<RejectLine>(join(dir, 'rejects.csv'), REJECT_COLUMNS);
  const firstRejects: RejectLine[] = [];
  for (const r of ledger.items.rejects(summary.batchId)) {
    await rejects.write(r);
    if (firstRejects.length < HTML_TABLE_ROWS) firstRejects.push(r);
  }
  await rejects.close();
  const html = renderReportHtml({
    summary,
    failures: firstFailures,
    failuresTotal: failures.lines,
    rejects: firstRejects,
    rejectsTotal: rejects.lines,
    perSecond: ledger.attempts.perSecond(summary.batchId),
    generatedAt: new Date().toISOString(),
  });
  writeFileSync(join(dir, 'report.html'), html, { mode: 0o600 });
  writeFileSync(join(dir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n', { mode: 0o600 });
  return dir;
}
