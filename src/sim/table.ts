/**
 * A string-keyed table kept in many small Maps. The simulator's tables grow to one entry per card
 * of a night; a single Map or object of 100,000 keys rehashes as it doubles, and the simulator's
 * four tables doubled together near 44,000 and 88,000 cards, holding its event loop 15-35 ms. Every
 * request that reached it meanwhile was stamped late, all together, and the one-second window
 * after showed the simulator's pause as the client's burst. A shard rehashes a few hundred keys.
 */
export class ShardedTable<V> {
  private readonly shards: Map<string, V>[] = Array.from({ length: 256 }, () => new Map<string, V>());

  get(key: string): V | undefined {
    return this.shard(key).get(key);
  }

  set(key: string, value: V): void {
    this.shard(key).set(key, value);
  }

  clear(): void {
    for (const s of this.shards) s.clear();
  }

  /** A plain record of every entry, each value passed through `copy` (for the ground-truth snapshot). */
  toRecord<W>(copy: (value: V) => W): Record<string, W> {
    const out: Record<string, W> = {};
    for (const s of this.shards) for (const [k, v] of s) out[k] = copy(v);
    return out;
  }

  private shard(key: string): Map<string, V> {
    let h = 0;
    for (let i = 0; i < key.length; i++) h = (Math.imul(h, 31) + key.charCodeAt(i)) | 0;
    return this.shards[h & 255]!;
  }
}
