import type { CardRow, Outcome, RejectRow, ResultLine, Scope } from '../types.js';
import { nowIso, type Db } from './db.js';
import { NOT_COVERED } from './targets.js';

/** What an item's outcome is, from its disposition and its target's state (DESIGN.md §4). */
const OUTCOME_SQL = `CASE
  WHEN i.disposition LIKE 'SKIPPED_%' THEN i.disposition
  WHEN i.disposition IS NULL OR t.state IS NULL OR t.state = 'QUEUED' THEN 'NOT_ATTEMPTED'
  WHEN t.state = 'SUBMITTING' THEN 'FAILED_RETRYABLE'
  ELSE t.state END`;

const PAGE = 1000;

export interface RejectLine {
  source_file: string;
  source_line: number;
  error: string;
  raw: string;
}

const TARGET_JOIN = `LEFT JOIN targets t ON t.scope = i.scope AND t.target_id = i.target_id`;

interface ResultRow {
  scope: Scope;
  target_id: string;
  consumer_id: string | null;
  reason: string | null;
  outcome: Outcome;
  operation_id: string | null;
  http_status: number | null;
  error_code: string | null;
  error: string | null;
  attempts: number;
  correlation_id: string | null;
  source_file: string;
  source_line: number | null;
}

export interface ItemHistory {
  batchId: string;
  origin: 'ROW' | 'CARRY_OVER';
  sourceFile: string;
  sourceLine: number | null;
  reason: string | null;
  disposition: string | null;
  outcome: Outcome;
}

/** The batch's items: input rows and carried-over targets, their dispositions and outcomes. */
export class Items {
  private readonly insertRowStmt;
  private readonly insertRejectStmt;
  private readonly rulesStmts;
  private readonly queueStmt;
  private readonly coverInBatchStmt;
  private readonly freezeStmt;
  private readonly refreezePendingStmt;
  private readonly countsStmt;
  private readonly resultsStmt;
  private readonly rejectsStmt;
  private readonly historyStmt;
  private readonly carryOverAllStmt;
  private readonly carryOverFromStmt;
  private readonly requeueCarriedStmt;

