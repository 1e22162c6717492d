import { existsSync, lstatSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { nowIso, type Db } from './db.js';
import type { Ledger } from './index.js';
import { OPEN } from './targets.js';

/** What a prune removed (or, with `dryRun`, would remove). */
export interface PruneResult {
  dryRun: boolean;
  olderThanDays: number;
  /** Batches that ended before this instant are old enough to prune. */
  cutoff: string;
  /** The batches whose history was removed, oldest first. */
  batches: string[];
  items: number;
  attempts: number;
  rejects: number;
  /** `<reportsDir>/<batchId>/` folders removed, and the bytes their files held. */
  reportFolders: number;
  reportBytes: number;
  /** How much smaller the ledger (file and WAL) is after VACUUM; 0 in a dry run. */
  ledgerBytes: number;
  /** Batches old enough but kept, because a target not yet settled still belongs to them. */
  keptUnsettled: string[];
  /** Set when the lock of a holder that died was taken over to prune. */
  lockWarning: string | null;
}

/** The prune that took away a target's (or a batch's) older history. */
export interface PruneMark {
  prunedAt: string;
  cutoff: string;
  olderThanDays: number;
}

interface Counts {
  items: number;
  attempts: number;
  rejects: number;
}

const DAY_MS = 86_400_000;

/**
 * Retention (docs/design.md §3): the items, attempts and rejects of batches that ended long ago,
 * and their report folders, go; every target's current state stays (dedupe and `show` need it),
 * and so does every batch row (marked with the prune, so "what ran when" stays answerable and
 * `status` keeps listing it). A batch is kept whole while it is RUNNING, ended less than `days`
 * ago, or is still the batch of a target in QUEUED, SUBMITTING, PENDING or FAILED_RETRYABLE:
 * the next run carries that target over from it, and `rerun --batch` and `poll` read its items.
 */
export class Prunes {
  private readonly oldStmt;
  private readonly unsettledStmt;
  private readonly countStmt;
  private readonly insertStmt;
  private readonly markTargetsStmt;
  private readonly deleteItemsStmt;
  private readonly deleteAttemptsStmt;
  private readonly deleteRejectsStmt;
  private readonly deleteCountsStmt;
  private readonly markBatchStmt;
  private readonly prunedBatchesStmt;
  private readonly finishStmt;
  private readonly targetMarkStmt;
  private readonly batchMarkStmt;

  constructor(db: Db) {
    this.oldStmt = db.prepare<[string], { id: string }>(
      `SELECT id FROM batches WHERE pruned_by IS NULL AND status <> 'RUNNING' AND ended_at IS NOT NULL AND ended_at < ?
        ORDER BY started_at, rowid`,
    );
    this.unsettledStmt = db.prepare<[string], { n: number }>(
      `SELECT count(*) AS n FROM targets t WHERE t.last_batch_id = ? AND ${OPEN('t')}`,
    );
    this.countStmt = db.prepare<[string, string, string], Counts>(
      `SELECT (SELECT count(*) FROM items WHERE batch_id = ?) AS items,
              (SELECT count(*) FROM attempts WHERE batch_id = ?) AS attempts,
              (SELECT count(*) FROM rejects WHERE batch_id = ?) AS rejects`,
    );
    this.insertStmt = db.prepare(
      `INSERT INTO prunes (pruned_at, older_than_days, cutoff, batches, items, attempts, rejects) VALUES (?, ?, ?, ?, ?, ?, ?)`,
    );
    this.markTargetsStmt = db.prepare(
      `UPDATE targets SET pruned_by = @prune
        WHERE pk IN (SELECT target_pk FROM items WHERE batch_id = @batch UNION SELECT target_pk FROM attempts WHERE batch_id = @batch)`,
    );
    this.deleteItemsStmt = db.prepare(`DELETE FROM items WHERE batch_id = ?`);
    this.deleteAttemptsStmt = db.prepare(`DELETE FROM attempts WHERE batch_id = ?`);
    this.deleteRejectsStmt = db.prepare(`DELETE FROM rejects WHERE batch_id = ?`);
    // With its rows gone, a pruned batch has no outcome counts either (`status` marks it pruned).
    this.deleteCountsStmt = db.prepare(`DELETE FROM batch_counts WHERE batch_id = ?`);
    this.markBatchStmt = db.prepare(`UPDATE batches SET pruned_by = ? WHERE id = ?`);
    this.prunedBatchesStmt = db.prepare<[], { id: string }>(`SELECT id FROM batches WHERE pruned_by IS NOT NULL`);
    this.finishStmt = db.prepare(`UPDATE prunes SET report_folders = ?, bytes_reclaimed = ? WHERE id = ?`);
    const mark = `SELECT p.pruned_at AS prunedAt, p.cutoff, p.older_than_days AS olderThanDays FROM prunes p`;
    this.targetMarkStmt = db.prepare<[number], PruneMark>(`${mark} JOIN targets t ON t.pruned_by = p.id WHERE t.pk = ?`);
    this.batchMarkStmt = db.prepare<[string], PruneMark>(`${mark} JOIN batches b ON b.pruned_by = p.id WHERE b.id = ?`);
  }

  /** The batches a prune with this cutoff would take, and those it must keep for their unsettled targets. */
  plan(cutoff: string): { prune: string[]; keptUnsettled: string[] } {
    const prune: string[] = [];
    const keptUnsettled: string[] = [];
    for (const { id } of this.oldStmt.all(cutoff)) {
      (this.unsettledStmt.get(id)!.n > 0 ? keptUnsettled : prune).push(id);
    }
    return { prune, keptUnsettled };
  }

  counts(batchId: string): Counts {
    return this.countStmt.get(batchId, batchId, batchId)!;
  }

  /**
   * Removes the history of `batches` and records the prune; one synchronous transaction, to be
   * run inside the ledger's write transaction. Returns the prune's id.
   */
  remove(batches: readonly string[], olderThanDays: number, cutoff: string, total: Counts): number {
    const prune = Number(
      this.insertStmt.run(nowIso(), olderThanDays, cutoff, batches.length, total.items, total.attempts, total.rejects).lastInsertRowid,
    );
    for (const batch of batches) {
      this.markTargetsStmt.run({ prune, batch });
      this.deleteItemsStmt.run(batch);
      this.deleteAttemptsStmt.run(batch);
      this.deleteRejectsStmt.run(batch);
      this.deleteCountsStmt.run(batch);
      this.markBatchStmt.run(prune, batch);
    }
    return prune;
  }

  /** Every batch whose history a prune removed (its report folder goes too, even if an earlier prune was cut short). */
  prunedBatches(): string[] {
    return this.prunedBatchesStmt.all().map((r) => r.id);
  }

  finish(prune: number, reportFolders: number, bytesReclaimed: number): void {
    this.finishStmt.run(reportFolders, bytesReclaimed, prune);
  }

  /** The latest prune that took some of this target's history, if any. */
  ofTarget(pk: number): PruneMark | undefined {
    return this.targetMarkStmt.get(pk);
  }

  ofBatch(batchId: string): PruneMark | undefined {
    return this.batchMarkStmt.get(batchId);
  }
}

/** The instant before which a batch must have ended to be pruned. */
export function pruneCutoff(olderThanDays: number, now: Date = new Date()): string {
  return new Date(now.getTime() - olderThanDays * DAY_MS).toISOString();
}

/** Batch ids are generated (`newBatchId`); anything else is never taken for a folder name. */
const BATCH_ID = /^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{4}-[0-9a-f]{4}$/;

/** A report folder's size, never following a symlink out of it. */
function folderBytes(dir: string): number {
  let bytes = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) bytes += folderBytes(p);
    else bytes += lstatSync(p).size;
  }
  return bytes;
}

