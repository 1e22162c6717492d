import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { parse } from 'node-html-parser';
import { describe, expect, it } from 'vitest';
import { Ledger } from '../src/ledger/index.js';
import { MIGRATIONS } from '../src/ledger/migrations.js';
import type { BatchSummary } from '../src/types.js';
import { assertReconciles, closeWorldsAfterEach, csv, makeWorld, readCsv, results, runCli } from './helpers.js';

// d1.notEnrolledErrorCodes: "nothing to opt out" is a final outcome of its own, not a failure
// (docs/design.md §13).
const HEADER = 'card_id,consumer_id,reason,scope';
closeWorldsAfterEach();

const summaryOf = (stdout: string) => JSON.parse(stdout) as BatchSummary;

describe('NOT_ENROLLED', () => {
  it('a listed errorCode on a 404: final, never retried, exit 0, counted apart from OPTED_OUT in every report', async () => {
    const world = await makeWorld({ scenario: { notEnrolledIds: ['CARD-NE'] }, config: { d1: { notEnrolledErrorCodes: ['CARD_NOT_ENROLLED'] } } });
    const metrics = join(world.dir, 'd1_optout.prom');
    const run = await runCli(['run', '--json', '--config', world.configFile, '--metrics-file', metrics, world.file('a.csv', csv(HEADER, ['CARD-1,,CLOSED,', 'CARD-NE,,FRAUD,']))]);
    expect(run.code).toBe(0);
    const s = summaryOf(run.stdout);
    expect(s.status).toBe('COMPLETED');
    expect(s.outcomes).toEqual({ OPTED_OUT: 1, NOT_ENROLLED: 1 });
    assertReconciles(s);
    expect(s.d1.requestsByStatus).toEqual({ '200': 1, '404': 1 });
    expect(world.sim.state().optOutCalls['CARD:CARD-NE']).toBe(1);

    const line = results(s).find((r) => r.target_id === 'CARD-NE')!;
    expect(line).toMatchObject({ outcome: 'NOT_ENROLLED', http_status: '404', error_code: 'CARD_NOT_ENROLLED' });
    expect(readCsv(join(s.reportDir, 'failures.csv'))).toEqual([]);
    expect(readFileSync(metrics, 'utf8')).toContain('d1_optout_last_run_outcomes{outcome="NOT_ENROLLED"} 1');
    const html = parse(readFileSync(join(s.reportDir, 'report.html'), 'utf8'));
    expect(html.querySelector('.tile[data-metric="not-enrolled"]')?.getAttribute('data-value')).toBe('1');
    expect(html.querySelector('.tile[data-metric="opted-out"]')?.getAttribute('data-value')).toBe('1');
    const status = await runCli(['status', '--config', world.configFile]);
    expect(status.stdout).toMatch(/NOT_ENROL\b/);
    expect(status.stdout).toContain('NOT_ENROL=NOT_ENROLLED');
    expect(status.stdout).toContain('NOT_ENROLLED=1');
    expect((await runCli(['show', 'CARD-NE', '--config', world.configFile])).stdout).toMatch(/^CARD CARD-NE: NOT_ENROLLED, 1 opt-out request/);
    // Not a failure: no warning in the log.
    const log = readFileSync(world.config.log.file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { level: string });
    expect(log.filter((l) => l.level === 'warn' || l.level === 'error')).toEqual([]);

    // Next night: skipped like an opted-out target, under its own name, and not sent again.
    const next = await runCli(['run', '--json', '--config', world.configFile, world.file('b.csv', csv(HEADER, ['CARD-NE,,CLOSED,']))]);
    expect(next.code).toBe(0);
    expect(summaryOf(next.stdout).outcomes).toEqual({ SKIPPED_NOT_ENROLLED: 1 });
    expect(world.sim.state().optOutCalls['CARD:CARD-NE']).toBe(1);
  });

  it('any 4xx with the listed code; unlisted, the same answer stays a permanent failure (exit 1)', async () => {
    const listed = await makeWorld({
      scenario: { notEnrolledIds: ['CONS-NE'], notEnrolledStatus: 422, notEnrolledErrorCode: 'NOT_ENROLLED_IN_C2P' },
      config: { d1: { notEnrolledErrorCodes: ['NOT_ENROLLED_IN_C2P'] } },
    });
    const r = await listed.run([listed.file('a.csv', csv(HEADER, [',CONS-NE,CLOSED,CONSUMER']))]);
    expect(r.exitCode).toBe(0);
    expect(r.summary.outcomes).toEqual({ NOT_ENROLLED: 1 });

    const unlisted = await makeWorld({ scenario: { notEnrolledIds: ['CARD-NE'] } });
    const u = await unlisted.run([unlisted.file('a.csv', csv(HEADER, ['CARD-NE,,CLOSED,']))]);
    expect(u.exitCode).toBe(1);
    expect(u.summary.outcomes).toEqual({ FAILED_PERMANENT: 1 });
  });

  it('a code in both lists is a config error (exit 2) naming both keys', async () => {
    const world = await makeWorld({ config: { d1: { notEnrolledErrorCodes: ['X1'], alreadyOptedOutErrorCodes: ['X1'] } } }).catch((e: Error) => e);
    expect(world).toBeInstanceOf(Error);
    expect((world as Error).message).toMatch(/d1\.alreadyOptedOutErrorCodes and d1\.notEnrolledErrorCodes both list X1/);
  });

  it('a ledger of the first schema is migrated: its targets and their references kept, NOT_ENROLLED accepted', async () => {
    const world = await makeWorld();
    const path = join(world.dir, 'old.sqlite');
    rmSync(path, { force: true });
    const old = new Database(path);
    old.pragma('foreign_keys = ON');
    old.exec(MIGRATIONS[0]!);
    old.pragma('user_version = 1');
    old.exec(`INSERT INTO batches (id, kind, started_at, status) VALUES ('b1', 'run', '2026-01-01T00:00:00Z', 'COMPLETED');
      INSERT INTO targets (pk, scope, target_id, state, updated_at) VALUES (7, 'CARD', 'CARD-1', 'QUEUED', 'x'), (9, 'CARD', 'CARD-2', 'OPTED_OUT', 'x');
      INSERT INTO items (batch_id, origin, target_pk, scope, target_id, disposition) VALUES ('b1', 'ROW', 7, 'CARD', 'CARD-1', 'SUBMIT');
      INSERT INTO attempts (batch_id, target_pk, kind, correlation_id, started_at) VALUES ('b1', 9, 'OPT_OUT', 'c', 'x');`);
    old.close();

    Ledger.open(path).close();
    const db = new Database(path);
    try {
      expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
      expect(db.prepare('SELECT pk, target_id, state FROM targets ORDER BY pk').all()).toEqual([
        { pk: 7, target_id: 'CARD-1', state: 'QUEUED' },
        { pk: 9, target_id: 'CARD-2', state: 'OPTED_OUT' },
      ]);
      expect(db.pragma('foreign_key_check')).toEqual([]);
      for (const t of ['items', 'attempts']) {
        expect((db.prepare(`SELECT sql FROM sqlite_master WHERE name = ?`).get(t) as { sql: string }).sql).toContain('REFERENCES targets(pk)');
      }
      expect(db.prepare(`SELECT name FROM sqlite_master WHERE tbl_name = 'targets' AND type = 'index' AND name = 'targets_open'`).get()).toBeDefined();
      db.exec(`UPDATE targets SET state = 'NOT_ENROLLED' WHERE pk = 7`);
      expect(() => db.exec(`UPDATE targets SET state = 'NO_SUCH_STATE' WHERE pk = 7`)).toThrow(/CHECK/);
    } finally {
      db.close();
    }
  });
});
