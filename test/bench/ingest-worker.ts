// One ingest measurement in a process of its own, so peak RSS belongs to it alone.
// Usage: node ingest-worker.js job|raw FILE LEDGER [KNOWN]  →  prints {"ms": n, "rows": n, "maxRssKb": n}
// With KNOWN (job only), that file is ingested first, untimed, as an earlier night whose targets
// were all opted out; then FILE is timed as the next night's (the 99%-known cumulative extract).
import Database from 'better-sqlite3';
import { createReadStream } from 'node:fs';
import { parse } from 'csv-parse';
import { ingestFiles } from '../../src/batch/ingest.js';
import { planBatch } from '../../src/batch/plan.js';
import { parseConfig } from '../../src/config.js';
import { identityOf, Ledger } from '../../src/ledger/index.js';
import { createLogger } from '../../src/log.js';

const [mode, file, ledgerPath, known] = process.argv.slice(2) as [string, string, string, string | undefined];
let t0 = performance.now();

async function job(): Promise<number> {
  const config = parseConfig({ d1: { issuerId: 'BENCHISSUE', keyId: 'k', privateKeyFile: '/dev/null' }, ledger: ledgerPath }, {});
  const log = createLogger({ level: 'error', file: null, console: false });
  const ledger = Ledger.create(ledgerPath, identityOf(config));
  if (known) {
    ledger.batches.create('earlier', 'run', null);
    await ingestFiles(ledger, 'earlier', [known], config, log, { force: false });
    planBatch(ledger, 'earlier', { kind: 'all' });
    ledger.tx(() => ledger.db.exec(`UPDATE targets SET state = 'OPTED_OUT'`));
    t0 = performance.now();
  }
  ledger.batches.create('bench', 'run', null);
  const [input] = await ingestFiles(ledger, 'bench', [file], config, log, { force: false });
  planBatch(ledger, 'bench', { kind: 'all' });
  ledger.close();
  return input!.rows;
}

/** The floor: csv-parse straight into INSERT OR IGNORE, 100,000 rows per transaction. */
async function raw(): Promise<number> {
  const db = new Database(ledgerPath);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE t (card_id TEXT PRIMARY KEY, consumer_id TEXT, reason TEXT)');
  const insert = db.prepare('INSERT OR IGNORE INTO t VALUES (?, ?, ?)');
  const flush = db.transaction((rows: string[][]) => {
    for (const r of rows) insert.run(r[0], r[1], r[2]);
  });
  let rows: string[][] = [];
  let n = 0;
  for await (const record of createReadStream(file).pipe(parse({ from_line: 2 }))) {
    rows.push(record as string[]);
    n++;
    if (rows.length === 100_000) {
      flush(rows);
      rows = [];
    }
  }
  flush(rows);
  db.close();
  return n;
}

t0 = performance.now();
const rows = mode === 'job' ? await job() : await raw();
const ms = performance.now() - t0;
process.stdout.write(JSON.stringify({ ms, rows, maxRssKb: process.resourceUsage().maxRSS }) + '\n');
