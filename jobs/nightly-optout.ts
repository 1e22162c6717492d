#!/usr/bin/env node
// Cron entry: every card file in the configured inbox → run → archive. Extra flags pass through
// (e.g. --config, --json); the exit code is the run's (DESIGN.md §5), for the scheduler.
import { hideBin } from 'yargs/helpers';
import { cli } from '../src/cli/cli.js';
import { configPath, loadConfig } from '../src/config.js';
import { EXIT, JobError } from '../src/errors.js';
import { redactText } from '../src/log.js';
import { terminalSafe } from '../src/text.js';

const args = hideBin(process.argv);
const flag = args.indexOf('--config');
try {
  const config = loadConfig(configPath(flag >= 0 ? args[flag + 1] : undefined));
  await cli(['run', '--inbox', config.inbox, '--archive', config.archive, ...args]);
} catch (err) {
  process.stderr.write(terminalSafe(`d1-optout nightly: ${redactText((err as Error).message)}\n`));
  process.exit(err instanceof JobError ? err.exitCode : EXIT.USAGE);
}
