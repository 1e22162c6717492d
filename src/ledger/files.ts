import { maskPath } from '../cards/pan.js';
import type { InputSummary } from '../types.js';
import { nowIso, type Db } from './db.js';

/**
 * A file's path as the ledger keeps it, and so as every report, `show` and summary shows it: with
 * anything card-number-like masked (docs/design.md §14). Only the archive keeps the name as is.
 */
const storedPath = maskPath;

/** Input files: by content (sha256) across all batches, and the list each batch was given. */
export class Files {
  private readonly ingestedStmt;
  private readonly addInputStmt;
  private readonly startStmt;
  private readonly finishFileStmt;
  private readonly finishInputStmt;
  private readonly inputsStmt;
  private readonly halfStmt;
  private readonly dropFileStmt;
  private readonly dropInputStmt;

  constructor(db: Db) {
    this.ingestedStmt = db.prepare<[string], { first_batch_id: string; path: string }>(
      `SELECT first_batch_id, path FROM files WHERE sha256 = ? AND state = 'INGESTED'`,
    );
    this.addInputStmt = db.prepare(
      `INSERT INTO batch_inputs (batch_id, ord, path, sha256, seen_before) VALUES (?, ?, ?, ?, ?)`,
    );
    // A row left INGESTING by a crash is replaced; a file read again with --force keeps its first
    // ingest on record.
    this.startStmt = db.prepare(
      `INSERT INTO files (sha256, first_batch_id, path, state) VALUES (?, ?, ?, 'INGESTING')
       ON CONFLICT (sha256) DO UPDATE SET first_batch_id = excluded.first_batch_id, path = excluded.path, state = 'INGESTING'
        WHERE files.state = 'INGESTING'`,
    );
    this.finishFileStmt = db.prepare(
      `UPDATE files SET state = 'INGESTED', rows = ?, rejected = ?, ingested_at = ? WHERE sha256 = ? AND state = 'INGESTING'`,
    );
    this.finishInputStmt = db.prepare(`UPDATE batch_inputs SET rows = ?, rejected = ? WHERE batch_id = ? AND ord = ?`);
    this.inputsStmt = db.prepare<
      [string],
      { path: string; sha256: string; rows: number; rejected: number; seen_before: number; first_batch_id: string | null }
    >(
      `SELECT bi.path, bi.sha256, bi.rows, bi.rejected, bi.seen_before, f.first_batch_id
         FROM batch_inputs bi LEFT JOIN files f ON f.sha256 = bi.sha256
        WHERE bi.batch_id = ? ORDER BY bi.ord`,
    );
    this.halfStmt = db.prepare<[string], { ord: number; sha256: string }>(
      `SELECT bi.ord, bi.sha256 FROM batch_inputs bi JOIN files f ON f.sha256 = bi.sha256
        WHERE bi.batch_id = ? AND f.state = 'INGESTING' AND f.first_batch_id = bi.batch_id`,
    );
    this.dropFileStmt = db.prepare(`DELETE FROM files WHERE sha256 = ? AND state = 'INGESTING'`);
    this.dropInputStmt = db.prepare(`DELETE FROM batch_inputs WHERE batch_id = ? AND ord = ?`);
  }

  findIngested(sha256: string): { firstBatchId: string; path: string } | undefined {
    const r = this.ingestedStmt.get(sha256);
    return r ? { firstBatchId: r.first_batch_id, path: r.path } : undefined;
  }

  addInput(batchId: string, ord: number, path: string, sha256: string, seenBefore: boolean): void {
    this.addInputStmt.run(batchId, ord, storedPath(path), sha256, seenBefore ? 1 : 0);
  }

  startIngest(sha256: string, batchId: string, path: string): void {
    this.startStmt.run(sha256, batchId, storedPath(path));
  }

  /** Marks the file ingested; call in the transaction that admits its rows. */
  finishIngest(batchId: string, ord: number, sha256: string, rows: number, rejected: number): void {
    this.finishFileStmt.run(rows, rejected, nowIso(), sha256);
    this.finishInputStmt.run(rows, rejected, batchId, ord);
  }

  inputs(batchId: string): InputSummary[] {
    return this.inputsStmt.all(batchId).map((r) => ({
      path: r.path,
      sha256: r.sha256,
      rows: r.rows,
      rejected: r.rejected,
      seenBefore: r.seen_before === 1,
      firstBatchId: r.first_batch_id,
      archivedTo: null,
    }));
  }

  /**
   * Forgets the files a dead batch was half-way through, so the next run reads them again from
   * the start (the file stays in the inbox until it is INGESTED). Their rows never reached the
   * ledger: a file's rows are admitted in the transaction that marks it INGESTED.
   */
  discardHalfIngested(batchId: string): number {
    const half = this.halfStmt.all(batchId);
    for (const f of half) this.forgetInput(batchId, f.ord, f.sha256);
    return half.length;
  }

  /**
   * Forgets input `ord` of the batch, which it started and did not admit (it changed while it was
   * read, docs/design.md §11): nothing of it stays, and a later run reads it as new.
   */
  forgetInput(batchId: string, ord: number, sha256: string): void {
    this.dropInputStmt.run(batchId, ord);
    this.dropFileStmt.run(sha256);
  }
}
