/**
 * Numbered migrations, applied in order and tracked by PRAGMA user_version. Never edit one that
 * has shipped: add the next number instead.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: the first ledger.
  `
  CREATE TABLE batches (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('run', 'rerun')),
    parent_id   TEXT REFERENCES batches(id),
    started_at  TEXT NOT NULL,
    ended_at    TEXT,
    status      TEXT NOT NULL CHECK (status IN ('RUNNING', 'COMPLETED', 'COMPLETED_WITH_FAILURES', 'ABORTED')),
    abort_reason TEXT,
    stats       TEXT NOT NULL DEFAULT '{}'
  );

  -- Every input file by content; a file whose sha256 is here as INGESTED is not read again.
  CREATE TABLE files (
    sha256         TEXT PRIMARY KEY,
    first_batch_id TEXT NOT NULL REFERENCES batches(id),
    path           TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('INGESTING', 'INGESTED')),
    rows           INTEGER NOT NULL DEFAULT 0,
    rejected       INTEGER NOT NULL DEFAULT 0,
    ingested_at    TEXT
  );

  -- The files a batch was given, in order, including those skipped as seen before.
  CREATE TABLE batch_inputs (
    batch_id    TEXT NOT NULL REFERENCES batches(id),
    ord         INTEGER NOT NULL,
    path        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    rows        INTEGER NOT NULL DEFAULT 0,
    rejected    INTEGER NOT NULL DEFAULT 0,
    seen_before INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (batch_id, ord)
  );

  -- Every card or consumer any batch has seen, with its state (docs/design.md §3).
  CREATE TABLE targets (
    pk               INTEGER PRIMARY KEY,
    scope            TEXT NOT NULL CHECK (scope IN ('CARD', 'CONSUMER')),
    target_id        TEXT NOT NULL,
    consumer_id      TEXT,
    state            TEXT NOT NULL CHECK (state IN ('QUEUED', 'SUBMITTING', 'PENDING', 'OPTED_OUT', 'FAILED_RETRYABLE', 'FAILED_PERMANENT')),
    operation_id     TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_http_status INTEGER,
    last_error_code  TEXT,
    last_error       TEXT,
    -- The batch that last queued, sent or polled it: the batch whose work it is.
    last_batch_id    TEXT,
    -- The batch that last had a row for it: a second row in the same batch is a duplicate.
    seen_batch_id    TEXT,
    updated_at       TEXT NOT NULL,
    UNIQUE (scope, target_id)
  );
  -- Only unfinished targets: a batch's work list, its pending polls and the carry-over all look
  -- here, and it stays small however many targets the ledger has opted out over the years.
  CREATE INDEX targets_open ON targets (last_batch_id, state) WHERE state IN ('QUEUED', 'SUBMITTING', 'PENDING', 'FAILED_RETRYABLE');

  -- One row per valid input row (origin ROW) and per target carried over from an earlier batch.
  -- pk order is batch order; a batch's items are written by one process at a time, so they
  -- also form one run of pks, and both indexes grow at their ends during an ingest.
  CREATE TABLE items (
    pk            INTEGER PRIMARY KEY,
    batch_id      TEXT NOT NULL REFERENCES batches(id),
    origin        TEXT NOT NULL CHECK (origin IN ('ROW', 'CARRY_OVER')),
    target_pk     INTEGER NOT NULL REFERENCES targets(pk),
    scope         TEXT NOT NULL,
    target_id     TEXT NOT NULL,
    consumer_id   TEXT,
    reason        TEXT,
    event_time    TEXT,
    reference     TEXT,
    input_ord     INTEGER,
    source_line   INTEGER,
    from_batch_id TEXT,
    disposition   TEXT NOT NULL,
    outcome       TEXT
  );
  CREATE INDEX items_batch ON items (batch_id);
  CREATE INDEX items_target ON items (target_pk);

  CREATE TABLE attempts (
    id               INTEGER PRIMARY KEY,
    batch_id         TEXT NOT NULL REFERENCES batches(id),
    target_pk        INTEGER NOT NULL REFERENCES targets(pk),
    kind             TEXT NOT NULL CHECK (kind IN ('OPT_OUT', 'GET_OPERATION')),
    correlation_id   TEXT NOT NULL,
    started_at       TEXT NOT NULL,
    ended_at         TEXT,
    http_status      INTEGER,
    error_code       TEXT,
    error            TEXT,
    operation_id     TEXT,
    operation_status TEXT,
    class            TEXT
  );
  CREATE INDEX attempts_target ON attempts (target_pk, batch_id);
  CREATE INDEX attempts_batch ON attempts (batch_id);

  CREATE TABLE rejects (
    batch_id    TEXT NOT NULL REFERENCES batches(id),
    input_ord   INTEGER NOT NULL,
    source_line INTEGER NOT NULL,
    error       TEXT NOT NULL,
    raw         TEXT NOT NULL
  );
  CREATE INDEX rejects_batch ON rejects (batch_id);

  -- At most one row: who runs against this ledger now.
  CREATE TABLE lock (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    owner        TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    host         TEXT NOT NULL,
    command      TEXT NOT NULL,
    acquired_at  TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL
  );
  `,
  // 2: the ledger's identity (docs/design.md §12): the issuer and D1 base URL its history was made
  // against, so that a ledger filled against the simulator is never taken for production history.
  // A ledger older than this has no row yet and is bound to the config it is next opened with.
  `
  CREATE TABLE identity (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    issuer_id TEXT NOT NULL,
    base_url  TEXT NOT NULL,
    bound_at  TEXT NOT NULL
  );

  -- Every change of identity: created by init, bound on first open (older ledgers), moved by init --rebind.
  CREATE TABLE ledger_history (
    id                 INTEGER PRIMARY KEY,
    at                 TEXT NOT NULL,
    event              TEXT NOT NULL CHECK (event IN ('init', 'bind', 'rebind')),
    issuer_id          TEXT NOT NULL,
    base_url           TEXT NOT NULL,
    previous_issuer_id TEXT,
    previous_base_url  TEXT,
    pid                INTEGER NOT NULL,
    host               TEXT NOT NULL
  );
  `,
  // 3: retention (docs/design.md §3): `prune` deletes the items, attempts and rejects of old batches
  // but keeps every batch row (a few hundred bytes a night keep "what ran when" answerable) and
  // every target (dedupe needs its state). Each prune is recorded, and the batches and targets it
  // took history from point at it, so `status` and `show` can say what was pruned and when.
  `
  CREATE TABLE prunes (
    id              INTEGER PRIMARY KEY,
    pruned_at       TEXT NOT NULL,
    older_than_days INTEGER NOT NULL,
    cutoff          TEXT NOT NULL,
    batches         INTEGER NOT NULL,
    items           INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    rejects         INTEGER NOT NULL,
    report_folders  INTEGER NOT NULL DEFAULT 0,
    bytes_reclaimed INTEGER NOT NULL DEFAULT 0
  );
  ALTER TABLE batches ADD COLUMN pruned_by INTEGER REFERENCES prunes(id);
  ALTER TABLE targets ADD COLUMN pruned_by INTEGER REFERENCES prunes(id);
  `,
  // 4: NOT_ENROLLED, a final target state (D1 said there is nothing to opt out, d1.notEnrolledErrorCodes).
  // SQLite cannot change a CHECK in place: the targets table is rebuilt (pks kept, so every
  // reference from items and attempts still holds) and its index made again.
  `
  CREATE TABLE targets_with_not_enrolled (
    pk               INTEGER PRIMARY KEY,
    scope            TEXT NOT NULL CHECK (scope IN ('CARD', 'CONSUMER')),
    target_id        TEXT NOT NULL,
    consumer_id      TEXT,
    state            TEXT NOT NULL CHECK (state IN ('QUEUED', 'SUBMITTING', 'PENDING', 'OPTED_OUT', 'FAILED_RETRYABLE', 'FAILED_PERMANENT', 'NOT_ENROLLED')),
    operation_id     TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_http_status INTEGER,
    last_error_code  TEXT,
    last_error       TEXT,
    last_batch_id    TEXT,
    seen_batch_id    TEXT,
    updated_at       TEXT NOT NULL,
    pruned_by        INTEGER REFERENCES prunes(id),
    UNIQUE (scope, target_id)
  );
  INSERT INTO targets_with_not_enrolled (pk, scope, target_id, consumer_id, state, operation_id, attempts, last_http_status, last_error_code, last_error, last_batch_id, seen_batch_id, updated_at, pruned_by)
    SELECT pk, scope, target_id, consumer_id, state, operation_id, attempts, last_http_status, last_error_code, last_error, last_batch_id, seen_batch_id, updated_at, pruned_by
      FROM targets ORDER BY scope, target_id;
  DROP TABLE targets;
  ALTER TABLE targets_with_not_enrolled RENAME TO targets;
  CREATE INDEX targets_open ON targets (last_batch_id, state) WHERE state IN ('QUEUED', 'SUBMITTING', 'PENDING', 'FAILED_RETRYABLE');
  `,
  // 5: scale (docs/design.md §3): `status` and `status --batch` read a closed batch's outcome counts
  // from here instead of grouping its items (10 batches of 100,000 items each for one `status`),
  // and find what a batch left undone through a partial index that holds only those items. The
  // counts are stored when a batch's outcomes are frozen and again whenever a later poll refreezes
  // them (Items.storeCounts); a batch still RUNNING is counted from its items, as before. Closed
  // batches of an older ledger get theirs here, from their frozen outcomes; pruned ones have none.
  `
  CREATE TABLE batch_counts (
    batch_id TEXT NOT NULL REFERENCES batches(id),
    origin   TEXT NOT NULL,
    outcome  TEXT NOT NULL,
    n        INTEGER NOT NULL,
    PRIMARY KEY (batch_id, origin, outcome)
  ) WITHOUT ROWID;
  -- As status counted them until now: the frozen outcome, or (never frozen) the one the target implies.
  INSERT INTO batch_counts (batch_id, origin, outcome, n)
    SELECT i.batch_id, i.origin,
           coalesce(i.outcome, CASE WHEN i.disposition LIKE 'SKIPPED_%' THEN i.disposition WHEN t.state = 'QUEUED' THEN 'NOT_ATTEMPTED'
                                    WHEN t.state = 'SUBMITTING' THEN 'FAILED_RETRYABLE' ELSE t.state END),
           count(*)
      FROM items i JOIN targets t ON t.pk = i.target_pk JOIN batches b ON b.id = i.batch_id
     WHERE b.status <> 'RUNNING'
     GROUP BY 1, 2, 3;
  CREATE INDEX items_left ON items (batch_id) WHERE outcome IN ('FAILED_RETRYABLE', 'FAILED_PERMANENT', 'NOT_ATTEMPTED', 'PENDING');
  `,
];
