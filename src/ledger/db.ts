import Database from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readSync, rmSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { UsageError } from '../errors.js';
import { ensurePrivateFile } from '../private-file.js';
import { MIGRATIONS } from './migrations.js';

export type Db = Database.Database;

export interface OpenOptions {
  /** Read-only commands (status, show, report, dry runs) must not create or change the ledger. */
  readonly?: boolean;
  /** `d1-optout init` only: make a new ledger, refused when one exists. Nothing else ever creates one. */
  create?: boolean;
}

/** What every command that finds no ledger says: run, rerun and poll never make one (docs/design.md §12). */
function noLedger(path: string): string {
  return `no ledger at ${path}; create it with \`d1-optout init\``;
}

const RESTORE = 'nothing was sent; restore the latest backup of the ledger';

/** Opens the ledger file, private to its user, checked and migrated to the latest version; `create` makes it. */
export function openDb(path: string, opts: OpenOptions = {}): Db {
  if (opts.readonly) {
    requireLedgerFile(path);
    refuseOtherFile(path);
    const db = new Database(path, { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 5000');
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version !== MIGRATIONS.length) {
      db.close();
      throw new Error(`ledger ${path} is at schema version ${version}, this build expects ${MIGRATIONS.length}; run the job once to migrate it`);
    }
    // status, show and report too: with the 16 MiB default their peak memory grew with what they
    // read (a report of a 100,000-row batch in a 10,000,000-item ledger: 120 MiB, against 82 MiB
    // for a 100-row one; status 95 MiB against 81 MiB, counting the targets).
    limitCache(db);
    return db;
  }
  if (opts.create) createLedgerFile(path);
  else requireLedgerFile(path);
  refuseOtherFile(path);
  ensurePrivateFile(path, 'config key ledger');
  let db: Db | null = null;
  try {
    db = new Database(path);
    // WAL lets status/show read while a run writes; FULL makes every commit durable, because a lost
    // success is a card opted out twice and a lost attempt is an audit question nobody can answer.
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    limitCache(db);
    // SQLite gives a new -wal/-shm the database file's mode; one left by a crash keeps its own.
    for (const suffix of ['-wal', '-shm']) {
      if (existsSync(path + suffix)) chmodSync(path + suffix, 0o600);
    }
    // A damaged ledger would dedupe against half a history: found before anything relies on it.
    const problem = quickCheck(db);
    if (problem) throw new UsageError(`ledger ${path} is damaged (quick_check: ${problem}); ${RESTORE}`);
    migrate(db);
    return db;
  } catch (err) {
    db?.close();
    if (opts.create) removeNewLedger(path);
    throw unreadable(err, path);
  }
}

/** An `init` that failed half-way leaves no file behind that a later run would take for a ledger. */
export function removeNewLedger(path: string): void {
  for (const f of [path, `${path}-wal`, `${path}-shm`]) rmSync(f, { force: true });
}

/** PRAGMA quick_check's first complaint, on one line; null when the ledger is sound. */
export function quickCheck(db: Db): string | null {
  const rows = db.pragma('quick_check') as { quick_check: string }[];
  const first = rows[0]?.quick_check ?? 'no answer';
  if (first === 'ok') return null;
  const line = first.replace(/\s+/g, ' ').trim();
  return (line.length > 160 ? `${line.slice(0, 159)}…` : line) + (rows.length > 1 ? ` (and ${rows.length - 1} more)` : '');
}

/** SQLite's own failures on a ledger file, as the one line an operator acts on; other errors pass through. */
export function unreadable(err: unknown, path: string): unknown {
  const code = (err as { code?: unknown }).code;
  if (err instanceof UsageError || typeof code !== 'string' || !code.startsWith('SQLITE_')) return err;
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') {
    return new UsageError(`ledger ${path} is damaged (${code}: ${(err as Error).message}); ${RESTORE}`, { cause: err });
  }
  if (code.startsWith('SQLITE_CANTOPEN') || code.startsWith('SQLITE_IOERR') || code === 'SQLITE_PERM' || code.startsWith('SQLITE_READONLY')) {
    return new UsageError(`ledger ${path} cannot be read or written (${code}); check its owner and mode; if the file is lost, ${RESTORE}`, { cause: err });
  }
  return err;
}

/** run, rerun, poll and the read-only commands: a ledger must be there already. */
function requireLedgerFile(path: string): void {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new UsageError(noLedger(path));
    throw new UsageError(`ledger ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}); check its owner and mode`);
  }
  // An empty file is no ledger; it may be one that something truncated.
  if (size === 0) {
    throw new UsageError(`ledger ${path} is an empty file: if it held history, ${RESTORE}; otherwise remove it and create the ledger with \`d1-optout init\``);
  }
}

