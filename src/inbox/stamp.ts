import { statSync } from 'node:fs';

/** What says a file is still the one that was read: its size, modification time and inode. */
export interface FileStamp {
  size: number;
  mtimeMs: number;
  ino: number;
  dev: number;
}

/** The stamp of the file `path` names (a symlink followed), or null when it cannot be stat'ed. */
export function fileStamp(path: string): FileStamp | null {
  try {
    const s = statSync(path);
    return { size: s.size, mtimeMs: s.mtimeMs, ino: s.ino, dev: s.dev };
  } catch {
    return null;
  }
}

/** True when both stamps exist and name the same, unchanged file. */
export function sameStamp(a: FileStamp | null, b: FileStamp | null): boolean {
  return a !== null && b !== null && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ino === b.ino && a.dev === b.dev;
}
