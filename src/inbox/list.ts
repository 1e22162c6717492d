import { lstatSync, readdirSync, statSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { maskPath } from '../cards/pan.js';
import { UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Config, DeferredFile } from '../types.js';

/** The names the inbox takes: card files, plain or gzip. */
export const CARD_FILE = /\.csv(\.gz)?$/i;

/** A card file the run may take, with the marker that came with it (archived along with it). */
export interface InboxEntry {
  path: string;
  /** The done-marker's path in marker mode, else null. */
  marker: string | null;
}

export interface InboxListing {
  ready: InboxEntry[];
  deferred: DeferredFile[];
}

/** What a non-regular file is, for the warning or error that names it. */
export function kindOf(s: Stats): string {
  if (s.isDirectory()) return 'a folder';
  if (s.isFIFO()) return 'a FIFO';
  if (s.isSocket()) return 'a socket';
  if (s.isBlockDevice() || s.isCharacterDevice()) return 'a device';
  return 'not a regular file';
}

/**
 * The stat of a card file in the inbox, or null (with a warning) when it is no regular file: a
 * FIFO would hang the reader, and a folder, socket or device is no delivery. Only stat calls,
 * nothing is opened. A symlink counts as what it points to; a dangling one is ignored.
 */
function regularFile(path: string, log: Logger): Stats | null {
  const shown = maskPath(path);
  let s: Stats;
  try {
    s = lstatSync(path);
    if (s.isSymbolicLink()) {
      try {
        s = statSync(path);
      } catch (err) {
        log.warn(`inbox: ${shown} is a symlink to nothing readable (${(err as NodeJS.ErrnoException).code ?? 'error'}); ignored`);
        return null;
      }
    }
  } catch (err) {
    // Gone since the folder was listed (taken by its writer, say): nothing to take.
    log.warn(`inbox: ${shown} cannot be examined (${(err as NodeJS.ErrnoException).code ?? 'error'}); ignored`);
    return null;
  }
  if (s.isFile()) return s;
  log.warn(`inbox: ${shown} is ${kindOf(s)}, not a card file; ignored and never opened`);
  return null;
}

/**
 * The card files of the inbox a run may take now (docs/design.md §11), in name order.
 *
 * Without a marker, a file is taken once it has settled: unchanged for `settleSec`. That is
 * observed in one look rather than by watching (which would make every run wait `settleSec`):
 * a file whose last change — the later of its mtime and ctime — is at least `settleSec` old has
 * kept its size and mtime that long, since a write moves both. The ctime catches a copy that sets
 * an old mtime on a file still being written (`cp -p`, `touch -r`), and a file moved in is new
 * to the inbox. A writer that pauses longer than `settleSec` mid-file is beyond what any clock
 * can tell: such upstreams use the marker, and the check before admission still catches a file
 * that changes while it is read.
 */
export function listInbox(dir: string, input: Pick<Config['input'], 'settleSec' | 'doneMarker'>, log: Logger, now = Date.now()): InboxListing {
  const names = inboxNames(dir);
  const listing: InboxListing = { ready: [], deferred: [] };
  for (const name of names) {
    const path = join(dir, name);
    const s = regularFile(path, log);
    if (!s) continue;
    if (input.doneMarker) {
      const marker = path + input.doneMarker;
      if (existsQuietly(marker)) listing.ready.push({ path, marker });
      else listing.deferred.push({ path: maskPath(path), reason: 'no-marker' });
      continue;
    }
    const lastChange = Math.max(s.mtimeMs, s.ctimeMs);
    if (now - lastChange >= input.settleSec * 1000) listing.ready.push({ path, marker: null });
    else listing.deferred.push({ path: maskPath(path), reason: 'settling' });
  }
  return listing;
}

/** The card file names in the inbox, sorted; an inbox that cannot be read is a usage error (exit 2). */
export function inboxNames(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((n) => CARD_FILE.test(n))
      .sort();
  } catch (err) {
    throw new UsageError(`inbox ${dir} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

function existsQuietly(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
