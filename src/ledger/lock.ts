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
  ) {}

  /** Takes the lock or throws LockHeldError; returns a warning when a dead holder's lock was taken over. */
  acquire(command: string): string | null {
    const host = hostname();
    const take = this.db.transaction((): string | null => {
      const held = this.db.prepare<[], LockRow>(`SELECT * FROM lock WHERE id = 1`).get();
      let warning: string | null = null;
      if (held) {
        const ageSec = (Date.now() - Date.parse(held.heartbeat_at)) / 1000;
        const dead = held.host === host ? !pidAlive(held.pid) : false;
        if (!dead && ageSec <= this.staleAfterSec) {
          throw new LockHeldError(
            `another d1-optout ${held.command} holds the ledger lock: pid ${held.pid} on ${held.host}, since ${held.acquired_at} (heartbeat ${Math.round(ageSec)} s ago)`,
          );
        }
        warning = `took over a stale ledger lock from ${held.command} pid ${held.pid} on ${held.host} (${dead ? 'process is gone' : `no heartbeat for ${Math.round(ageSec)} s`})`;
        this.db.prepare(`DELETE FROM lock WHERE id = 1`).run();
      }
      const now = nowIso();
      this.db
        .prepare(`INSERT INTO lock (id, owner, pid, host, command, acquired_at, heartbeat_at) VALUES (1, ?, ?, ?, ?, ?, ?)`)
        .run(this.owner, process.pid, host, command, now, now);
      return warning;
    });
    const warning = take.immediate();
    const beatEveryMs = Math.max(1000, (this.staleAfterSec * 1000) / 4);
    this.timer = setInterval(() => this.heartbeat(), beatEveryMs);
    this.timer.unref();
    return warning;
  }

  private heartbeat(): void {
    this.db.prepare(`UPDATE lock SET heartbeat_at = ? WHERE id = 1 AND owner = ?`).run(nowIso(), this.owner);
  }

  release(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.db.prepare(`DELETE FROM lock WHERE id = 1 AND owner = ?`).run(this.owner);
  }
}
