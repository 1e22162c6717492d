// What the job writes (ledger, reports, log) tells whose payment options were changed, and when:
// it is private to the job's user (DESIGN.md §10), files 0600 in folders 0700.

import { closeSync, fchmodSync, fstatSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { UsageError } from './errors.js';

function errorCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
}

/**
 * Makes sure `path` exists as a file only its owner can read: created 0600 when missing (missing
 * folders 0700), and narrowed to 0600 when another tool left it open to group or others
 * (a logrotate `create 644`, a copy). Folders that already exist are not changed: they may be
 * shared, like /var/log. `what` names the file for the operator, e.g. `config key ledger`.
 */
export function ensurePrivateFile(path: string, what: string): void {
  let fd: number;
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    fd = openSync(path, 'a', 0o600);
  } catch (err) {
    throw new UsageError(`${what}: ${path} cannot be created or opened (${errorCode(err)}); check that this user may write there`);
  }
  try {
    if ((fstatSync(fd).mode & 0o077) !== 0) fchmodSync(fd, 0o600);
  } catch (err) {
    throw new UsageError(`${what}: ${path} is open to group or others and cannot be made private (${errorCode(err)}); run chmod 600 on it`);
  } finally {
    closeSync(fd);
  }
}
