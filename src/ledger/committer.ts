import type { Db } from './db.js';

/**
 * Outcomes wait at most this long, or until this many are queued, before they are committed.
 * With rate.concurrency, they bound what a kill can cost: a target whose answer was not yet on
 * disk is in doubt and sent again, so a kill causes at most concurrency + COMMIT_MAX_OPS
 * duplicate requests.
 */
export const COMMIT_MAX_DELAY_MS = 50;
export const COMMIT_MAX_OPS = 64;

/**
 * How long a `now()` write waits for others to share its commit. Each commit is an fsync
 * (synchronous = FULL) that holds the event loop; at 1,000 req/s one per turn of the loop held it
 * a quarter of the time. The requests waiting on these writes are queued well ahead of the rate,
 * so the wait costs no throughput.
 */
export const COMMIT_NOW_DELAY_MS = 10;

interface Waiter {
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Groups ledger writes into few transactions without letting a request leave before its
 * SUBMITTING mark is on disk. `now()` writes are committed within COMMIT_NOW_DELAY_MS
 * (together with whatever else is waiting) and their promise resolves after the commit;
 * `soon()` writes (outcomes) wait for the next commit, at most `maxDelayMs` or `maxOps` away.
 * A kill loses at most the `soon()` writes of one group: the bound the crash test asserts.
 */
export class GroupCommitter {
  private ops: Array<() => void> = [];
  private waiters: Waiter[] = [];
  private immediate: NodeJS.Immediate | null = null;
  private timer: NodeJS.Timeout | null = null;
  private nowTimer: NodeJS.Timeout | null = null;
  private failure: unknown = null;
  commits = 0;
  /** Told once when a commit fails, so the run can stop instead of the process crashing. */
  onFailure: ((err: unknown) => void) | null = null;

  constructor(
    private readonly db: Db,
    readonly maxDelayMs = COMMIT_MAX_DELAY_MS,
    readonly maxOps = COMMIT_MAX_OPS,
  ) {}

  /** Queues a write and resolves once it is committed. */
  now(op: () => void): Promise<void> {
    this.check();
    this.ops.push(op);
    const p = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.nowTimer ??= setTimeout(() => this.flushQuietly(), COMMIT_NOW_DELAY_MS);
    return p;
  }

  /** Queues a write that nothing waits for. */
  soon(op: () => void): void {
    this.check();
    this.ops.push(op);
    if (this.ops.length >= this.maxOps) {
      this.immediate ??= setImmediate(() => this.flushQuietly());
    } else {
      this.timer ??= setTimeout(() => this.flushQuietly(), this.maxDelayMs);
    }
  }

  /** A flush from a timer: a failure is reported to the waiters and to onFailure, never thrown. */
  private flushQuietly(): void {
    try {
      this.flush();
    } catch {
      // recorded in this.failure and passed on by flush()
    }
  }

  /** Commits everything queued, synchronously. Throws if the commit fails. */
  flush(): void {
    this.check();
    if (this.immediate) clearImmediate(this.immediate);
    if (this.timer) clearTimeout(this.timer);
    if (this.nowTimer) clearTimeout(this.nowTimer);
    this.immediate = null;
    this.timer = null;
    this.nowTimer = null;
    const ops = this.ops;
    const waiters = this.waiters;
    this.ops = [];
    this.waiters = [];
    if (ops.length === 0) {
      for (const w of waiters) w.resolve();
      return;
    }
    try {
      this.db.transaction(() => {
        for (const op of ops) op();
      })();
      this.commits++;
    } catch (err) {
      // A ledger that cannot commit is the end of the run: nothing after this may rely on it.
      this.failure = err;
      for (const w of waiters) w.reject(err);
      this.onFailure?.(err);
      throw err;
    }
    for (const w of waiters) w.resolve();
  }

  private check(): void {
    if (this.failure) throw this.failure;
  }
}
