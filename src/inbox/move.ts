import { randomBytes } from 'node:crypto';
import { closeSync, constants, fchmodSync, fsyncSync, linkSync, mkdirSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { maskPath } from '../cards/pan.js';
import type { Logger } from '../log.js';
import { folderProblem, openExclusive } from '../private-file.js';
import type { QuarantinedFile } from '../types.js';
import type { InboxEntry } from './list.js';
import { fileStamp, sameStamp, type FileStamp } from './stamp.js';

const errCode = (err: unknown) => (err as NodeJS.ErrnoException).code ?? (err as Error).message;

/** Copies `src` into a new file `dest` (0600, never an existing file or through a link), fsync'ed; false when `dest` exists. */
function copyExclusive(src: string, dest: string): boolean {
  let out: number;
  try {
    out = openExclusive(dest, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    const input = openSync(src, 'r');
    try {
      const buf = Buffer.allocUnsafe(1 << 20);
      for (let n; (n = readSync(input, buf, 0, buf.length, null)) > 0; ) {
        for (let off = 0; off < n; ) off += writeSync(out, buf, off, n - off);
      }
    } finally {
      closeSync(input);
    }
    fsyncSync(out);
  } catch (err) {
    closeSync(out);
    unlinkSync(dest); // a partial copy is no archived file
    throw err;
  }
  closeSync(out);
  return true;
}

/**
 * Puts `src` at `dest` unless something is there already (false then): a hard link, which never
 * replaces a file the way rename does; across filesystems (or where links are refused) a copy
 * made exclusively, 0600 from its creation, and fsync'ed before the source goes.
 */
function placeAt(src: string, dest: string): boolean {
  try {
    linkSync(src, dest);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EMLINK') throw err;
  }
  return copyExclusive(src, dest);
}

/**
 * Makes a card file 0600 through its descriptor, never by path (a link swapped in at the name
 * would be followed). A symlink in the inbox is left as it is: its mode is not its own.
 */
function makePrivate(path: string): void {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') return;
    throw err;
  }
  try {
    fchmodSync(fd, 0o600);
  } finally {
    closeSync(fd);
  }
}

/**
 * Takes the file `path` names out from under the name, atomically, to a hidden name beside it:
 * whatever upstream delivers under the name from then on is a new file, never the one being moved.
 * The hidden name still ends like a card file, so a run killed before the file is placed leaves
 * it for the next run to read (or to skip as already ingested), not lost.
 */
function setAside(path: string): string {
  const aside = join(dirname(path), `.moving-${randomBytes(6).toString('hex')}-${basename(path)}`);
  renameSync(path, aside);
  return aside;
}

/** Puts a set-aside file back under its name without replacing anything; returns where it is now. */
function putBack(aside: string, path: string): string {
  try {
    linkSync(aside, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return aside; // a newer delivery has the name: both are kept
    throw err;
  }
  unlinkSync(aside);
  return path;
}

/** What a move did: moved to `dest`, or nothing because the file under the name is not the one that was read (now at `leftAt`). */
type Moved = { dest: string } | { leftAt: string };

/**
 * Moves the file `path` names into `folder`, keeping its name, or `<name>.<batchId>` when the name
 * is taken; the moved card file is 0600. Only the very file that was read moves: when the file
 * under the name is not the one `read` stamped (upstream redelivered it since), it stays in the
 * inbox for the next run. `folder` is created 0700 when missing and must be a real folder of this
 * user's that nobody else may write into (docs/design.md §14), else nothing is moved.
 */
function moveInto(folder: string, path: string, batchId: string, read: FileStamp | 'any'): Moved {
  mkdirSync(folder, { recursive: true, mode: 0o700 });
  const problem = folderProblem(folder);
  if (problem) throw new Error(problem);
  const aside = setAside(path);
  try {
    if (read !== 'any' && !sameStamp(read, fileStamp(aside))) return { leftAt: putBack(aside, path) };
    makePrivate(aside);
    let dest = join(folder, basename(path));
    if (!placeAt(aside, dest)) {
      dest = join(folder, `${basename(path)}.${batchId}`);
      if (!placeAt(aside, dest)) throw Object.assign(new Error(`${dest} exists already`), { code: 'EEXIST' });
    }
    unlinkSync(aside);
    return { dest };
  } catch (err) {
    putBack(aside, path);
    throw err;
  }
}

/** Moves the done-marker of a file along with it; a marker left behind would let a next file of that name in at once. */
function moveMarker(entry: InboxEntry, folder: string, batchId: string, log: Logger): void {
  if (!entry.marker) return;
  try {
    moveInto(folder, entry.marker, batchId, 'any');
  } catch (err) {
    log.warn(`could not move the marker ${maskPath(entry.marker)} to ${folder} (${errCode(err)}); remove it by hand before the next delivery of that name`);
  }
}

/** The warning for a file redelivered under its name since it was read: the new one is left for the next run, its marker with it. */
function redelivered(entry: InboxEntry, leftAt: string, log: Logger): void {
  log.warn(`${maskPath(entry.path)} was replaced after it was read; the new file was not moved and stays in the inbox as ${maskPath(leftAt)} for the next run`);
}

/**
 * Moves an ingested file (and its marker) to the archive; returns where it now is, or null when it
 * was not moved. `read` is the stamp of the file whose rows were taken: only that file moves. A
 * file that cannot be moved stays in the inbox, which is harmless: the ledger knows its sha256, so
 * the next run reports it as seen and does not read it again; and a file redelivered under the
 * name since it was read is a new file, read by the next run.
 */
export function archiveFile(entry: InboxEntry, read: FileStamp, archive: string, batchId: string, log: Logger): string | null {
  let moved: Moved;
  try {
    moved = moveInto(archive, entry.path, batchId, read);
  } catch (err) {
    log.warn(`could not move ${maskPath(entry.path)} to the archive ${archive} (${errCode(err)}); it stays in the inbox and the next run skips it as already ingested`);
    return null;
  }
  if ('leftAt' in moved) {
    redelivered(entry, moved.leftAt, log);
    return null;
  }
  moveMarker(entry, archive, batchId, log);
  return moved.dest;
}

/** An inbox file the card file check refused, with the check's words and the stamp of the file it inspected. */
export interface UnreadableFile extends InboxEntry {
  problem: string;
  inspected: FileStamp;
}

/**
 * Moves each unreadable file (and its marker) to `folder`, so that it stops no later night and
 * waits there for a person (docs/design.md §11). With `folder` null (a dry run) nothing is moved.
 * A file that cannot be moved, or that was replaced since it was inspected, stays in the inbox
 * and is reported all the same.
 */
export function quarantineFiles(files: readonly UnreadableFile[], folder: string | null, batchId: string, log: Logger): QuarantinedFile[] {
  return files.map((f) => {
    const path = maskPath(f.path);
    const reason = maskPath(f.problem);
    if (folder === null) return { path, reason, movedTo: null };
    try {
      const moved = moveInto(folder, f.path, batchId, f.inspected);
      if ('leftAt' in moved) {
        redelivered(f, moved.leftAt, log);
        return { path, reason, movedTo: null };
      }
      log.warn(`quarantined ${path} (${reason}): moved to ${maskPath(moved.dest)}`);
      moveMarker(f, folder, batchId, log);
      return { path, reason, movedTo: maskPath(moved.dest) };
    } catch (err) {
      log.error(`${path} cannot be read (${reason}) and could not be moved to the quarantine ${folder} (${errCode(err)}); it stays in the inbox`);
      return { path, reason, movedTo: null };
    }
  });
}
