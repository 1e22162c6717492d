import type { Outcome, ResultLine, Scope } from '../types.js';
import { nowIso, type Db } from './db.js';
import { NOT_COVERED, OPEN } from './targets.js';

/** What an item's outcome is, from its disposition and its target's state (docs/design.md §4). */
const OUTCOME_SQL = `CASE
  WHEN i.disposition LIKE 'SKIPPED_%' THEN i.disposition
  WHEN t.state = 'QUEUED' THEN 'NOT_ATTEMPTED'
  WHEN t.state = 'SUBMITTING' THEN 'FAILED_RETRYABLE'
  ELSE t.state END`;

const PAGE = 1000;

export interface RejectLine {
  source_file: string;
  source_line: number;
  error: string;
  raw: string;
}

const TARGET_JOIN = `JOIN targets t ON t.pk = i.target_pk`;

/**
 * The condition of the partial index items_left (migration 5), repeated word for word: SQLite
 * uses a partial index only for a query that states its condition.
 */
const LEFT_UNDONE = (alias: string) => `${alias}.outcome IN ('FAILED_RETRYABLE', 'FAILED_PERMANENT', 'NOT_ATTEMPTED', 'PENDING')`;

type Counts = { rows: Partial<Record<Outcome, number>>; carriedOver: Partial<Record<Outcome, number>> };

