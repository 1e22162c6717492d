import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import type { SimArrival } from '../src/sim/index.js';
import { csv, makeWorld, runCli, closeWorldsAfterEach, type World } from './helpers.js';

// docs/design.md §4: a target is SUBMITTING on disk before its request leaves, so a crash at any
// moment leaves it in doubt (and resent), never QUEUED with a request D1 has already acted on.
// The check is made where it is decisive: as each request reaches D1, a separate read-only
// connection looks at the ledger file the job (a child process) is writing.
const HEADER = 'card_id,consumer_id,reason,scope';

closeWorldsAfterEach();

describe('SUBMITTING is committed before the request leaves', () => {
  it('every opt-out request, first tries and retries alike, finds its target SUBMITTING in the ledger', async () => {
    const seen: { key: string; state: string | undefined }[] = [];
    let reader: Database.Database | null = null;
    let world: World | null = null;
    const onRequest = (a: SimArrival): void => {
      if (a.kind !== 'optOut' || !world) return;
      reader ??= new Database(world.config.ledger, { readonly: true, fileMustExist: true });
      const row = reader.prepare<[string, string], { state: string }>(`SELECT state FROM targets WHERE scope = ? AND target_id = ?`).get(a.scope, a.targetId);
      seen.push({ key: `${a.scope}:${a.targetId}`, state: row?.state });
    };
    world = await makeWorld({
      onRequest,
      scenario: { seed: 7, fail5xxRate: 0.3, latencyMs: [0, 20] },
      config: { rate: { requestsPerSecond: 200, concurrency: 4, maxAttempts: 6 } },
    });
    const rows = [...Array.from({ length: 30 }, (_, i) => `CARD-S${i},,CLOSED,`), ',CONS-S1,CLOSED,CONSUMER', ',CONS-S2,FRAUD,CONSUMER'];
    try {
      const run = await runCli(['run', '--quiet', '--config', world.configFile, world.file('a.csv', csv(HEADER, rows))]);
      expect([0, 1], run.stderr).toContain(run.code);
    } finally {
      (reader as Database.Database | null)?.close();
    }
    const arrivals = Object.values(world.sim.state().optOutArrivals).reduce((n, v) => n + v, 0);
    expect(seen).toHaveLength(arrivals);
    // The faults made retries, so the check covers a target's second and later requests too.
    expect(arrivals).toBeGreaterThan(32);
    expect(seen.filter((s) => s.state !== 'SUBMITTING')).toEqual([]);
  });
});
