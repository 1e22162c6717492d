// All of the simulator's chance comes from seeded streams, so a scenario replays the same way.
// Each concern gets its own stream: the fault a request draws must not depend on how many
// operation ids were made before it.

export type Rng = () => number;

/** mulberry32: tiny, fast, good enough for fault injection (not for secrets). */
export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';

/** An id in D1's operationId alphabet `[A-Za-z0-9_-]`. */
export function randomId(rng: Rng, length: number): string {
  let id = '';
  for (let i = 0; i < length; i++) id += ID_ALPHABET[Math.floor(rng() * ID_ALPHABET.length)];
  return id;
}

export interface RngStreams {
  faults: Rng;
  ids: Rng;
  outcomes: Rng;
}

export function rngStreams(seed: number): RngStreams {
  return {
    faults: mulberry32(seed),
    ids: mulberry32(seed ^ 0x5bd1e995),
    outcomes: mulberry32(seed ^ 0x27d4eb2f),
  };
}
