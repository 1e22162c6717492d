import type { CommandModule } from 'yargs';
import { runBatch } from '../batch/run.js';
import { HELP_EPILOGUE, batchCommand, configOption, metricsFileOf, jsonOption, metricsOption, quietOption, runCommand, type CommonArgs } from './shared.js';

interface Args extends CommonArgs {
  files?: string[];
  inbox?: string;
  archive?: string;
  'dry-run': boolean;
  force: boolean;
  'carry-over': boolean;
  quiet: boolean;
  'metrics-file'?: string;
}

export const runModule: CommandModule<object, Args> = {
  command: 'run [files..]',
  describe: 'read card files, opt every new card or consumer out of Click to Pay, write the report',
  builder: (y) =>
    y
      .positional('files', { type: 'string', array: true, describe: 'card files (.csv or .csv.gz); or use --inbox' })
      .options({
        ...configOption,
        inbox: { type: 'string', describe: 'read every .csv/.csv.gz file in this folder (instead of FILE..)' },
        archive: { type: 'string', describe: 'with --inbox: move each file here once its rows are in the ledger' },
        'dry-run': { type: 'boolean', default: false, describe: 'show what would happen: no D1 call, no ledger write, no file moved' },
        force: { type: 'boolean', default: false, describe: 'read files again even if the ledger has ingested them before' },
        'carry-over': { type: 'boolean', default: true, describe: 'also retry targets earlier batches left unfinished (--no-carry-over to skip)' },
        ...quietOption,
        ...metricsOption,
        ...jsonOption,
      })
      .check((a) => {
        if (a.inbox && a.files && a.files.length > 0) throw new Error('give either FILE.. or --inbox, not both');
        if (a.archive && !a.inbox) throw new Error('--archive goes with --inbox');
        return true;
      }).example('$0 run --inbox /srv/d1/inbox --archive /srv/d1/archive', 'the nightly job by hand').example('$0 run --dry-run cards-2026-11-30.csv', 'what a run of this file would do; nothing sent or written').epilogue(HELP_EPILOGUE) as never,
  handler: (args) =>
    runCommand(args, { writesLog: !args['dry-run'], metricsFile: metricsFileOf(args) }, (env) => {
      const inboxDir = args.inbox;
      return batchCommand(args, env, (progress) =>
        runBatch(
          env.config,
          {
            files: args.files ?? [],
            inbox: inboxDir ? { dir: inboxDir, archive: args.archive ?? env.config.archive } : null,
            dryRun: args['dry-run'],
            force: args.force,
            carryOver: args['carry-over'],
          },
          env.log,
          env.stop,
          progress,
        ),
      );
    }),
};
