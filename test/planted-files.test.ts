import { chmodSync, chownSync, copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeMetricsFile } from '../src/report/metrics.js';
import { closeWorldsAfterEach, csv, makeWorld, readCsv, runCli, type World } from './helpers.js';

// docs/design.md §14: every file the job writes is created exclusively. Another user of the host
// (uid 65534 here; the tests run as root, which may chown to anyone) plants links and files where
// the job is about to write; the job must neither write through them nor reuse them.

closeWorldsAfterEach();

const OTHER_UID = 65534;
const VICTIM_TEXT = 'SQLite format 3\0 a root-owned copy of the ledger\n';

/** A file of root's that a planted link points at: it must come out of every test as it went in. */
function victim(world: World, name = 'victim.sqlite'): { path: string; untouched(): void } {
  const path = join(world.dir, 'victims', name);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, VICTIM_TEXT, { mode: 0o600 });
  return {
    path,
    untouched: () => {
      expect(readFileSync(path, 'utf8')).toBe(VICTIM_TEXT);
      expect(statSync(path).mode & 0o777).toBe(0o600);
    },
  };
}

async function oneBatch(world: World): Promise<string> {
  const { summary } = await world.run([world.file('a.csv', csv('card_id,reason', ['CARD-P-1,CLOSED', 'CARD-P-2,FRAUD']))]);
  return summary.batchId;
}

const report = (world: World, batchId: string, out?: string) =>
  runCli(['report', '--config', world.configFile, '--batch', batchId, ...(out ? ['--out', out] : [])]);