/** The report folders of `batches` that exist as real folders, with their size. */
export function reportFolders(reportsDir: string, batches: readonly string[]): { dir: string; bytes: number }[] {
  const found: { dir: string; bytes: number }[] = [];
  for (const id of batches) {
    if (!BATCH_ID.test(id)) continue;
    const dir = join(reportsDir, id);
    let isDir: boolean;
    try {
      isDir = lstatSync(dir).isDirectory();
    } catch {
      continue; // never written, or removed by hand
    }
    if (isDir) found.push({ dir, bytes: folderBytes(dir) });
  }
  return found;
}

export function removeFolders(folders: readonly { dir: string }[]): void {
  for (const f of folders) rmSync(f.dir, { recursive: true, force: true });
}

/** The ledger's size on disk: the file and its write-ahead log. */
export function ledgerSize(path: string): number {
  return [path, `${path}-wal`].reduce((n, p) => n + (existsSync(p) ? statSync(p).size : 0), 0);
}

/**
 * Gives the space of deleted rows back to the file system: VACUUM rewrites the ledger, and in WAL
 * mode the smaller file only reaches the disk when the log is checkpointed and truncated.
 */
export function vacuum(db: Db): void {
  db.exec('VACUUM');
  db.pragma('wal_checkpoint(TRUNCATE)');
}

