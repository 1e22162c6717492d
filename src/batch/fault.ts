import { appendFileSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';

/** The points where the crash tests make the job die on the spot (D1_OPTOUT_FAULT=<point>). */
export type FaultPoint = 'kill-while-staging' | 'kill-before-ingest-commit' | 'kill-before-archive';

/** Fault injection for the crash tests: SIGKILLs this process when D1_OPTOUT_FAULT names `point`. */
export function faultPoint(point: FaultPoint): void {
  if (process.env['D1_OPTOUT_FAULT'] === point) process.kill(process.pid, 'SIGKILL');
}

/**
 * For the test of a file that changes between its read and its admission (docs/design.md §11):
 * with D1_OPTOUT_FAULT=append-before-admit, appends a blank line to `file` as an upstream writer
 * still at work would, after its rows are read and before they are admitted.
 */
export function faultAppend(file: string): void {
  if (process.env['D1_OPTOUT_FAULT'] === 'append-before-admit') appendFileSync(file, '\n');
}

/**
 * For the test of a report that cannot be written after the batch ran (docs/design.md §13): with
 * D1_OPTOUT_FAULT=plant-report-link, another user's link appears at the batch's report folder.
 */
export function faultPlantReportLink(reportDir: string): void {
  if (process.env['D1_OPTOUT_FAULT'] === 'plant-report-link') symlinkSync(`${reportDir}.planted-target`, reportDir);
}

/**
 * For the tests of a file redelivered between its read and its move: with D1_OPTOUT_FAULT=`point`
 * (`replace-before-archive`: after its rows are committed; `replace-before-quarantine`: after the
 * card file check refused it), puts a new version of `file` under its name the way upstream
 * redelivers atomically (written beside it, then renamed over it): its lines plus a row for card
 * REDELIVERED-<n>, n the number of its lines.
 */
export function faultReplace(file: string, point: 'replace-before-archive' | 'replace-before-quarantine'): void {
  if (process.env['D1_OPTOUT_FAULT'] !== point) return;
  const text = readFileSync(file, 'utf8');
  const lines = text.trimEnd().split('\n');
  writeFileSync(`${file}.v2`, `${lines.join('\n')}\nREDELIVERED-${lines.length},CLOSED\n`);
  renameSync(`${file}.v2`, file);
}
