import type { CommandModule } from 'yargs';
import { EXIT, UsageError } from '../errors.js';
import { buildSummary } from '../report/summary.js';
import { writeReport } from '../report/write.js';
import { HELP_EPILOGUE, configOption, openReadonly, runCommand, type CommonArgs } from './shared.js';

interface Args extends CommonArgs {
  batch: string;
  out?: string;
}

export const reportModule: CommandModule<object, Args> = {
  command: 'report',
  describe: "write a batch's report files again from the ledger",
  builder: (y) =>
    y.options({
      ...configOption,
      batch: { type: 'string', demandOption: true, describe: 'the batch to report' },
      out: { type: 'string', describe: 'write into this folder instead of the configured reportsDir' },
    }).example('$0 report --batch 2026-11-30T0200-ab12 --out /tmp/r', "write that batch's report files again, elsewhere").epilogue(HELP_EPILOGUE) as never,
  handler: (args) =>
    runCommand(args, { writesLog: false }, async ({ config }) => {
      const ledger = openReadonly(config.ledger);
      try {
        if (!ledger.batches.get(args.batch)) throw new UsageError(`no batch ${args.batch} in the ledger`);
        // A report from what is left would claim the batch had no rows: refused, not written.
        const pruned = ledger.prunes.ofBatch(args.batch);
        if (pruned) throw new UsageError(`batch ${args.batch}: its rows and D1 requests were pruned on ${pruned.prunedAt.slice(0, 10)}, so its report cannot be written again`);
        const dir = await writeReport(ledger, buildSummary(ledger, args.batch, args.out ?? config.reportsDir));
        process.stdout.write(`Report written to ${dir}/\n`);
        return EXIT.OK;
      } finally {
        ledger.close();
      }
    }),
};
