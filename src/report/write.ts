import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Ledger, RejectLine } from '../ledger/index.js';
import { FAILURE_OUTCOMES, type BatchSummary, type ResultLine } from '../types.js';
import { CsvFile } from './csv.js';
import { HTML_TABLE_ROWS, renderReportHtml } from './html.js';
import { createStagingFolder, leftoverFolders, replaceFolder, writeFileExclusive } from '../private-file.js';

export const RESULT_COLUMNS: readonly (keyof ResultLine & string)[] = [
  'scope', 'target_id', 'consumer_id', 'reason', 'outcome', 'operation_id', 'http_status', 'error_code',
  'error_message', 'attempts', 'correlation_id', 'source_file', 'source_line',
];
export const REJECT_COLUMNS = ['source_file', 'source_line', 'error', 'raw'] as const;

/**
 * Writes the report files of docs/design.md §4, and report.html for people, into
 * `<reportsDir>/<batchId>/`, readable by the job's user only.
 *
 * Every file is created new, in a folder the job has just created under a name nobody can guess
 * (docs/design.md §14), and that folder is then renamed to `<batchId>`. Writing a batch's report
 * again (`report --batch`, `poll`) replaces the earlier folder the same way, so nothing planted in
 * it is ever opened, and a reader sees the old report or the new one, never half of each. A
 * `<batchId>` that is a symbolic link, a file or another user's folder is refused, not written
 * through. summary.json is still written last, so a folder from an older version without it is
 * known to be incomplete.
 */
export async function writeReport(ledger: Ledger, summary: BatchSummary): Promise<string> {
  const final = summary.reportDir;
  const dir = createStagingFolder(final);
  try {
    await writeFiles(ledger, summary, dir);
    replaceFolder(dir, final, `d1-optout report --batch ${summary.batchId}`);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return final;
}

/** True when a batch's report was cut short by a kill: a staging folder is left, or no summary.json. */
export function reportInterrupted(reportDir: string): boolean {
  return leftoverFolders(reportDir).length > 0 || (existsSync(reportDir) && !existsSync(join(reportDir, 'summary.json')));
}

/**
 * Removes what a killed writer left beside the report folder. Only once the report is written
 * again, by the run that holds the ledger lock: a `report` command writing the same batch at this
 * moment has a staging folder too, and it must not vanish under it.
 */
export function removeLeftovers(reportDir: string): void {
  for (const leftover of leftoverFolders(reportDir)) rmSync(leftover, { recursive: true, force: true });
}

async function writeFiles(ledger: Ledger, summary: BatchSummary, dir: string): Promise<void> {
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
  writeFileExclusive(join(dir, 'report.html'), html);
  writeFileExclusive(join(dir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
}
