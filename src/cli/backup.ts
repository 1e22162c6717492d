import type { CommandModule } from 'yargs';
import { EXIT } from '../errors.js';
import { backupLedger } from '../ledger/index.js';
import { configOption, openReadonly, runCommand, type CommonArgs } from './shared.js';

interface Args extends CommonArgs {
  to: string;
}

export const backupModule: CommandModule<object, Args> = {
  command: 'backup',
  describe: 'copy the ledger to a new file, safely while a run is going (restore: see the README runbook)',
  builder: (y) =>
    y.options({
      ...configOption,
      to: { type: 'string', demandOption: true, describe: 'the backup file to create (0600); an existing file is refused' },
    }) as never,
  handler: (args) =>
    runCommand(args, { writesLog: true }, async ({ config, log }) => {
      const ledger = openReadonly(config.ledger);
      try {
        const r = await backupLedger(ledger.db, args.to);
        log.info('ledger backed up', { event: 'ledger.backup', ledger: config.ledger, backup: r.path, bytes: r.bytes, takenAt: r.takenAt });
        process.stdout.write(`Backed up ${config.ledger} to ${r.path} (${r.bytes.toLocaleString('en-US')} bytes), as it was at ${r.takenAt}\n`);
        return EXIT.OK;
      } finally {
        ledger.close();
      }
    }),
};
