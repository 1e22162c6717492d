import { chmodSync, closeSync, constants, copyFileSync, fsyncSync, linkSync, lstatSync, mkdirSync, openSync, unlinkSync } from 'node:fs';
import { basename, join } from 'node:path';
import { maskPath } from '../cards/pan.js';
import type { Logger } from '../log.js';
import type { QuarantinedFile } from '../types.js';
import type { InboxEntry } from './list.js';

const errCode = (err: unknown) => (err as NodeJS.ErrnoException).code ?? (err as Error).message;

/**
 * Puts `src` at `dest` unless something is there already (false then): a hard link, which never
 * replaces a file the way rename does; across filesystems (or where links are refused) a copy
 * made exclusively and fsync'ed.
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
  try {
    copyFileSync(src, dest, constants.COPYFILE_EXCL);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  const fd = openSync(dest, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return true;
}

/**
 * Moves `path` into `folder` (created 0700), keeping its name, or `<name>.<batchId>` when the name
 * is taken; the moved card file is made 0600, readable by the job's user only. Returns where it is.
 */
function moveInto(folder: string, path: string, batchId: string): string {
  mkdirSync(folder, { recursive: true, mode: 0o700 });
  let dest = join(folder, basename(path));
  if (!placeAt(path, dest)) {
    dest = join(folder, `${basename(path)}.${batchId}`);
    if (!placeAt(path, dest)) throw Object.assign(new Error(`${dest} exists already`), { code: 'EEXIST' });
  }
  unlinkSync(path);
  // A symlink's mode is not its own (chmod would reach through it to the file it names).
  if (!lstatSync(dest).isSymbolicLink()) chmodSync(dest, 0o600);
  return dest;
}

/** Moves the done-marker of a file along with it; a marker left behind would let a next file of that name in at once. */
function moveMarker(entry: InboxEntry, folder: string, batchId: string, log: Logger): void {
  if (!entry.marker) return;
  try {
    moveInto(folder, entry.marker, batchId);
  } catch (err) {
    log.warn(`could not move the marker ${maskPath(entry.marker)} to ${folder} (${errCode(err)}); remove it by hand before the next delivery of that name`);
  }
}

/**
 * Moves an ingested file (and its marker) to the archive; returns where it now is, or null when it
 * could not be moved. A file that cannot be moved stays in
 * the inbox, which is harmless: the ledger knows its sha256, so the next run reports it as seen
 * and does not read it again.
 */
export function archiveFile(entry: InboxEntry, archive: string, batchId: string, log: Logger): string | null {
  let dest: string;
  try {
    dest = moveInto(archive, entry.path, batchId);
  } catch (err) {
    log.warn(`could not move ${maskPath(entry.path)} to the archive ${archive} (${errCode(err)}); it stays in the inbox and the next run skips it as already ingested`);
    return null;
  }
  moveMarker(entry, archive, batchId, log);
  return dest;
}

/** An inbox file the card file check refused, with the check's words. */
export interface UnreadableFile extends InboxEntry {
  problem: string;
}

/**
 * Moves each unreadable file (and its marker) to `folder`, so that it stops no later night and
 * waits there for a person (docs/design.md §11). With `folder` null (a dry run) nothing is moved.
 * A file that cannot be moved stays in the inbox and is reported all the same.
 */
export function quarantineFiles(files: readonly UnreadableFile[], folder: string | null, batchId: string, log: Logger): QuarantinedFile[] {
  return files.map((f) => {
    const path = maskPath(f.path);
    const reason = maskPath(f.problem);
    if (folder === null) return { path, reason, movedTo: null };
    try {
      const dest = moveInto(folder, f.path, batchId);
      log.warn(`quarantined ${path} (${reason}): moved to ${maskPath(dest)}`);
      moveMarker(f, folder, batchId, log);
      return { path, reason, movedTo: maskPath(dest) };
    } catch (err) {
      log.error(`${path} cannot be read (${reason}) and could not be moved to the quarantine ${folder} (${errCode(err)}); it stays in the inbox`);
      return { path, reason, movedTo: null };
    }
  });
}
