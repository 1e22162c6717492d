#!/usr/bin/env node
// Cron entry: every card file in the configured inbox → run → archive, then (with
// retention.days set) prune. Extra flags pass through (e.g. --config, --json, or --inbox/--archive
// instead of the config's); the exit code is the run's (docs/design.md §5), for the scheduler.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { hideBin } from 'yargs/helpers';
import { cli } from '../src/cli/cli.js';
import { configPath, loadConfig } from '../src/config.js';
import { EXIT, JobError } from '../src/errors.js';
import { Ledger } from '../src/ledger/index.js';
import { redactText } from '../src/log.js';
import { writeExitMetrics } from '../src/report/metrics.js';
import { say } from '../src/text.js';
import type { Config } from '../src/types.js';

const args = hideBin(process.argv);
const flag = args.indexOf('--config');
const startedAt = new Date().toISOString();

/** `--metrics-file F` or `--metrics-file=F`, as yargs would read it. */
function metricsFileArg(): string | undefined {
  const i = args.indexOf('--metrics-file');
  if (i >= 0) return args[i + 1];
  return args.find((a) => a.startsWith('--metrics-file='))?.slice('--metrics-file='.length);
}

// Help needs no config: it is what an operator reads before there is one.
if (args.some((a) => a === '--help' || a === '-h' || a === '--version')) await cli(['run', ...args]);

try {
  const config = loadConfig(configPath(flag >= 0 ? args[flag + 1] : undefined));
  if (config.retention.days > 0 && !args.includes('--dry-run')) pruneWhenDone(config);
  // An --inbox or --archive given here wins over the config's: given twice, yargs would make it a list.
  const given = (flag: string) => args.some((a) => a === flag || a.startsWith(`${flag}=`));
  await cli([
    'run',
    ...(given('--inbox') ? [] : ['--inbox', config.inbox]),
    ...(given('--archive') ? [] : ['--archive', config.archive]),
    ...args,
  ]);
} catch (err) {
  say(redactText((err as Error).message));
  const code = err instanceof JobError ? err.exitCode : EXIT.USAGE;
  // A config that cannot be loaded is a refused night too: monitoring must see it.
  const metrics = metricsFileArg();
  if (metrics !== undefined) writeExitMetrics(metrics, null, code, (m) => say(redactText(m)));
  process.exit(code);
}

/**
 * The run ends the process itself (its exit code is the night's), so the prune runs as the
 * process exits: synchronously, as `d1-optout prune` in a child (its own lock, log and exit code),
 * after the run released the lock, and only when this night's batch completed (exit 0 or 1, with
 * or without failures). An aborted night prunes nothing; a prune that fails is reported on
 * stderr and leaves the run's exit code as it was.
 */
function pruneWhenDone(config: Config): void {
  process.once('exit', (code) => {
    if (code !== EXIT.OK && code !== EXIT.FAILURES) return;
    if (!batchCompletedSince(config.ledger, startedAt)) return;
    const main = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
    const configArgs = flag >= 0 && args[flag + 1] !== undefined ? ['--config', args[flag + 1]!] : [];
    const prune = spawnSync(process.execPath, [main, 'prune', '--older-than', String(config.retention.days), ...configArgs], { stdio: 'inherit' });
    if (prune.status !== EXIT.OK) {
      say(`nightly job: prune after the run did not complete (exit ${prune.status ?? prune.signal}); it runs again after the next night`);
    }
  });
}

function batchCompletedSince(ledgerPath: string, since: string): boolean {
  let ledger: Ledger;
  try {
    ledger = Ledger.open(ledgerPath, { readonly: true });
  } catch {
    return false; // no ledger: no batch ran
  }
  try {
    const last = ledger.batches.last();
    return last !== undefined && last.startedAt >= since && (last.status === 'COMPLETED' || last.status === 'COMPLETED_WITH_FAILURES');
  } finally {
    ledger.close();
  }
}
