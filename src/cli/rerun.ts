import type { CommandModule } from 'yargs';
import { rerunBatch } from '../batch/run.js';
import { HELP_EPILOGUE, batchCommand, configOption, metricsFileOf, jsonOption, metricsOption, quietOption, runCommand, type CommonArgs } from './shared.js';

interface Args extends CommonArgs {
  batch?: string;
  last: boolean;
  'include-permanent': boolean;
  'dry-run': boolean;
  quiet: boolean;
  'metrics-file'?: string;
}

export const rerunModule: CommandModule<object, Args> = {
  command: 'rerun',
  describe: "retry what a batch left undone (retryable failures, not attempted, in doubt) as a new batch",
  builder: (y) =>
    y
      .options({
        ...configOption,
        batch: { type: 'string', describe: 'the batch to rerun (see d1-optout status)' },
        last: { type: 'boolean', default: false, describe: 'rerun the most recent batch' },
        'include-permanent': { type: 'boolean', default: false, describe: 'also retry its permanent failures (after you fixed their cause)' },
        'dry-run': { type: 'boolean', default: false, describe: 'show what would be retried: no D1 call, no ledger write' },
        ...quietOption,
        ...metricsOption,
        ...jsonOption,
      })
      .check((a) => {
        if (!a.batch === !a.last) throw new Error('give exactly one of --batch ID or --last');
        return true;
      }).example('$0 rerun --last', 'retry what the most recent batch left undone').example('$0 rerun --batch 2026-11-30T0200-ab12 --include-permanent', 'also its permanent failures, once their cause is fixed').epilogue(HELP_EPILOGUE) as never,
  handler: (args) =>
    runCommand(args, { writesLog: !args['dry-run'], metricsFile: metricsFileOf(args) }, (env) =>
      batchCommand(args, env, (progress) =>
        rerunBatch(
          env.config,
          { batch: args.batch ?? null, last: args.last, includePermanent: args['include-permanent'], dryRun: args['dry-run'] },
          env.log,
          env.stop,
          progress,
        ),
      ),
    ),
};
