// Exact sliding one-second windows: every arrival time is kept until it leaves the window, so
// "the most requests in any 1000 ms" is a true maximum, not a bucketed estimate.

export const WINDOW_MS = 1000;

export class SlidingWindow {
  private times: number[] = [];
  private head = 0;
  /** The most arrivals ever seen inside one window. */
  max = 0;

  /** Arrivals in (now - 1000, now]. */
  count(now: number): number {
    this.prune(now);
    return this.times.length - this.head;
  }

  /** Records an arrival; the window ending at an arrival is the only place a new maximum can appear. */
  add(now: number): number {
    this.prune(now);
    this.times.push(now);
    const n = this.times.length - this.head;
    if (n > this.max) this.max = n;
    return n;
  }

  /** Milliseconds until the oldest arrival in the window leaves it. */
  msUntilSlotFrees(now: number): number {
    this.prune(now);
    const oldest = this.times[this.head];
    return oldest === undefined ? 0 : oldest + WINDOW_MS - now;
  }

  clear(): void {
    this.times = [];
    this.head = 0;
    this.max = 0;
  }

  private prune(now: number): void {
    while (this.head < this.times.length && (this.times[this.head] as number) <= now - WINDOW_MS) this.head++;
    // Compact now and then so a long run does not keep every timestamp it ever saw.
    if (this.head > 4096 && this.head * 2 > this.times.length) {
      this.times = this.times.slice(this.head);
      this.head = 0;
    }
  }
}
