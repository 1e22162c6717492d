import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { LockHeldError } from '../errors.js';
import { nowIso, type Db } from './db.js';

interface LockRow {
  owner: string;
  pid: number;
  host: string;
  command: string;
  acquired_at: string;
  heartbeat_at: string;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * One run per ledger. The lock is a row in the ledger itself, so it lives exactly as long as the
 * data it guards; a holder that died is recognised by its pid (same host) or a stale heartbeat.
 */
export class LedgerLock {
  readonly owner = randomUUID();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly db: Db,
    private readonly staleAfterSec: number,
    /** Called if the lock is found taken over by another process while this one runs. */
    private readonly onLost: () => void = () => undefined,
  ) {}

  /** Takes the lock or throws LockHeldError; returns a warning when a dead holder's lock was taken over. */
  acquire(command: string): string | null {
    // Look first without a write lock (WAL readers never wait), so a second run answers at once
    // even while the holder is in the middle of a long transaction.
    const held = this.db.prepare<[], LockRow>(`SELECT * FROM lock WHERE id = 1`).get();
    if (held) this.refuseIfLive(held);
    const take = this.db.transaction((): string | null => {
      const current = this.db.prepare<[], LockRow>(`SELECT * FROM lock WHERE id = 1`).get();
      let warning: string | null = null;
      if (current) {
        warning = this.refuseIfLive(current);
        this.db.prepare(`DELETE FROM lock WHERE id = 1`).run();
      }
      const now = nowIso();
      this.db
        .prepare(`INSERT INTO lock (id, owner, pid, host, command, acquired_at, heartbeat_at) VALUES (1, ?, ?, ?, ?, ?, ?)`)
        .run(this.owner, process.pid, hostname(), command, now, now);
      return warning;
    });
    let warning: string | null;
    try {
      warning = take.immediate();
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_BUSY') {
        throw new LockHeldError('another process is writing to the ledger right now and did not finish within 5 s; try again shortly');
      }
      throw err;
    }
    const beatEveryMs = Math.max(1000, (this.staleAfterSec * 1000) / 4);
    this.timer = setInterval(() => this.heartbeat(), beatEveryMs);
    this.timer.unref();
    return warning;
  }

  /**
   * Throws LockHeldError when the holder is alive; otherwise says why its lock may be taken:
   * its pid is gone on this host, or it has not beaten its heartbeat for staleAfterSec (a holder
   * that is stopped or hung is treated as dead, and finds out at its next heartbeat).
   */
  private refuseIfLive(held: LockRow): string {
    const ageSec = (Date.now() - Date.parse(held.heartbeat_at)) / 1000;
    const dead = held.host === hostname() && !pidAlive(held.pid);
    if (!dead && ageSec <= this.staleAfterSec) {
      throw new LockHeldError(
        `another d1-optout ${held.command} holds the ledger lock: pid ${held.pid} on ${held.host}, since ${held.acquired_at} (heartbeat ${Math.round(ageSec)} s ago)`,
      );
    }
    return `took over a stale ledger lock from ${held.command} pid ${held.pid} on ${held.host} (${dead ? 'process is gone' : `no heartbeat for ${Math.round(ageSec)} s`})`;
  }

  private heartbeat(): void {
    let changes: number;
    try {
      changes = this.db.prepare(`UPDATE lock SET heartbeat_at = ? WHERE id = 1 AND owner = ?`).run(nowIso(), this.owner).changes;
    } catch {
      return; // a busy or failing ledger shows up in the run's own writes
    }
    if (changes === 0) {
      this.stopBeating();
      this.onLost();
    }
  }

  private stopBeating(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  release(): void {
    this.stopBeating();
    this.db.prepare(`DELETE FROM lock WHERE id = 1 AND owner = ?`).run(this.owner);
  }
}
