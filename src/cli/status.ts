import type { CommandModule } from 'yargs';
import { EXIT, UsageError } from '../errors.js';
import { STATUS_WIDTH, batchOverviews, formatStatus } from '../report/status.js';
import { buildSummary } from '../report/summary.js';
import { formatSummary } from '../report/terminal.js';
import { terminalJson } from '../text.js';
import { HELP_EPILOGUE, configOption, jsonOption, openReadonly, runCommand, type CommonArgs } from './shared.js';

interface Args extends CommonArgs {
  batch?: string;
  limit: number;
  wide: boolean;
}

export const statusModule: CommandModule<object, Args> = {
  command: 'status',
  describe: 'recent batches at a glance, or one batch in detail (reads the ledger only)',
  builder: (y) =>
    y.options({
      ...configOption,
      batch: { type: 'string', describe: 'show this batch in detail' },
      limit: { type: 'number', default: 10, describe: 'how many recent batches to list' },
      wide: { type: 'boolean', default: false, describe: `every column, however wide (by default the table keeps within ${STATUS_WIDTH} columns)` },
      ...jsonOption,
    }).example('$0 status', 'the recent batches at a glance').example('$0 status --batch 2026-11-30T0200-ab12', "one batch's summary and what to type next").epilogue(HELP_EPILOGUE) as never,
  handler: (args) =>
    runCommand(args, { writesLog: false }, async ({ config }) => {
      const ledger = openReadonly(config.ledger);
      try {
        if (args.batch) {
          if (!ledger.batches.get(args.batch)) throw new UsageError(`no batch ${args.batch} in the ledger`);
          const s = buildSummary(ledger, args.batch, config.reportsDir);
          process.stdout.write((args.json ? terminalJson(s) : formatSummary(s)) + '\n');
          return EXIT.OK;
        }
        const batches = batchOverviews(ledger, args.limit);
        const targets = ledger.targets.countByState();
        const waiting = ledger.targets.waitingForConsumer();
        process.stdout.write((args.json ? terminalJson({ batches, targets, waiting }) : formatStatus(batches, targets, waiting, { wide: args.wide })) + '\n');
        return EXIT.OK;
      } finally {
        ledger.close();
      }
    }),
};