/** A line of results.csv as `resultsStmt` reads it: its columns, in the SELECT's order. */
type ResultRowArray = [
  pk: number,
  scope: Scope,
  target_id: string,
  consumer_id: string | null,
  reason: string | null,
  outcome: Outcome,
  operation_id: string | null,
  http_status: number | null,
  error_code: string | null,
  error: string | null,
  attempts: number,
  correlation_id: string | null,
  source_file: string,
  source_line: number | null,
];

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
  private readonly coverInBatchStmt;
  private readonly freezeStmt;
  private readonly refreezePendingStmt;
  private readonly countsStmt;
  private readonly storedCountsStmt;
  private readonly closedStmt;
  private readonly dropCountsStmt;
  private readonly storeCountsStmt;
  private readonly resultsStmt;
  private readonly rejectsStmt;
  private readonly historyStmt;
  private readonly carryOverAllStmt;
  private readonly carryOverFromStmt;
  private readonly permanentOfStmt;
  private readonly requeueCarriedStmt;
  private readonly inDoubtStmt;
  private readonly leftoverStmt;
  private readonly leftBehindStmt;

  constructor(private readonly db: Db) {
    // Targets this batch has no row for but an earlier batch left unfinished (docs/design.md §3):
    // queued, in doubt or retryable ones are sent again, pending ones polled.
    const carry = (where: string) =>
      db.prepare(
        `INSERT INTO items (batch_id, origin, target_pk, scope, target_id, consumer_id, from_batch_id, disposition)
         SELECT @b, 'CARRY_OVER', t.pk, t.scope, t.target_id, t.consumer_id, coalesce(t.last_batch_id, t.seen_batch_id),
                CASE t.state WHEN 'PENDING' THEN 'POLL' ELSE 'SUBMIT' END
           FROM targets t
          WHERE ${where} AND t.last_batch_id IS NOT @b AND ${NOT_COVERED}
          ORDER BY t.pk`,
      );
    this.carryOverAllStmt = carry(OPEN('t'));
    this.carryOverFromStmt = carry(
      `t.pk IN (SELECT p.target_pk FROM items p WHERE p.batch_id = @parent
                  AND (p.disposition IN ('SUBMIT', 'POLL') OR (@permanent = 1 AND p.disposition = 'SKIPPED_PREVIOUSLY_FAILED')))
       AND (${OPEN('t')} OR (@permanent = 1 AND t.state = 'FAILED_PERMANENT'))`,
    );
    this.permanentOfStmt = db.prepare<[string], { pk: number }>(
      `SELECT DISTINCT t.pk FROM items i JOIN targets t ON t.pk = i.target_pk WHERE i.batch_id = ? AND t.state = 'FAILED_PERMANENT'`,
    );
    // Carried targets become this batch's work (pending ones keep their state: they are polled, not resent).
    this.requeueCarriedStmt = db.prepare(
      `UPDATE targets SET last_batch_id = @b, updated_at = @now,
              state = CASE state WHEN 'PENDING' THEN 'PENDING' ELSE 'QUEUED' END
        WHERE pk IN (SELECT target_pk FROM items WHERE batch_id = @b AND origin = 'CARRY_OVER')`,
    );
    this.coverInBatchStmt = db.prepare(
      `UPDATE items SET disposition = 'SKIPPED_COVERED_BY_CONSUMER'
        WHERE batch_id = ? AND disposition IN ('SUBMIT', 'SKIPPED_PREVIOUSLY_FAILED') AND scope = 'CARD'
          AND (SELECT c.state FROM targets t JOIN targets c ON c.scope = 'CONSUMER' AND c.target_id = coalesce(items.consumer_id, t.consumer_id)
                WHERE t.pk = items.target_pk) IN ('OPTED_OUT', 'PENDING')`,
    );
    // Still SUBMITTING for this batch: the process stopped between sending and recording the answer.
    // Found from the unfinished targets (targets_open), not from the batch's items: `status` asks
    // this of every batch it lists, and a batch may have 100,000 items and no target in doubt.
    this.inDoubtStmt = db.prepare<[string], { n: number }>(
      `SELECT count(*) AS n FROM targets t CROSS JOIN items i ON i.target_pk = t.pk AND i.batch_id = t.last_batch_id
        WHERE t.last_batch_id = ? AND ${OPEN('t')} AND t.state = 'SUBMITTING' AND i.disposition IN ('SUBMIT', 'POLL')`,
    );
    // What a closed batch left undone (found through items_left), and whether later batches have finished all of it.
    const LEFT = `i.batch_id = @b AND ${LEFT_UNDONE('i')}`;
    this.leftoverStmt = db.prepare<{ b: string }, { leftover: number; open: number | null; later: string | null }>(
      `SELECT count(*) AS leftover, sum(t.state NOT IN ('OPTED_OUT', 'NOT_ENROLLED')) AS open,
              (SELECT lb.id FROM items i INDEXED BY items_left ${TARGET_JOIN} JOIN batches lb ON lb.id = t.last_batch_id
                WHERE ${LEFT} AND lb.id <> @b ORDER BY lb.started_at DESC LIMIT 1) AS later
         FROM items i INDEXED BY items_left ${TARGET_JOIN} WHERE ${LEFT}`,
    );
    this.leftBehindStmt = db.prepare<[string], { id: string }>(
      `SELECT DISTINCT e.batch_id AS id FROM items c JOIN items e ON e.target_pk = c.target_pk
        WHERE c.batch_id = ? AND c.origin = 'CARRY_OVER' AND e.batch_id <> c.batch_id
          AND ${LEFT_UNDONE('e')}`,
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
    this.storedCountsStmt = db.prepare<[string], { origin: 'ROW' | 'CARRY_OVER'; outcome: Outcome; n: number }>(
      `SELECT origin, outcome, n FROM batch_counts WHERE batch_id = ?`,
    );
    this.closedStmt = db.prepare<[string], { closed: number }>(`SELECT status <> 'RUNNING' AS closed FROM batches WHERE id = ?`);
    this.dropCountsStmt = db.prepare(`DELETE FROM batch_counts WHERE batch_id = ?`);
    this.storeCountsStmt = db.prepare(
      `INSERT INTO batch_counts (batch_id, origin, outcome, n)
       SELECT batch_id, origin, outcome, count(*) FROM items WHERE batch_id = ? GROUP BY origin, outcome`,
    );
    // Error details and attempt counts belong to the lines that caused the calls, not to skipped rows.
    // Rows as arrays (raw), in RESULT_ROW order: a 100,000-line report reads a quarter faster
    // without an object per row, and the night's report is written while the operator waits.
    this.resultsStmt = db.prepare<[string, number, number], ResultRowArray>(
      `SELECT i.pk, i.scope, i.target_id, i.consumer_id, i.reason, coalesce(i.outcome, ${OUTCOME_SQL}) AS outcome,
              t.operation_id,
              CASE WHEN called THEN la.http_status END AS http_status,
              CASE WHEN called THEN la.error_code END AS error_code,
              -- While the target is still in the state this line reports, its note (e.g. "gave up after N
              -- attempts") says more than the last raw answer.
              CASE WHEN called THEN CASE WHEN t.state = coalesce(i.outcome, ${OUTCOME_SQL}) THEN coalesce(t.last_error, la.error) ELSE la.error END END AS error,
              CASE WHEN called THEN (SELECT count(*) FROM attempts a WHERE a.target_pk = i.target_pk AND a.batch_id = i.batch_id AND a.kind = 'OPT_OUT') ELSE 0 END AS attempts,
              CASE WHEN called THEN la.correlation_id END AS correlation_id,
              CASE i.origin WHEN 'ROW' THEN bi.path ELSE 'carry-over:' || coalesce(i.from_batch_id, '') END AS source_file,
              i.source_line
         FROM (SELECT *, disposition IN ('SUBMIT', 'POLL') AS called FROM items WHERE batch_id = ? AND pk > ? ORDER BY pk LIMIT ?) i
         ${TARGET_JOIN}
         LEFT JOIN batch_inputs bi ON bi.batch_id = i.batch_id AND bi.ord = i.input_ord
         LEFT JOIN attempts la ON la.id = (SELECT max(a.id) FROM attempts a WHERE a.target_pk = i.target_pk AND a.batch_id = i.batch_id)
        ORDER BY i.pk`,
    ).raw(true);
    this.rejectsStmt = db.prepare<[string, number, number], RejectLine & { rid: number }>(
      `SELECT r.rowid AS rid, bi.path AS source_file, r.source_line, r.error, r.raw FROM rejects r
         JOIN batch_inputs bi ON bi.batch_id = r.batch_id AND bi.ord = r.input_ord
        WHERE r.batch_id = ? AND r.rowid > ? ORDER BY r.rowid LIMIT ?`,
    );
    this.historyStmt = db.prepare<[number], ItemHistory>(
      `SELECT i.batch_id AS batchId, i.origin,
              CASE i.origin WHEN 'ROW' THEN bi.path ELSE 'carry-over:' || coalesce(i.from_batch_id, '') END AS sourceFile,
              i.source_line AS sourceLine, i.reason, i.disposition, coalesce(i.outcome, ${OUTCOME_SQL}) AS outcome
         FROM items i ${TARGET_JOIN}
         LEFT JOIN batch_inputs bi ON bi.batch_id = i.batch_id AND bi.ord = i.input_ord
        WHERE i.target_pk = ?
        ORDER BY i.pk`,
    );
  }

  /** Adds earlier batches' unfinished targets (docs/design.md §3 carry-over), or one parent's for a rerun. */
  carryOver(batchId: string, from: { parentId: string; includePermanent: boolean } | null): number {
    const added = from
      ? this.carryOverFromStmt.run({ b: batchId, parent: from.parentId, permanent: from.includePermanent ? 1 : 0 }).changes
      : this.carryOverAllStmt.run({ b: batchId }).changes;
    this.requeueCarriedStmt.run({ b: batchId, now: nowIso() });
    return added;
  }

  /** The targets of a batch that are FAILED_PERMANENT now (for `rerun --include-permanent`). */
  permanentTargetsOf(batchId: string): number[] {
    return this.permanentOfStmt.all(batchId).map((r) => r.pk);
  }

  /**
   * Rule 3 for the whole batch: cards whose consumer is opted out or pending (by an earlier batch
   * or by this one, whose consumers go first) are not called.
   */
  coverCardsInBatch(batchId: string): number {
    return this.coverInBatchStmt.run(batchId).changes;
  }

  /**
   * The batch's lines whose request may or may not have reached D1 (reported FAILED_RETRYABLE,
   * as the next run sends them again): a killed batch's in-doubt targets.
   */
  inDoubt(batchId: string): number {
    return this.inDoubtStmt.get(batchId)?.n ?? 0;
  }

  /**
   * The latest later batch that sent or polled the targets this batch left undone, once every one
   * of them is final (OPTED_OUT or NOT_ENROLLED); null while any is open or if none was left.
   */
  resolvedBy(batchId: string): string | null {
    const r = this.leftoverStmt.get({ b: batchId });
    return r && r.leftover > 0 && (r.open ?? 0) === 0 ? r.later : null;
  }

  /** Earlier batches that had left undone a target this batch carried over: those it may have resolved. */
  leftBehindBy(batchId: string): string[] {
    return this.leftBehindStmt.all(batchId).map((r) => r.id);
  }

  /**
   * Fixes each item's outcome as of the end of the batch, so later batches do not rewrite its
   * report, and stores the batch's counts of them. Inside the transaction that closes the batch.
   */
  freezeOutcomes(batchId: string): void {
    this.freezeStmt.run(batchId);
    this.storeCounts(batchId);
  }

  /** After a later poll, the batch's PENDING lines take their final outcome, and its stored counts follow. */
  refreezePending(batchId: string): number {
    const changed = this.refreezePendingStmt.run(batchId).changes;
    if (changed > 0) this.storeCounts(batchId);
    return changed;
  }

  /**
   * Stores the counts of the batch's frozen outcomes, replacing those stored before: every change
   * to a closed batch's outcomes calls this in the same transaction (and prune removes them).
   */
  storeCounts(batchId: string): void {
    this.dropCountsStmt.run(batchId);
    this.storeCountsStmt.run(batchId);
  }

  /** Outcome counts of the batch's input rows and carried-over targets: stored once it is closed, counted while it runs. */
  counts(batchId: string): Counts {
    const rows: Partial<Record<Outcome, number>> = {};
    const carriedOver: Partial<Record<Outcome, number>> = {};
    const closed = this.closedStmt.get(batchId)?.closed === 1;
    for (const r of (closed ? this.storedCountsStmt : this.countsStmt).all(batchId)) {
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
      for (const [, scope, targetId, consumerId, reason, outcome, operationId, httpStatus, errorCode, error, attempts, correlationId, sourceFile, sourceLine] of page) {
        yield {
          scope,
          target_id: targetId,
          consumer_id: consumerId ?? '',
          reason: reason ?? '',
          outcome,
          operation_id: operationId ?? '',
          http_status: httpStatus == null ? '' : String(httpStatus),
          error_code: errorCode ?? '',
          error_message: error ?? '',
          attempts,
          correlation_id: correlationId ?? '',
          source_file: sourceFile,
          source_line: sourceLine == null ? '' : String(sourceLine),
        };
      }
      const last = page[page.length - 1];
      if (!last) return;
      after = last[0];
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

  history(targetPk: number): ItemHistory[] {
    return this.historyStmt.all(targetPk);
  }
}
