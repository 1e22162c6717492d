import type { CommandModule } from 'yargs';
import { EXIT, UsageError } from '../errors.js';
import type { Scope } from '../types.js';
import { openReadonly } from './status.js';
import { configOption, jsonOption, runCommand, type CommonArgs } from './shared.js';

interface Args extends CommonArgs {
  id: string;
}

export const showModule: CommandModule<object, Args> = {
  command: 'show <id>',
  describe: 'what happened to this card or consumer: its state, every batch and every D1 attempt',
  builder: (y) =>
    y.positional('id', { type: 'string', demandOption: true, describe: 'a D1 cardId or consumerId' }).options({ ...configOption, ...jsonOption }) as never,
  handler: (args) =>
    runCommand(args, { writesLog: false }, async ({ config }) => {
      const ledger = openReadonly(config.ledger);
      try {
        const found = (['CARD', 'CONSUMER'] as Scope[]).flatMap((scope) => {
          const target = ledger.targets.get(scope, args.id);
          if (!target) return [];
          return [{ scope, target, history: ledger.items.history(target.pk), attempts: ledger.attempts.forTarget(target.pk) }];
        });
        if (found.length === 0) throw new UsageError(`${args.id} is not in the ledger: no batch has seen it as a card or a consumer`);
        if (args.json) {
          process.stdout.write(JSON.stringify(found, null, 2) + '\n');
          return EXIT.OK;
        }
        for (const f of found) {
          const t = f.target;
          process.stdout.write(`${f.scope} ${args.id}: ${t.state}${t.operationId ? `, operation ${t.operationId}` : ''}, ${t.attempts} opt-out request(s)${t.lastError ? `, last note: ${t.lastError}` : ''}, updated ${t.updatedAt}\n`);
          if (t.consumerId) process.stdout.write(`  consumer: ${t.consumerId}\n`);
          process.stdout.write('  In batches:\n');
          for (const h of f.history) {
            process.stdout.write(`    ${h.batchId}  ${h.outcome.padEnd(28)} ${h.sourceFile}${h.sourceLine ? `:${h.sourceLine}` : ''}${h.reason ? ` (${h.reason})` : ''}\n`);
          }
          if (f.attempts.length) process.stdout.write('  D1 requests:\n');
          for (const a of f.attempts) {
            const answer = [a.httpStatus ? `HTTP ${a.httpStatus}` : 'no answer', a.operationStatus, a.errorCode, a.error].filter(Boolean).join(' ');
            process.stdout.write(`    ${a.startedAt}  ${a.batchId}  ${a.kind.padEnd(13)} ${answer}  [${a.class ?? '?'}] correlation ${a.correlationId}\n`);
          }
        }
        return EXIT.OK;
      } finally {
        ledger.close();
      }
    }),
};
