import type { CommandModule } from 'yargs';
import { EXIT, UsageError } from '../errors.js';
import { Ledger } from '../ledger/index.js';
import { buildSummary } from '../report/summary.js';
import { formatSummary } from '../report/terminal.js';
import { configOption, jsonOption, runCommand, type CommonArgs } from './shared.js';

interface Args extends CommonArgs {
  batch?: string;
  limit: number;
}

export const statusModule: CommandModule<object, Args> = {
  command: 'status',
  describe: 'recent batches at a glance, or one batch in detail (reads the ledger only)',
  builder: (y) =>
    y.options({
      ...configOption,
      batch: { type: 'string', describe: 'show this batch in detail' },
      limit: { type: 'number', default: 10, describe: 'how many recent batches to list' },
      ...jsonOption,
    }) as never,
  handler: (args) =>
    runCommand(args, { writesLog: false }, async ({ config }) => {
      const ledger = openReadonly(config.ledger);
      try {
        if (args.batch) {
          if (!ledger.batches.get(args.batch)) throw new UsageError(`no batch ${args.batch} in the ledger`);
          const s = buildSummary(ledger, args.batch, config.reportsDir);
          process.stdout.write((args.json ? JSON.stringify(s, null, 2) : formatSummary(s)) + '\n');
          return EXIT.OK;
        }
        const rows = ledger.batches.list(args.limit).map((b) => {
          const s = buildSummary(ledger, b.id, config.reportsDir);
          return { id: b.id, kind: b.kind, parent: b.parentId, startedAt: b.startedAt, endedAt: b.endedAt, status: b.status, rows: s.rows, outcomes: s.outcomes, carriedOver: s.carriedOver };
        });
        if (args.json) {
          process.stdout.write(JSON.stringify({ batches: rows, targets: ledger.targets.countByState() }, null, 2) + '\n');
          return EXIT.OK;
        }
        if (rows.length === 0) process.stdout.write('No batches yet.\n');
        for (const r of rows) {
          const counts = Object.entries(r.outcomes).map(([k, v]) => `${k}=${v}`).join(' ');
          const secs = r.endedAt ? `${((Date.parse(r.endedAt) - Date.parse(r.startedAt)) / 1000).toFixed(1)}s` : '-';
          process.stdout.write(`${r.id}  ${r.kind.padEnd(5)} ${(r.parent ?? '').padEnd(20)} ${r.startedAt}  ${secs.padStart(7)}  ${r.status.padEnd(23)} ${counts}\n`);
        }
        const states = Object.entries(ledger.targets.countByState()).map(([k, v]) => `${k}=${v}`).join(' ');
        process.stdout.write(`Targets in the ledger: ${states || 'none'}\n`);
        return EXIT.OK;
      } finally {
        ledger.close();
      }
    }),
};

export function openReadonly(path: string): Ledger {
  try {
    return Ledger.open(path, { readonly: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}
