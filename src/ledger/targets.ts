import type { D1Answer, Scope, TargetRecord, TargetState } from '../types.js';
import { nowIso, type Db } from './db.js';

interface TargetRow {
  pk: number;
  scope: Scope;
  target_id: string;
  consumer_id: string | null;
  state: TargetState;
  operation_id: string | null;
  attempts: number;
  last_http_status: number | null;
  last_error_code: string | null;
  last_error: string | null;
  last_batch_id: string | null;
  seen_batch_id: string | null;
  updated_at: string;
}

export function toTarget(r: TargetRow): TargetRecord {
  return {
    pk: r.pk,
    scope: r.scope,
    targetId: r.target_id,
    consumerId: r.consumer_id,
    state: r.state,
    operationId: r.operation_id,
    attempts: r.attempts,
    lastHttpStatus: r.last_http_status,
    lastErrorCode: r.last_error_code,
    lastError: r.last_error,
    lastBatchId: r.last_batch_id,
    updatedAt: r.updated_at,
  };
}

/**
 * The exact condition of the partial index targets_open: SQLite uses a partial index only when
 * the query repeats its condition, so every query over unfinished targets says it too.
 */
export const OPEN = (alias: string) => `${alias}.state IN ('QUEUED', 'SUBMITTING', 'PENDING', 'FAILED_RETRYABLE')`;

/** A card whose consumer is opted out (or being opted out) must not be called on its own. */
const NOT_COVERED = `NOT (t.scope = 'CARD' AND t.consumer_id IS NOT NULL AND EXISTS (
  SELECT 1 FROM targets c WHERE c.scope = 'CONSUMER' AND c.target_id = t.consumer_id AND c.state IN ('OPTED_OUT', 'PENDING')))`;

export class Targets {
  private readonly getStmt;
  private readonly workStmt;
  private readonly pendingStmt;
  private readonly submittingStmt;
  private readonly answerStmt;
  private readonly setStateStmt;
  private readonly settleStmt;
  private readonly countStmt;
  private readonly pendingBatchesStmt;
  private readonly waitingStmt;

  constructor(db: Db) {
    this.getStmt = db.prepare<[Scope, string], TargetRow>(`SELECT * FROM targets WHERE scope = ? AND target_id = ?`);
    this.workStmt = db.prepare<[string, Scope, number, number], TargetRow>(
      `SELECT * FROM targets t
        WHERE t.last_batch_id = ? AND ${OPEN('t')} AND t.state = 'QUEUED' AND t.scope = ?
          AND t.pk > ? AND ${NOT_COVERED}
        ORDER BY t.pk LIMIT ?`,
    );
    this.pendingStmt = db.prepare<[string, number, number], TargetRow>(
      `SELECT * FROM targets t WHERE t.last_batch_id = ? AND ${OPEN('t')} AND t.state = 'PENDING' AND t.pk > ? ORDER BY t.pk LIMIT ?`,
    );
    this.submittingStmt = db.prepare(
      `UPDATE targets SET state = 'SUBMITTING', last_batch_id = ?, updated_at = ? WHERE pk = ?`,
    );
    this.answerStmt = db.prepare(
      `UPDATE targets SET state = ?, operation_id = coalesce(?, operation_id), attempts = attempts + ?,
              last_http_status = ?, last_error_code = ?, last_error = ?, updated_at = ?
        WHERE pk = ?`,
    );
    this.setStateStmt = db.prepare(`UPDATE targets SET state = ?, last_error = coalesce(?, last_error), updated_at = ? WHERE pk = ?`);
    // There is no index from consumer to cards (a random-key index on every card would double the
    // cost of ingest); cards are settled where they are scanned anyway: a batch's own, or all
    // unfinished ones before a batch starts.
    this.settleStmt = db.prepare(
      `UPDATE targets AS t SET state = 'OPTED_OUT', last_error = 'opted out with consumer ' || t.consumer_id, updated_at = @now
        WHERE ${OPEN('t')} AND t.state IN ('QUEUED', 'FAILED_RETRYABLE', 'SUBMITTING') AND t.scope = 'CARD' AND t.consumer_id IS NOT NULL
          AND (@b IS NULL OR t.last_batch_id = @b)
          AND (SELECT c.state FROM targets c WHERE c.scope = 'CONSUMER' AND c.target_id = t.consumer_id) = 'OPTED_OUT'`,
    );
    this.pendingBatchesStmt = db.prepare<[], { last_batch_id: string }>(
      `SELECT DISTINCT t.last_batch_id FROM targets t WHERE ${OPEN('t')} AND t.state = 'PENDING' AND t.last_batch_id IS NOT NULL`,
    );
    // Through the unfinished targets only: on scope alone the planner would take the unique index
    // and read every card the ledger holds, for each `status`.
    this.waitingStmt = db.prepare<[], { consumer_id: string; n: number }>(
      `SELECT t.consumer_id, count(*) AS n FROM targets t INDEXED BY targets_open
        WHERE ${OPEN('t')} AND t.state = 'QUEUED' AND t.scope = 'CARD' AND t.consumer_id IS NOT NULL
          AND (SELECT c.state FROM targets c WHERE c.scope = 'CONSUMER' AND c.target_id = t.consumer_id) = 'PENDING'
        GROUP BY t.consumer_id ORDER BY t.consumer_id`,
    );
    this.countStmt = db.prepare<[], { state: TargetState; n: number }>(`SELECT state, count(*) AS n FROM targets GROUP BY state`);
  }

