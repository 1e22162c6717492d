import type { Ledger, ItemHistory, PruneMark } from '../ledger/index.js';
import type { AttemptRecord, BatchKind, Scope, TargetRecord } from '../types.js';
import { terminalSafe } from '../text.js';
import { formatUtc, textTable } from './format.js';

/** What `show ID` knows of one target. */
export interface TargetTimeline {
  scope: Scope;
  target: TargetRecord;
  history: ItemHistory[];
  attempts: AttemptRecord[];
  /** Kind and start of every batch the target appears in. */
  batches: Record<string, { kind: BatchKind; startedAt: string }>;
  /** Set when `prune` removed some of its history: the state above still stands, the batches before the cutoff are gone. */
  pruned: PruneMark | null;
  /** Why a target is not final though no batch works on it, in words: waiting for a consumer, in doubt. */
  why: string | null;
}

function whyNotFinal(ledger: Ledger, t: TargetRecord): string | null {
  if (t.state === 'SUBMITTING') return 'in doubt: the process stopped while its request was in flight; D1 may have it, and the next run sends it again';
  if (t.state !== 'QUEUED') return null;
  const consumer = t.scope === 'CARD' && t.consumerId ? ledger.targets.get('CONSUMER', t.consumerId) : undefined;
  if (consumer?.state === 'PENDING') return `waiting for consumer ${consumer.targetId}, whose opt-out is PENDING at D1 (sent on its own if that fails)`;
  if (consumer) return `waited for consumer ${consumer.targetId}, whose opt-out is ${consumer.state}; the next run sends it (on its own unless the consumer is opted out first)`;
  return 'not sent yet; the next run sends it';
}

/** Everything the ledger knows of `id`, as a card and as a consumer (an id may be both). */
export function loadTimelines(ledger: Ledger, id: string): TargetTimeline[] {
  return (['CARD', 'CONSUMER'] as Scope[]).flatMap((scope) => {
    const target = ledger.targets.get(scope, id);
    if (!target) return [];
    const history = ledger.items.history(target.pk);
    const attempts = ledger.attempts.forTarget(target.pk);
    const batches: TargetTimeline['batches'] = {};
    for (const batchId of new Set([...history.map((h) => h.batchId), ...attempts.map((a) => a.batchId)])) {
      const b = ledger.batches.get(batchId);
      if (b) batches[batchId] = { kind: b.kind, startedAt: b.startedAt };
    }
    return [{ scope, target, history, attempts, batches, pruned: ledger.prunes.ofTarget(target.pk) ?? null, why: whyNotFinal(ledger, target) }];
  });
}

function answerText(a: AttemptRecord): string {
  return [a.httpStatus ? `HTTP ${a.httpStatus}` : 'no answer', a.operationStatus, a.errorCode, a.error].filter(Boolean).join(' ');
}

/**
 * `show ID`: the target's state, then its timeline batch by batch, oldest first: where each row
 * came from and what it became, and under it every D1 request of that batch with D1's answer.
 */
export function formatTimeline(id: string, found: readonly TargetTimeline[]): string {
  const lines: string[] = [];
  for (const f of found) {
    const t = f.target;
    lines.push(`${f.scope} ${id}: ${t.state}${f.why ? ` (${f.why})` : ''}${t.operationId ? `, operation ${t.operationId}` : ''}, ${t.attempts} opt-out request(s) in all, updated ${formatUtc(t.updatedAt)}`);
    if (f.scope === 'CARD' && t.consumerId) lines.push(`  consumer:   ${t.consumerId}`);
    if (t.lastError) lines.push(`  last note:  ${t.lastError}`);
    const order = [...new Set([...f.history.map((h) => h.batchId), ...f.attempts.map((a) => a.batchId)])];
    lines.push('  Timeline (oldest first):');
    if (f.pruned) {
      lines.push(`    older history pruned on ${formatUtc(f.pruned.prunedAt)} (batches that ended before ${formatUtc(f.pruned.cutoff)}, kept ${f.pruned.olderThanDays} days)`);
    }
    for (const batchId of order) {
      const b = f.batches[batchId];
      lines.push(`    batch ${batchId}${b ? ` (${b.kind}, started ${formatUtc(b.startedAt)})` : ''}`);
      for (const h of f.history.filter((x) => x.batchId === batchId)) {
        const where = `${h.sourceFile}${h.sourceLine ? `:${h.sourceLine}` : ''}`;
        lines.push(`      ${where}${h.reason ? ` (${h.reason})` : ''} -> ${h.outcome}`);
      }
      const attempts = f.attempts.filter((a) => a.batchId === batchId);
      const rows = attempts.map((a) => [formatUtc(a.startedAt, true), a.kind, answerText(a), a.operationId ? `operation ${a.operationId}` : '', `[${a.class ?? '?'}]`, `correlation ${a.correlationId}`]);
      if (rows.length) lines.push(...textTable(['', '', '', '', '', ''], rows, [false, false, false, false, false, false], '        ').slice(1));
    }
  }
  // The id as typed, file names and D1's answers come from outside the job.
  return terminalSafe(lines.join('\n'));
}
