import type { BatchContext } from './context.js';
import { finishBatch, type BatchResult } from './finish.js';
import { pollPending } from './poll.js';
import { submitScope } from './submit.js';

/** The batch's items whose target is still queued: what is left to send. */
function stillToSend(ctx: BatchContext): number {
  const { rows, carriedOver } = ctx.ledger.items.counts(ctx.batchId);
  return (rows.NOT_ATTEMPTED ?? 0) + (carriedOver.NOT_ATTEMPTED ?? 0);
}

/**
 * The D1 half of a batch, shared by run and rerun: consumers first (an opted-out consumer takes
 * its cards along, docs/design.md §3 rule 3), then the cards still needed, then the pending polls.
 */
export async function executeBatch(ctx: BatchContext): Promise<BatchResult> {
  const { ledger, batchId, log } = ctx;
  try {
    const toSend = stillToSend(ctx);
    ctx.progress.on({ type: 'to-send', targets: toSend });
    const consumers = await submitScope(ctx, 'CONSUMER');
    ledger.committer.flush();
    const { settled, covered } = ledger.tx(() => ({
      settled: ledger.targets.settleCoveredCards(batchId),
      covered: ledger.items.coverCardsInBatch(batchId),
    }));
    if (covered > 0) log.info(`${covered} card row(s) covered by a consumer opted out in this batch; not called`);
    // No consumer sent and no card covered (most nights): the count stands. Counted again, it is a
    // tenth of a second at 100,000 items before the first card leaves.
    ctx.progress.on({ type: 'to-send', targets: consumers + settled + covered > 0 ? stillToSend(ctx) : toSend });
    await submitScope(ctx, 'CARD');
    await pollPending(ctx, ctx.config.pending.maxWaitMs);
    // A consumer that was PENDING when its cards were covered may have finished while polled:
    // its cards are settled now, not left QUEUED until the next batch starts (docs/design.md §13).
    ledger.committer.flush();
    ledger.tx(() => ledger.targets.settleCoveredCards(null));
  } catch (err) {
    // The ledger holds every committed step; record the abort and let the next run resume.
    ctx.stop.stop(`internal error: ${(err as Error).message}`);
    log.error('batch stopped by an internal error', { error: err });
  }
  const lim = ctx.limiter.stats();
  const stats = { throttledMs: lim.throttledMs, lowestRps: lim.lowestRps, tokenRequests: ctx.client.tokens.requests, tokenFailures: ctx.client.tokens.failures, commits: ledger.committer.commits };
  return finishBatch(ledger, batchId, ctx.config.reportsDir, ctx.stop.reason, stats, log);
}
