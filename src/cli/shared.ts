import { configPath, loadConfig } from '../config.js';
import { EXIT, JobError, UsageError, type ExitCode } from '../errors.js';
import { Ledger } from '../ledger/index.js';
import { closeLogger, createLogger, logToFileOnly, redactText, type Logger } from '../log.js';
import { StopSignal } from '../batch/stop.js';
import type { BatchResult } from '../batch/finish.js';
import type { DryRunResult, NothingToRerun } from '../batch/run.js';
import { setCommandConfig } from '../report/command-line.js';
import { checkMetricsPath, writeExitMetrics } from '../report/metrics.js';
import { formatSummary } from '../report/terminal.js';
import { progressDisplay } from '../report/progress.js';
import { say, terminalJson } from '../text.js';
import type { BatchSummary, Config, ProgressListener } from '../types.js';

/** The end of every command's --help: what the exit codes mean and what the environment may set. */
export const HELP_EPILOGUE = [
  'Exit codes: 0 completed, 1 completed with failures (see failures.csv), 2 usage/config/input error (nothing done),',
  '3 another run holds the ledger lock, 4 aborted (the next run or rerun resumes).',
  'Environment: D1_OPTOUT_CONFIG (config file when --config is not given), D1_PRIVATE_KEY_FILE, D1_PRIVATE_KEY_PASSPHRASE,',
  'D1_TLS_CERT_FILE, D1_TLS_KEY_FILE, D1_TLS_KEY_PASSPHRASE, D1_TLS_CA_FILE, D1_ISSUER_ID, D1_KEY_ID (override the config).',
].join('\n');

export interface CommonArgs {
  config?: string;
  json?: boolean;
  /** The global `--log-level`, which wins over `log.level`. */
  'log-level'?: string;
}

export const configOption = {
  config: { type: 'string', describe: 'config file (default: $D1_OPTOUT_CONFIG, else ./d1-optout.config.json)' },
} as const;

export const jsonOption = {
  json: { type: 'boolean', default: false, describe: 'print the result as JSON on stdout, for scripts' },
} as const;

export const quietOption = {
  quiet: { type: 'boolean', default: false, describe: 'no progress: neither bars on a terminal nor progress lines off one' },
} as const;

export const metricsOption = {
  'metrics-file': { type: 'string', describe: 'write the run\'s figures here for the Prometheus textfile collector (not with --dry-run)' },
} as const;

export interface CommandEnv {
  config: Config;
  log: Logger;
  stop: StopSignal;
  /** The batch this command closed, once it has: what the metrics file reports. */
  batch: BatchSummary | null;
}

/**
 * Runs one command body the same way for every command: load the config, open the log, turn
 * SIGINT/SIGTERM into a graceful stop (a second signal exits at once), map errors to exit codes,
 * flush the log, exit. Everything a tired operator sees on failure is one clear line on stderr.
 */
