import { UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { buildSummary, completedStatus } from '../report/summary.js';
import { writeReport } from '../report/write.js';
import type { BatchSummary, Config, ProgressListener } from '../types.js';
import { NO_PROGRESS } from './context.js';
import { pollPending } from './poll.js';
import { openSession } from './session.js';
import type { StopSignal } from './stop.js';

/**
 * `d1-optout poll`: asks D1 about every PENDING target (or one batch's) until each is final or
 * `waitMs` runs out. Each poll is recorded under the batch that owns the operation, whose report
 * is then written again with the final outcomes.
 */
export async function pollCommand(
  config: Config,
  opts: { batch: string | null; waitMs: number },
  log: Logger,
  stop: StopSignal,
  progress: ProgressListener = NO_PROGRESS,
): Promise<BatchSummary[]> {
  const session = await openSession(config, 'poll', log, stop, progress);
  try {
    const { ledger } = session;
    const owners = ledger.targets.batchesWithPending().filter((b) => opts.batch === null || b === opts.batch);
    if (opts.batch !== null && !ledger.batches.get(opts.batch)) throw new UsageError(`no batch ${opts.batch} in the ledger (see d1-optout status)`);
    await Promise.all(owners.map((b) => pollPending(session.context(b, log.child({ batchId: b })), opts.waitMs)));
    ledger.committer.flush();
    // Cards that waited for a consumer whose opt-out just finished are done with it.
    ledger.tx(() => ledger.targets.settleCoveredCards(null));
    const summaries: BatchSummary[] = [];
    for (const b of owners) {
      const batch = ledger.batches.get(b);
      if (!batch) continue;
      ledger.tx(() => {
        ledger.items.refreezePending(b);
        if (batch.status === 'COMPLETED' || batch.status === 'COMPLETED_WITH_FAILURES') {
          ledger.batches.finish(b, completedStatus(ledger, b), batch.abortReason, batch.stats);
        }
      });
      const summary = buildSummary(ledger, b, config.reportsDir);
      await writeReport(ledger, summary);
      summaries.push(summary);
    }
    return summaries;
  } finally {
    session.close();
  }
}
