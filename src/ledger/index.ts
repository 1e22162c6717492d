import { Attempts } from './attempts.js';
import { Batches } from './batches.js';
import { GroupCommitter } from './committer.js';
import { openCopy, openDb, removeNewLedger, type Db, type OpenOptions } from './db.js';
import { Files } from './files.js';
import type { LedgerIdentity } from '../types.js';
import { bindOrVerify, rebind, recordInit } from './identity.js';
import { Intake } from './intake.js';
import { Items } from './items.js';
import { LedgerLock } from './lock.js';
import { Prunes } from './prune.js';
import { Targets } from './targets.js';

export type { BatchInfo } from './batches.js';
export type { ItemHistory, RejectLine } from './items.js';
export { COMMIT_MAX_OPS } from './committer.js';
export { identityOf, readHistory, readIdentity } from './identity.js';
export { pruneLedger, type PruneMark, type PruneOptions, type PruneResult } from './prune.js';
export { backupLedger, type BackupResult } from './backup.js';

/** The SQLite ledger: the single source of truth, one module per concern. */
export class Ledger {
  readonly batches: Batches;
  readonly files: Files;
  readonly targets: Targets;
  readonly items: Items;
  readonly intake: Intake;
  readonly attempts: Attempts;
  readonly committer: GroupCommitter;
  readonly prunes: Prunes;

  private constructor(
    readonly db: Db,
    readonly path: string,
  ) {
    this.batches = new Batches(db);
    this.files = new Files(db);
    this.targets = new Targets(db);
    this.items = new Items(db);
    this.intake = new Intake(db);
    this.attempts = new Attempts(db);
    this.committer = new GroupCommitter(db);
    this.prunes = new Prunes(db);
  }

  /** An existing ledger; run, rerun and poll then call `bindTo` before relying on it. */
  static open(path: string, opts: Omit<OpenOptions, 'create'> = {}): Ledger {
    return new Ledger(openDb(path, opts), path);
  }

  /** `d1-optout init`: a new ledger that records whose history it will hold; refused when one exists. */
  static create(path: string, identity: LedgerIdentity): Ledger {
    const ledger = new Ledger(openDb(path, { create: true }), path);
    try {
      recordInit(ledger.db, identity);
    } catch (err) {
      ledger.close();
      removeNewLedger(path);
      throw err;
    }
    return ledger;
  }

  /**
   * Refuses (exit 2) a ledger whose recorded issuer or base URL is not `identity`; binds a ledger
   * older than identities to it, returning the warning to log.
   */
  bindTo(identity: LedgerIdentity): string | null {
    return bindOrVerify(this.db, this.path, identity);
  }

  /** `init --rebind`: the deliberate move to another base URL (never another issuer), kept in the ledger's history. */
  rebindTo(identity: LedgerIdentity, staleAfterSec: number): { previous: LedgerIdentity | null; changed: boolean } {
    // Under the run lock (exit 3 if held): a batch in flight keeps the D1 it started with.
    const lock = this.lock(staleAfterSec);
    lock.acquire('init --rebind');
    try {
      return rebind(this.db, this.path, identity);
    } finally {
      lock.release();
    }
  }

  /** A throw-away in-memory copy, for dry runs. */
  static copyOf(path: string): Ledger {
    return new Ledger(openCopy(path), `${path} (in-memory copy)`);
  }

  lock(staleAfterSec: number, onLost?: () => void): LedgerLock {
    return new LedgerLock(this.db, staleAfterSec, onLost);
  }

  /**
   * Runs `fn` in one synchronous transaction (no await inside: better-sqlite3 forbids it, and so
   * do we). It takes the write lock at BEGIN: a transaction that reads first and writes later
   * cannot wait out another writer (SQLite answers BUSY at once, busy_timeout or not), and one
   * ops command touching the ledger at the wrong moment would abort the night's batch.
   */
  tx<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  /**
   * `tx` with foreign-key checks off, for a bulk write that joins every reference it writes itself
   * (Intake.admit). The pragma cannot change inside a transaction, so it is set around it.
   */
  bulkTx<T>(fn: () => T): T {
    const was = this.db.pragma('foreign_keys', { simple: true }) as number;
    this.db.pragma('foreign_keys = OFF');
    try {
      return this.tx(fn);
    } finally {
      this.db.pragma(`foreign_keys = ${was ? 'ON' : 'OFF'}`);
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
