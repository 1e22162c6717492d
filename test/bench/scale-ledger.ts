// Builds, in SQL, the ledger of many nights of a cumulative daily extract, for the scale bench.
//
// The shape (docs/design.md §3, §4) is what the real job writes for such nights: night 1 has
// `rowsPerNight` new cards, every later night the same number of rows of which 99% are cards an
// earlier night opted out (disposition and frozen outcome SKIPPED_ALREADY_OPTED_OUT) and 1% new
// cards (SUBMIT, outcome OPTED_OUT, one OPT_OUT attempt answered 200, target OPTED_OUT). Each
// night's file is the previous one without its oldest 1% plus 1% new cards: night n has a row for
// target pks ((n-1)K, (n-1)K + R], K = R/100, and its last K are new. Rows are in a scattered
// order (as in a real file, where the targets' order is the card ids' order, not the file's).
//
// The ledger is made by Ledger.create (so its schema and migrations are the real ones) and filled
// with INSERT ... SELECT over a recursive CTE, one transaction a night. Only the build differs
// from a real night: the two items indexes are dropped and made again at the end (a sorted build
// instead of ten million inserts at random places), the journal is off and nothing is synced until
// the end; the finished file is a WAL ledger like any other.
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ledger } from '../../src/ledger/index.js';
import type { LedgerIdentity } from '../../src/types.js';

export interface ScaleShape {
  /** Nights (batches); night 1 is all new cards. */
  nights: number;
  /** Rows (items) of every night; a multiple of 100. */
  rowsPerNight: number;
  /**
   * Build only the nights from this one on, with only the targets their rows name (the targets of
   * earlier nights are there, opted out, as the batches that did it are not): 1 for the whole ledger.
   */
  firstNight?: number;
  /** The last night's batch ended this long before now (the others a day apart before it). */
  lastEndedAgoMs?: number;
}

export interface ScaleNight {
  n: number;
  id: string;
  startedAt: string;
  endedAt: string;
}

export interface ScaleLedger {
  path: string;
  nights: ScaleNight[];
  items: number;
  targets: number;
  /** A card id of the last night that an earlier night opted out: `show` of it reads its whole history. */
  knownCard: string;
  buildMs: number;
}

const DAY_MS = 86_400_000;
/** Scatters row j of a night over its R targets: a bijection on 0..R-1 since 7919 is prime to 2 and 5. */
const SCATTER = 7919;
/** Opt-outs per second the nights are made to have run at (it sets each batch's length). */
const RATE = 100;
const REASONS = `CASE j % 5 WHEN 0 THEN 'CLOSED' WHEN 1 THEN 'FRAUD' WHEN 2 THEN 'LOST_STOLEN' WHEN 3 THEN 'REGULATORY' ELSE 'CUSTOMER_REQUEST' END`;

/** Deterministic 24-character ids, scattered by a multiplicative hash so key order is not pk order. */
export const cardIdSql = (pk: string) => `'CARD-' || printf('%08X', (${pk} * 2654435761) % 4294967296) || printf('%011d', ${pk})`;
const consumerIdSql = (pk: string) => `'CONS-' || printf('%08X', (${pk} * 2246822519) % 4294967296) || printf('%011d', ${pk})`;
/** An ISO 8601 instant `sec` seconds after the ISO instant `iso`, with milliseconds, as the job writes them. */
const plusSec = (iso: string, sec: string) => `strftime('%Y-%m-%dT%H:%M:%fZ', ${iso}, '+' || (${sec}) || ' seconds')`;

export function cardId(pk: number): string {
  const hex = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');
  return `CARD-${hex(Number((BigInt(pk) * 2654435761n) % 4294967296n))}${String(pk).padStart(11, '0')}`;
}

