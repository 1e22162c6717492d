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

/** A card whose consumer is opted out (or being opted out) must not be called on its own. */
const NOT_COVERED = `NOT (t.scope = 'CARD' AND t.consumer_id IS NOT NULL AND EXISTS (
  SELECT 1 FROM targets c WHERE c.scope = 'CONSUMER' AND c.target_id = t.consumer_id AND c.state IN ('OPTED_OUT', 'PENDING')))`;

export class Targets {
  private readonly getStmt;
  private readonly byPkStmt;
  private readonly workStmt;
  private readonly pendingStmt;
  private readonly submittingStmt;
  private readonly answerStmt;
  private readonly setStateStmt;
  private readonly coverStmt;
  private readonly countStmt;
  private readonly pendingBatchesStmt;

  constructor(db: Db) {
    this.getStmt = db.prepare<[Scope, string], TargetRow>(`SELECT * FROM targets WHERE scope = ? AND target_id = ?`);
    this.byPkStmt = db.prepare<[number], TargetRow>(`SELECT * FROM targets WHERE pk = ?`);
    this.workStmt = db.prepare<[string, Scope, number, number], TargetRow>(
      `SELECT * FROM targets t
        WHERE t.last_batch_id = ? AND t.scope = ? AND t.state IN ('QUEUED', 'SUBMITTING', 'FAILED_RETRYABLE')
          AND t.pk > ? AND ${NOT_COVERED}
        ORDER BY t.pk LIMIT ?`,
    );
    this.pendingStmt = db.prepare<[string, number, number], TargetRow>(
      `SELECT * FROM targets WHERE last_batch_id = ? AND state = 'PENDING' AND pk > ? ORDER BY pk LIMIT ?`,
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
    this.coverStmt = db.prepare(
      `UPDATE targets SET state = 'OPTED_OUT', last_error = ?, updated_at = ?
        WHERE scope = 'CARD' AND consumer_id = ? AND state IN ('QUEUED', 'FAILED_RETRYABLE', 'SUBMITTING')`,
    );
    this.pendingBatchesStmt = db.prepare<[], { last_batch_id: string }>(
      `SELECT DISTINCT last_batch_id FROM targets WHERE state = 'PENDING' AND last_batch_id IS NOT NULL`,
    );
    this.countStmt = db.prepare<[], { state: TargetState; n: number }>(`SELECT state, count(*) AS n FROM targets GROUP BY state`);
  }

  get(scope: Scope, targetId: string): TargetRecord | undefined {
    const r = this.getStmt.get(scope, targetId);
    return r ? toTarget(r) : undefined;
  }

  byPk(pk: number): TargetRecord | undefined {
    const r = this.byPkStmt.get(pk);
    return r ? toTarget(r) : undefined;
  }

  /** The next targets this batch must still call, in pk order after `afterPk`. */
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

  /** A consumer opt-out removes every card of the consumer at D1; the ledger says so for the cards it knows. */
  coverCardsOf(consumerId: string): number {
    return this.coverStmt.run(`opted out with consumer ${consumerId}`, nowIso(), consumerId).changes;
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
