import type Database from 'better-sqlite3';
import type { CardRow, RejectRow } from '../types.js';
import { nowIso, type Db } from './db.js';

/** Rows per staging statement: binding is most of what a staged row costs. */
const STAGE_ROWS = 50;
const ROW_COLUMNS = 7;

/**
 * The rules of docs/design.md §3 that need only the ledger (rules 1, 2, 4 and 5, in order), for the
 * first row of a target in a file: `t` is the target, `@maxPk` the highest pk before the file's
 * new targets were created. Rule 3 (a card covered by its consumer) is applied to the whole batch
 * just before its cards are sent (Items.coverCardsInBatch), when the consumers of this very batch
 * have been opted out too; it outranks rule 4 there, as the order of the rules says.
 */
const DISPOSITION_OF_FIRST_ROW = `CASE
  WHEN t.pk > @maxPk THEN 'SUBMIT'
  WHEN t.seen_batch_id = @b THEN 'SKIPPED_DUPLICATE'
  WHEN t.state = 'OPTED_OUT' THEN 'SKIPPED_ALREADY_OPTED_OUT'
  WHEN t.state = 'NOT_ENROLLED' THEN 'SKIPPED_NOT_ENROLLED'
  WHEN t.state = 'PENDING' THEN 'SKIPPED_ALREADY_PENDING'
  WHEN t.state = 'FAILED_PERMANENT' THEN 'SKIPPED_PREVIOUSLY_FAILED'
  ELSE 'SUBMIT' END`;

/**
 * Admits a card file into the ledger (the "ledger.ingest (dedupe)" of docs/design.md §1).
 *
 * The rows of the file being read wait in a temp table, and when the file ends they are admitted
 * together, in one transaction with the file's INGESTED mark: a file is wholly in the ledger or
 * not at all, and a kill half-way leaves nothing to undo (the temp table dies with the process).
 *
 * Admitting them together is what makes a large file cheap. Card ids are random, so admitting rows
 * one by one in file order inserts into the targets' unique index at random places: a 1M-row
 * file took about 20 s that way, most of it spent on index pages missing from the cache and
 * written again at every commit. Here the rows are sorted once (an index on the temp table), new targets go in in
 * key order, each row finds its target in key order too, and a small map (row → target) is sorted
 * back into file order for the items. New targets therefore get their pks, and so their turn to
 * be sent, in key order.
 */
export class Intake {
  private ready = false;
  private stageMany!: Database.Statement;
  private stageOne!: Database.Statement;
  private stageRejectStmt!: Database.Statement;
  private readonly args: unknown[] = new Array(STAGE_ROWS * ROW_COLUMNS);

  constructor(private readonly db: Db) {}

  /**
   * Starts a file: creates the connection's temp tables on first use (read-only commands never
   * need them) and empties them. Call outside any transaction, so that a rolled-back one cannot
   * take the tables with it.
   */
  begin(): void {
    if (this.ready) {
      this.discard();
      return;
    }
    this.db.exec(`
      CREATE TEMP TABLE IF NOT EXISTS staged_rows (
        seq INTEGER PRIMARY KEY, scope TEXT NOT NULL, target_id TEXT NOT NULL, consumer_id TEXT,
        reason TEXT, event_time TEXT, reference TEXT, source_line INTEGER);
      CREATE TEMP TABLE IF NOT EXISTS staged_rejects (source_line INTEGER NOT NULL, error TEXT NOT NULL, raw TEXT NOT NULL);
      CREATE TEMP TABLE IF NOT EXISTS row_targets (seq INTEGER NOT NULL, pk INTEGER NOT NULL, disposition TEXT NOT NULL);
    `);
    const insert = `INSERT INTO temp.staged_rows (scope, target_id, consumer_id, reason, event_time, reference, source_line) VALUES `;
    const values = `(?, ?, ?, ?, ?, ?, ?)`;
    this.stageMany = this.db.prepare(insert + Array(STAGE_ROWS).fill(values).join(', '));
    this.stageOne = this.db.prepare(insert + values);
    this.stageRejectStmt = this.db.prepare(`INSERT INTO temp.staged_rejects (source_line, error, raw) VALUES (?, ?, ?)`);
    this.ready = true;
    this.discard();
  }

  /** Keeps rows and rejects of the file being read until `admit`. */
  stage(rows: readonly CardRow[], rejects: readonly RejectRow[]): void {
    this.mustHaveBegun();
    this.db.transaction(() => {
      const args = this.args;
      let i = 0;
      for (; i + STAGE_ROWS <= rows.length; i += STAGE_ROWS) {
        for (let k = 0; k < STAGE_ROWS; k++) {
          const r = rows[i + k]!;
          const o = k * ROW_COLUMNS;
          args[o] = r.scope;
          args[o + 1] = r.targetId;
          args[o + 2] = r.consumerId;
          args[o + 3] = r.reason;
          args[o + 4] = r.eventTime;
          args[o + 5] = r.reference;
          args[o + 6] = r.sourceLine;
        }
        this.stageMany.run(args);
      }
      for (; i < rows.length; i++) {
        const r = rows[i]!;
        this.stageOne.run(r.scope, r.targetId, r.consumerId, r.reason, r.eventTime, r.reference, r.sourceLine);
      }
      for (const j of rejects) this.stageRejectStmt.run(j.sourceLine, j.error, j.raw);
    })();
  }

