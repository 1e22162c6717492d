import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { Ledger } from '../src/ledger/index.js';
import { closeWorldsAfterEach, csv, makeWorld, optOutCalls, ROOT, runCli, type World } from './helpers.js';
import { spawn } from 'node:child_process';

// `d1-optout prune --older-than DAYS` and the nightly job's retention, against real ledgers.
const HEADER = 'card_id,consumer_id,reason,scope';
const DAY_MS = 86_400_000;
closeWorldsAfterEach();

/** Moves a batch `days` into the past, as if it had run then. */
function age(world: World, batchId: string, days: number): void {
  const db = new Database(world.config.ledger);
  try {
    const shift = (iso: string | null) => (iso === null ? null : new Date(Date.parse(iso) - days * DAY_MS).toISOString());
    const b = db.prepare(`SELECT started_at, ended_at FROM batches WHERE id = ?`).get(batchId) as { started_at: string; ended_at: string | null };
    db.prepare(`UPDATE batches SET started_at = ?, ended_at = ? WHERE id = ?`).run(shift(b.started_at), shift(b.ended_at), batchId);
  } finally {
    db.close();
  }
}

function query<T>(world: World, sql: string, ...params: unknown[]): T[] {
  const db = new Database(world.config.ledger, { readonly: true });
  try {
    return db.prepare(sql).all(...params) as T[];
  } finally {
    db.close();
  }
}

/** Items, attempts and rejects of one batch. */
function history(world: World, batchId: string): { items: number; attempts: number; rejects: number } {
  const [r] = query<{ items: number; attempts: number; rejects: number }>(
    world,
    `SELECT (SELECT count(*) FROM items WHERE batch_id = ?) AS items, (SELECT count(*) FROM attempts WHERE batch_id = ?) AS attempts,
            (SELECT count(*) FROM rejects WHERE batch_id = ?) AS rejects`,
    batchId,
    batchId,
    batchId,
  );
  return r!;
}

function sha256(path: string): string {
  return existsSync(path) ? createHash('sha256').update(readFileSync(path)).digest('hex') : 'absent';
}

function prune(world: World, ...args: string[]) {
  return runCli(['prune', ...args, '--config', world.configFile]);
}

