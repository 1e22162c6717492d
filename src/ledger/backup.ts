import Database from 'better-sqlite3';
import { closeSync, fstatSync, fsyncSync, linkSync, lstatSync, openSync, statSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { UsageError } from '../errors.js';
import { hiddenSibling, openExclusive } from '../private-file.js';
import type { Db } from './db.js';

export interface BackupResult {
  path: string;
  bytes: number;
  /** When the copy was taken: it holds every transaction committed before this instant. */
  takenAt: string;
}

/** Pages per backup step: all of them, so the copy is made in one read transaction (see backupLedger). */
const ALL_PAGES = 0x7fffffff;

function code(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
}

/**
 * `backup --to FILE`: a copy of the ledger by SQLite's online backup, safe while a run writes.
 * Copied in one step, the backup reads one WAL snapshot (a writer goes on meanwhile) and the copy
 * is the ledger as it was at one instant; in small steps, every commit of the run would restart it.
 *
 * The copy holds every card the issuer opted out, so it is created like the ledger is: 0600, and
 * never over or through something already there. It is written under a random name created
 * exclusively (O_EXCL|O_NOFOLLOW) beside FILE, checked, then hard-linked to FILE, which fails
 * rather than replace anything that appeared at FILE meanwhile (a file, a planted symlink).
 */
export async function backupLedger(db: Db, to: string): Promise<BackupResult> {
  refuseExisting(to);
  const dir = dirname(to);
  const tmp = hiddenSibling(to, 'tmp');
  let fd: number;
  try {
    fd = openExclusive(tmp, 0o600);
  } catch (err) {
    throw new UsageError(`backup: cannot create a file in ${dir} (${code(err)}); the folder must exist and be writable by this user`);
  }
  try {
    const takenAt = new Date().toISOString();
    await db.backup(tmp, { progress: () => ALL_PAGES });
    checkCopy(tmp);
    // SQLite opened the temp file by name: it must still be the file created above.
    const made = fstatSync(fd);
    const now = lstatSync(tmp);
    if (!now.isFile() || now.ino !== made.ino || now.dev !== made.dev) {
      throw new UsageError(`backup: ${tmp} was replaced while the backup was written; check who else writes in ${dir}`);
    }
    fsyncSync(fd);
    try {
      linkSync(tmp, to);
    } catch (err) {
      if (code(err) === 'EEXIST') refuseExisting(to);
      throw new UsageError(`backup: cannot create ${to} (${code(err)})`);
    }
    fsyncDir(dir);
    return { path: to, bytes: statSync(to).size, takenAt };
  } finally {
    closeSync(fd);
    for (const p of [tmp, `${tmp}-journal`, `${tmp}-wal`, `${tmp}-shm`]) {
      try {
        unlinkSync(p);
      } catch {
        // not there: only the copy itself always is
      }
    }
  }
}

function refuseExisting(to: string): void {
  let exists = true;
  try {
    lstatSync(to);
  } catch {
    exists = false;
  }
  if (exists) throw new UsageError(`backup: ${to} already exists; a backup never replaces a file, give a new name (e.g. with the date)`);
}

/**
 * The copy is a whole ledger by itself: a rollback-journal database (no -wal beside it to lose
 * when it is copied around) that passes SQLite's integrity check.
 */
function checkCopy(path: string): void {
  const copy = new Database(path, { fileMustExist: true });
  try {
    copy.pragma('journal_mode = DELETE');
    const result = copy.pragma('quick_check', { simple: true });
    if (result !== 'ok') throw new Error(`backup: the copy failed SQLite's integrity check (${String(result)}); the ledger itself may be damaged, run PRAGMA integrity_check on it`);
  } finally {
    copy.close();
  }
}

/** Makes the new name itself durable. */
function fsyncDir(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
