// The scale bench (npm run bench, and on its own: node dist/test/bench/scale.js [--items N]).
//
// Decisions this bench is built on:
// - The big ledger is that of 100 nights of a cumulative daily extract, the case the 99%-known
//   ingest target measures too: night 1 has 1% of the items, all new cards; every later night as
//   many rows, 99% of them cards an earlier night opted out (SKIPPED_ALREADY_OPTED_OUT) and 1% new
//   ones (SUBMIT → OPTED_OUT, one OPT_OUT attempt answered 200). At 10,000,000 items that is
//   100 COMPLETED batches a day apart, ~199,000 targets. The small ledger is the same shape at
//   1/1000: 100 batches of 100 rows (10,000 items). Both are built in SQL (scale-ledger.ts) on a
//   ledger made by Ledger.create, so the schema and migrations are the real ones.
// - Commands are timed as the operator runs them: real CLI child processes, each the median of 3
//   runs, peak RSS from the child itself (measure.ts, preloaded), the largest of its 3 runs. The
//   ledgers are built in a child process too, so that this process stays small (a child's
//   getrusage maxRSS starts from its parent's; measure.ts reads VmHWM for that reason).
// - status, status --batch (the latest batch) and show (a card every night had a row for): the big
//   ledger against the small one. report --batch: a 10,000-item ledger cannot hold a 100,000-row
//   batch, and comparing with a 100-row batch would measure the batch's size, not the ledger's; so
//   the big ledger's latest batch is compared with that same batch alone in a ledger of its own
//   (100,000 items), and the small ledger's 100-row report is printed as a figure only. Peak RSS of
//   status and report: big ledger against the small one (a report streams its lines, so its
//   memory must not grow with the batch either).
// - Prune: a copy of the big ledger (checkpointed, closed) is pruned by the real `prune` CLI with
//   --older-than 10: the nights end a day apart and the last one an hour ago, so exactly 90 of
//   the 100 batches ended before the cutoff; prune VACUUMs itself. Bytes per item are the file's
//   size over the items ever ingested, before and after.
// - The 99%-known ingest: the ingest worker ingests a 1,000,000-row file untimed and opts its
//   targets out, then times the next night's file: 990,000 of those rows and 10,000 new ones.
//   The all-new file is timed the same way, after the same earlier night, so that the two differ
//   in the file alone (into an empty ledger, the all-new one would also have the smaller indexes).
// Nothing here is a test: ratios are reported, never asserted in the suite.
import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { copyFileSync, createReadStream, createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { parseConfig } from '../../src/config.js';
import { identityOf } from '../../src/ledger/index.js';
import { writeCardFile } from './data.js';
import type { ScaleLedger } from './scale-ledger.js';

export interface ScaleTarget {
  name: string;
  figure: number;
  target: string;
  ok: boolean;
  detail: string;
}

export interface ScaleOptions {
  /** Items of the big ledger (100 nights of items/100 rows); 10,000,000 by default. */
  items?: number;
  /** Rows of the two ingest files; 1,000,000 by default. */
  ingestRows?: number;
  say?: (line: string) => void;
}

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..', '..');
const cli = join(root, 'dist', 'src', 'cli', 'main.js');
const measure = pathToFileURL(join(here, 'measure.js')).href;
const NIGHTS = 100;
const SMALL_ITEMS = 10_000;
const RUNS = 3;
const INGEST_RUNS = 2;

interface Run {
  ms: number;
  rssKb: number;
}

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const round = (x: number, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits;
const mib = (kb: number) => `${Math.round(kb / 1024)} MiB`;

/** One CLI command, RUNS times: the median wall time and the largest peak RSS. */
function timeCli(work: string, args: readonly string[]): Run {
  const rssFile = join(work, 'rss.txt');
  const ms: number[] = [];
  let rssKb = 0;
  for (let i = 0; i < RUNS; i++) {
    rmSync(rssFile, { force: true });
    const t0 = performance.now();
    const r = spawnSync(process.execPath, ['--import', measure, cli, ...args], {
      env: { ...process.env, D1_BENCH_RSS_FILE: rssFile },
      encoding: 'utf8',
      maxBuffer: 64 << 20,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    ms.push(performance.now() - t0);
    if (r.status !== 0) throw new Error(`d1-optout ${args.join(' ')} exited ${r.status}: ${r.stderr.trim().split('\n').slice(-3).join(' / ')}`);
    rssKb = Math.max(rssKb, Number(readFileSync(rssFile, 'utf8')));
  }
  return { ms: median(ms), rssKb };
}

/** A config the read-only commands and prune accept for `ledgerPath`; they never call D1. */
function writeConfig(work: string, name: string, ledgerPath: string, keyFile: string): string {
  const input = {
    d1: { baseUrl: 'http://127.0.0.1:1/banking/v1', tokenUrl: 'http://127.0.0.1:1/authz/v1/oauth2/token', issuerId: 'BENCHSCALE', keyId: 'bench-kid', privateKeyFile: keyFile },
    ledger: ledgerPath,
    reportsDir: join(work, `${name}-reports`),
    inbox: join(work, `${name}-inbox`),
    archive: join(work, `${name}-archive`),
    quarantine: join(work, `${name}-quarantine`),
    log: { level: 'error', file: join(work, `${name}-log`, 'd1-optout.log') },
  };
  mkdirSync(dirname(input.log.file), { recursive: true, mode: 0o700 });
  const file = join(work, `${name}-config.json`);
  writeFileSync(file, JSON.stringify(input, null, 2), { mode: 0o600 });
  return file;
}

/** The ledger's identity as the CLI will compute it from the config. */
function identityFor(configFile: string) {
  return identityOf(parseConfig(JSON.parse(readFileSync(configFile, 'utf8')), {}));
}

/** `n` rows of `from` after skipping `skip`, then every row of `add`, under one header. */
async function concatRows(out: string, from: string, skip: number, n: number, add: string): Promise<void> {
  const w = createWriteStream(out);
  let line = 0;
  for await (const l of createInterface({ input: createReadStream(from) })) {
    if (line === 0 || (line > skip && line <= skip + n)) w.write(l + '\n');
    line++;
  }
  line = 0;
  for await (const l of createInterface({ input: createReadStream(add) })) {
    if (line++ > 0) w.write(l + '\n');
  }
  w.end();
  await once(w, 'finish');
}

interface IngestRun {
  ms: number;
  rows: number;
  maxRssKb: number;
}

function ingest(args: readonly string[]): IngestRun {
  const out = execFileSync(process.execPath, [join(here, 'ingest-worker.js'), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return JSON.parse(out) as IngestRun;
}

function removeLedger(path: string): void {
  for (const f of [path, `${path}-wal`, `${path}-shm`]) rmSync(f, { force: true });
}

/** A ledger's size on disk once nothing has it open: the file (its WAL checkpointed away). */
function checkpointedSize(path: string): number {
  const db = new Database(path);
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  return statSync(path).size;
}

export async function benchScale(
  work: string,
  record: (t: ScaleTarget) => void,
  figures: Record<string, unknown>,
  opts: ScaleOptions = {},
): Promise<void> {
  const say = opts.say ?? ((line: string) => process.stdout.write(line + '\n'));
  const items = opts.items ?? 10_000_000;
  const ingestRows = opts.ingestRows ?? 1_000_000;
  const rows = items / NIGHTS;
  const dir = join(work, 'scale');
  mkdirSync(dir, { recursive: true });
  const keyFile = join(dir, 'bench-key.pem');
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  const fig: Record<string, unknown> = {};
  figures['scale'] = fig;

  const make = (name: string, shape: { rowsPerNight: number; firstNight?: number }): { l: ScaleLedger; config: string } => {
    const path = join(dir, `${name}.sqlite`);
    const config = writeConfig(dir, name, path, keyFile);
    say(`scale: building the ${name} ledger (${shape.firstNight ? 'night ' + shape.firstNight + ' alone of ' : ''}${NIGHTS} nights of ${shape.rowsPerNight.toLocaleString('en')} rows) ...`);
    const out = execFileSync(process.execPath, [join(here, 'scale-ledger.js'), path, JSON.stringify(identityFor(config)), JSON.stringify({ nights: NIGHTS, ...shape })], { encoding: 'utf8' });
    const l = JSON.parse(out) as ScaleLedger;
    say(`scale:   ${l.items.toLocaleString('en')} items, ${l.targets.toLocaleString('en')} targets in ${(l.buildMs / 1000).toFixed(1)} s, ${(statSync(path).size / 2 ** 20).toFixed(0)} MiB`);
    return { l, config };
  };
  const big = make('big', { rowsPerNight: rows });
  const small = make('small', { rowsPerNight: SMALL_ITEMS / NIGHTS });
  const alone = make('alone', { rowsPerNight: rows, firstNight: NIGHTS });
  fig['buildMs'] = { big: Math.round(big.l.buildMs), small: Math.round(small.l.buildMs), alone: Math.round(alone.l.buildMs) };
  fig['items'] = { big: big.l.items, small: small.l.items, alone: alone.l.items };

  const latest = (l: ScaleLedger) => l.nights[l.nights.length - 1]!.id;
  const commands = (c: { l: ScaleLedger; config: string }, name: string) => ({
    status: timeCli(dir, ['status', '--config', c.config]),
    statusBatch: timeCli(dir, ['status', '--batch', latest(c.l), '--config', c.config]),
    show: timeCli(dir, ['show', c.l.knownCard, '--config', c.config]),
    report: timeCli(dir, ['report', '--batch', latest(c.l), '--out', join(dir, `${name}-out`), '--config', c.config]),
  });
  say('scale: timing status, status --batch, show and report on each ledger ...');
  const onBig = commands(big, 'big');
  const onSmall = commands(small, 'small');
  const reportAlone = timeCli(dir, ['report', '--batch', latest(alone.l), '--out', join(dir, 'alone-out'), '--config', alone.config]);
  fig['commands'] = { big: onBig, small: onSmall, reportAlone };
  const n = (x: number) => x.toLocaleString('en');
  const timed = (name: string, a: Run, b: Run, against: string) => {
    const ratio = a.ms / b.ms;
    record({ name, figure: round(ratio), target: '<= 3', ok: ratio <= 3, detail: `${Math.round(a.ms)} ms vs ${Math.round(b.ms)} ms ${against}` });
  };
  const vsSmall = `at ${n(small.l.items)} items`;
  timed(`status, ${n(big.l.items)} items / ${n(small.l.items)}`, onBig.status, onSmall.status, vsSmall);
  timed(`status --batch, ${n(big.l.items)} items / ${n(small.l.items)}`, onBig.statusBatch, onSmall.statusBatch, vsSmall);
  timed(`show ID, ${n(big.l.items)} items / ${n(small.l.items)}`, onBig.show, onSmall.show, vsSmall);
  timed(`report --batch of a ${n(rows)}-row batch, in ${n(big.l.items)} items / alone`, onBig.report, reportAlone, `with the batch alone (${n(alone.l.items)} items); the ${n(SMALL_ITEMS / NIGHTS)}-row report at ${n(small.l.items)} items: ${Math.round(onSmall.report.ms)} ms`);
  const rss = (name: string, a: Run, b: Run) => {
    const ratio = a.rssKb / b.rssKb;
    record({ name, figure: round(ratio), target: '<= 1.5', ok: ratio <= 1.5, detail: `${mib(a.rssKb)} vs ${mib(b.rssKb)}` });
  };
  rss(`status peak RSS, ${n(big.l.items)} items / ${n(small.l.items)}`, onBig.status, onSmall.status);
  rss(`report peak RSS, ${n(big.l.items)} items / ${n(small.l.items)}`, onBig.report, onSmall.report);
  removeLedger(alone.l.path);

  say(`scale: pruning a copy of the ${n(big.l.items)}-item ledger (--older-than 10: 90 of its ${NIGHTS} nights) ...`);
  const before = checkpointedSize(big.l.path);
  const prunedPath = join(dir, 'pruned.sqlite');
  copyFileSync(big.l.path, prunedPath);
  const prunedConfig = writeConfig(dir, 'pruned', prunedPath, keyFile);
  const t0 = performance.now();
  const pr = spawnSync(process.execPath, [cli, 'prune', '--older-than', '10', '--json', '--config', prunedConfig], { encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'pipe'] });
  const pruneMs = performance.now() - t0;
  if (pr.status !== 0) throw new Error(`d1-optout prune exited ${pr.status}: ${pr.stderr.trim()}`);
  const pruned = JSON.parse(pr.stdout) as { batches: string[]; items: number };
  const after = checkpointedSize(prunedPath);
  removeLedger(prunedPath);
  const kept = big.l.items - pruned.items;
  fig['ledgerBytes'] = { unpruned: before, pruned: after, perItemUnpruned: round(before / big.l.items, 1), perItemPruned: round(after / big.l.items, 1), perKeptItemPruned: round(after / kept, 1), prunedBatches: pruned.batches.length, pruneMs: Math.round(pruneMs) };
  say(`scale:   ${round(before / big.l.items, 1)} bytes/item after ${NIGHTS} nights; after prune + VACUUM of ${pruned.batches.length}: ${round(after / big.l.items, 1)} bytes per item ingested (${round(after / kept, 1)} per item kept); prune took ${(pruneMs / 1000).toFixed(1)} s`);
  const sizeRatio = after / before;
  record({
    name: `ledger size after prune + VACUUM of ${pruned.batches.length} of ${NIGHTS} nights / before`,
    figure: round(sizeRatio),
    target: '<= 0.2',
    ok: sizeRatio <= 0.2 && pruned.batches.length === NIGHTS - 10,
    detail: `${(before / 2 ** 20).toFixed(0)} MiB (${round(before / big.l.items, 1)} B/item) → ${(after / 2 ** 20).toFixed(0)} MiB (${round(after / big.l.items, 1)} B/item ingested, ${round(after / kept, 1)} B/item kept)`,
  });
  for (const c of [big, small]) removeLedger(c.l.path);

  say(`scale: ingest of a ${n(ingestRows)}-row file 99% known vs all new ...`);
  const known = join(dir, 'known.csv');
  const fresh = join(dir, 'fresh.csv');
  const nextNight = join(dir, 'next-night.csv');
  const add = join(dir, 'add.csv');
  await writeCardFile(known, ingestRows, 11);
  await writeCardFile(fresh, ingestRows, 12);
  await writeCardFile(add, ingestRows / 100, 13);
  await concatRows(nextNight, known, ingestRows / 100, ingestRows - ingestRows / 100, add);
  // Alternated, twice each, the quicker of each kept: a run slowed by another process on a shared
  // machine would otherwise decide the ratio.
  const fastest = (a: IngestRun | null, b: IngestRun) => (a && a.ms <= b.ms ? a : b);
  let allNew: IngestRun | null = null;
  let mostlyKnown: IngestRun | null = null;
  for (let i = 0; i < INGEST_RUNS; i++) {
    for (const path of ['ingest-new.sqlite', 'ingest-known.sqlite']) removeLedger(join(dir, path));
    allNew = fastest(allNew, ingest(['job', fresh, join(dir, 'ingest-new.sqlite'), known]));
    mostlyKnown = fastest(mostlyKnown, ingest(['job', nextNight, join(dir, 'ingest-known.sqlite'), known]));
  }
  if (!allNew || !mostlyKnown) throw new Error('no ingest measured');
  const newRate = allNew.rows / (allNew.ms / 1000);
  const knownRate = mostlyKnown.rows / (mostlyKnown.ms / 1000);
  fig['ingestKnown'] = { allNewRowsPerSec: Math.round(newRate), knownRowsPerSec: Math.round(knownRate), allNewMs: Math.round(allNew.ms), knownMs: Math.round(mostlyKnown.ms), runsEach: INGEST_RUNS };
  const ingestRatio = knownRate / newRate;
  record({ name: `ingest rate, ${n(ingestRows)} rows 99% known / all new`, figure: round(ingestRatio), target: '>= 0.9', ok: ingestRatio >= 0.9, detail: `${n(Math.round(knownRate))} rows/s vs ${n(Math.round(newRate))} rows/s` });
  rmSync(dir, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opt = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 && argv[i + 1] ? Number(argv[i + 1]) : undefined;
  };
  const items = opt('--items');
  if (items !== undefined && !(Number.isInteger(items) && items >= 1_000_000 && items % 100_000 === 0)) {
    throw new Error('--items: a multiple of 100,000, at least 1,000,000 (100 nights, each a multiple of 100 rows larger than the small ledger\'s)');
  }
  const work = mkdtempSync(join(tmpdir(), 'd1-optout-scale-'));
  let failed = 0;
  const figures: Record<string, unknown> = {};
  try {
    await benchScale(
      work,
      (t) => {
        if (!t.ok) failed++;
        process.stdout.write(`${t.ok ? 'PASS' : 'FAIL'}  ${t.name}: ${t.figure} (target ${t.target}; ${t.detail})\n`);
      },
      figures,
      { items, ingestRows: opt('--ingest-rows') },
    );
    process.stdout.write(JSON.stringify(figures, null, 2) + '\n');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  process.exitCode = failed ? 1 : 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
