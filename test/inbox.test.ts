import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, chownSync, closeSync, constants, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'node-html-parser';
import { fileSha256, inspectCardFile } from '../src/cards/index.js';
import { Ledger } from '../src/ledger/index.js';
import type { BatchSummary } from '../src/types.js';
import { assertReconciles, closeWorldsAfterEach, csv, makeWorld, optOutCalls, ROOT, runCli, type World } from './helpers.js';

// Files that are still arriving, and files that are bad (docs/design.md §11), with the built CLI
// in child processes, a real writer process, the real ledger and the simulator's ground truth.
closeWorldsAfterEach();

const HEADER = 'card_id,reason';
const DEADLINE = { deadlineMs: 30_000 }; // a run that hangs is killed and fails its test
const CARDS = join(ROOT, 'fixtures', 'cards');

function inboxArgs(w: World): string[] {
  return ['run', '--inbox', w.config.inbox, '--archive', w.config.archive, '--config', w.configFile];
}

/** The summary.json of the batch a CLI run printed. */
function summaryOf(w: World, stdout: string): BatchSummary {
  const id = /^Batch (\S+) /m.exec(stdout)?.[1];
  if (!id) throw new Error(`no batch in the output:\n${stdout}`);
  return JSON.parse(readFileSync(join(w.config.reportsDir, id, 'summary.json'), 'utf8')) as BatchSummary;
}

function ledgerCount(w: World, sql: string): number {
  const ledger = Ledger.open(w.config.ledger, { readonly: true });
  try {
    return (ledger.db.prepare(sql).get() as { n: number }).n;
  } finally {
    ledger.close();
  }
}

