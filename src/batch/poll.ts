import type { D1Answer, TargetRecord, TargetState } from '../types.js';
import { requestCounters, type BatchContext } from './context.js';
import { gaveUpNote, recordAnswer } from './submit.js';

const PAGE = 500;

/** What a Get Operation answer means for a PENDING target, and the note to keep with it. */
function stateAfterPoll(a: D1Answer, t: TargetRecord, maxAcrossRuns: number): { state: TargetState; note?: string } {
  if (a.class === 'done') return { state: 'OPTED_OUT' };
  if (a.class === 'not-enrolled') return { state: 'NOT_ENROLLED' };
  if (a.class === 'retryable' && a.httpStatus >= 200 && a.httpStatus < 300) {
    // D1 finished the operation as FAILED: the next run sends the opt-out again, within the cap.
    return t.attempts >= maxAcrossRuns
      ? { state: 'FAILED_PERMANENT', note: `${gaveUpNote(t.attempts)}; last: operation FAILED ${a.errorCode ?? ''}`.trim() }
      : { state: 'FAILED_RETRYABLE', note: `D1 operation ${t.operationId ?? ''} ended FAILED${a.errorCode ? ` (${a.errorCode})` : ''}` };
  }
  if (a.class === 'permanent') {
    return { state: 'FAILED_RETRYABLE', note: `D1 does not know operation ${t.operationId ?? ''} (HTTP ${a.httpStatus}); the next run sends the opt-out again` };
  }
  // Still pending, an operation status we do not know, or a transient error: ask again later.
  return { state: 'PENDING' };
}

/** Polls one target; returns its new state, or null when the run stopped before the request left. */
async function pollTarget(ctx: BatchContext, t: TargetRecord): Promise<TargetState | null> {
  if (!t.operationId) {
    ctx.ledger.committer.soon(() =>
      ctx.ledger.targets.setState(t.pk, 'FAILED_RETRYABLE', 'D1 answered PENDING without an operationId; the next run sends the opt-out again'),
    );
    return 'FAILED_RETRYABLE';
  }
  const a = await ctx.client.getOperation(t.scope, t.targetId, t.operationId, () => ctx.stop.stopped);
  if (!a) return null;
  const { state, note } = stateAfterPoll(a, t, ctx.config.rate.maxAttemptsAcrossRuns);
  // Keep the operation id D1 gave with the opt-out; a Get Operation answer only echoes it.
  recordAnswer(ctx, t, { ...a, operationId: a.operationId ?? t.operationId }, state, 'GET_OPERATION', note);
  return state;
}

/** This batch's PENDING targets, a page at a time (each page read when asked for). */
function* pendingPages(ctx: BatchContext): Generator<TargetRecord[]> {
  for (let cursor = 0; ; ) {
    const page = ctx.ledger.targets.pending(ctx.batchId, cursor, PAGE);
    const last = page[page.length - 1];
    if (!last) return;
    cursor = last.pk;
    yield page;
  }
}

/**
 * Polls this batch's PENDING targets with Get Operation every `pollIntervalMs` until each is final
 * or `maxWaitMs` has passed; those still pending stay PENDING for the next run or `poll`.
 */
export async function pollPending(ctx: BatchContext, maxWaitMs: number): Promise<void> {
  const deadline = Date.now() + maxWaitMs;
  const interval = ctx.config.pending.pollIntervalMs;
  ctx.ledger.committer.flush();
  let operations = 0;
  for (const page of pendingPages(ctx)) operations += page.length;
  if (operations > 0) ctx.progress.on({ type: 'to-poll', operations });
  for (;;) {
    ctx.ledger.committer.flush();
    if (ctx.stop.stopped) return;
    const remaining = deadline - Date.now();
    if (remaining <= 0) return;
    if (ctx.ledger.targets.pending(ctx.batchId, 0, 1).length === 0) return;
    await ctx.stop.sleep(Math.min(interval, remaining));
    if (ctx.stop.stopped) return;
    for (const page of pendingPages(ctx)) {
      await Promise.all(
        page.map(async (t) => {
          const state = await pollTarget(ctx, t);
          if (state) ctx.progress.on({ type: 'polled', settled: state !== 'PENDING', d1: requestCounters(ctx) });
        }),
      );
      if (ctx.stop.stopped) return;
    }
  }
}