export interface PruneOptions {
  olderThanDays: number;
  reportsDir: string;
  /** Count what would go, change nothing (the ledger may be opened read-only). */
  dryRun: boolean;
  /** For the lock: a holder silent this long is taken over. */
  staleAfterSec: number;
}

/**
 * `prune`: removes the history of batches that ended more than `olderThanDays` ago (see Prunes),
 * then their report folders, then VACUUMs. It holds the ledger's run lock throughout, so it never
 * runs beside a batch (LockHeldError, exit 3); a dry run takes no lock and writes nothing.
 */
export function pruneLedger(ledger: Ledger, opts: PruneOptions): PruneResult {
  const cutoff = pruneCutoff(opts.olderThanDays);
  const base = { dryRun: opts.dryRun, olderThanDays: opts.olderThanDays, cutoff };
  if (opts.dryRun) {
    const plan = ledger.prunes.plan(cutoff);
    const total = sumCounts(plan.prune.map((b) => ledger.prunes.counts(b)));
    const folders = reportFolders(opts.reportsDir, plan.prune);
    return { ...base, batches: plan.prune, ...total, reportFolders: folders.length, reportBytes: sum(folders.map((f) => f.bytes)), ledgerBytes: 0, keptUnsettled: plan.keptUnsettled, lockWarning: null };
  }
  const lock = ledger.lock(opts.staleAfterSec);
  const lockWarning = lock.acquire('prune');
  try {
    const before = ledgerSize(ledger.path);
    // Planned inside the write transaction: no batch can end or pick up a target in between.
    const { plan, total, prune } = ledger.tx(() => {
      const plan = ledger.prunes.plan(cutoff);
      const total = sumCounts(plan.prune.map((b) => ledger.prunes.counts(b)));
      const prune = plan.prune.length > 0 ? ledger.prunes.remove(plan.prune, opts.olderThanDays, cutoff, total) : null;
      return { plan, total, prune };
    });
    // Rows first, folders after: a prune cut short in between leaves the folders of pruned batches,
    // which the next prune removes (it looks at every pruned batch); the other order could leave
    // a batch whose rows are all there and whose report is gone.
    const folders = reportFolders(opts.reportsDir, ledger.prunes.prunedBatches());
    removeFolders(folders);
    const reportBytes = sum(folders.map((f) => f.bytes));
    let ledgerBytes = 0;
    if (prune !== null) {
      vacuum(ledger.db);
      ledgerBytes = Math.max(0, before - ledgerSize(ledger.path));
      ledger.tx(() => ledger.prunes.finish(prune, folders.length, reportBytes + ledgerBytes));
    }
    return { ...base, batches: plan.prune, ...total, reportFolders: folders.length, reportBytes, ledgerBytes, keptUnsettled: plan.keptUnsettled, lockWarning };
  } finally {
    lock.release();
  }
}

function sum(ns: readonly number[]): number {
  return ns.reduce((a, b) => a + b, 0);
}

function sumCounts(cs: readonly Counts[]): Counts {
  return { items: sum(cs.map((c) => c.items)), attempts: sum(cs.map((c) => c.attempts)), rejects: sum(cs.map((c) => c.rejects)) };
}
