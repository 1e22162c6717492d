import { randomBytes } from 'node:crypto';

/** A batch id an operator can read and type: UTC date and minute, then a short random tail. */
export function newBatchId(now: Date = new Date()): string {
  const iso = now.toISOString();
  return `${iso.slice(0, 10)}T${iso.slice(11, 13)}${iso.slice(14, 16)}-${randomBytes(2).toString('hex')}`;
}
