import type { CommandModule } from 'yargs';
import { pollCommand } from '../batch/refresh.js';
import { EXIT } from '../errors.js';
import { terminalJson } from '../text.js';
import { HELP_EPILOGUE, configOption, jsonOption, quietOption, runCommand, withProgress, type CommonArgs } from './shared.js';

interface Args extends CommonArgs {
  batch?: string;
  wait: number;
  quiet: boolean;
}

export const pollModule: CommandModule<object, Args> = {
  command: 'poll',
  describe: 'ask D1 about pending opt-outs until they are final, and update their batch reports',
  builder: (y) =>
    y.options({
      ...configOption,
      batch: { type: 'string', describe: "only this batch's pending targets" },
      wait: { type: 'number', default: 60, describe: 'give up polling after this many seconds (0: one pass)' },
      ...quietOption,
      ...jsonOption,
    }).example('$0 poll --wait 120', 'ask D1 about every pending opt-out for up to two minutes').epilogue(HELP_EPILOGUE) as never,
  handler: (args) =>
    runCommand(args, { writesLog: true }, async (env) => {
      const { config, log, stop } = env;
      // A zero wait still makes one pass: the poller sleeps one interval before asking.
      const waitMs = Math.max(args.wait * 1000, config.pending.pollIntervalMs);
      const summaries = await withProgress(args.quiet, env, (progress) => pollCommand(config, { batch: args.batch ?? null, waitMs }, log, stop, progress));
      if (args.json) process.stdout.write(terminalJson(summaries) + '\n');
      else if (summaries.length === 0) process.stdout.write('No pending opt-outs.\n');
      else
        for (const s of summaries) {
          const pending = s.outcomes.PENDING ?? 0;
          process.stdout.write(`Batch ${s.batchId}: ${pending} still pending; report updated in ${s.reportDir}/\n`);
        }
      const stillPending = summaries.some((s) => (s.outcomes.PENDING ?? 0) > 0);
      if (stop.stopped) return EXIT.ABORTED;
      return stillPending ? EXIT.FAILURES : EXIT.OK;
    }),
};
