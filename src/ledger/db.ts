import Database from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, openSync, readSync } from 'node:fs';
import { UsageError } from '../errors.js';
import { ensurePrivateFile } from '../private-file.js';
import { MIGRATIONS } from './migrations.js';

export type Db = Database.Database;

export interface OpenOptions {
  /** Read-only commands (status, show, report, dry runs) must not create or change the ledger. */
  readonly?: boolean;
}

/** Opens (creating when allowed) the ledger file, private to its user, migrated to the latest version. */
export function openDb(path: string, opts: OpenOptions = {}): Db {
  if (opts.readonly) {
    if (!existsSync(path)) throw new Error(`ledger ${path} does not exist yet: no batch has run against it`);
    refuseOtherFile(path);
    const db = new Database(path, { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 5000');
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version !== MIGRATIONS.length) {
      db.close();
      throw new Error(`ledger ${path} is at schema version ${version}, this build expects ${MIGRATIONS.length}; run the job once to migrate it`);
    }
    return db;
  }
  refuseOtherFile(path);
  ensurePrivateFile(path, 'config key ledger');
  const db = new Database(path);
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
  migrate(db);
  return db;
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
 * An in-memory copy of the ledger (or an empty one) for `--dry-run`: the real pipeline plans
 * against it, and the file on disk is never written.
 */
export function openCopy(path: string): Db {
  let db: Db;
  if (existsSync(path)) {
    refuseOtherFile(path);
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
  } else {
    db = new Database(':memory:');
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
