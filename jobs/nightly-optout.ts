#!/usr/bin/env node
// Cron entry: every card file in the configured inbox → run → archive. Extra flags pass through
// (e.g. --config, --json, or --inbox/--archive instead of the config's); the exit code is the
// run's (DESIGN.md §5), for the scheduler.
import { hideBin } from 'yargs/helpers';
import { cli } from '../src/cli/cli.js';
import { configPath, loadConfig } from '../src/config.js';
import { EXIT, JobError } from '../src/errors.js';
import { writeExitMetrics } from '../src/report/metrics.js';

const args = hideBin(process.argv);
const flag = args.indexOf('--config');

/** `--metrics-file F` or `--metrics-file=F`, as yargs would read it. */
function metricsFileArg(): string | undefined {
  const i = args.indexOf('--metrics-file');
  if (i >= 0) return args[i + 1];
  return args.find((a) => a.startsWith('--metrics-file='))?.slice('--metrics-file='.length);
}

try {
  const config = loadConfig(configPath(flag >= 0 ? args[flag + 1] : undefined));
  // An --inbox or --archive given here wins over the config's: given twice, yargs would make it a list.
  const given = (flag: string) => args.some((a) => a === flag || a.startsWith(`${flag}=`));
  await cli([
    'run',
    ...(given('--inbox') ? [] : ['--inbox', config.inbox]),
    ...(given('--archive') ? [] : ['--archive', config.archive]),
    ...args,
  ]);
} catch (err) {
  process.stderr.write(`d1-optout nightly: ${(err as Error).message}\n`);
  const code = err instanceof JobError ? err.exitCode : EXIT.USAGE;
  // A config that cannot be loaded is a refused night too: monitoring must see it.
  const metrics = metricsFileArg();
  if (metrics !== undefined) writeExitMetrics(metrics, null, code, (m) => process.stderr.write(`d1-optout nightly: ${m}\n`));
  process.exit(code);
}
