import type { AnswerClass, AttemptKind, AttemptRecord, D1Answer, RequestSecond, Scope } from '../types.js';
import type { Db } from './db.js';

interface AttemptRow {
  id: number;
  batch_id: string;
  scope: Scope;
  target_id: string;
  kind: AttemptKind;
  correlation_id: string;
  started_at: string;
  ended_at: string | null;
  http_status: number | null;
  error_code: string | null;
  error: string | null;
  operation_id: string | null;
  operation_status: string | null;
  class: AnswerClass | null;
}

/** Every HTTP request the job made to D1 for a target, as an audit trail. */
export class Attempts {
  private readonly insertStmt;
  private readonly forTargetStmt;
  private readonly byStatusStmt;
  private readonly retriesStmt;
  private readonly perSecondStmt;
  private readonly optOutSpanStmt;

  constructor(db: Db) {
    this.insertStmt = db.prepare(
      `INSERT INTO attempts (batch_id, target_pk, kind, correlation_id, started_at, ended_at, http_status,
                             error_code, error, operation_id, operation_status, class)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.forTargetStmt = db.prepare<[number], AttemptRow>(
      `SELECT a.*, t.scope, t.target_id FROM attempts a JOIN targets t ON t.pk = a.target_pk
        WHERE a.target_pk = ? ORDER BY a.id`,
    );
    this.byStatusStmt = db.prepare<[string], { http_status: number | null; n: number }>(
      `SELECT http_status, count(*) AS n FROM attempts WHERE batch_id = ? GROUP BY http_status`,
    );
    this.retriesStmt = db.prepare<[string], { sent: number; targets: number }>(
      `SELECT count(*) AS sent, count(DISTINCT target_pk) AS targets FROM attempts WHERE batch_id = ? AND kind = 'OPT_OUT'`,
    );
    // started_at is ISO 8601 with milliseconds; its first 19 characters name the second.
    this.perSecondStmt = db.prepare<[string], RequestSecond>(
      `SELECT substr(started_at, 1, 19) AS second, count(*) AS requests, coalesce(sum(http_status = 429), 0) AS http429,
              coalesce(sum(http_status >= 500), 0) AS http5xx, coalesce(sum(http_status IS NULL), 0) AS noAnswer
         FROM attempts WHERE batch_id = ? GROUP BY 1 ORDER BY 1`,
    );
    this.optOutSpanStmt = db.prepare<[string], { n: number; first: string | null; last: string | null }>(
      `SELECT count(*) AS n, min(started_at) AS first, max(started_at) AS last FROM attempts WHERE batch_id = ? AND kind = 'OPT_OUT'`,
    );
  }

  record(batchId: string, targetPk: number, kind: AttemptKind, a: D1Answer): void {
    this.insertStmt.run(
      batchId,
      targetPk,
      kind,
      a.correlationId,
      new Date(a.startedAt).toISOString(),
      new Date(a.endedAt).toISOString(),
      a.httpStatus || null,
      a.errorCode,
      a.error,
      a.operationId,
      a.operationStatus,
      a.class,
    );
  }

  forTarget(pk: number): AttemptRecord[] {
    return this.forTargetStmt.all(pk).map((r) => ({
      id: r.id,
      batchId: r.batch_id,
      scope: r.scope,
      targetId: r.target_id,
      kind: r.kind,
      correlationId: r.correlation_id,
      startedAt: r.started_at,
      endedAt: r.ended_at,
      httpStatus: r.http_status,
      errorCode: r.error_code,
      error: r.error,
      operationId: r.operation_id,
      operationStatus: r.operation_status,
      class: r.class,
    }));
  }

  /** Requests by HTTP status ("0" when no answer arrived), counted from the ledger so a crash loses none. */
  requestsByStatus(batchId: string): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.byStatusStmt.all(batchId)) out[String(r.http_status ?? 0)] = r.n;
    return out;
  }

  /** Requests started in each second of the batch that had any, in time order. */
  perSecond(batchId: string): RequestSecond[] {
    return this.perSecondStmt.all(batchId);
  }

  /** How many opt-out requests the batch sent, and when the first and the last of them started. */
  optOutSpan(batchId: string): { requests: number; first: string | null; last: string | null } {
    const r = this.optOutSpanStmt.get(batchId);
    return { requests: r?.n ?? 0, first: r?.first ?? null, last: r?.last ?? null };
  }

  /** Opt-out requests beyond the first for each target in this batch. */
  retries(batchId: string): number {
    const r = this.retriesStmt.get(batchId);
    return r ? r.sent - r.targets : 0;
  }
}
