import type { Ledger } from '../ledger/index.js';
import type { SeenTarget } from '../ledger/targets.js';
import type { CardRow, Disposition } from '../types.js';

/**
 * Rules 1, 2, 4 and 5 of DESIGN.md §3, in order, for a row whose target the ledger knows.
 * Rule 3 (a card covered by its consumer) is applied to the whole batch just before its cards
 * are sent (Items.coverCardsInBatch), when the consumers of this very batch have been opted out
 * too; it outranks rule 4 there, as the order of the rules says.
 */
export function decideDisposition(target: SeenTarget, batchId: string): Disposition {
  if (target.seenBatchId === batchId) return 'SKIPPED_DUPLICATE';
  if (target.state === 'OPTED_OUT') return 'SKIPPED_ALREADY_OPTED_OUT';
  if (target.state === 'PENDING') return 'SKIPPED_ALREADY_PENDING';
  if (target.state === 'FAILED_PERMANENT') return 'SKIPPED_PREVIOUSLY_FAILED';
  return 'SUBMIT';
}

/**
 * Admits one valid row into the batch: records its target (every row's target is in the ledger,
 * so rule 1 can see it and `show` can answer for it), decides its disposition and writes the
 * item. Runs inside the ingest transaction. A target never seen before is queued by the same
 * statement that creates it: most rows of a nightly file are such cards, and one statement per
 * new card is what keeps ingest near the speed of a bare insert.
 */
export function admitRow(ledger: Ledger, batchId: string, ord: number, row: CardRow): Disposition {
  const { targets, items } = ledger;
  const created = targets.admitIfNew(row.scope, row.targetId, row.consumerId, batchId);
  if (created !== undefined) {
    items.insertRow(batchId, ord, row, created, 'SUBMIT');
    return 'SUBMIT';
  }
  const target = targets.seen(row.scope, row.targetId)!;
  const disposition = decideDisposition(target, batchId);
  targets.admitSeen(target.pk, batchId, disposition === 'SUBMIT', row.consumerId);
  items.insertRow(batchId, ord, row, target.pk, disposition);
  return disposition;
}