  constructor(private readonly db: Db) {
    this.insertRowStmt = db.prepare(
      `INSERT INTO items (batch_id, origin, scope, target_id, consumer_id, reason, event_time, reference, input_ord, source_line)
       VALUES (?, 'ROW', ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.insertRejectStmt = db.prepare(
      `INSERT INTO rejects (batch_id, input_ord, source_line, error, raw) VALUES (?, ?, ?, ?, ?)`,
    );
    const open = `i.batch_id = @b AND i.origin = 'ROW' AND i.disposition IS NULL`;
    const state = (alias: string, scope: string, id: string) =>
      `(SELECT ${alias}.state FROM targets ${alias} WHERE ${alias}.scope = ${scope} AND ${alias}.target_id = ${id})`;
    // The dedupe rules of DESIGN.md §3, in order: each only looks at rows no earlier rule decided.
    this.rulesStmts = [
      `UPDATE items AS i SET disposition = 'SKIPPED_DUPLICATE' WHERE ${open}
         AND EXISTS (SELECT 1 FROM items e WHERE e.batch_id = @b AND e.scope = i.scope AND e.target_id = i.target_id AND e.pk < i.pk)`,
      `UPDATE items AS i SET disposition = CASE ${state('t', 'i.scope', 'i.target_id')}
           WHEN 'OPTED_OUT' THEN 'SKIPPED_ALREADY_OPTED_OUT' ELSE 'SKIPPED_ALREADY_PENDING' END
         WHERE ${open} AND ${state('t', 'i.scope', 'i.target_id')} IN ('OPTED_OUT', 'PENDING')`,
      `UPDATE items AS i SET disposition = 'SKIPPED_COVERED_BY_CONSUMER' WHERE ${open}
         AND i.scope = 'CARD' AND i.consumer_id IS NOT NULL
         AND ${state('c', `'CONSUMER'`, 'i.consumer_id')} IN ('OPTED_OUT', 'PENDING')`,
      `UPDATE items AS i SET disposition = 'SKIPPED_PREVIOUSLY_FAILED' WHERE ${open}
         AND ${state('t', 'i.scope', 'i.target_id')} = 'FAILED_PERMANENT'`,
      `UPDATE items AS i SET disposition = 'SUBMIT' WHERE ${open}`,
    ].map((sql) => db.prepare(sql));
    this.queueStmt = db.prepare(
      `INSERT INTO targets (scope, target_id, consumer_id, state, last_batch_id, updated_at)
       SELECT i.scope, i.target_id, i.consumer_id, 'QUEUED', @b, @now FROM items i
        WHERE i.batch_id = @b AND i.origin = 'ROW' AND i.disposition = 'SUBMIT'
       ON CONFLICT (scope, target_id) DO UPDATE SET
         state = 'QUEUED', last_batch_id = excluded.last_batch_id,
         consumer_id = coalesce(excluded.consumer_id, targets.consumer_id), updated_at = excluded.updated_at`,
    );
    const carry = (where: string) =>
      db.prepare(
        `INSERT INTO items (batch_id, origin, scope, target_id, consumer_id, from_batch_id, disposition)
         SELECT @b, 'CARRY_OVER', t.scope, t.target_id, t.consumer_id, t.last_batch_id,
                CASE t.state WHEN 'PENDING' THEN 'POLL' ELSE 'SUBMIT' END
           FROM targets t
          WHERE ${where}
            AND (t.last_batch_id IS NULL OR t.last_batch_id <> @b)
            AND NOT EXISTS (SELECT 1 FROM items s WHERE s.batch_id = @b AND s.scope = t.scope
                              AND s.target_id = t.target_id AND s.disposition IN ('SUBMIT', 'POLL'))
            AND ${NOT_COVERED}
          ORDER BY t.pk`,
      );
    this.carryOverAllStmt = carry(`t.state IN ('QUEUED', 'SUBMITTING', 'FAILED_RETRYABLE', 'PENDING')`);
    this.carryOverFromStmt = carry(
      `t.pk IN (SELECT t2.pk FROM items p JOIN targets t2 ON t2.scope = p.scope AND t2.target_id = p.target_id
                 WHERE p.batch_id = @parent AND p.disposition IN ('SUBMIT', 'POLL'))
       AND (t.state IN ('QUEUED', 'SUBMITTING', 'FAILED_RETRYABLE', 'PENDING') OR (@permanent = 1 AND t.state = 'FAILED_PERMANENT'))`,
    );
    // Carried targets are queued again (pending ones keep their state: they are polled, not resent).
    this.requeueCarriedStmt = db.prepare(
      `UPDATE targets SET last_batch_id = @b, updated_at = @now,
              state = CASE state WHEN 'PENDING' THEN 'PENDING' ELSE 'QUEUED' END
        WHERE pk IN (SELECT t.pk FROM items i JOIN targets t ON t.scope = i.scope AND t.target_id = i.target_id
                      WHERE i.batch_id = @b AND i.origin = 'CARRY_OVER')`,
    );
    this.coverInBatchStmt = db.prepare(
      `UPDATE items AS i SET disposition = 'SKIPPED_COVERED_BY_CONSUMER'
        WHERE i.batch_id = ? AND i.disposition = 'SUBMIT' AND i.scope = 'CARD' AND i.consumer_id IS NOT NULL
          AND (SELECT c.state FROM targets c WHERE c.scope = 'CONSUMER' AND c.target_id = i.consumer_id) IN ('OPTED_OUT', 'PENDING')`,
    );
    this.freezeStmt = db.prepare(
      `UPDATE items SET outcome = (SELECT ${OUTCOME_SQL} FROM items i ${TARGET_JOIN} WHERE i.pk = items.pk)
        WHERE batch_id = ?`,
    );
    this.refreezePendingStmt = db.prepare(
      `UPDATE items SET outcome = (SELECT ${OUTCOME_SQL} FROM items i ${TARGET_JOIN} WHERE i.pk = items.pk)
        WHERE batch_id = ? AND outcome = 'PENDING'`,
    );
    this.countsStmt = db.prepare<[string], { origin: 'ROW' | 'CARRY_OVER'; outcome: Outcome; n: number }>(
      `SELECT i.origin, coalesce(i.outcome, ${OUTCOME_SQL}) AS outcome, count(*) AS n
         FROM items i ${TARGET_JOIN} WHERE i.batch_id = ? GROUP BY 1, 2`,
    );
    // Error details and attempt counts belong to the lines that caused the calls, not to skipped rows.
    this.resultsStmt = db.prepare<[string, number, number], ResultRow & { pk: number }>(
      `SELECT i.pk, i.scope, i.target_id, i.consumer_id, i.reason, coalesce(i.outcome, ${OUTCOME_SQL}) AS outcome,
              t.operation_id,
              CASE WHEN called THEN la.http_status END AS http_status,
              CASE WHEN called THEN la.error_code END AS error_code,
              -- While the target is still in the state this line reports, its note (e.g. "gave up after N
              -- attempts") says more than the last raw answer.
              CASE WHEN called THEN CASE WHEN t.state = coalesce(i.outcome, ${OUTCOME_SQL}) THEN coalesce(t.last_error, la.error) ELSE la.error END END AS error,
              CASE WHEN called THEN (SELECT count(*) FROM attempts a WHERE a.batch_id = i.batch_id AND a.target_pk = t.pk AND a.kind = 'OPT_OUT') ELSE 0 END AS attempts,
              CASE WHEN called THEN la.correlation_id END AS correlation_id,
              CASE i.origin WHEN 'ROW' THEN bi.path ELSE 'carry-over:' || coalesce(i.from_batch_id, '') END AS source_file,
              i.source_line
         FROM (SELECT *, disposition IN ('SUBMIT', 'POLL') AS called FROM items WHERE batch_id = ? AND pk > ? ORDER BY pk LIMIT ?) i
         ${TARGET_JOIN}
         LEFT JOIN batch_inputs bi ON bi.batch_id = i.batch_id AND bi.ord = i.input_ord
         LEFT JOIN attempts la ON la.id = (SELECT max(a.id) FROM attempts a WHERE a.batch_id = i.batch_id AND a.target_pk = t.pk)
        ORDER BY i.pk`,
    );
    this.rejectsStmt = db.prepare<[string, number, number], RejectLine & { rid: number }>(
      `SELECT r.rowid AS rid, bi.path AS source_file, r.source_line, r.error, r.raw FROM rejects r
         JOIN batch_inputs bi ON bi.batch_id = r.batch_id AND bi.ord = r.input_ord
        WHERE r.batch_id = ? AND r.rowid > ? ORDER BY r.rowid LIMIT ?`,
    );
    this.historyStmt = db.prepare<[Scope, string], ItemHistory>(
      `SELECT i.batch_id AS batchId, i.origin,
              CASE i.origin WHEN 'ROW' THEN bi.path ELSE 'carry-over:' || coalesce(i.from_batch_id, '') END AS sourceFile,
              i.source_line AS sourceLine, i.reason, i.disposition, coalesce(i.outcome, ${OUTCOME_SQL}) AS outcome
         FROM items i ${TARGET_JOIN}
         LEFT JOIN batch_inputs bi ON bi.batch_id = i.batch_id AND bi.ord = i.input_ord
        WHERE i.scope = ? AND i.target_id = ?
        ORDER BY i.pk`,
    );
  }

  insertRow(batchId: string, ord: number, r: CardRow): void {
    this.insertRowStmt.run(batchId, r.scope, r.targetId, r.consumerId, r.reason, r.eventTime, r.reference, ord, r.sourceLine);
  }

  insertReject(batchId: string, ord: number, r: RejectRow): void {
    this.insertRejectStmt.run(batchId, ord, r.sourceLine, r.error, r.raw);
  }

  /** Decides every new row's disposition and queues the targets to submit. Run inside one transaction. */
  planRows(batchId: string): void {
    for (const stmt of this.rulesStmts) stmt.run({ b: batchId });
    this.queueStmt.run({ b: batchId, now: nowIso() });
  }

  /** Adds earlier batches' unfinished targets (DESIGN.md §3 carry-over), or one parent's for a rerun. */
  carryOver(batchId: string, from: { parentId: string; includePermanent: boolean } | null): number {
    const added = from
      ? this.carryOverFromStmt.run({ b: batchId, parent: from.parentId, permanent: from.includePermanent ? 1 : 0 }).changes
      : this.carryOverAllStmt.run({ b: batchId }).changes;
    this.requeueCarriedStmt.run({ b: batchId, now: nowIso() });
    return added;
  }

  /** Rule 3 within the batch: cards whose consumer this batch opted out (or left pending) are not called. */
  coverCardsInBatch(batchId: string): number {
    return this.coverInBatchStmt.run(batchId).changes;
  }

  /** Fixes each item's outcome as of the end of the batch, so later batches do not rewrite its report. */
  freezeOutcomes(batchId: string): void {
    this.freezeStmt.run(batchId);
  }

  /** After a later poll, the batch's PENDING lines take their final outcome. */
  refreezePending(batchId: string): number {
    return this.refreezePendingStmt.run(batchId).changes;
  }

  counts(batchId: string): { rows: Partial<Record<Outcome, number>>; carriedOver: Partial<Record<Outcome, number>> } {
    const rows: Partial<Record<Outcome, number>> = {};
    const carriedOver: Partial<Record<Outcome, number>> = {};
    for (const r of this.countsStmt.all(batchId)) {
      const into = r.origin === 'ROW' ? rows : carriedOver;
      into[r.outcome] = (into[r.outcome] ?? 0) + r.n;
    }
    return { rows, carriedOver };
  }

  /**
   * The lines of results.csv in batch order. Read page by page rather than with one open cursor,
   * because the caller awaits between lines and the connection must stay free for other writes.
   */
  *results(batchId: string): Generator<ResultLine> {
    for (let after = 0; ; ) {
      const page = this.resultsStmt.all(batchId, after, PAGE);
      for (const r of page) {
        yield {
          scope: r.scope,
          target_id: r.target_id,
          consumer_id: r.consumer_id ?? '',
          reason: r.reason ?? '',
          outcome: r.outcome,
          operation_id: r.operation_id ?? '',
          http_status: r.http_status == null ? '' : String(r.http_status),
          error_code: r.error_code ?? '',
          error_message: r.error ?? '',
          attempts: r.attempts,
          correlation_id: r.correlation_id ?? '',
          source_file: r.source_file,
          source_line: r.source_line == null ? '' : String(r.source_line),
        };
      }
      const last = page[page.length - 1];
      if (!last) return;
      after = last.pk;
    }
  }

  *rejects(batchId: string): Generator<RejectLine> {
    for (let after = 0; ; ) {
      const page = this.rejectsStmt.all(batchId, after, PAGE);
      for (const { rid: _, ...line } of page) yield line;
      const last = page[page.length - 1];
      if (!last) return;
      after = last.rid;
    }
  }

  history(scope: Scope, targetId: string): ItemHistory[] {
    return this.historyStmt.all(scope, targetId);
  }
}
