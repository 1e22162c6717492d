import type { CommandModule } from 'yargs';
import { EXIT, UsageError } from '../errors.js';
import { formatTimeline, loadTimelines } from '../report/timeline.js';
import { terminalJson } from '../text.js';
import { HELP_EPILOGUE, configOption, jsonOption, openReadonly, runCommand, type CommonArgs } from './shared.js';

interface Args extends CommonArgs {
  id: string;
}

export const showModule: CommandModule<object, Args> = {
  command: 'show <id>',
  describe: 'what happened to this card or consumer: its state, every batch and every D1 attempt',
  builder: (y) =>
    y.positional('id', { type: 'string', demandOption: true, describe: 'a D1 cardId or consumerId' }).options({ ...configOption, ...jsonOption }).example('$0 show CARD-0001', 'everything the ledger knows of this card: batches, rows, D1 answers').epilogue(HELP_EPILOGUE) as never,
  handler: (args) =>
    runCommand(args, { writesLog: false }, async ({ config }) => {
      const ledger = openReadonly(config.ledger);
      try {
        const found = loadTimelines(ledger, args.id);
        if (found.length === 0) throw new UsageError(`${args.id} is not in the ledger: no batch has seen it as a card or a consumer`);
        process.stdout.write((args.json ? terminalJson(found) : formatTimeline(args.id, found)) + '\n');
        return EXIT.OK;
      } finally {
        ledger.close();
      }
    }),
};
