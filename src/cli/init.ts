import type { CommandModule } from 'yargs';
import { EXIT } from '../errors.js';
import { identityOf, Ledger } from '../ledger/index.js';
import { commandLine } from '../report/command-line.js';
import { configOption, runCommand, type CommonArgs } from './shared.js';

interface Args extends CommonArgs {
  rebind: boolean;
}

export const initModule: CommandModule<object, Args> = {
  command: 'init',
  describe: "create the ledger, recording the config's d1.issuerId and d1.baseUrl (--rebind: move an existing ledger to a new base URL)",
  builder: (y) =>
    y.options({
      ...configOption,
      rebind: { type: 'boolean', default: false, describe: "move the existing ledger to this config's base URL (recorded in its history); never to another issuer" },
    }) as never,
  handler: (args) =>
    // No log file: init makes the ledger and its own folder, nothing else.
    runCommand(args, { writesLog: false }, async ({ config }) => {
      const id = identityOf(config);
      if (!args.rebind) {
        Ledger.create(config.ledger, id).close();
        process.stdout.write(`Created ledger ${config.ledger} for issuer ${id.issuerId} at ${id.baseUrl}.\nNext: ${commandLine('check', '--live')}\n`);
        return EXIT.OK;
      }
      const ledger = Ledger.open(config.ledger);
      try {
        const { previous, changed } = ledger.rebindTo(id, config.lock.staleAfterSec);
        const was = previous ? `issuer ${previous.issuerId} at ${previous.baseUrl}` : 'no recorded identity';
        process.stdout.write(
          changed
            ? `Ledger ${config.ledger} moved from ${was} to issuer ${id.issuerId} at ${id.baseUrl}; recorded in its history.\n`
            : `Ledger ${config.ledger} is already bound to issuer ${id.issuerId} at ${id.baseUrl}; nothing changed.\n`,
        );
      } finally {
        ledger.close();
      }
      return EXIT.OK;
    }),
};
