import type { BatchKind, BatchRecord, BatchStatus, InboxOutcome } from '../types.js';
import { nowIso, type Db } from './db.js';

interface BatchRow {
  id: string;
  kind: BatchKind;
  parent_id: string | null;
  started_at: string;
  ended_at: string | null;
  status: BatchStatus;
  abort_reason: string | null;
  stats: string;
}

export interface BatchInfo extends BatchRecord {
  abortReason: string | null;
  stats: Record<string, unknown>;
}

function toRecord(r: BatchRow): BatchInfo {
  return {
    id: r.id,
    kind: r.kind,
    parentId: r.parent_id,
    startedAt: r.started_at,
    endedAt: r.ended_at,
    status: r.status,
    abortReason: r.abort_reason,
    stats: JSON.parse(r.stats) as Record<string, unknown>,
  };
}

export class Batches {
  private readonly insertStmt;
  private readonly getStmt;
  private readonly finishStmt;
  private readonly listStmt;
  private readonly lastStmt;
  private readonly runningStmt;
  private readonly inboxStmt;
  private readonly archivedStmt;

  constructor(db: Db) {
    this.insertStmt = db.prepare(
      `INSERT INTO batches (id, kind, parent_id, started_at, status) VALUES (?, ?, ?, ?, 'RUNNING')`,
    );
    this.getStmt = db.prepare<[string], BatchRow>(`SELECT * FROM batches WHERE id = ?`);
    // Merged into what is there: the inbox outcome is recorded before the batch finishes.
    this.finishStmt = db.prepare(
      `UPDATE batches SET status = ?, ended_at = ?, abort_reason = ?, stats = json_patch(stats, ?) WHERE id = ?`,
    );
    this.inboxStmt = db.prepare(`UPDATE batches SET stats = json_set(stats, '$.inbox', json(?)) WHERE id = ?`);
    this.archivedStmt = db.prepare(`UPDATE batches SET stats = json_set(stats, '$.archived', json(?)) WHERE id = ?`);
    this.listStmt = db.prepare<[number], BatchRow>(`SELECT * FROM batches ORDER BY started_at DESC, rowid DESC LIMIT ?`);
    this.lastStmt = db.prepare<[], BatchRow>(`SELECT * FROM batches ORDER BY started_at DESC, rowid DESC LIMIT 1`);
    this.runningStmt = db.prepare<[], BatchRow>(`SELECT * FROM batches WHERE status = 'RUNNING' ORDER BY started_at`);
  }

  create(id: string, kind: BatchKind, parentId: string | null): void {
    this.insertStmt.run(id, kind, parentId, nowIso());
  }

  get(id: string): BatchInfo | undefined {
    const r = this.getStmt.get(id);
    return r ? toRecord(r) : undefined;
  }

  last(): BatchInfo | undefined {
    const r = this.lastStmt.get();
    return r ? toRecord(r) : undefined;
  }

  list(limit: number): BatchInfo[] {
    return this.listStmt.all(limit).map(toRecord);
  }

  /** Batches still marked RUNNING: with the lock held by us, these were left by a process that died. */
  running(): BatchInfo[] {
    return this.runningStmt.all().map(toRecord);
  }

  /** Records the files the batch left in the inbox or quarantined (docs/design.md §11), replacing what was recorded. */
  recordInbox(id: string, outcome: InboxOutcome): void {
    this.inboxStmt.run(JSON.stringify(outcome), id);
  }

  /** What `recordInbox` recorded for the batch; nothing for a rerun or a batch of a ledger older than this. */
  inboxOf(id: string): InboxOutcome {
    const inbox = this.get(id)?.stats['inbox'] as Partial<InboxOutcome> | undefined;
    return { deferred: inbox?.deferred ?? [], quarantined: inbox?.quarantined ?? [] };
  }

  /** Records where an input file of the batch was archived to; `path` as the batch's inputs name it. */
  recordArchived(id: string, path: string, archivedTo: string): void {
    const archived = this.archivedOf(id);
    archived[path] = archivedTo;
    this.archivedStmt.run(JSON.stringify(archived), id);
  }

  /** Input path → archive path, for the batch's inputs that were moved to the archive. */
  archivedOf(id: string): Record<string, string> {
    return { ...((this.get(id)?.stats['archived'] as Record<string, string> | undefined) ?? {}) };
  }

  finish(id: string, status: BatchStatus, abortReason: string | null, stats: Record<string, unknown>): void {
    this.finishStmt.run(status, nowIso(), abortReason, JSON.stringify(stats), id);
  }
}
