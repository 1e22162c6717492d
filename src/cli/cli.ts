import yargs from 'yargs';
import { EXIT } from '../errors.js';
import { LOG_LEVELS } from '../types.js';
import { redactText } from '../log.js';
import { backupModule } from './backup.js';
import { checkModule } from './check.js';
import { initModule } from './init.js';
import { say } from '../text.js';
import { pollModule } from './poll.js';
import { pruneModule } from './prune.js';
import { reportModule } from './report.js';
import { rerunModule } from './rerun.js';
import { runModule } from './run.js';
import { showModule } from './show.js';
import { simModule } from './sim.js';
import { statusModule } from './status.js';

/** The whole command line; `argv` without node and script (jobs/ call it with their own words). */
export async function cli(argv: string[]): Promise<void> {
  await yargs(argv)
    .scriptName('d1-optout')
    .usage('$0 <command> [options]\n\nOpts closed and fraud-flagged cards out of Click to Pay through the Thales D1 API.')
    .command(initModule)
    .command(checkModule)
    .command(runModule)
    .command(rerunModule)
    .command(pollModule)
    .command(statusModule)
    .command(showModule)
    .command(reportModule)
    .command(simModule)
    .command(backupModule)
    .command(pruneModule)
    .option('log-level', {
      type: 'string',
      choices: LOG_LEVELS,
      global: true,
      describe: 'how much the log file and the terminal get, overriding log.level (off a terminal stderr gets warn and error at most)',
    })
    .demandCommand(1, 'name a command: init, check, run, rerun, poll, status, show, report, sim, backup or prune')
    .strict()
    .epilogue('Exit codes: 0 completed, 1 completed with failures, 2 usage/config/input error, 3 ledger locked, 4 aborted (resume with run or rerun).')
    .fail((msg, err) => {
      // yargs quotes the arguments it did not expect, and an operator may have typed a card number.
      say(`${redactText(msg ?? err?.message ?? 'usage error')}\nrun d1-optout --help for usage`);
      process.exit(EXIT.USAGE);
    })
    .help()
    .version()
    .parseAsync();
}