const mode = (p: string) => statSync(p).mode & 0o777;
/** A folder's entries; an absent folder (made on demand) has none. */
const filesIn = (dir: string) => (existsSync(dir) ? readdirSync(dir) : []);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('files still arriving', () => {
  it('a file a writer is still appending to is left in the inbox, nothing of it sent; once settled the next run takes all of it', { timeout: 90_000 }, async () => {
    const world = await makeWorld({ config: { input: { settleSec: 2 }, rate: { requestsPerSecond: 2000, concurrency: 16 } } });
    mkdirSync(world.config.inbox, { recursive: true });
    const file = join(world.config.inbox, 'b.csv');
    const ids = Array.from({ length: 1000 }, (_, i) => `CARD-B${String(i).padStart(4, '0')}`);
    // The upstream writer: a row every 20 ms until told to finish (stdin closed), then the rest
    // at once. It never pauses long enough to look settled while the first run lists the inbox.
    const writer = spawn(
      process.execPath,
      [
        '-e',
        `const fs = require('node:fs');
         const [file, n] = [process.argv[1], Number(process.argv[2])];
         let i = 0;
         const row = () => 'CARD-B' + String(i++).padStart(4, '0') + ',CLOSED\\n';
         fs.writeFileSync(file, '${HEADER}\\n');
         const t = setInterval(() => { if (i < n) fs.appendFileSync(file, row()); }, 20);
         process.stdin.on('end', () => { clearInterval(t); let rest = ''; while (i < n) rest += row(); fs.appendFileSync(file, rest); });
         process.stdin.resume();`,
        file,
        String(ids.length),
      ],
      { stdio: ['pipe', 'ignore', 'inherit'] },
    );
    try {
      while (!existsSync(file) || statSync(file).size < 200) await sleep(20);
      const first = await runCli(inboxArgs(world), {}, DEADLINE);
      expect(first.stderr).toBe('');
      expect(first.code).toBe(0);
      expect(first.stdout).toMatch(/^Deferred: 1 file\(s\) left in the inbox for a later run, not an error: .*b\.csv \(settling\)$/m);
      expect(summaryOf(world, first.stdout).deferred).toEqual([{ path: file, reason: 'settling' }]);
      expect(summaryOf(world, first.stdout).inputs).toEqual([]);
      expect(existsSync(file)).toBe(true);
      expect(optOutCalls(world.sim)).toBe(0);
      expect(ledgerCount(world, `SELECT count(*) AS n FROM files`)).toBe(0);
      expect(ledgerCount(world, `SELECT count(*) AS n FROM items`)).toBe(0);
    } finally {
      writer.stdin!.end();
      await once(writer, 'exit');
    }
    expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(ids.length + 1);
    await sleep(2_200); // settleSec after the writer's last write

    const next = await runCli(inboxArgs(world), {}, DEADLINE);
    expect(next.code).toBe(0);
    const s = summaryOf(world, next.stdout);
    assertReconciles(s);
    expect(s.deferred).toEqual([]);
    expect(s.rows).toEqual({ total: 1000, valid: 1000, rejected: 0 });
    expect(s.outcomes).toEqual({ OPTED_OUT: 1000 });
    const calls = world.sim.state().optOutCalls;
    expect(Object.keys(calls).sort()).toEqual(ids.map((id) => `CARD:${id}`));
    expect(Object.values(calls).every((n) => n === 1)).toBe(true);
    expect(existsSync(file)).toBe(false);
    expect(mode(join(world.config.archive, 'b.csv'))).toBe(0o600);
  });

  it('marker mode: a file is taken when its marker exists, whatever its age, and the marker is archived with it', async () => {
    // settleSec stays at its default of 60 s: the files below are fresh, and only the marker counts.
    const world = await makeWorld({ config: { input: { settleSec: 60, doneMarker: '.done' } } });
    const inbox = world.config.inbox;
    mkdirSync(inbox, { recursive: true });
    writeFileSync(join(inbox, 'a.csv'), csv(HEADER, ['CARD-M1,CLOSED']));
    writeFileSync(join(inbox, 'a.csv.done'), '');
    writeFileSync(join(inbox, 'b.csv'), csv(HEADER, ['CARD-M2,CLOSED']));

    const first = await runCli(inboxArgs(world), {}, DEADLINE);
    expect(first.code).toBe(0);
    expect(summaryOf(world, first.stdout).deferred).toEqual([{ path: join(inbox, 'b.csv'), reason: 'no-marker' }]);
    expect(world.sim.state().optOutCalls).toEqual({ 'CARD:CARD-M1': 1 });
    expect(readdirSync(inbox)).toEqual(['b.csv']);
    expect(readdirSync(world.config.archive).sort()).toEqual(['a.csv', 'a.csv.done']);

    writeFileSync(join(inbox, 'b.csv.done'), '');
    const second = await runCli(inboxArgs(world), {}, DEADLINE);
    expect(second.code).toBe(0);
    expect(summaryOf(world, second.stdout).deferred).toEqual([]);
    expect(world.sim.state().optOutCalls).toEqual({ 'CARD:CARD-M1': 1, 'CARD:CARD-M2': 1 });
    expect(readdirSync(inbox)).toEqual([]);
  });

  it('a file that changes between its read and the transaction that admits it is not admitted and is taken by the next run', async () => {
    const world = await makeWorld();
    const inbox = world.config.inbox;
    mkdirSync(inbox, { recursive: true });
    const file = join(inbox, 'a.csv');
    writeFileSync(file, csv(HEADER, ['CARD-C1,CLOSED', 'CARD-C2,FRAUD']));
    const changed = await runCli(inboxArgs(world), { D1_OPTOUT_FAULT: 'append-before-admit' }, DEADLINE);
    expect(changed.code).toBe(0);
    expect(changed.stdout).toMatch(/^Deferred: 1 file\(s\) .*a\.csv \(changed-while-read\)$/m);
    const s = summaryOf(world, changed.stdout);
    expect(s.deferred).toEqual([{ path: file, reason: 'changed-while-read' }]);
    expect(s.inputs).toEqual([]);
    expect(s.rows).toEqual({ total: 0, valid: 0, rejected: 0 });
    for (const table of ['files', 'batch_inputs', 'items', 'rejects', 'targets']) {
      expect(ledgerCount(world, `SELECT count(*) AS n FROM ${table}`), table).toBe(0);
    }
    expect(existsSync(file)).toBe(true);
    expect(optOutCalls(world.sim)).toBe(0);

    const next = await runCli(inboxArgs(world), {}, DEADLINE);
    expect(next.code).toBe(0);
    expect(summaryOf(world, next.stdout).outcomes).toEqual({ OPTED_OUT: 2 });
    expect(world.sim.state().optOutCalls).toEqual({ 'CARD:CARD-C1': 1, 'CARD:CARD-C2': 1 });
    expect(existsSync(file)).toBe(false);
  });

  it('a FIFO, a folder named x.csv and a dangling symlink are ignored with a warning and never opened; a symlink to a card file is read', async () => {
    const world = await makeWorld();
    const inbox = world.config.inbox;
    mkdirSync(inbox, { recursive: true });
    execFileSync('mkfifo', [join(inbox, 'pipe.csv')]);
    mkdirSync(join(inbox, 'x.csv'));
    symlinkSync(join(world.dir, 'nowhere.csv'), join(inbox, 'dangling.csv'));
    const elsewhere = world.file('elsewhere.csv', csv(HEADER, ['CARD-L1,CLOSED']));
    symlinkSync(elsewhere, join(inbox, 'linked.csv'));
    writeFileSync(join(inbox, 'plain.csv'), csv(HEADER, ['CARD-P1,CLOSED']));

    const r = await runCli(inboxArgs(world), {}, DEADLINE);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/pipe\.csv is a FIFO, not a card file; ignored and never opened/);
    expect(r.stderr).toMatch(/x\.csv is a folder, not a card file; ignored/);
    expect(r.stderr).toMatch(/dangling\.csv is a symlink to nothing readable \(ENOENT\); ignored/);
    const s = summaryOf(world, r.stdout);
    expect(s.inputs.map((i) => i.path)).toEqual([join(inbox, 'linked.csv'), join(inbox, 'plain.csv')]);
    expect(s.deferred).toEqual([]);
    expect(s.quarantined).toEqual([]);
    expect(world.sim.state().optOutCalls).toEqual({ 'CARD:CARD-L1': 1, 'CARD:CARD-P1': 1 });
    expect(readdirSync(inbox).sort()).toEqual(['dangling.csv', 'pipe.csv', 'x.csv']);
    expect(lstatSync(join(inbox, 'pipe.csv')).isFIFO()).toBe(true);
  });
});

