import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ingestFiles } from '../src/batch/ingest.js';
import { parseConfig } from '../src/config.js';
import { CardFileError } from '../src/errors.js';
import { Ledger } from '../src/ledger/index.js';
import { createLogger } from '../src/log.js';
import { csv, ROOT } from './helpers.js';

// The ledger's intake admits a file's rows together (docs/design.md §3 rules 1, 2, 4, 5 in SQL): these
// tests look at the ledger itself after an ingest, on a real SQLite file, with targets "in every
// state" put there first, and check the rows around each case were left alone.

const HEADER = 'card_id,consumer_id,reason,scope';
const log = createLogger({ level: 'error', file: null, console: false });

let dir: string;
let ledger: Ledger;
const config = () => parseConfig({ d1: { issuerId: 'TESTISSUER', keyId: 'k', privateKeyFile: '/dev/null' }, ledger: join(dir, 'ledger.sqlite') }, {});

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'd1-optout-intake-'));
  ledger = Ledger.create(join(dir, 'ledger.sqlite'), { issuerId: 'TESTISSUER', baseUrl: 'http://127.0.0.1:9/d1' });
});
afterEach(() => {
  ledger.close();
  rmSync(dir, { recursive: true, force: true });
});

function file(name: string, rows: string[]): string {
  const path = join(dir, name);
  writeFileSync(path, csv(HEADER, rows));
  return path;
}

async function ingest(batchId: string, files: string[]): Promise<void> {
  ledger.batches.create(batchId, 'run', null);
  await ingestFiles(ledger, batchId, files, config(), log, { force: false });
}

interface ItemLine {
  target_id: string;
  source_line: number;
  disposition: string;
  target_pk: number;
  consumer_id: string | null;
}
function items(batchId: string): ItemLine[] {
  return ledger.db
    .prepare<[string], ItemLine>(`SELECT target_id, source_line, disposition, target_pk, consumer_id FROM items WHERE batch_id = ? ORDER BY pk`)
    .all(batchId);
}

interface TargetLine {
  pk: number;
  state: string;
  consumer_id: string | null;
  last_batch_id: string | null;
  seen_batch_id: string | null;
}
function target(id: string, scope = 'CARD'): TargetLine {
  return ledger.db
    .prepare<[string, string], TargetLine>(`SELECT pk, state, consumer_id, last_batch_id, seen_batch_id FROM targets WHERE scope = ? AND target_id = ?`)
    .get(scope, id)!;
}

function setState(id: string, state: string): void {
  ledger.db.prepare(`UPDATE targets SET state = ? WHERE scope = 'CARD' AND target_id = ?`).run(state, id);
}