/** The nights' batch ids and times: a batch at 02:00 UTC each day, the last ending `lastEndedAgoMs` ago. */
function nightsOf(shape: Required<ScaleShape>, now = Date.now()): ScaleNight[] {
  const K = shape.rowsPerNight / 100;
  const lengthMs = (n: number) => 60_000 + Math.ceil(((n === 1 ? shape.rowsPerNight : K) / RATE) * 1000);
  const out: ScaleNight[] = [];
  const lastStart = now - shape.lastEndedAgoMs - lengthMs(shape.nights);
  for (let n = 1; n <= shape.nights; n++) {
    const start = new Date(lastStart - (shape.nights - n) * DAY_MS);
    const startedAt = start.toISOString();
    const id = `${startedAt.slice(0, 10)}T${startedAt.slice(11, 13)}${startedAt.slice(14, 16)}-${n.toString(16).padStart(4, '0')}`;
    out.push({ n, id, startedAt, endedAt: new Date(start.getTime() + lengthMs(n)).toISOString() });
  }
  return out;
}

export function buildScaleLedger(path: string, identity: LedgerIdentity, shapeIn: ScaleShape): ScaleLedger {
  const t0 = performance.now();
  const shape: Required<ScaleShape> = { firstNight: 1, lastEndedAgoMs: 3_600_000, ...shapeIn };
  const R = shape.rowsPerNight;
  const K = R / 100;
  if (!Number.isInteger(K) || K < 1) throw new Error(`rowsPerNight must be a multiple of 100, not ${R}`);
  const N = shape.nights;
  const F = shape.firstNight;
  const nights = nightsOf(shape);
  const ledger = Ledger.create(path, identity);
  const db = ledger.db;
  try {
    db.pragma('journal_mode = OFF');
    db.pragma('synchronous = OFF');
    db.pragma('cache_size = -262144');
    db.exec(`DROP INDEX items_batch; DROP INDEX items_target;`);
    db.exec(`CREATE TEMP TABLE nights (n INTEGER PRIMARY KEY, id TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT NOT NULL)`);
    const addNight = db.prepare(`INSERT INTO temp.nights VALUES (?, ?, ?, ?)`);
    for (const night of nights) addNight.run(night.n, night.id, night.startedAt, night.endedAt);
    // A target's nights: created by night c (its first), last seen by night s.
    const created = `(CASE WHEN p <= ${R} THEN 1 ELSE 1 + (p - ${R} + ${K - 1}) / ${K} END)`;
    const seen = `min(${N}, (p + ${K - 1}) / ${K})`;
    // Its opt-out request, at RATE a second after the first minute of the night that created it.
    const sentSec = (p: string) => `(60 + ((CASE WHEN ${p} <= ${R} THEN ${p} - 1 ELSE (${p} - ${R} - 1) % ${K} END) * 1.0 / ${RATE}))`;
    const firstPk = (F - 1) * K + 1;
    const lastPk = (N - 1) * K + R;
    db.transaction(() => {
      db.exec(`
        INSERT INTO batches (id, kind, parent_id, started_at, ended_at, status, abort_reason, stats)
        SELECT id, 'run', NULL, started_at, ended_at, 'COMPLETED', NULL,
               '{"inbox":{"deferred":[],"quarantined":[]},"throttledMs":0,"lowestRps":${RATE},"tokenRequests":1,"tokenFailures":0}'
          FROM temp.nights WHERE n >= ${F} ORDER BY n;
        INSERT INTO files (sha256, first_batch_id, path, state, rows, rejected, ingested_at)
        SELECT printf('%064x', n * 2654435761), id, '/var/d1-optout/inbox/cards-' || substr(started_at, 1, 10) || '.csv', 'INGESTED', ${R}, 0, ${plusSec('started_at', '30')}
          FROM temp.nights WHERE n >= ${F} ORDER BY n;
        INSERT INTO batch_inputs (batch_id, ord, path, sha256, rows, rejected, seen_before)
        SELECT id, 0, '/var/d1-optout/inbox/cards-' || substr(started_at, 1, 10) || '.csv', printf('%064x', n * 2654435761), ${R}, 0, 0
          FROM temp.nights WHERE n >= ${F} ORDER BY n;
        -- Every target an included night names, opted out by the night that created it.
        INSERT INTO targets (pk, scope, target_id, consumer_id, state, operation_id, attempts, last_http_status,
                             last_error_code, last_error, last_batch_id, seen_batch_id, updated_at)
        WITH RECURSIVE k(p) AS (SELECT ${firstPk} UNION ALL SELECT p + 1 FROM k WHERE p < ${lastPk})
        SELECT p, 'CARD', ${cardIdSql('p')}, ${consumerIdSql('p')}, 'OPTED_OUT', 'OP' || printf('%022d', p), 1, 200,
               NULL, NULL, c.id, s.id, ${plusSec('c.started_at', `${sentSec('p')} + 0.015`)}
          FROM k JOIN temp.nights c ON c.n = ${created} JOIN temp.nights s ON s.n = ${seen};
      `);
    })();
    const night = db.prepare(`
      INSERT INTO items (batch_id, origin, target_pk, scope, target_id, consumer_id, reason, event_time, reference,
                         input_ord, source_line, from_batch_id, disposition, outcome)
      WITH RECURSIVE r(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM r WHERE j < ${R - 1})
      SELECT @id, 'ROW', t.pk, t.scope, t.target_id, t.consumer_id, ${REASONS}, '2026-11-28T01:00:00Z', 'bench row ' || j,
             0, j + 2, NULL, d.disposition, d.outcome
        FROM r JOIN targets t ON t.pk = @base + (j * ${SCATTER}) % ${R} + 1
        JOIN (SELECT 'SUBMIT' AS disposition, 'OPTED_OUT' AS outcome UNION ALL SELECT 'SKIPPED_ALREADY_OPTED_OUT', 'SKIPPED_ALREADY_OPTED_OUT') d
          ON d.disposition = CASE WHEN @n = 1 OR t.pk > @base + ${R - K} THEN 'SUBMIT' ELSE 'SKIPPED_ALREADY_OPTED_OUT' END
       ORDER BY j`);
    const attempts = db.prepare(`
      INSERT INTO attempts (batch_id, target_pk, kind, correlation_id, started_at, ended_at, http_status, error_code, error,
                            operation_id, operation_status, class)
      SELECT t.last_batch_id, t.pk, 'OPT_OUT', 'C' || printf('%021d', t.pk), ${plusSec('c.started_at', sentSec('t.pk'))},
             t.updated_at, 200, NULL, NULL, t.operation_id, 'SUCCESSFUL', 'done'
        FROM targets t JOIN temp.nights c ON c.id = t.last_batch_id
       WHERE c.n = @n ORDER BY t.pk`);
    for (const { n, id } of nights) {
      if (n < F) continue;
      db.transaction(() => {
        night.run({ id, n, base: (n - 1) * K });
        attempts.run({ n });
      })();
    }
    db.exec(`CREATE INDEX items_batch ON items (batch_id); CREATE INDEX items_target ON items (target_pk);`);
    const built = nights.filter((x) => x.n >= F);
    // Each night's counts are stored the way a closing batch stores them.
    db.transaction(() => {
      for (const b of built) ledger.items.storeCounts(b.id);
    })();
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    const items = (db.prepare(`SELECT max(pk) AS n FROM items`).get() as { n: number }).n;
    const targets = (db.prepare(`SELECT count(*) AS n FROM targets`).get() as { n: number }).n;
    return { path, nights: built, items, targets, knownCard: cardId((N - 1) * K + 1), buildMs: performance.now() - t0 };
  } finally {
    ledger.close();
  }
}

// `node scale-ledger.js PATH IDENTITY_JSON SHAPE_JSON` builds in a process of its own and prints
// the ScaleLedger as JSON: the bench's own memory stays small, and so does every child it spawns.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [path, identity, shape] = process.argv.slice(2) as [string, string, string];
  process.stdout.write(JSON.stringify(buildScaleLedger(path, JSON.parse(identity) as LedgerIdentity, JSON.parse(shape) as ScaleShape)) + '\n');
}