  get(scope: Scope, targetId: string): TargetRecord | undefined {
    const r = this.getStmt.get(scope, targetId);
    return r ? toTarget(r) : undefined;
  }

  /**
   * The next targets this batch must still call, in pk order after `afterPk`. Planning leaves
   * every one of them QUEUED; a target a worker has taken is SUBMITTING or beyond, and behind the
   * cursor.
   */
  work(batchId: string, scope: Scope, afterPk: number, limit: number): TargetRecord[] {
    return this.workStmt.all(batchId, scope, afterPk, limit).map(toTarget);
  }

  pending(batchId: string, afterPk: number, limit: number): TargetRecord[] {
    return this.pendingStmt.all(batchId, afterPk, limit).map(toTarget);
  }

  markSubmitting(pk: number, batchId: string): void {
    this.submittingStmt.run(batchId, nowIso(), pk);
  }

  /** Records what D1 answered; `sent` is 1 for an opt-out request, 0 for a Get Operation poll. */
  recordAnswer(pk: number, state: TargetState, answer: D1Answer, sent: 0 | 1, note?: string): void {
    this.answerStmt.run(
      state,
      answer.operationId,
      sent,
      answer.httpStatus || null,
      answer.errorCode,
      note ?? answer.error,
      nowIso(),
      pk,
    );
  }

  /** Sets the state; a null note keeps the target's last note. */
  setState(pk: number, state: TargetState, note: string | null): void {
    this.setStateStmt.run(state, note, nowIso(), pk);
  }

  /**
   * A consumer opt-out removes every card of the consumer at D1; the ledger says so for the
   * unfinished cards it knows, of one batch or (null) of all batches.
   */
  settleCoveredCards(batchId: string | null): number {
    return this.settleStmt.run({ b: batchId, now: nowIso() }).changes;
  }

  /**
   * Cards left QUEUED because their consumer's opt-out is PENDING at D1: they wait for it (settled
   * when it finishes, sent on their own if it fails). By consumer.
   */
  waitingForConsumer(): { consumerId: string; cards: number }[] {
    return this.waitingStmt.all().map((r) => ({ consumerId: r.consumer_id, cards: r.n }));
  }

  /** The batches that own PENDING targets (the batch that last sent or polled each). */
  batchesWithPending(): string[] {
    return this.pendingBatchesStmt.all().map((r) => r.last_batch_id);
  }

  countByState(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.countStmt.all()) out[r.state] = r.n;
    return out;
  }
}

export { NOT_COVERED };