/**
 * `init`: the ledger file, created exclusively (a file or symlink already there is refused, not
 * reused), with its own folder (0700) when that is missing, and nothing above it: a mistyped path
 * fails here instead of growing a tree.
 */
function createLedgerFile(path: string): void {
  const dir = dirname(path);
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UsageError(`config key ledger: ${path}: the folder above ${dir} does not exist; check the path, or create it first`);
    if (code !== 'EEXIST') throw new UsageError(`config key ledger: the folder ${dir} cannot be created (${code ?? 'error'})`);
  }
  try {
    closeSync(openSync(path, 'wx', 0o600));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      throw new UsageError(`a ledger already exists at ${path}; init never touches an existing ledger (to move it to this config deliberately: d1-optout init --rebind)`);
    }
    throw new UsageError(`config key ledger: ${path} cannot be created (${code ?? 'error'}); check that this user may write there`);
  }
}

/**
 * SQLite's page cache, for the ledger and for the temp tables a file is staged in, in SQLite's
 * negative-means-KiB form. better-sqlite3's 16 MiB default fills on every large night and stays
 * filled, the part of the job's memory that grew with the file; it buys little here, because the
 * ledger's lookups by card id range over far more pages than any cache we would allow, its writes
 * are appends, and the OS page cache serves the misses. Measured with the bench's ingest worker
 * (1M rows): 16 MiB → 4 MiB costs about 3% of ingest time and takes peak RSS from 147 to 106 MiB.
 */
const CACHE_SIZE = -4096;

function limitCache(db: Db): void {
  db.pragma(`cache_size = ${CACHE_SIZE}`);
  db.pragma(`temp.cache_size = ${CACHE_SIZE}`);
}

const SQLITE_HEADER = Buffer.from('SQLite format 3\0', 'latin1');

/**
 * A `ledger` setting that points at some other file (a card file, the config) is a config
 * mistake: refused with exit 2 before the file is touched, not a crash half-way through opening it.
 * A missing or empty file is a ledger yet to be made.
 */
function refuseOtherFile(path: string): void {
  let head: Buffer;
  try {
    const fd = openSync(path, 'r');
    try {
      head = Buffer.alloc(SQLITE_HEADER.length);
      head = head.subarray(0, readSync(fd, head, 0, head.length, 0));
    } finally {
      closeSync(fd);
    }
  } catch {
    return; // missing or unreadable: creating or opening it reports that
  }
  if (head.length > 0 && !head.equals(SQLITE_HEADER)) {
    throw new UsageError(`config key ledger: ${path} is not a SQLite database, so it is no d1-optout ledger; check the path`);
  }
}

/**
 * The ledger as it is, for `check`: read-only, at whatever schema version it has, nothing migrated
 * or written. Missing, empty or not SQLite at all is refused like everywhere else.
 */
export function openForInspection(path: string): Db {
  requireLedgerFile(path);
  refuseOtherFile(path);
  try {
    const db = new Database(path, { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 5000');
    return db;
  } catch (err) {
    throw unreadable(err, path);
  }
}

export const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * An in-memory copy of the ledger for `--dry-run`: the real pipeline plans
 * against it, and the file on disk is never written.
 */
export function openCopy(path: string): Db {
  requireLedgerFile(path);
  refuseOtherFile(path);
  let db: Db;
  const src = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const image = src.serialize();
    // The image still says "WAL" in its header (bytes 18-19), which an in-memory database
    // cannot be; mark it as a rollback-journal database.
    image[18] = 1;
    image[19] = 1;
    db = new Database(image);
  } finally {
    src.close();
  }
  // A dry run stages the files it plans in temp tables like a run does.
  limitCache(db);
  migrate(db);
  return db;
}

function migrate(db: Db): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > MIGRATIONS.length) {
    throw new UsageError(`ledger schema version ${version} is newer than this build knows (${MIGRATIONS.length}); use a newer d1-optout`);
  }
  if (version === MIGRATIONS.length) return;
  // SQLite's way to change a table (a CHECK, say) is to rebuild it, which drops a table others
  // reference: foreign keys are off meanwhile (the pragma is ignored inside a transaction) and
  // checked as a whole before each migration commits.
  const foreignKeys = db.pragma('foreign_keys', { simple: true }) === 1;
  db.pragma('foreign_keys = OFF');
  try {
    for (let v = version; v < MIGRATIONS.length; v++) {
      const sql = MIGRATIONS[v]!;
      db.transaction(() => {
        db.exec(sql);
        const broken = db.pragma('foreign_key_check') as unknown[];
        if (broken.length > 0) throw new Error(`ledger migration ${v + 1} would break ${broken.length} reference(s); nothing was changed`);
        db.pragma(`user_version = ${v + 1}`);
      })();
    }
  } finally {
    if (foreignKeys) db.pragma('foreign_keys = ON');
  }
}

export function nowIso(): string {
  return new Date().toISOString();
}