  /**
   * Admits the staged rows as input `ord` of the batch: every row's target is recorded (a new one
   * queued as this batch's work), every row gets its item and disposition, every reject its line.
   * Call inside the transaction that marks the file INGESTED. Foreign keys must be off (see
   * Ledger.bulkTx): each item joins its target here, and checking that again per item would look up
   * the targets in file order, the random order this avoids.
   */
  admit(batchId: string, ord: number): void {
    this.mustHaveBegun();
    const db = this.db;
    const b = batchId;
    const { maxPk } = db.prepare<[], { maxPk: number }>(`SELECT coalesce(max(pk), 0) AS maxPk FROM targets`).get()!;
    db.exec(`CREATE INDEX temp.staged_rows_key ON staged_rows (scope, target_id, seq, consumer_id)`);
    // Statements naming the index are prepared after it exists.
    db.prepare(
      `INSERT INTO targets (scope, target_id, consumer_id, state, last_batch_id, seen_batch_id, updated_at)
       SELECT scope, target_id, consumer_id, 'QUEUED', @b, @b, @now FROM temp.staged_rows INDEXED BY staged_rows_key
        WHERE true ORDER BY scope, target_id, seq
       ON CONFLICT (scope, target_id) DO NOTHING`,
    ).run({ b, now: nowIso() });
    // Each row's target and disposition; a target's later rows in the file are duplicates.
    db.prepare(
      `INSERT INTO temp.row_targets (seq, pk, disposition)
       SELECT s.seq, t.pk,
              CASE WHEN s.seq > (SELECT min(f.seq) FROM temp.staged_rows f WHERE f.scope = s.scope AND f.target_id = s.target_id)
                   THEN 'SKIPPED_DUPLICATE' ELSE ${DISPOSITION_OF_FIRST_ROW} END
         FROM temp.staged_rows s INDEXED BY staged_rows_key
         JOIN targets t ON t.scope = s.scope AND t.target_id = s.target_id
        ORDER BY s.scope, s.target_id, s.seq`,
    ).run({ b, maxPk });
    // Written in key order, read in file order: sorted once into an index rather than inserted by
    // seq, whose random order costs a cache miss per row once the map outgrows the cache.
    db.exec(`CREATE INDEX temp.row_targets_seq ON row_targets (seq, pk, disposition)`);
    // Targets the ledger knew and this batch submits again: its work, with the row's consumer.
    db.prepare(
      `UPDATE targets SET seen_batch_id = @b, state = 'QUEUED', last_batch_id = @b,
              consumer_id = coalesce(s.consumer_id, targets.consumer_id), updated_at = @now
         FROM temp.row_targets r JOIN temp.staged_rows s ON s.seq = r.seq
        WHERE targets.pk = r.pk AND r.pk <= @maxPk AND r.disposition = 'SUBMIT'`,
    ).run({ b, maxPk, now: nowIso() });
    // The other targets the ledger knew are only seen by this batch. Most rows of a cumulative
    // daily extract are such: one UPDATE ... FROM for all of them (as before) spent most of its
    // time joining each to its staged row, and took 3.4 s for 990,000 known rows where this takes 0.6 s.
    db.prepare(
      `UPDATE targets SET seen_batch_id = @b
        WHERE pk IN (SELECT r.pk FROM temp.row_targets r WHERE r.pk <= @maxPk AND r.disposition NOT IN ('SUBMIT', 'SKIPPED_DUPLICATE'))`,
    ).run({ b, maxPk });
    db.prepare(
      `INSERT INTO items (batch_id, origin, target_pk, scope, target_id, consumer_id, reason, event_time, reference, input_ord, source_line, disposition)
       SELECT @b, 'ROW', r.pk, s.scope, s.target_id, s.consumer_id, s.reason, s.event_time, s.reference, @ord, s.source_line, r.disposition
         FROM temp.staged_rows s JOIN temp.row_targets r INDEXED BY row_targets_seq ON r.seq = s.seq
        ORDER BY s.seq`,
    ).run({ b, ord });
    db.prepare(
      `INSERT INTO rejects (batch_id, input_ord, source_line, error, raw)
       SELECT @b, @ord, source_line, error, raw FROM temp.staged_rejects ORDER BY rowid`,
    ).run({ b, ord });
    this.discard();
  }

  /** Forgets what is staged (after `admit`, or when a file cannot be read or admitted). */
  discard(): void {
    if (!this.ready) return;
    this.db.exec(`
      DROP INDEX IF EXISTS temp.staged_rows_key;
      DROP INDEX IF EXISTS temp.row_targets_seq;
      DELETE FROM temp.staged_rows;
      DELETE FROM temp.staged_rejects;
      DELETE FROM temp.row_targets;
    `);
  }

  private mustHaveBegun(): void {
    if (!this.ready) throw new Error('Intake: begin() a file before staging or admitting it');
  }
}
