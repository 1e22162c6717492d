import yargs from 'yargs';
import { EXIT } from '../errors.js';
import { redactText } from '../log.js';
import { backupModule } from './backup.js';
import { checkModule } from './check.js';
import { initModule } from './init.js';
import { terminalSafe } from '../text.js';
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
    .demandCommand(1, 'name a command: init, check, run, rerun, poll, status, show, report, sim, backup or prune')
    .strict()
    .epilogue('Exit codes: 0 completed, 1 completed with failures, 2 usage/config/input error, 3 ledger locked, 4 aborted (resume with run or rerun).')
    .fail((msg, err) => {
      // yargs quotes the arguments it did not expect, and an operator may have typed a card number.
      process.stderr.write(terminalSafe(`d1-optout: ${redactText(msg ?? err?.message ?? 'usage error')}\nRun d1-optout --help for usage.\n`));
      process.exit(EXIT.USAGE);
    })
    .help()
    .version()
    .parseAsync();
}