export async function runCommand(
  args: CommonArgs,
  opts: { writesLog: boolean; metricsFile?: string },
  body: (env: CommandEnv) => Promise<ExitCode>,
): Promise<never> {
  let log: Logger | null = null;
  let env: CommandEnv | null = null;
  let code: ExitCode;
  const stop = new StopSignal();
  // On every exit, 2 and 3 included, so that monitoring sees every night (docs/design.md §13).
  const metricsOnExit = (exitCode: ExitCode) => {
    if (opts.metricsFile === undefined) return;
    writeExitMetrics(opts.metricsFile, env?.batch ?? null, exitCode, (m) => {
      if (log) log.warn(m);
      else say(m);
    });
  };
  const onSignal = (sig: NodeJS.Signals) => {
    if (stop.stopped) {
      say(`second ${sig}, exiting now; the ledger is consistent and the next run resumes`);
      metricsOnExit(EXIT.ABORTED);
      process.exit(EXIT.ABORTED);
    }
    stop.stop(`received ${sig}`);
    say(`${sig} received: finishing the requests in flight, then writing the report (send again to exit at once)`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // Whatever escapes is still one line and exit 4: the ledger holds every committed step, and the
  // next run closes the batch this one leaves behind.
  const crash = (err: unknown) => {
    say(`internal error: ${redactText(err instanceof Error ? err.message : String(err))}; the next run resumes from the ledger`);
    metricsOnExit(EXIT.ABORTED);
    process.exit(EXIT.ABORTED);
  };
  process.on('uncaughtException', crash);
  process.on('unhandledRejection', crash);
  try {
    const file = configPath(args.config);
    const config = loadConfig(file);
    setCommandConfig(file);
    log = createLogger({ level: args['log-level'] ?? config.log.level, file: opts.writesLog ? config.log.file : null, console: true });
    env = { config, log, stop, batch: null };
    code = await body(env);
  } catch (err) {
    if (err instanceof JobError) {
      say(redactText(err.message));
      if (log) logRefusal(log, err);
      code = err.exitCode;
    } else {
      say(`internal error: ${redactText((err as Error).message ?? String(err))}`);
      if (log) logToFileOnly(log, 'error', 'internal error', { error: err });
      code = EXIT.ABORTED;
    }
  }
  metricsOnExit(code);
  if (log) await closeLogger(log);
  process.exit(code);
}

/**
 * Exit 2 (nothing was done) and 3 (another run holds the lock) are `run.refused` in the log, so a
 * night that never started a batch is as visible to a log shipper as one that failed.
 */
function logRefusal(log: Logger, err: JobError): void {
  const refused = err.exitCode === EXIT.USAGE || err.exitCode === EXIT.LOCKED;
  const level = err.exitCode === EXIT.LOCKED ? 'warn' : 'error';
  logToFileOnly(log, level, err.message, { ...(refused ? { event: 'run.refused' } : {}), errorClass: err.errorClass, exitCode: err.exitCode });
}

/** Runs `fn` with the progress display the terminal (or its absence) calls for, gone before the summary prints. */
export async function withProgress<T>(quiet: boolean, env: CommandEnv, fn: (progress: ProgressListener) => Promise<T>): Promise<T> {
  const display = progressDisplay({ quiet, everySec: env.config.log.progressEverySec, log: env.log });
  try {
    return await fn(display);
  } finally {
    display.stop();
  }
}

export interface BatchCommandArgs {
  'dry-run': boolean;
  'metrics-file'?: string;
  quiet: boolean;
  json?: boolean;
}

/**
 * What run and rerun share around their batch: the metrics path checked before anything is
 * done, progress while it runs, the summary on stdout, the exit code. The metrics file is
 * written by runCommand on the way out, from `env.batch`.
 */
export async function batchCommand(
  args: BatchCommandArgs,
  env: CommandEnv,
  start: (progress: ProgressListener) => Promise<BatchResult | DryRunResult | NothingToRerun>,
): Promise<ExitCode> {
  const metricsFile = args['dry-run'] ? undefined : args['metrics-file'];
  if (metricsFile !== undefined) checkMetricsPath(metricsFile);
  const result = await withProgress(args.quiet, env, start);
  if ('nothingToRerun' in result) {
    const why = result.resolvedBy ? `batch ${result.resolvedBy} finished what it left` : 'it left nothing undone';
    process.stdout.write(args.json ? JSON.stringify(result, null, 2) + '\n' : `Nothing to rerun in batch ${result.parentBatchId}: ${why}. No batch was created.\n`);
    return EXIT.OK;
  }
  const dryRun = 'dryRun' in result;
  process.stdout.write((args.json ? terminalJson(result.summary) : formatSummary(result.summary, { dryRun })) + '\n');
  if (dryRun) return EXIT.OK;
  env.batch = result.summary;
  return result.exitCode;
}

/** The metrics file a batch command writes on exit: none for a dry run, which must leave no trace. */
export function metricsFileOf(args: BatchCommandArgs): string | undefined {
  return args['dry-run'] ? undefined : args['metrics-file'];
}

/** The ledger for a read-only command; a ledger that is missing or of another version is a usage error (exit 2). */
export function openReadonly(path: string): Ledger {
  try {
    return Ledger.open(path, { readonly: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}
