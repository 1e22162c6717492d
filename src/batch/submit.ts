import { backoffMs } from '../throttle/backoff.js';
import type { AttemptKind, D1Answer, Scope, TargetRecord, TargetState } from '../types.js';
import { requestCounters, type BatchContext } from './context.js';

const PAGE = 500;

/** The target state an opt-out answer leads to, given how many requests the target has had in all. */
export function stateAfterAnswer(a: D1Answer, attemptsInAll: number, maxAcrossRuns: number, freshBudget: boolean): TargetState {
  switch (a.class) {
    case 'done':
      return 'OPTED_OUT';
    case 'pending':
      return 'PENDING';
    case 'not-enrolled':
      return 'NOT_ENROLLED';
    case 'permanent':
      return 'FAILED_PERMANENT';
    case 'fatal':
      // Not the target's fault (authentication): it is tried again by the next run.
      return 'FAILED_RETRYABLE';
    case 'retryable':
      return attemptsInAll >= maxAcrossRuns && !freshBudget ? 'FAILED_PERMANENT' : 'FAILED_RETRYABLE';
  }
}

export function gaveUpNote(attempts: number): string {
  return `gave up after ${attempts} attempts`;
}

/**
 * Whether an opt-out answer counts against the target's attempts across runs: a request that
 * never left (no token) or that D1 turned away for our rate (429) says nothing about the target.
 */
export function countsAsAttempt(a: D1Answer): boolean {
  return a.sent && a.httpStatus !== 429;
}

/**
 * Records an answer in one group commit: every HTTP request as an attempt row (a 401 that made
 * us refresh the token included), and the target's new state.
 */
export function recordAnswer(ctx: BatchContext, t: TargetRecord, a: D1Answer, state: TargetState, kind: AttemptKind, note?: string): void {
  const { ledger, batchId } = ctx;
  ledger.committer.soon(() => {
    if (a.refused) ledger.attempts.record(batchId, t.pk, kind, a.refused);
    if (a.sent) ledger.attempts.record(batchId, t.pk, kind, a);
    ledger.targets.recordAnswer(t.pk, state, a, kind === 'OPT_OUT' && countsAsAttempt(a) ? 1 : 0, note);
  });
  const what = a.error ?? (a.httpStatus ? `HTTP ${a.httpStatus}` : null);
  if (a.class === 'fatal') ctx.stop.stop(a.error ?? 'D1 refused our credentials');
  // A 429 is the limiter's business, not a sign that D1 is down.
  else if (a.httpStatus !== 429) ctx.breaker.record(a.class === 'retryable' ? 'failure' : 'ok', what, ctx.log, !a.sent);
  if (a.httpStatus !== 429) {
    const failed = a.class === 'retryable' || a.class === 'fatal';
    const words = [a.httpStatus ? `HTTP ${a.httpStatus}` : a.sent ? 'no answer:' : 'not sent:', a.errorCode, a.httpStatus ? null : a.error].filter(Boolean).join(' ');
    ctx.progress.on({ type: 'answer', failed, what: failed ? words : null });
  }
  if ((a.class === 'retryable' && a.httpStatus !== 429) || a.class === 'permanent') {
    ctx.log.warn(`${kind === 'OPT_OUT' ? 'opt-out' : 'poll'} of ${t.scope} ${t.targetId} failed (${a.class}): ${what ?? 'no answer'}; now ${state}`, {
      event: 'target.failed',
      scope: t.scope,
      targetId: t.targetId,
      errorClass: a.class,
      httpStatus: a.httpStatus,
      errorCode: a.errorCode,
      correlationId: a.correlationId,
      state,
    });
  }
}

/** Opts out one target: SUBMITTING on disk first, then the request, retried with backoff while it is worth it. */
async function submitTarget(ctx: BatchContext, t: TargetRecord): Promise<void> {
  const { rate } = ctx.config;
  const fresh = ctx.freshBudget.has(t.pk);
  let attemptsInAll = t.attempts;
  for (let tries = 1; ; tries++) {
    if (ctx.stop.stopped) return;
    if (attemptsInAll >= rate.maxAttemptsAcrossRuns && !fresh) {
      ctx.ledger.committer.soon(() => ctx.ledger.targets.setState(t.pk, 'FAILED_PERMANENT', gaveUpNote(attemptsInAll)));
      return;
    }
    await ctx.ledger.committer.now(() => ctx.ledger.targets.markSubmitting(t.pk, ctx.batchId));
    const a = await ctx.client.optOut(t.scope, t.targetId, () => ctx.stop.stopped);
    if (!a) {
      // The run stopped while this request waited for its turn: it never left, so nothing is in doubt.
      ctx.ledger.committer.soon(() => ctx.ledger.targets.setState(t.pk, tries === 1 ? t.state : 'FAILED_RETRYABLE', null));
      return;
    }
    if (countsAsAttempt(a)) attemptsInAll++;
    const state = stateAfterAnswer(a, attemptsInAll, rate.maxAttemptsAcrossRuns, fresh);
    const gaveUp = a.class === 'retryable' && state === 'FAILED_PERMANENT';
    recordAnswer(ctx, t, a, state, 'OPT_OUT', gaveUp ? `${gaveUpNote(attemptsInAll)}; last: ${a.error ?? `HTTP ${a.httpStatus}`}` : undefined);
    ctx.log.debug('opt-out answer', { scope: t.scope, correlationId: a.correlationId, httpStatus: a.httpStatus, class: a.class, errorCode: a.errorCode });
    if (a.class !== 'retryable' || gaveUp || tries >= rate.maxAttempts) return;
    await ctx.stop.sleep(backoffMs(tries, rate.backoffBaseMs, rate.backoffMaxMs, a.retryAfterMs));
  }
}

/**
 * Submits every target of one scope that this batch still has to call, `concurrency × 2` at a time
 * (the limiter decides when each request leaves; the extra workers cover those sleeping in backoff).
 * Targets are read from the ledger page by page, so memory does not grow with the batch.
 */
export async function submitScope(ctx: BatchContext, scope: Scope): Promise<number> {
  let taken = 0;
  let cursor = 0;
  let page: TargetRecord[] = [];
  let exhausted = false;
  const next = (): TargetRecord | undefined => {
    if (ctx.stop.stopped) return undefined;
    // Once a page comes back empty there is nothing past the cursor: the other workers must not
    // each ask again (a scope with no work, consumers most nights, is a scan of the batch's queue).
    if (page.length === 0 && !exhausted) {
      page = ctx.ledger.targets.work(ctx.batchId, scope, cursor, PAGE);
      const last = page[page.length - 1];
      if (last) cursor = last.pk;
      else exhausted = true;
    }
    const t = page.shift();
    if (t) taken++;
    return t;
  };
  const workers = Array.from({ length: ctx.config.rate.concurrency * 2 }, async () => {
    for (let t = next(); t; t = next()) {
      await submitTarget(ctx, t);
      ctx.progress.on({ type: 'sent', d1: requestCounters(ctx) });
    }
  });
  await Promise.all(workers);
  ctx.ledger.committer.flush();
  return taken;
}
