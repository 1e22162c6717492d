import Database from 'better-sqlite3';
import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import { csv, makeWorld, runCli, closeWorldsAfterEach, type World } from './helpers.js';

// The ledger lock (docs/design.md §5, exit 3) against holders this test cannot kill: a run on
// another host, whose pid means nothing here, is live as long as its heartbeat is; once the
// heartbeat is older than lock.staleAfterSec its lock is taken over. Real ledger files, the
// built CLI as a child process.
const HEADER = 'card_id,consumer_id,reason,scope';
const OTHER_HOST = 'other-host.example';
/** Above any pid_max Linux allows, so no process here can have it. */
const NO_SUCH_PID = 4_194_304 + 4242;

closeWorldsAfterEach();

/** Makes the ledger with one ordinary run, then plants the lock row of a run elsewhere. */
async function ledgerLockedElsewhere(world: World, heartbeatAgoSec: number): Promise<void> {
  await world.run([world.file('first.csv', csv(HEADER, ['CARD-FIRST,,CLOSED,']))]);
  const db = new Database(world.config.ledger);
  try {
    const acquired = new Date(Date.now() - 3_600_000).toISOString();
    const beat = new Date(Date.now() - heartbeatAgoSec * 1000).toISOString();
    db.prepare(`INSERT INTO lock (id, owner, pid, host, command, acquired_at, heartbeat_at) VALUES (1, 'elsewhere', ?, ?, 'run', ?, ?)`).run(
      NO_SUCH_PID,
      OTHER_HOST,
      acquired,
      beat,
    );
  } finally {
    db.close();
  }
}

describe('ledger lock held by another host', () => {
  it('a fresh heartbeat from another host is a live holder, whatever its pid: exit 3, no D1 call', async () => {
    expect(OTHER_HOST).not.toBe(hostname());
    expect(() => process.kill(NO_SUCH_PID, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }));
    const world = await makeWorld({ config: { lock: { staleAfterSec: 30 } } });
    await ledgerLockedElsewhere(world, 5);
    const requests = world.sim.state().requests;
    const second = await runCli(['run', '--config', world.configFile, world.file('b.csv', csv(HEADER, ['CARD-OTHER,,CLOSED,']))]);
    expect(second.code).toBe(3);
    expect(second.stderr).toMatch(new RegExp(`holds the ledger lock: pid ${NO_SUCH_PID} on ${OTHER_HOST.replace(/\./g, '\\.')}, since `));
    expect(world.sim.state().requests).toBe(requests);
    const db = new Database(world.config.ledger, { readonly: true });
    try {
      expect(db.prepare(`SELECT owner FROM lock`).all()).toEqual([{ owner: 'elsewhere' }]);
    } finally {
      db.close();
    }
  });

  it('a heartbeat older than lock.staleAfterSec is taken over with a warning, and the run goes on', async () => {
    const world = await makeWorld({ config: { lock: { staleAfterSec: 30 } } });
    await ledgerLockedElsewhere(world, 90);
    const after = await runCli(['run', '--config', world.configFile, world.file('b.csv', csv(HEADER, ['CARD-AFTER,,CLOSED,']))]);
    expect(after.stderr).toMatch(new RegExp(`took over a stale ledger lock from run pid ${NO_SUCH_PID} on ${OTHER_HOST.replace(/\./g, '\\.')} \\(no heartbeat for 9\\d s\\)`));
    expect(after.code).toBe(0);
    expect(world.sim.state().optOutCalls['CARD:CARD-AFTER']).toBe(1);
    const db = new Database(world.config.ledger, { readonly: true });
    try {
      expect(db.prepare(`SELECT count(*) AS n FROM lock`).get()).toEqual({ n: 0 });
    } finally {
      db.close();
    }
  });
});
