import { accessSync, closeSync, constants, existsSync, fsyncSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { UsageError } from '../errors.js';
import { createExclusiveFile, hiddenSibling } from '../private-file.js';
import { OUTCOMES, type BatchStatus, type BatchSummary } from '../types.js';
import { durationMs } from './summary.js';

const STATUSES: readonly BatchStatus[] = ['RUNNING', 'COMPLETED', 'COMPLETED_WITH_FAILURES', 'ABORTED'];

/** A label value in the exposition format: backslash, double quote and newline escaped. */
function label(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

const LAST_SUCCESS = 'd1_optout_last_success_timestamp_seconds';

/**
 * When the job last succeeded (exit 0), as the metrics file at `path` says; 0 when it has no such
 * figure (never succeeded, or a file from before the figure existed, or no file). A run that does
 * not succeed carries this value over, so `time() - last_success` keeps growing through failures.
 */
export function previousSuccessSeconds(path: string): number {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return 0;
  }
  const m = new RegExp(`^${LAST_SUCCESS} (\\S+)$`, 'm').exec(text);
  const v = m ? Number(m[1]) : 0;
  return Number.isFinite(v) && v > 0 ? v : 0;
}

/**
 * The last run in the Prometheus text exposition format, for node_exporter's textfile collector.
 * Every figure is a gauge of the last run (not a counter across runs). `s` is null when the run
 * was refused before a batch existed (exit 2 or 3): then only the exit code, the end time and the
 * last success are written. `lastSuccessSec` is when the job last exited 0, this run included.
 */
export function formatMetrics(s: BatchSummary | null, exitCode: number, lastSuccessSec: number, endedAtSec: number = Date.now() / 1000): string {
  const out: string[] = [];
  const gauge = (name: string, help: string, samples: [Record<string, string>, number][]) => {
    out.push(`# HELP d1_optout_${name} ${help}`, `# TYPE d1_optout_${name} gauge`);
    for (const [labels, value] of samples) {
      const l = Object.entries(labels).map(([k, v]) => `${k}="${label(v)}"`).join(',');
      out.push(`d1_optout_${name}${l ? `{${l}}` : ''} ${Number.isFinite(value) ? value : 0}`);
    }
  };
  const exitHelp = 'The exit code of the last run (0 completed, 1 with failures, 2 refused: usage/config/input, 3 ledger locked, 4 aborted).';
  const successHelp = 'When the job last exited 0, in Unix seconds (0: not known to have succeeded); carried over by runs that did not succeed.';
  if (s === null) {
    gauge('last_run_exit_code', exitHelp, [[{}, exitCode]]);
    gauge('last_run_end_timestamp_seconds', 'When the last run ended, in Unix seconds.', [[{}, endedAtSec]]);
    gauge('last_success_timestamp_seconds', successHelp, [[{}, lastSuccessSec]]);
    return out.join('\n') + '\n';
  }
  const seconds = (iso: string | null) => (iso ? Date.parse(iso) / 1000 : 0);
  gauge('last_run_info', 'The last batch: its id, kind and parent (value always 1).', [[{ batch_id: s.batchId, kind: s.kind, parent_batch_id: s.parentBatchId ?? '' }, 1]]);
  gauge('last_run_start_timestamp_seconds', 'When the last batch started, in Unix seconds.', [[{}, seconds(s.startedAt)]]);
  gauge('last_run_end_timestamp_seconds', 'When the last batch ended, in Unix seconds.', [[{}, seconds(s.endedAt)]]);
  gauge('last_run_duration_seconds', 'How long the last batch ran.', [[{}, (durationMs(s) ?? 0) / 1000]]);
  gauge('last_run_status', 'The last batch status: 1 for the status it ended with, 0 for the others.', STATUSES.map((st) => [{ status: st }, st === s.status ? 1 : 0]));
  gauge('last_run_exit_code', exitHelp, [[{}, exitCode]]);
  gauge('last_success_timestamp_seconds', successHelp, [[{}, lastSuccessSec]]);
  gauge('last_run_rows', 'Input rows of the last batch: total, valid and rejected.', [
    [{ kind: 'total' }, s.rows.total],
    [{ kind: 'valid' }, s.rows.valid],
    [{ kind: 'rejected' }, s.rows.rejected],
  ]);
  gauge('last_run_outcomes', 'Input rows of the last batch by outcome.', OUTCOMES.map((o) => [{ outcome: o }, s.outcomes[o] ?? 0]));
  gauge('last_run_carried_over', 'Targets carried over from earlier batches into the last batch, by outcome.', OUTCOMES.map((o) => [{ outcome: o }, s.carriedOver[o] ?? 0]));
  gauge('last_run_d1_requests', 'Requests the last batch sent to D1.', [[{}, s.d1.requests]]);
  gauge('last_run_d1_http_429', 'Requests of the last batch that D1 answered 429 (too many requests).', [[{}, s.d1.http429]]);
  gauge('last_run_throttled_seconds', 'Time the last batch paused for Retry-After.', [[{}, s.d1.throttledMs / 1000]]);
  gauge('last_run_achieved_requests_per_second', 'Opt-out requests per second of the last batch, first to last.', [[{}, s.d1.achievedRps ?? 0]]);
  return out.join('\n') + '\n';
}

/** Fails before anything is done (exit 2) when the metrics file could not be written at the end. */
export function checkMetricsPath(path: string): void {
  if (path.trim() === '') throw new UsageError('--metrics-file: give the path of the .prom file to write');
  if (existsSync(path) && !statSync(path).isFile()) {
    throw new UsageError(`--metrics-file ${path}: is a folder or a special file; give the path of the .prom file itself`);
  }
  try {
    accessSync(dirname(path), constants.W_OK);
  } catch {
    throw new UsageError(`--metrics-file ${path}: its folder does not exist or is not writable`);
  }
}

/**
 * Replaces the file atomically: written and synced under a temporary name in the same folder
 * (the collector skips names not ending in .prom), then renamed over it, so node_exporter never
 * reads half a file. The temporary name is random and created exclusively: the collector's
 * folder is often writable by others, who must not be able to plant a link there that the job
 * writes through (docs/design.md §14). The rename replaces whatever is at `path`, a link
 * included, without following it. Readable by all: the collector usually runs as another user,
 * and the file holds counts only.
 */
export function writeMetricsFile(path: string, text: string): void {
  const tmp = hiddenSibling(path, 'tmp');
  const fd = createExclusiveFile(tmp, 0o644);
  try {
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * The metrics file at the end of a run, whatever its exit code: a refused or aborted night must
 * change the file as much as a good one, or an alert on it would see nothing. Exit 0 is the
 * success; any other exit keeps the last success the file held. Not writing it is a warning, as
 * the run's work is in the ledger either way.
 */
export function writeExitMetrics(path: string, summary: BatchSummary | null, exitCode: number, warn: (message: string) => void): void {
  try {
    checkMetricsPath(path);
    const ended = summary?.endedAt ? Date.parse(summary.endedAt) / 1000 : Date.now() / 1000;
    const lastSuccess = exitCode === 0 ? ended : previousSuccessSeconds(path);
    writeMetricsFile(path, formatMetrics(summary, exitCode, lastSuccess, ended));
  } catch (err) {
    warn(`could not write the metrics file ${path}: ${(err as Error).message}`);
  }
}