describe('prune', () => {
  it('removes the history of old settled batches only; every target, batch row and newer or unsettled batch stays', async () => {
    const world = await makeWorld({
      scenario: { answers: { 'CARD-B1': { status: 503, body: { errorCode: 'UNAVAILABLE', error: 'try later' } } } },
      config: { rate: { maxAttempts: 1 } },
    });
    const a = await world.run([world.file('a.csv', csv(HEADER, ['CARD-A1,,CLOSED,', 'CARD-A2,CONS-A,FRAUD,', 'CARD-A3,,NOT_A_REASON,']))]);
    const b = await world.run([world.file('b.csv', csv(HEADER, ['CARD-B1,,CLOSED,', 'CARD-B2,,CLOSED,']))], { carryOver: false });
    const c = await world.run([world.file('c.csv', csv(HEADER, ['CARD-C1,,CLOSED,']))], { carryOver: false });
    const [aId, bId, cId] = [a.summary.batchId, b.summary.batchId, c.summary.batchId];
    // A run that died 40 days ago and was never closed: RUNNING, no end.
    const dead = '2026-01-01T0200-dead';
    const raw = new Database(world.config.ledger);
    raw.prepare(`INSERT INTO batches (id, kind, started_at, status) VALUES (?, 'run', ?, 'RUNNING')`).run(dead, new Date(Date.now() - 40 * DAY_MS).toISOString());
    raw.close();
    age(world, aId, 40);
    age(world, bId, 40); // old, but CARD-B1 (FAILED_RETRYABLE) is still its work
    age(world, cId, 10);
    const targetsBefore = query(world, `SELECT scope, target_id, state, attempts, operation_id FROM targets ORDER BY pk`);
    const before = { b: history(world, bId), c: history(world, cId) };
    expect(history(world, aId)).toEqual({ items: 2, attempts: 2, rejects: 1 });

    const r = await prune(world, '--older-than', '30');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Pruned 1 batch\(es\) that ended before \S+ \S+ UTC \(more than 30 day\(s\) ago\): 2 item\(s\), 2 attempt\(s\), 1 reject\(s\), 1 report folder\(s\)$/m);
    expect(r.stdout).toMatch(/^Bytes reclaimed: [\d,]+ /m);
    expect(r.stdout).toContain(`  ${aId}`);
    expect(r.stdout).toMatch(new RegExp(`^Kept 1 older batch\\(es\\) whose targets are not settled yet .*: ${bId}$`, 'm'));

    expect(history(world, aId)).toEqual({ items: 0, attempts: 0, rejects: 0 });
    expect(existsSync(join(world.config.reportsDir, aId))).toBe(false);
    expect(history(world, bId)).toEqual(before.b);
    expect(history(world, cId)).toEqual(before.c);
    expect(existsSync(join(world.config.reportsDir, bId, 'summary.json'))).toBe(true);
    expect(existsSync(join(world.config.reportsDir, cId, 'summary.json'))).toBe(true);
    // Targets are never pruned, and keep their states; every batch row stays, only A marked.
    expect(query(world, `SELECT scope, target_id, state, attempts, operation_id FROM targets ORDER BY pk`)).toEqual(targetsBefore);
    expect(query(world, `SELECT id, status, pruned_by IS NOT NULL AS pruned FROM batches ORDER BY id`)).toEqual(
      [
        { id: aId, status: 'COMPLETED', pruned: 1 },
        { id: bId, status: 'COMPLETED_WITH_FAILURES', pruned: 0 },
        { id: cId, status: 'COMPLETED', pruned: 0 },
        { id: dead, status: 'RUNNING', pruned: 0 },
      ].sort((x, y) => x.id.localeCompare(y.id)),
    );
    expect(query(world, `SELECT older_than_days, batches, items, attempts, rejects, report_folders, bytes_reclaimed > 0 AS reclaimed FROM prunes`)).toEqual([
      { older_than_days: 30, batches: 1, items: 2, attempts: 2, rejects: 1, report_folders: 1, reclaimed: 1 },
    ]);

    // show: the state stands, and says its older history was pruned, and when.
    const today = new Date().toISOString().slice(0, 10);
    const show = await runCli(['show', 'CARD-A1', '--config', world.configFile]);
    expect(show.code).toBe(0);
    expect(show.stdout).toMatch(/^CARD CARD-A1: OPTED_OUT, operation \S+, 1 opt-out request\(s\) in all/m);
    expect(show.stdout).toMatch(new RegExp(`^ {4}older history pruned on ${today} \\d\\d:\\d\\d:\\d\\d \\(batches that ended before \\S+ \\S+, kept 30 days\\)$`, 'm'));
    const showJson = JSON.parse((await runCli(['show', 'CARD-A1', '--json', '--config', world.configFile])).stdout) as { pruned: { olderThanDays: number } | null }[];
    expect(showJson[0]!.pruned).toMatchObject({ olderThanDays: 30 });
    const kept = await runCli(['show', 'CARD-C1', '--config', world.configFile]);
    expect(kept.stdout).not.toContain('pruned');
    expect(kept.stdout).toContain(`batch ${cId}`);

    // status lists the pruned batch like any other.
    const status = await runCli(['status', '--wide', '--config', world.configFile]);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`^${aId} +run +- +\\S+ \\S+ +\\S+ s +COMPLETED\\* +3 +1 `, 'm'));
    expect(status.stdout).toMatch(new RegExp(`^${cId} +run +- +\\S+ \\S+ +\\S+ s +COMPLETED +1 +0 `, 'm'));
    expect(status.stdout).toMatch(/^\* history pruned \(d1-optout prune\)/m);
    const statusJson = JSON.parse((await runCli(['status', '--json', '--config', world.configFile])).stdout) as { batches: { id: string; prunedAt: string | null }[] };
    expect(statusJson.batches.find((x) => x.id === aId)!.prunedAt).toMatch(new RegExp(`^${today}`));
    expect(statusJson.batches.find((x) => x.id === cId)!.prunedAt).toBeNull();
    expect((await runCli(['status', '--batch', aId, '--config', world.configFile])).code).toBe(0);
    // Its report cannot be written again from rows that are gone; a kept batch's can.
    const report = await runCli(['report', '--batch', aId, '--config', world.configFile]);
    expect(report.code).toBe(2);
    expect(report.stderr).toMatch(new RegExp(`batch ${aId}: its rows and D1 requests were pruned on ${today}`));
    expect(existsSync(join(world.config.reportsDir, aId))).toBe(false);
    expect((await runCli(['report', '--batch', cId, '--config', world.configFile])).code).toBe(0);

    // A second prune finds nothing more to take.
    const again = await prune(world, '--older-than', '30');
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/^Pruned 0 batch\(es\)/m);

    // Dedupe still knows the cards whose history went: no second opt-out.
    const calls = optOutCalls(world.sim);
    const d = await world.run([world.file('d.csv', csv(HEADER, ['CARD-A1,,CLOSED,', 'CARD-A2,,CLOSED,', 'CARD-D1,,CLOSED,']))], { carryOver: false });
    expect(d.summary.outcomes).toEqual({ SKIPPED_ALREADY_OPTED_OUT: 2, OPTED_OUT: 1 });
    expect(optOutCalls(world.sim) - calls).toBe(1);
  });

  it('--dry-run says what would go and changes nothing: ledger bytes, report folders', async () => {
    const world = await makeWorld();
    const a = await world.run([world.file('a.csv', csv(HEADER, ['CARD-X1,,CLOSED,', 'CARD-X2,,NOPE,']))]);
    age(world, a.summary.batchId, 40);
    const wal = `${world.config.ledger}-wal`;
    const hash = sha256(world.config.ledger);
    expect(existsSync(wal)).toBe(false);
    const r = await prune(world, '--older-than', '30', '--dry-run');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Would prune 1 batch\(es\) that ended before .*: 1 item\(s\), 1 attempt\(s\), 1 reject\(s\), 1 report folder\(s\)$/m);
    expect(r.stdout).toContain('Nothing was changed (dry run).');
    expect(sha256(world.config.ledger)).toBe(hash);
    // A read-only connection may leave an empty log behind (as status and show do): nothing in it.
    if (existsSync(wal)) expect(statSync(wal).size).toBe(0);
    expect(history(world, a.summary.batchId)).toEqual({ items: 1, attempts: 1, rejects: 1 });
    expect(existsSync(join(world.config.reportsDir, a.summary.batchId, 'summary.json'))).toBe(true);
  });

  it('VACUUM gives the space back: the ledger file is smaller after the prune', async () => {
    const world = await makeWorld();
    // Rejected rows cost no D1 call and fill the ledger with their raw text.
    const rows = Array.from({ length: 4000 }, (_, i) => `CARD-V${i},,NOT_A_REASON_${'x'.repeat(40)},`);
    const a = await world.run([world.file('a.csv', csv(HEADER, ['CARD-V,,CLOSED,', ...rows]))]);
    expect(a.summary.rows.rejected).toBe(4000);
    await world.run([world.file('b.csv', csv(HEADER, ['CARD-W,,CLOSED,']))]);
    age(world, a.summary.batchId, 40);
    const db = new Database(world.config.ledger);
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.close();
    const size = () => statSync(world.config.ledger).size + (existsSync(`${world.config.ledger}-wal`) ? statSync(`${world.config.ledger}-wal`).size : 0);
    const before = size();
    const r = await prune(world, '--older-than', '30');
    expect(r.code).toBe(0);
    const after = size();
    expect(after).toBeLessThan(before / 2);
    const reclaimed = Number(/^Bytes reclaimed: ([\d,]+) /m.exec(r.stdout)![1]!.replace(/,/g, ''));
    expect(reclaimed).toBeGreaterThanOrEqual(before - after);
    const check = new Database(world.config.ledger, { readonly: true });
    expect(check.pragma('integrity_check', { simple: true })).toBe('ok');
    check.close();
  });

  it('exit 3 while another process holds the ledger lock, and nothing is pruned', async () => {
    const world = await makeWorld();
    const a = await world.run([world.file('a.csv', csv(HEADER, ['CARD-L1,,CLOSED,']))]);
    age(world, a.summary.batchId, 40);
    const ledger = Ledger.open(world.config.ledger);
    const lock = ledger.lock(world.config.lock.staleAfterSec);
    lock.acquire('run');
    try {
      const r = await prune(world, '--older-than', '30');
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(/holds the ledger lock/);
      expect(history(world, a.summary.batchId).items).toBe(1);
    } finally {
      lock.release();
      ledger.close();
    }
    expect((await prune(world, '--older-than', '30')).code).toBe(0);
    expect(history(world, a.summary.batchId).items).toBe(0);
  });

  it('refuses --older-than that is not a whole number of days, 1 or more (exit 2)', async () => {
    const world = await makeWorld();
    await world.run([world.file('a.csv', csv(HEADER, ['CARD-U1,,CLOSED,']))]);
    for (const days of ['0', '-3', '1.5', 'x']) expect((await prune(world, '--older-than', days)).code).toBe(2);
  });

  it('the nightly job prunes after its batch when retention.days is set', async () => {
    const world = await makeWorld({ config: { retention: { days: 30 } } });
    const a = await world.run([world.file('a.csv', csv(HEADER, ['CARD-N1,,CLOSED,']))]);
    age(world, a.summary.batchId, 40);
    mkdirSync(world.config.inbox, { recursive: true });
    const inboxFile = join(world.config.inbox, 'night.csv');
    writeFileSync(inboxFile, csv(HEADER, ['CARD-N2,,CLOSED,']));
    const past = new Date(Date.now() - 3600_000);
    utimesSync(inboxFile, past, past); // settled long ago, whatever the inbox's settle time
    const nightly = await runJob(world);
    expect(nightly.stderr).toBe('');
    expect(nightly.code).toBe(0);
    expect(nightly.stdout).toMatch(/^Pruned 1 batch\(es\) .*more than 30 day\(s\) ago/m);
    expect(history(world, a.summary.batchId).items).toBe(0);
    const [tonight] = query<{ id: string; pruned_by: number | null; status: string }>(world, `SELECT id, pruned_by, status FROM batches WHERE id <> ?`, a.summary.batchId);
    expect(tonight).toMatchObject({ status: 'COMPLETED', pruned_by: null });
    expect(history(world, tonight!.id).items).toBe(1);
  });

  it('the nightly job prunes nothing after a night that aborted', async () => {
    const world = await makeWorld({
      scenario: { fail5xxRate: 1 },
      config: { retention: { days: 30 }, rate: { maxAttempts: 1 }, abort: { maxConsecutiveFailures: 2 } },
    });
    // A batch of rejected rows only: it makes no D1 call and completes.
    const a = await world.run([world.file('a.csv', csv(HEADER, ['CARD-Q1,,NOT_A_REASON,']))]);
    expect(a.summary.status).toBe('COMPLETED');
    age(world, a.summary.batchId, 40);
    mkdirSync(world.config.inbox, { recursive: true });
    const inboxFile = join(world.config.inbox, 'night.csv');
    writeFileSync(inboxFile, csv(HEADER, ['CARD-Q2,,CLOSED,', 'CARD-Q3,,CLOSED,', 'CARD-Q4,,CLOSED,']));
    const past = new Date(Date.now() - 3600_000);
    utimesSync(inboxFile, past, past);
    const nightly = await runJob(world);
    expect(nightly.code).toBe(4);
    expect(nightly.stdout).not.toMatch(/Pruned/);
    expect(history(world, a.summary.batchId).rejects).toBe(1);
    expect(query(world, `SELECT count(*) AS n FROM prunes`)).toEqual([{ n: 0 }]);
  });
});

function runJob(world: World): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'dist', 'jobs', 'nightly-optout.js'), '--config', world.configFile, '--quiet'], { cwd: ROOT });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
