import type { Ledger } from '../ledger/index.js';

export type CarrySource = { kind: 'all' } | { kind: 'none' } | { kind: 'parent'; parentId: string; includePermanent: boolean };

/**
 * Adds the carried-over targets to the batch (rows got their dispositions as they were
 * ingested), in one transaction: the plan is on disk before any call is made.
 */
export function planBatch(ledger: Ledger, batchId: string, carry: CarrySource): { carriedOver: number } {
  return ledger.tx(() => {
    const carriedOver =
      carry.kind === 'none'
        ? 0
        : ledger.items.carryOver(batchId, carry.kind === 'parent' ? { parentId: carry.parentId, includePermanent: carry.includePermanent } : null);
    return { carriedOver };
  });
}
