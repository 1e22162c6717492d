import { hostname } from 'node:os';
import { UsageError } from '../errors.js';
import type { Config, LedgerHistoryEntry as HistoryEntry, LedgerIdentity } from '../types.js';
import { nowIso, openForInspection, quickCheck, SCHEMA_VERSION, unreadable, type Db } from './db.js';

export function identityOf(config: Config): LedgerIdentity {
  return { issuerId: config.d1.issuerId, baseUrl: config.d1.baseUrl };
}

/** `https://x/v1/` and `https://x/v1` reach the same D1: a trailing slash is no other history. */
function sameBaseUrl(a: string, b: string): boolean {
  return a.replace(/\/+$/, '') === b.replace(/\/+$/, '');
}

/** The recorded identity; null for a ledger not bound yet, including one older than the identity table. */
export function readIdentity(db: Db): LedgerIdentity | null {
  const table = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'identity'`).get();
  if (!table) return null;
  const row = db.prepare<[], { issuer_id: string; base_url: string }>(`SELECT issuer_id, base_url FROM identity WHERE id = 1`).get();
  return row ? { issuerId: row.issuer_id, baseUrl: row.base_url } : null;
}

export function readHistory(db: Db): HistoryEntry[] {
  return db
    .prepare<[], { at: string; event: HistoryEntry['event']; issuer_id: string; base_url: string; previous_issuer_id: string | null; previous_base_url: string | null }>(
      `SELECT at, event, issuer_id, base_url, previous_issuer_id, previous_base_url FROM ledger_history ORDER BY id`,
    )
    .all()
    .map((r) => ({ at: r.at, event: r.event, issuerId: r.issuer_id, baseUrl: r.base_url, previousIssuerId: r.previous_issuer_id, previousBaseUrl: r.previous_base_url }));
}

/** The one-line refusal for a ledger bound elsewhere, or null when `recorded` is this config's. */
export function mismatch(path: string, recorded: LedgerIdentity, configured: LedgerIdentity): string | null {
  const diffs: string[] = [];
  if (recorded.issuerId !== configured.issuerId) diffs.push(`d1.issuerId: recorded ${recorded.issuerId}, configured ${configured.issuerId}`);
  if (!sameBaseUrl(recorded.baseUrl, configured.baseUrl)) diffs.push(`d1.baseUrl: recorded ${recorded.baseUrl}, configured ${configured.baseUrl}`);
  if (diffs.length === 0) return null;
  // Only a new base URL may be moved to (docs/design.md §12): another issuer's history is never this one's.
  const otherwise =
    recorded.issuerId !== configured.issuerId
      ? newLedgerFor(configured.issuerId)
      : 'move this one deliberately with d1-optout init --rebind';
  return `ledger ${path} holds the history of another D1 (${diffs.join('; ')}): use the ledger made for this config, or ${otherwise}`;
}

function newLedgerFor(issuerId: string): string {
  return `create a new ledger for issuer ${issuerId} with d1-optout init and a new ledger path`;
}

function record(db: Db, event: HistoryEntry['event'], id: LedgerIdentity, previous: LedgerIdentity | null): void {
  const at = nowIso();
  db.prepare(
    `INSERT INTO identity (id, issuer_id, base_url, bound_at) VALUES (1, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET issuer_id = excluded.issuer_id, base_url = excluded.base_url, bound_at = excluded.bound_at`,
  ).run(id.issuerId, id.baseUrl, at);
  db.prepare(
    `INSERT INTO ledger_history (at, event, issuer_id, base_url, previous_issuer_id, previous_base_url, pid, host) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
  ).run(at, event, id.issuerId, id.baseUrl, previous?.issuerId ?? null, previous?.baseUrl ?? null, process.pid, hostname());
}

/** `init`: the new ledger's identity, recorded once. */
export function recordInit(db: Db, id: LedgerIdentity): void {
  db.transaction(() => record(db, 'init', id, null)).immediate();
}

/**
 * Before a run, rerun or poll touches anything: refuses (exit 2, naming both values) a ledger bound
 * to another issuer or base URL. A ledger made before identities existed is bound to this config,
 * once; the returned warning says so (null when the ledger was bound already).
 */
export function bindOrVerify(db: Db, path: string, configured: LedgerIdentity): string | null {
  // Read first without the write lock (WAL readers never wait): a bound ledger is only read, so a
  // second run still meets the run lock at once while the first is inside a long transaction.
  const verify = (recorded: LedgerIdentity): null => {
    const refusal = mismatch(path, recorded, configured);
    if (refusal) throw new UsageError(refusal);
    return null;
  };
  const recorded = readIdentity(db);
  if (recorded) return verify(recorded);
  return db
    .transaction((): string | null => {
      const now = readIdentity(db); // another process may have bound it meanwhile
      if (now) return verify(now);
      record(db, 'bind', configured, null);
      return `ledger ${path} had no recorded identity (it predates d1-optout init): bound it to issuer ${configured.issuerId} at ${configured.baseUrl}; a config for another issuer or D1 is refused from now on`;
    })
    .immediate();
}

/**
 * `init --rebind`: moves the ledger to `configured`'s base URL, recorded with the time (nothing when
 * it is bound there already). Refuses (exit 2) another issuer: its cards would be skipped as opted
 * out already, with nothing sent for them.
 */
export function rebind(db: Db, path: string, configured: LedgerIdentity): { previous: LedgerIdentity | null; changed: boolean } {
  return db
    .transaction(() => {
      const previous = readIdentity(db);
      if (previous && previous.issuerId !== configured.issuerId) {
        throw new UsageError(
          `ledger ${path} records issuer ${previous.issuerId}, not ${configured.issuerId}; a ledger holds one issuer's history: ${newLedgerFor(configured.issuerId)}`,
        );
      }
      if (previous && !mismatch('', previous, configured)) return { previous, changed: false };
      record(db, 'rebind', configured, previous);
      return { previous, changed: true };
    })
    .immediate();
}

/**
 * `check`'s look at the ledger, writing nothing: sound (quick_check), not newer than this build,
 * bound to `configured` (or not bound yet: the next run binds it). Returns what is fine; throws
 * UsageError with what is not.
 */
export function inspectLedger(path: string, configured: LedgerIdentity): string {
  const db = openForInspection(path);
  try {
    const problem = quickCheck(db);
    if (problem) throw new UsageError(`${path} is damaged (quick_check: ${problem}); restore the latest backup of the ledger`);
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) throw new UsageError(`${path} is at schema version ${version}, newer than this build knows (${SCHEMA_VERSION}); use a newer d1-optout`);
    const recorded = readIdentity(db);
    if (!recorded) return `${path}: sound; no identity recorded yet, the next run binds it to issuer ${configured.issuerId} at ${configured.baseUrl}`;
    const refusal = mismatch(path, recorded, configured);
    if (refusal) throw new UsageError(refusal);
    return `${path}: sound, bound to issuer ${recorded.issuerId} at ${recorded.baseUrl}`;
  } catch (err) {
    throw unreadable(err, path);
  } finally {
    db.close();
  }
}