describe('ledger intake', () => {
  it('gives every row its target and disposition, items in file order, a new target the first row consumer', async () => {
    await ingest('B1', [file('a.csv', ['CARD-2,CONS-A,CLOSED,', 'CARD-1,,CLOSED,', 'CARD-2,CONS-B,FRAUD,', ',CONS-A,CLOSED,CONSUMER', 'CARD-1,CONS-C,FRAUD,'])]);
    const lines = items('B1');
    expect(lines.map((l) => [l.target_id, l.source_line, l.disposition])).toEqual([
      ['CARD-2', 2, 'SUBMIT'],
      ['CARD-1', 3, 'SUBMIT'],
      ['CARD-2', 4, 'SKIPPED_DUPLICATE'],
      ['CONS-A', 5, 'SUBMIT'],
      ['CARD-1', 6, 'SKIPPED_DUPLICATE'],
    ]);
    // Each line points at its own target; the row's own consumer stays on the line.
    expect(lines.map((l) => l.target_pk)).toEqual([target('CARD-2').pk, target('CARD-1').pk, target('CARD-2').pk, target('CONS-A', 'CONSUMER').pk, target('CARD-1').pk]);
    expect(lines.map((l) => l.consumer_id)).toEqual(['CONS-A', null, 'CONS-B', 'CONS-A', 'CONS-C']);
    expect(target('CARD-2')).toMatchObject({ state: 'QUEUED', consumer_id: 'CONS-A', last_batch_id: 'B1', seen_batch_id: 'B1' });
    expect(target('CARD-1')).toMatchObject({ state: 'QUEUED', consumer_id: null, last_batch_id: 'B1', seen_batch_id: 'B1' });
    // Foreign keys were off while the file was admitted; every reference it wrote holds.
    expect(ledger.db.pragma('foreign_key_check')).toEqual([]);
    expect(ledger.db.pragma('foreign_keys', { simple: true })).toBe(1);
  });

  it('applies rules 1, 2, 4 and 5 to targets the ledger knew, and leaves the others alone', async () => {
    await ingest('B1', [file('a.csv', ['CARD-OPT,CONS-1,CLOSED,', 'CARD-PEN,,CLOSED,', 'CARD-PERM,,CLOSED,', 'CARD-RETRY,CONS-OLD,CLOSED,', 'CARD-KEEP,CONS-K,CLOSED,', 'CARD-UNSEEN,,CLOSED,', 'CARD-ZZ,,CLOSED,'])]);
    // New targets are created in key order: CARD-ZZ has the highest pk the ledger knew.
    expect(target('CARD-ZZ').pk).toBe(Math.max(...['CARD-OPT', 'CARD-UNSEEN', 'CARD-RETRY'].map((id) => target(id).pk)) + 1);
    setState('CARD-ZZ', 'OPTED_OUT');
    setState('CARD-OPT', 'OPTED_OUT');
    setState('CARD-PEN', 'PENDING');
    setState('CARD-PERM', 'FAILED_PERMANENT');
    setState('CARD-RETRY', 'FAILED_RETRYABLE');
    setState('CARD-KEEP', 'FAILED_RETRYABLE');
    const untouched = target('CARD-UNSEEN');

    await ingest('B2', [
      file('b.csv', ['CARD-OPT,,FRAUD,', 'CARD-PEN,,FRAUD,', 'CARD-PERM,,FRAUD,', 'CARD-RETRY,CONS-NEW,FRAUD,', 'CARD-KEEP,,FRAUD,', 'CARD-RETRY,CONS-LATER,FRAUD,']),
      file('c.csv', ['CARD-OPT,,FRAUD,', 'CARD-NEW,,FRAUD,', 'CARD-ZZ,,FRAUD,']),
    ]);
    expect(items('B2').map((l) => [l.target_id, l.disposition])).toEqual([
      ['CARD-OPT', 'SKIPPED_ALREADY_OPTED_OUT'],
      ['CARD-PEN', 'SKIPPED_ALREADY_PENDING'],
      ['CARD-PERM', 'SKIPPED_PREVIOUSLY_FAILED'],
      ['CARD-RETRY', 'SUBMIT'],
      ['CARD-KEEP', 'SUBMIT'],
      ['CARD-RETRY', 'SKIPPED_DUPLICATE'],
      // rule 1 across the batch's files
      ['CARD-OPT', 'SKIPPED_DUPLICATE'],
      ['CARD-NEW', 'SUBMIT'],
      ['CARD-ZZ', 'SKIPPED_ALREADY_OPTED_OUT'],
    ]);
    // Skipped targets are only marked seen; submitted ones become this batch's work, taking the
    // consumer of their first row when it names one.
    expect(target('CARD-OPT')).toMatchObject({ state: 'OPTED_OUT', last_batch_id: 'B1', seen_batch_id: 'B2', consumer_id: 'CONS-1' });
    expect(target('CARD-PEN')).toMatchObject({ state: 'PENDING', last_batch_id: 'B1', seen_batch_id: 'B2' });
    expect(target('CARD-PERM')).toMatchObject({ state: 'FAILED_PERMANENT', last_batch_id: 'B1', seen_batch_id: 'B2' });
    expect(target('CARD-RETRY')).toMatchObject({ state: 'QUEUED', last_batch_id: 'B2', seen_batch_id: 'B2', consumer_id: 'CONS-NEW' });
    expect(target('CARD-KEEP')).toMatchObject({ state: 'QUEUED', last_batch_id: 'B2', seen_batch_id: 'B2', consumer_id: 'CONS-K' });
    expect(target('CARD-NEW')).toMatchObject({ state: 'QUEUED', last_batch_id: 'B2', seen_batch_id: 'B2' });
    expect(target('CARD-UNSEEN')).toEqual(untouched);
    expect(ledger.db.pragma('foreign_key_check')).toEqual([]);
  });

  it('keeps nothing of a file it could not read to the end, and the next file is not mixed with it', async () => {
    const rows = Array.from({ length: 3000 }, (_, i) => `CARD-H${i},,CLOSED,`);
    const broken = join(dir, 'broken.csv');
    writeFileSync(broken, csv(HEADER, [...rows, 'CARD-Q,,CLOSED,"' + 'x'.repeat(70 * 1024)]));
    ledger.batches.create('B1', 'run', null);
    await expect(ingestFiles(ledger, 'B1', [broken], config(), log, { force: false })).rejects.toBeInstanceOf(CardFileError);
    expect(items('B1')).toEqual([]);
    expect(ledger.targets.countByState()).toEqual({});

    await ingest('B2', [file('good.csv', ['CARD-G1,,CLOSED,'])]);
    expect(items('B2').map((l) => [l.target_id, l.disposition])).toEqual([['CARD-G1', 'SUBMIT']]);
    expect(ledger.targets.countByState()).toEqual({ QUEUED: 1 });
  });

  it('starts every file empty: rows staged for a file that was never admitted do not leak into the next', async () => {
    ledger.batches.create('B1', 'run', null);
    const row = (id: string, line: number) => ({ scope: 'CARD' as const, targetId: id, consumerId: null, reason: 'CLOSED', eventTime: null, reference: null, sourceFile: 'x.csv', sourceLine: line });
    ledger.intake.begin();
    ledger.intake.stage([row('CARD-LOST', 2)], [{ sourceFile: 'x.csv', sourceLine: 3, error: 'bad', raw: 'r' }]);
    // ... and that file failed before its admit; the next one begins:
    ledger.intake.begin();
    ledger.intake.stage([row('CARD-NEXT', 2)], []);
    ledger.bulkTx(() => ledger.intake.admit('B1', 1));
    expect(items('B1').map((l) => l.target_id)).toEqual(['CARD-NEXT']);
    expect(ledger.db.prepare(`SELECT count(*) AS n FROM rejects`).get()).toEqual({ n: 0 });
  });

  it('waits for another writer instead of failing when the file is admitted', async () => {
    ledger.batches.create('B1', 'run', null);
    ledger.intake.begin();
    ledger.intake.stage([{ scope: 'CARD', targetId: 'CARD-W', consumerId: null, reason: 'CLOSED', eventTime: null, reference: null, sourceFile: 'x.csv', sourceLine: 2 }], []);
    // Another process (an ops command, say) holds the ledger's write lock for a second.
    const holder = spawn(
      process.execPath,
      ['-e', `const db = new (require('better-sqlite3'))(process.argv[1]); db.exec('BEGIN IMMEDIATE'); console.log('locked'); setTimeout(() => { db.exec('COMMIT'); db.close(); }, 1000);`, join(dir, 'ledger.sqlite')],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await once(holder.stdout!, 'data');
    const started = Date.now();
    ledger.bulkTx(() => ledger.intake.admit('B1', 0));
    expect(Date.now() - started).toBeGreaterThanOrEqual(500);
    expect(items('B1').map((l) => l.target_id)).toEqual(['CARD-W']);
    await once(holder, 'exit');
  });

  it('keeps the page caches of the ledger and of its staging tables small, in a run and in a dry run', () => {
    // The one part of the job's memory that grew with a large file (npm run bench measures it).
    for (const l of [ledger, Ledger.copyOf(join(dir, 'ledger.sqlite'))]) {
      l.intake.begin();
      expect(l.db.pragma('cache_size', { simple: true })).toBe(-4096);
      expect(l.db.pragma('temp.cache_size', { simple: true })).toBe(-4096);
      if (l !== ledger) l.close();
    }
  });
});
