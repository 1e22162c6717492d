// What the job writes (ledger, reports, log) tells whose payment options were changed, and when:
// it is private to the job's user (docs/design.md §10), files 0600 in folders 0700. And it is
// written only where the job itself created it (docs/design.md §14): another user of the host who
// plants a symbolic link, or a file of their own, where the job is about to write must not be able
// to turn the job into a tool that overwrites a file it can reach, or that writes into theirs.

import { randomBytes } from 'node:crypto';
import { closeSync, constants, fchmodSync, fstatSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { UsageError } from './errors.js';

function errorCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
}

/** Whoever runs the job; a file or folder of anyone else's is never written into. */
function myUid(): number {
  return process.geteuid?.() ?? process.getuid?.() ?? -1;
}

/**
 * O_CREAT | O_EXCL fails when anything is at the path, a symbolic link included (it is not
 * followed); O_NOFOLLOW says the same again for systems that would.
 */
const CREATE_EXCLUSIVE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/**
 * Creates `path` as a new file and returns its descriptor: never an existing file, never through a
 * symbolic link. `mode` is set exactly (the umask does not narrow a metrics file the collector,
 * another user, must read).
 */
export function createExclusiveFile(path: string, mode: number): number {
  try {
    return openExclusive(path, mode);
  } catch (err) {
    if (errorCode(err) === 'EEXIST') {
      throw new UsageError(`${path} already exists and this job did not just create it (a symbolic link or another user's file?); not written`);
    }
    throw new UsageError(`${path} cannot be created (${errorCode(err)}); check that this user may write there`);
  }
}

/**
 * What createExclusiveFile does, with the system's error as it is (EEXIST and the rest), for
 * callers that answer it in their own words: the backup, the archive's copy across filesystems.
 */
export function openExclusive(path: string, mode: number): number {
  const fd = openSync(path, CREATE_EXCLUSIVE, mode);
  try {
    fchmodSync(fd, mode);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  return fd;
}

/** A new file holding `text`, created as createExclusiveFile does. */
export function writeFileExclusive(path: string, text: string, mode = 0o600): void {
  const fd = createExclusiveFile(path, mode);
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

/** A name nobody can guess, for a file or folder about to be created beside `path`. */
export function hiddenSibling(path: string, tag: string): string {
  return join(dirname(path), `.${basename(path)}.${tag}-${randomBytes(6).toString('hex')}`);
}

/**
 * Makes sure `path` exists as a file of this user's that only they can read: created 0600 when
 * missing (missing folders 0700), and narrowed to 0600 when another tool left it open to group or
 * others (a logrotate `create 644`, a copy). The ledger and the log live on from run to run, so an
 * existing file is used, but only a regular file that this user owns, reached without following a
 * symbolic link. Folders that already exist are not changed: they may be shared, like /var/log.
 * `what` names the file for the operator, e.g. `config key ledger`.
 */
export function ensurePrivateFile(path: string, what: string): void {
  let fd: number;
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    // O_NONBLOCK: a FIFO planted at the path fails at once instead of hanging the job.
    fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o600);
  } catch (err) {
    if (errorCode(err) === 'ELOOP') {
      throw new UsageError(`${what}: ${path} is a symbolic link; refusing to follow it (give the real path, or remove the link)`);
    }
    throw new UsageError(`${what}: ${path} cannot be created or opened (${errorCode(err)}); check that this user may write there`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new UsageError(`${what}: ${path} is not a regular file; refusing to write to it`);
    if (st.uid !== myUid()) {
      throw new UsageError(`${what}: ${path} belongs to uid ${st.uid}, not to this job's user (uid ${myUid()}); refusing to write to a file someone else created`);
    }
    if ((st.mode & 0o077) !== 0) {
      try {
        fchmodSync(fd, 0o600);
      } catch (err) {
        throw new UsageError(`${what}: ${path} is open to group or others and cannot be made private (${errorCode(err)}); run chmod 600 on it`);
      }
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * What is wrong with `path` as a folder the job moves card files into (archive, quarantine), or
 * null when nothing is: it must be a real folder (not a symbolic link, which another user could
 * point at a folder of theirs), of this job's user, that group and others may not write into (they
 * could swap in a link, or take the files). Not following a link is a choice: an operator whose
 * archive is elsewhere configures the real path.
 */
export function folderProblem(path: string): string | null {
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    return `${path} cannot be examined (${errorCode(err)})`;
  }
  if (st.isSymbolicLink()) return `${path} is a symbolic link; give the real folder instead`;
  if (!st.isDirectory()) return `${path} is not a folder`;
  if (st.uid !== myUid()) return `${path} belongs to uid ${st.uid}, not to this job's user (uid ${myUid()}); chown it to this user`;
  if ((st.mode & 0o022) !== 0) return `${path} is writable by group or others (mode ${(st.mode & 0o777).toString(8)}); run chmod 700 ${path}`;
  return null;
}

/**
 * A new folder (0700) beside `final`, under a name nobody can guess, to write a set of files into
 * before `replaceFolder` puts it in place. Missing parent folders are created 0700.
 */
export function createStagingFolder(final: string): string {
  const parent = dirname(final);
  try {
    mkdirSync(parent, { recursive: true, mode: 0o700 });
    return mkdtempSync(join(parent, `.${basename(final)}.tmp-`));
  } catch (err) {
    throw new UsageError(`${parent} cannot hold a new folder (${errorCode(err)}); check that this user may write there`);
  }
}

/**
 * Puts the staged folder at `final`. A folder already there is replaced only when it is a real
 * folder of this user's (an earlier report of the same batch): it is renamed aside, the new one
 * renamed in, the old one removed. Anything else at `final` (a symbolic link, a file, another
 * user's folder) is left alone and the folder is not placed: `what` says what to do instead.
 */
export function replaceFolder(staged: string, final: string, what: string): void {
  let st;
  try {
    st = lstatSync(final);
  } catch (err) {
    if (errorCode(err) !== 'ENOENT') throw new UsageError(`${final} cannot be examined (${errorCode(err)}); ${what}`);
    renameSync(staged, final);
    return;
  }
  if (st.isSymbolicLink() || !st.isDirectory() || st.uid !== myUid()) {
    const kind = st.isSymbolicLink() ? 'a symbolic link' : !st.isDirectory() ? 'not a folder' : `a folder of uid ${st.uid}, not of this job's user`;
    throw new UsageError(`${final} is ${kind}; it was left alone and nothing was written into it: remove it, then ${what}`);
  }
  // Renamed, not emptied in place: whatever is inside (a link planted in an old report) is never
  // opened, and a reader sees the old folder or the new one, never a mix.
  const old = hiddenSibling(final, 'old');
  renameSync(final, old);
  renameSync(staged, final);
  rmSync(old, { recursive: true, force: true });
}

/**
 * The staging and set-aside folders of `final` that a killed process left behind (only this user's
 * own folders: another user's look-alike is not touched), so a later start can finish the job.
 */
export function leftoverFolders(final: string): string[] {
  const parent = dirname(final);
  const prefix = `.${basename(final)}.`;
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch {
    return [];
  }
  return names
    .filter((n) => n.startsWith(prefix) && /^(tmp|old)-[A-Za-z0-9]{6,}$/.test(n.slice(prefix.length)))
    .map((n) => join(parent, n))
    .filter((p) => {
      const st = lstatSync(p, { throwIfNoEntry: false });
      return st !== undefined && st.isDirectory() && st.uid === myUid();
    });
}
