import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { CLI, closeWorldsAfterEach, csv, makeWorld, optOutCalls, ROOT, runCli } from './helpers.js';

// `d1-optout backup --to FILE` and the restore of the runbook, with the built CLI in child processes.
const HEADER = 'card_id,consumer_id,reason,scope';
closeWorldsAfterEach();

function cards(prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(4, '0')},,CLOSED,`);
}

/** What a copy of the ledger must be on its own: sound, every target once, every reference resolved. */
function checkCopy(path: string): { running: number; attempts: number; targets: number } {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    expect(db.pragma('foreign_key_check')).toEqual([]);
    expect(db.pragma('journal_mode', { simple: true })).toBe('delete');
    const q = (sql: string) => (db.prepare(sql).get() as { n: number }).n;
    // One row, so one state, per target; and a state the ledger knows.
    expect(q(`SELECT count(*) AS n FROM (SELECT scope, target_id FROM targets GROUP BY 1, 2 HAVING count(*) > 1)`)).toBe(0);
    expect(q(`SELECT count(*) AS n FROM targets WHERE state NOT IN ('QUEUED','SUBMITTING','PENDING','OPTED_OUT','FAILED_RETRYABLE','FAILED_PERMANENT')`)).toBe(0);
    expect(q(`SELECT count(*) AS n FROM attempts a WHERE NOT EXISTS (SELECT 1 FROM targets t WHERE t.pk = a.target_pk)`)).toBe(0);
    expect(q(`SELECT count(*) AS n FROM attempts a WHERE NOT EXISTS (SELECT 1 FROM batches b WHERE b.id = a.batch_id)`)).toBe(0);
    expect(q(`SELECT count(*) AS n FROM items i WHERE NOT EXISTS (SELECT 1 FROM targets t WHERE t.pk = i.target_pk)`)).toBe(0);
    // A target the ledger says is opted out has the attempt that did it.
    expect(q(`SELECT count(*) AS n FROM targets t WHERE t.state = 'OPTED_OUT' AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.target_pk = t.pk)`)).toBe(0);
    return {
      running: q(`SELECT count(*) AS n FROM batches WHERE status = 'RUNNING'`),
      attempts: q(`SELECT count(*) AS n FROM attempts`),
      targets: q(`SELECT count(*) AS n FROM targets`),
    };
  } finally {
    db.close();
  }
}

describe('backup', () => {
  it('copies the ledger while a run writes to it: each copy is a sound ledger of one instant, 0600, without -wal', async () => {
    // Slow answers keep the run going for a few seconds while its results are committed.
    const world = await makeWorld({ scenario: { latencyMs: 40 }, config: { rate: { concurrency: 4 } } });
    const file = world.file('a.csv', csv(HEADER, cards('CARD-B', 300)));
    const run = spawn(process.execPath, [CLI, 'run', '--quiet', '--config', world.configFile, file], { cwd: ROOT, stdio: 'ignore' });
    const exited = once(run, 'exit');
    const copies: { running: number; attempts: number; targets: number }[] = [];
    let stillRunning = true;
    void exited.then(() => (stillRunning = false));
    while (!existsSync(world.config.ledger) && stillRunning) await new Promise((r) => setTimeout(r, 20));
    for (let i = 0; stillRunning && i < 50; i++) {
      const to = join(world.dir, `backup-${i}.sqlite`);
      const b = await runCli(['backup', '--to', to, '--config', world.configFile]);
      expect(b.stderr).toBe('');
      expect(b.code).toBe(0);
      expect(b.stdout).toMatch(/^Backed up .* to .*backup-\d+\.sqlite \([\d,]+ bytes\), as it was at \S+Z$/m);
      expect(statSync(to).mode & 0o777).toBe(0o600);
      expect(existsSync(`${to}-wal`)).toBe(false);
      copies.push(checkCopy(to));
    }
    const [code] = (await exited) as [number];
    expect(code).toBe(0);
    // At least one copy caught the run half-way, with some of its answers in and others not yet.
    const midRun = copies.filter((c) => c.running === 1 && c.attempts > 0 && c.attempts < 300);
    expect(midRun.length, JSON.stringify(copies)).toBeGreaterThan(0);
    // No temp file is left beside the copies.
    expect(readdirSync(world.dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('refuses a FILE that exists, and a symlink planted at FILE, with exit 2, touching neither', async () => {
    const world = await makeWorld();
    await world.run([world.file('a.csv', csv(HEADER, cards('CARD-E', 3)))]);
    const existing = world.file('exists.sqlite', 'keep me');
    const r1 = await runCli(['backup', '--to', existing, '--config', world.configFile]);
    expect(r1.code).toBe(2);
    expect(r1.stderr).toMatch(/already exists/);
    expect(readFileSync(existing, 'utf8')).toBe('keep me');

    const victim = join(world.dir, 'victim.txt');
    const planted = join(world.dir, 'planted.sqlite');
    symlinkSync(victim, planted);
    const r2 = await runCli(['backup', '--to', planted, '--config', world.configFile]);
    expect(r2.code).toBe(2);
    expect(existsSync(victim)).toBe(false);
    expect(lstatSync(planted).isSymbolicLink()).toBe(true);

    const noDir = await runCli(['backup', '--to', join(world.dir, 'missing', 'b.sqlite'), '--config', world.configFile]);
    expect(noDir.code).toBe(2);
    expect(readdirSync(world.dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('a restored backup is a working ledger: a batch runs on it and its opted-out cards stay skipped', async () => {
    const world = await makeWorld();
    await world.run([world.file('a.csv', csv(HEADER, cards('CARD-R', 5)))]);
    const backup = join(world.dir, 'nightly.sqlite');
    expect((await runCli(['backup', '--to', backup, '--config', world.configFile])).code).toBe(0);

    // The runbook's restore: the backup copied to where the ledger is to be, then the job as usual.
    const restored = join(world.dir, 'restored', 'ledger.sqlite');
    mkdirSync(join(world.dir, 'restored'), { mode: 0o700 });
    copyFileSync(backup, restored);
    const cfg = JSON.parse(readFileSync(world.configFile, 'utf8')) as Record<string, unknown>;
    const restoredConfig = join(world.dir, 'restored.json');
    writeFileSync(restoredConfig, JSON.stringify({ ...cfg, ledger: restored, reportsDir: join(world.dir, 'restored', 'reports') }));
    const callsBefore = optOutCalls(world.sim);
    const b = world.file('b.csv', csv(HEADER, [...cards('CARD-R', 5), 'CARD-NEW,,FRAUD,']));
    const run = await runCli(['run', '--config', restoredConfig, b]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/SKIPPED_ALREADY_OPTED_OUT\s+5/);
    expect(run.stdout).toMatch(/OPTED_OUT\s+1/);
    expect(optOutCalls(world.sim) - callsBefore).toBe(1);
    expect((await runCli(['status', '--config', restoredConfig])).code).toBe(0);
  });
});