describe('bad files', () => {
  it('inbox mode: three unreadable files are quarantined in one run, the good ones processed, exit 1; the next night exits 0 without a D1 call', async () => {
    const world = await makeWorld();
    const inbox = world.config.inbox;
    const quarantine = world.config.quarantine;
    mkdirSync(inbox, { recursive: true });
    copyFileSync(join(CARDS, 'spreadsheet.xlsx'), join(inbox, 'sheet.csv'));
    copyFileSync(join(CARDS, 'not-gzip.csv.gz'), join(inbox, 'text.csv.gz'));
    copyFileSync(join(CARDS, 'no-header.csv'), join(inbox, 'no-header.csv'));
    writeFileSync(join(inbox, 'a.csv'), csv(HEADER, ['CARD-G1,CLOSED', 'CARD-G2,FRAUD']));
    writeFileSync(join(inbox, 'b.csv'), csv(HEADER, ['CARD-G3,CLOSED']));

    const night1 = await runCli(inboxArgs(world), {}, DEADLINE);
    expect(night1.code).toBe(1);
    expect(night1.stdout).toMatch(/: COMPLETED_WITH_FAILURES/);
    expect(night1.stdout).toMatch(/^Quarantined: 3 unreadable file\(s\) moved out of the inbox/m);
    expect(night1.stdout).toMatch(/^Next: 3 unreadable inbox file\(s\) quarantined: .* status --batch \S+ --config \S+$/m);
    expect(night1.stdout).not.toMatch(/nothing to do/);
    const s = summaryOf(world, night1.stdout);
    assertReconciles(s);
    expect(s.status).toBe('COMPLETED_WITH_FAILURES');
    expect(s.quarantined.map((q) => [q.path, q.movedTo])).toEqual([
      [join(inbox, 'no-header.csv'), join(quarantine, 'no-header.csv')],
      [join(inbox, 'sheet.csv'), join(quarantine, 'sheet.csv')],
      [join(inbox, 'text.csv.gz'), join(quarantine, 'text.csv.gz')],
    ]);
    expect(s.quarantined[0]!.reason).toMatch(/header/);
    expect(s.quarantined[1]!.reason).toMatch(/binary/);
    expect(s.quarantined[2]!.reason).toMatch(/not gzip/);
    expect(s.outcomes).toEqual({ OPTED_OUT: 3 });
    expect(world.sim.state().optOutCalls).toEqual({ 'CARD:CARD-G1': 1, 'CARD:CARD-G2': 1, 'CARD:CARD-G3': 1 });
    expect(readdirSync(inbox)).toEqual([]);
    expect(mode(quarantine)).toBe(0o700);
    for (const f of readdirSync(quarantine)) expect(mode(join(quarantine, f)), f).toBe(0o600);
    for (const f of readdirSync(world.config.archive)) expect(mode(join(world.config.archive, f)), f).toBe(0o600);
    const html = readFileSync(join(s.reportDir, 'report.html'), 'utf8');
    expect(html).toMatch(/<table id="not-taken-table"/);
    expect(html).toContain('sheet.csv');

    const night2 = await runCli(inboxArgs(world), {}, DEADLINE);
    expect(night2.code).toBe(0);
    expect(summaryOf(world, night2.stdout).quarantined).toEqual([]);
    expect(optOutCalls(world.sim)).toBe(3);

    // The same bad name delivered again: the first one in quarantine is kept, the new one beside it.
    copyFileSync(join(CARDS, 'no-header.csv'), join(inbox, 'no-header.csv'));
    const night3 = await runCli(inboxArgs(world), {}, DEADLINE);
    expect(night3.code).toBe(1);
    const s3 = summaryOf(world, night3.stdout);
    expect(s3.quarantined.map((q) => q.movedTo)).toEqual([join(quarantine, `no-header.csv.${s3.batchId}`)]);
    expect(readdirSync(quarantine).sort()).toEqual(['no-header.csv', `no-header.csv.${s3.batchId}`, 'sheet.csv', 'text.csv.gz']);
  });

  it('a card number in the name of a quarantined or deferred file is masked in summary.json, report.html and the output', async () => {
    const world = await makeWorld({ config: { input: { doneMarker: '.done' } } });
    const inbox = world.config.inbox;
    const pan = '4111111111111111';
    mkdirSync(inbox, { recursive: true });
    copyFileSync(join(CARDS, 'no-header.csv'), join(inbox, `bad-${pan}.csv`));
    writeFileSync(join(inbox, `bad-${pan}.csv.done`), '');
    writeFileSync(join(inbox, `late-${pan}.csv`), csv(HEADER, ['CARD-X1,CLOSED']));
    const r = await runCli(inboxArgs(world), {}, DEADLINE);
    expect(r.code).toBe(1);
    const s = summaryOf(world, r.stdout);
    expect(s.quarantined).toHaveLength(1);
    expect(s.deferred).toHaveLength(1);
    for (const text of [r.stdout, r.stderr, readFileSync(join(s.reportDir, 'summary.json'), 'utf8'), readFileSync(join(s.reportDir, 'report.html'), 'utf8')]) {
      expect(text).not.toContain(pan);
    }
  });

  it('a dry run lists what would be quarantined and deferred, and moves nothing', async () => {
    const world = await makeWorld({ config: { input: { settleSec: 60 } } });
    const inbox = world.config.inbox;
    mkdirSync(inbox, { recursive: true });
    copyFileSync(join(CARDS, 'no-header.csv'), join(inbox, 'bad.csv'));
    const r = await runCli([...inboxArgs(world), '--dry-run'], {}, DEADLINE);
    expect(r.code).toBe(0);
    // Fresh, so still settling: neither checked nor moved.
    expect(r.stdout).toMatch(/bad\.csv \(settling\)/);

    const settled = await makeWorld();
    mkdirSync(settled.config.inbox, { recursive: true });
    copyFileSync(join(CARDS, 'no-header.csv'), join(settled.config.inbox, 'bad.csv'));
    const dry = await settled.dryRun([], { inbox: { dir: settled.config.inbox, archive: settled.config.archive } });
    expect(dry.summary.quarantined).toEqual([{ path: join(settled.config.inbox, 'bad.csv'), reason: expect.stringMatching(/header/) as string, movedTo: null }]);
    expect(readdirSync(settled.config.inbox)).toEqual(['bad.csv']);
    expect(filesIn(settled.config.quarantine)).toEqual([]);
  });

  it('FILE arguments: two unreadable files stop the run with exit 2 naming both, and nothing is done', async () => {
    const world = await makeWorld();
    const sheet = world.file('sheet.csv', readFileSync(join(CARDS, 'spreadsheet.xlsx')));
    const noHeader = world.file('no-header.csv', readFileSync(join(CARDS, 'no-header.csv')));
    const good = world.file('good.csv', csv(HEADER, ['CARD-F1,CLOSED']));
    const r = await runCli(['run', '--config', world.configFile, good, sheet, noHeader], {}, DEADLINE);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/2 card files cannot be read; nothing was done: /);
    expect(r.stderr).toContain(`${sheet}: looks binary`);
    expect(r.stderr).toContain(`${noHeader}: `);
    expect(optOutCalls(world.sim)).toBe(0);
    expect(existsSync(world.config.ledger) ? ledgerCount(world, `SELECT count(*) AS n FROM batches`) : 0).toBe(0);
    expect(filesIn(world.config.quarantine)).toEqual([]);
    expect(existsSync(sheet) && existsSync(noHeader)).toBe(true);
  });

  it('a card file swapped for a FIFO after the inbox was listed is refused when opened, not waited on', async () => {
    // The listing saw a regular file; by the time the survey or the ingest opens the name, the
    // upstream has renamed a FIFO over it. A run blocked in open() would hold the lock for good.
    const world = await makeWorld();
    const fifo = join(world.dir, 'swapped.csv');
    execFileSync('mkfifo', [fifo]);
    const hung = () => new Promise<never>((_, reject) => setTimeout(() => reject(new Error('hung in open()')), 3000).unref());
    try {
      await expect(Promise.race([inspectCardFile(fifo, { delimiter: 'auto' }), hung()])).rejects.toThrow(/is not a regular file/);
      await expect(Promise.race([fileSha256(fifo), hung()])).rejects.toThrow(/is not a regular file/);
    } finally {
      // A reader left blocked in open() (the bug) is released, so the worker can end.
      try {
        closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
      } catch {
        // no reader waiting: nothing to release
      }
    }
  });

  it('FILE arguments: a FIFO is refused without being opened (exit 2, no hang)', async () => {
    const world = await makeWorld();
    const fifo = join(world.dir, 'pipe.csv');
    execFileSync('mkfifo', [fifo]);
    const r = await runCli(['run', '--config', world.configFile, fifo], {}, DEADLINE);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${fifo}: is a FIFO, not a card file`);
  });
});

describe('archived inputs', () => {
  it('summary.json, report.html and the summary name each archived file where it is now, not the inbox path', async () => {
    const world = await makeWorld();
    mkdirSync(world.config.inbox, { recursive: true });
    const inboxFile = join(world.config.inbox, 'a.csv');
    writeFileSync(inboxFile, csv(HEADER, ['CARD-A1,CLOSED']));
    const first = await runCli(inboxArgs(world), {}, DEADLINE);
    expect(first.code).toBe(0);
    // The same name again on another night: the archive already has an a.csv, so this one is suffixed.
    writeFileSync(inboxFile, csv(HEADER, ['CARD-A2,CLOSED']));
    const second = await runCli(inboxArgs(world), {}, DEADLINE);
    expect(second.code).toBe(0);
    for (const [run, archived] of [
      [first, join(world.config.archive, 'a.csv')],
      [second, join(world.config.archive, `a.csv.${summaryOf(world, second.stdout).batchId}`)],
    ] as const) {
      const s = summaryOf(world, run.stdout);
      expect(existsSync(archived)).toBe(true);
      expect(s.inputs).toEqual([expect.objectContaining({ path: inboxFile, archivedTo: archived, rows: 1 })]);
      const cells = parse(readFileSync(join(s.reportDir, 'report.html'), 'utf8')).querySelectorAll('#inputs-table td').map((td) => td.textContent);
      expect(cells[0]).toBe(archived);
      expect(cells[4]).toBe(`read; archived from ${inboxFile}`);
      expect(run.stdout).toContain(`Archived: ${inboxFile} -> ${archived}`);
    }
    // Files given as arguments are not moved: they are listed where they were read.
    const given = world.file('given.csv', csv(HEADER, ['CARD-G,CLOSED']));
    const third = await world.run([given]);
    expect(third.summary.inputs).toEqual([expect.objectContaining({ path: given, archivedTo: null })]);
  });
});

describe('archive and quarantine moves', () => {
  it('a file redelivered between the commit of its rows and its move is not archived unread: it stays in the inbox and the next run opts out its cards', async () => {
    const world = await makeWorld();
    mkdirSync(world.config.inbox, { recursive: true });
    const file = join(world.config.inbox, 'a.csv');
    writeFileSync(file, csv(HEADER, ['CARD-R1,CLOSED', 'CARD-R2,CLOSED']));
    // Version 2 (version 1's rows and card REDELIVERED-3) is renamed over a.csv after version 1's rows are committed.
    const first = await runCli(inboxArgs(world), { D1_OPTOUT_FAULT: 'replace-before-archive' }, DEADLINE);
    expect(first.code).toBe(0);
    expect(first.stderr).toMatch(/a\.csv was replaced after it was read; the new file was not moved and stays in the inbox as .*a\.csv for the next run/);
    expect(summaryOf(world, first.stdout).inputs).toEqual([expect.objectContaining({ path: file, rows: 2, archivedTo: null })]);
    expect(world.sim.state().optOutCalls).toEqual({ 'CARD:CARD-R1': 1, 'CARD:CARD-R2': 1 });
    expect(readFileSync(file, 'utf8')).toContain('REDELIVERED-3,CLOSED');
    expect(readdirSync(world.config.inbox)).toEqual(['a.csv']);
    expect(filesIn(world.config.archive)).toEqual([]);

    const next = await runCli(inboxArgs(world), {}, DEADLINE);
    expect(next.code).toBe(0);
    const s = summaryOf(world, next.stdout);
    expect(s.inputs).toEqual([expect.objectContaining({ path: file, rows: 3, seenBefore: false, archivedTo: join(world.config.archive, 'a.csv') })]);
    expect(world.sim.state().optOutCalls).toEqual({ 'CARD:CARD-R1': 1, 'CARD:CARD-R2': 1, 'CARD:REDELIVERED-3': 1 });
    expect(readFileSync(join(world.config.archive, 'a.csv'), 'utf8')).toContain('REDELIVERED-3,CLOSED');
    expect(mode(join(world.config.archive, 'a.csv'))).toBe(0o600);
    expect(readdirSync(world.config.inbox)).toEqual([]);
  });

  it('an unreadable file redelivered after it was inspected is not quarantined unread: it stays in the inbox and the next run inspects it', async () => {
    const world = await makeWorld();
    const file = join(world.config.inbox, 'bad.csv');
    copyFileSync(join(CARDS, 'no-header.csv'), file);
    const first = await runCli(inboxArgs(world), { D1_OPTOUT_FAULT: 'replace-before-quarantine' }, DEADLINE);
    expect(first.stderr).toMatch(/bad\.csv was replaced after it was read; the new file was not moved and stays in the inbox as .*bad\.csv for the next run/);
    expect(summaryOf(world, first.stdout).quarantined).toEqual([expect.objectContaining({ path: file, movedTo: null })]);
    expect(readFileSync(file, 'utf8')).toContain('REDELIVERED-');
    expect(readdirSync(world.config.inbox)).toEqual(['bad.csv']);
    expect(filesIn(world.config.quarantine)).toEqual([]);

    const next = await runCli(inboxArgs(world), {}, DEADLINE);
    expect(next.code).toBe(1);
    expect(summaryOf(world, next.stdout).quarantined).toEqual([expect.objectContaining({ path: file, movedTo: join(world.config.quarantine, 'bad.csv') })]);
    expect(readFileSync(join(world.config.quarantine, 'bad.csv'), 'utf8')).toContain('REDELIVERED-');
    expect(readdirSync(world.config.inbox)).toEqual([]);
  });

  it.each([
    ['a symbolic link to a world-writable folder', 'is a symbolic link', (w: World) => {
      const theirs = join(w.dir, 'theirs');
      mkdirSync(theirs);
      chmodSync(theirs, 0o777);
      rmSync(w.config.archive, { recursive: true });
      symlinkSync(theirs, w.config.archive);
      return theirs;
    }],
    ['a folder of another user', 'belongs to uid 65534', (w: World) => {
      chownSync(w.config.archive, 65534, 65534);
      return w.config.archive;
    }],
    ['a folder others may write into', 'is writable by group or others', (w: World) => {
      chmodSync(w.config.archive, 0o777);
      return w.config.archive;
    }],
  ])('an archive that is %s: check FAILs it, and run --inbox refuses before the ledger is touched (exit 2), the file left in the inbox', async (_what, words, plant) => {
    const world = await makeWorld();
    const file = join(world.config.inbox, 'a.csv');
    writeFileSync(file, csv(HEADER, ['CARD-S1,CLOSED']));
    const target = plant(world);

    const check = await runCli(['check', '--config', world.configFile], {}, DEADLINE);
    expect(check.code).toBe(2);
    expect(check.stdout).toMatch(new RegExp(`^FAIL +archive: .*${words}.*\\(config key archive\\)$`, 'm'));
    expect(check.stdout).toMatch(/^ok +quarantine: .*private to this user$/m);

    const r = await runCli(inboxArgs(world), {}, DEADLINE);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(words);
    expect(r.stderr).toMatch(/card files are not moved there, nothing was done/);
    expect(existsSync(world.config.ledger) ? ledgerCount(world, `SELECT count(*) AS n FROM batches`) : 0).toBe(0);
    expect(readdirSync(world.config.inbox)).toEqual(['a.csv']);
    expect(readdirSync(target)).toEqual([]);
    expect(optOutCalls(world.sim)).toBe(0);
  });

  it('a quarantine that is a symbolic link is refused the same way (exit 2), the unreadable file left in the inbox', async () => {
    const world = await makeWorld();
    copyFileSync(join(CARDS, 'no-header.csv'), join(world.config.inbox, 'bad.csv'));
    const theirs = join(world.dir, 'theirs');
    mkdirSync(theirs);
    rmSync(world.config.quarantine, { recursive: true });
    symlinkSync(theirs, world.config.quarantine);
    const r = await runCli(inboxArgs(world), {}, DEADLINE);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/quarantine is a symbolic link; give the real folder instead; card files are not moved there, nothing was done/);
    expect(readdirSync(world.config.inbox)).toEqual(['bad.csv']);
    expect(readdirSync(theirs)).toEqual([]);
  });

  it('across filesystems the archived copy is a private 0600 file of the same bytes, and the inbox file goes only once it is there', async () => {
    const world = await makeWorld();
    const archive = mkdtempSync('/dev/shm/d1-optout-archive-');
    try {
      expect(statSync(archive).dev).not.toBe(statSync(world.config.inbox).dev);
      const file = join(world.config.inbox, 'a.csv');
      const text = csv(HEADER, ['CARD-X1,CLOSED']);
      writeFileSync(file, text, { mode: 0o644 });
      const r = await runCli(['run', '--inbox', world.config.inbox, '--archive', archive, '--config', world.configFile], {}, DEADLINE);
      expect(r.code).toBe(0);
      expect(readFileSync(join(archive, 'a.csv'), 'utf8')).toBe(text);
      expect(mode(join(archive, 'a.csv'))).toBe(0o600);
      expect(readdirSync(world.config.inbox)).toEqual([]);
    } finally {
      rmSync(archive, { recursive: true, force: true });
    }
  });
});