function expectOneLine(run: { code: number | null; stderr: string }, code: number, message: RegExp): void {
  expect(run.code, run.stderr).toBe(code);
  const lines = run.stderr.trimEnd().split('\n');
  expect(lines, run.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(message);
}

describe('report folders and files', () => {
  it('report --out: a symbolic link planted at DIR/<batchId> is refused (exit 2); nothing is written where it points', async () => {
    const world = await makeWorld();
    const batchId = await oneBatch(world);
    const out = join(world.dir, 'shared-out');
    const target = join(world.dir, 'victims', 'reports-of-root');
    mkdirSync(target, { recursive: true });
    const v = victim(world, 'reports-of-root/results.csv');
    mkdirSync(out);
    symlinkSync(target, join(out, batchId));
    const run = await report(world, batchId, out);
    expectOneLine(run, 2, new RegExp(`^d1-optout: \\S+/${batchId} is a symbolic link; it was left alone and nothing was written into it: remove it, then d1-optout report --batch ${batchId}$`));
    v.untouched();
    expect(readdirSync(target)).toEqual(['results.csv']);
    expect(lstatSync(join(out, batchId)).isSymbolicLink()).toBe(true);
    expect(readdirSync(out)).toEqual([batchId]); // its staging folder is gone too
  });

  it("report --out: another user's folder at DIR/<batchId>, with a world-readable results.csv of theirs, is refused and left as it was", async () => {
    const world = await makeWorld();
    const batchId = await oneBatch(world);
    const out = join(world.dir, 'shared-out');
    const theirs = join(out, batchId);
    mkdirSync(theirs, { recursive: true });
    writeFileSync(join(theirs, 'results.csv'), 'waiting for your card data\n', { mode: 0o644 });
    chownSync(join(theirs, 'results.csv'), OTHER_UID, OTHER_UID);
    chownSync(theirs, OTHER_UID, OTHER_UID);
    const run = await report(world, batchId, out);
    expectOneLine(run, 2, new RegExp(`^d1-optout: \\S+/${batchId} is a folder of uid ${OTHER_UID}, not of this job's user; it was left alone`));
    expect(readFileSync(join(theirs, 'results.csv'), 'utf8')).toBe('waiting for your card data\n');
    expect(readdirSync(theirs)).toEqual(['results.csv']);
  });

  it('writing a report again (report --batch, poll) never opens what is in the old folder: a link planted there stays a link, its target untouched', async () => {
    const world = await makeWorld();
    const batchId = await oneBatch(world);
    const dir = join(world.config.reportsDir, batchId);
    const v = victim(world);
    for (const f of ['results.csv', 'summary.json', 'report.html']) {
      rmSync(join(dir, f));
      symlinkSync(v.path, join(dir, f));
    }
    const run = await report(world, batchId);
    expect(run.code, run.stderr).toBe(0);
    v.untouched();
    for (const f of ['summary.json', 'results.csv', 'failures.csv', 'rejects.csv', 'report.html']) {
      const st = lstatSync(join(dir, f));
      expect(st.isFile(), f).toBe(true);
      expect(st.mode & 0o777, f).toBe(0o600);
    }
    expect(readCsv(join(dir, 'results.csv')).map((r) => r['target_id'])).toEqual(['CARD-P-1', 'CARD-P-2']);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(readdirSync(world.config.reportsDir)).toEqual([batchId]); // nothing set aside is left
  });

  it('a report a kill interrupted (its staging folder left, the folder not in place) is written by the next start', async () => {
    const world = await makeWorld();
    const batchId = await oneBatch(world);
    const dir = join(world.config.reportsDir, batchId);
    const staged = join(world.config.reportsDir, `.${batchId}.tmp-Ab12Cd`);
    mkdirSync(staged, { mode: 0o700 });
    writeFileSync(join(staged, 'results.csv'), 'scope,target_id\nCARD,CARD-P-1\n');
    rmSync(dir, { recursive: true });
    await world.run([]);
    expect(existsSync(join(dir, 'summary.json'))).toBe(true);
    expect(existsSync(staged)).toBe(false);
  });
});

describe('the metrics file', () => {
  it('is written under a temporary name nobody can plant a link at: the victim of a link at the old, predictable name is untouched', async () => {
    const world = await makeWorld();
    const path = join(world.dir, 'textfile', 'd1_optout.prom');
    mkdirSync(dirname(path));
    const v = victim(world);
    // The name the job used to write to first, predictable from its pid.
    symlinkSync(v.path, join(dirname(path), `.${basename(path)}.${process.pid}.tmp`));
    writeMetricsFile(path, 'd1_optout_last_run_exit_code 0\n');
    v.untouched();
    expect(readFileSync(path, 'utf8')).toBe('d1_optout_last_run_exit_code 0\n');
    expect(statSync(path).mode & 0o777).toBe(0o644);
  });

  it('replaces a link or another user\'s file at its own path instead of writing through or into it', async () => {
    const world = await makeWorld();
    const folder = join(world.dir, 'textfile');
    mkdirSync(folder);
    const v = victim(world);
    const linked = join(folder, 'linked.prom');
    symlinkSync(v.path, linked);
    writeMetricsFile(linked, 'a 1\n');
    v.untouched();
    expect(lstatSync(linked).isFile()).toBe(true);

    const theirs = join(folder, 'theirs.prom');
    writeFileSync(theirs, 'b 0\n');
    chmodSync(theirs, 0o666);
    chownSync(theirs, OTHER_UID, OTHER_UID);
    writeMetricsFile(theirs, 'b 1\n');
    const st = statSync(theirs);
    expect([st.uid, st.mode & 0o777, readFileSync(theirs, 'utf8')]).toEqual([process.getuid!(), 0o644, 'b 1\n']);
  });
});

describe('the log file (and the ledger, opened the same way)', () => {
  it('a symbolic link at log.file is refused (exit 2, one line); the file it points at is untouched', async () => {
    const world = await makeWorld();
    const v = victim(world);
    mkdirSync(dirname(world.config.log.file), { recursive: true });
    symlinkSync(v.path, world.config.log.file);
    const run = await runCli(['run', '--config', world.configFile, world.file('a.csv', csv('card_id,reason', ['CARD-P-1,CLOSED']))]);
    expectOneLine(run, 2, /^d1-optout: config key log\.file: \S+ is a symbolic link; refusing to follow it/);
    v.untouched();
    expect(world.sim.state().requests + world.sim.state().tokenRequests).toBe(0);
  });

  it("a log file someone else created is refused (exit 2), and left as it was", async () => {
    const world = await makeWorld();
    mkdirSync(dirname(world.config.log.file), { recursive: true });
    writeFileSync(world.config.log.file, 'theirs\n');
    chmodSync(world.config.log.file, 0o666);
    chownSync(world.config.log.file, OTHER_UID, OTHER_UID);
    const run = await runCli(['run', '--config', world.configFile, world.file('a.csv', csv('card_id,reason', ['CARD-P-1,CLOSED']))]);
    expectOneLine(run, 2, new RegExp(`^d1-optout: config key log\\.file: \\S+ belongs to uid ${OTHER_UID}, not to this job's user \\(uid 0\\); refusing to write to a file someone else created$`));
    expect(readFileSync(world.config.log.file, 'utf8')).toBe('theirs\n');
    expect(statSync(world.config.log.file).mode & 0o777).toBe(0o666);
    expect(world.sim.state().requests + world.sim.state().tokenRequests).toBe(0);
  });

  it('a symbolic link at the ledger path is refused: a root-owned ledger copy it points at is untouched', async () => {
    const world = await makeWorld();
    await oneBatch(world);
    const v = victim(world);
    copyFileSync(world.config.ledger, v.path); // a real ledger this time
    const before = readFileSync(v.path);
    const linkedConfig = join(world.dir, 'linked.config.json');
    const ledgerLink = join(world.dir, 'linked-ledger.sqlite');
    symlinkSync(v.path, ledgerLink);
    writeFileSync(linkedConfig, JSON.stringify({ ...JSON.parse(readFileSync(world.configFile, 'utf8')), ledger: ledgerLink }));
    const run = await runCli(['run', '--config', linkedConfig, world.file('b.csv', csv('card_id,reason', ['CARD-P-3,CLOSED']))]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/config key ledger: \S+ is a symbolic link; refusing to follow it/);
    expect(readFileSync(v.path).equals(before)).toBe(true);
  });
});
