import { existsSync } from 'node:fs';
import type { CommandModule } from 'yargs';
import { EXIT, UsageError } from '../errors.js';
import { Ledger, pruneLedger } from '../ledger/index.js';
import { formatPrune } from '../report/prune.js';
import { configOption, jsonOption, openReadonly, runCommand, type CommonArgs } from './shared.js';

interface Args extends CommonArgs {
  'older-than': number;
  'dry-run': boolean;
}

export const pruneModule: CommandModule<object, Args> = {
  command: 'prune',
  describe: 'delete the history (rows, attempts, rejects, report folders) of batches that ended long ago; targets\' states stay',
  builder: (y) =>
    y
      .options({
        ...configOption,
        'older-than': { type: 'number', demandOption: true, describe: 'prune batches that ended more than this many days ago' },
        'dry-run': { type: 'boolean', default: false, describe: 'show what would be removed; change nothing' },
        ...jsonOption,
      })
      .check((a) => {
        const days = a['older-than'];
        if (!(Number.isInteger(days) && days >= 1)) throw new Error('--older-than: expected a whole number of days, 1 or more');
        return true;
      }) as never,
  handler: (args) =>
    runCommand(args, { writesLog: !args['dry-run'] }, async ({ config, log }) => {
      const dryRun = args['dry-run'];
      // Pruning is no reason to create a ledger.
      if (!existsSync(config.ledger)) throw new UsageError(`no ledger at ${config.ledger}: nothing to prune`);
      const ledger = dryRun ? openReadonly(config.ledger) : Ledger.open(config.ledger);
      try {
        const r = pruneLedger(ledger, { olderThanDays: args['older-than'], reportsDir: config.reportsDir, dryRun, staleAfterSec: config.lock.staleAfterSec });
        if (r.lockWarning) log.warn(r.lockWarning);
        if (!dryRun) {
          log.info('ledger pruned', { event: 'ledger.prune', cutoff: r.cutoff, batches: r.batches.length, items: r.items, attempts: r.attempts, rejects: r.rejects, reportFolders: r.reportFolders, bytesReclaimed: r.reportBytes + r.ledgerBytes });
        }
        process.stdout.write((args.json ? JSON.stringify(r, null, 2) : formatPrune(r)) + '\n');
        return EXIT.OK;
      } finally {
        ledger.close();
      }
    }),
};
