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
    last_batch_id    TEXT,
    updated_at       TEXT NOT NULL,
    UNIQUE (scope, target_id)
  );
  CREATE INDEX targets_work ON targets (last_batch_id, scope, state, pk);
  CREATE INDEX targets_state ON targets (state);
  CREATE INDEX targets_consumer ON targets (consumer_id) WHERE scope = 'CARD' AND consumer_id IS NOT NULL;

  -- One row per valid input row (origin ROW) and per target carried over from an earlier batch;
  -- pk order is batch order, which is what "earlier in this batch" means for duplicates.
  CREATE TABLE items (
    pk            INTEGER PRIMARY KEY,
    batch_id      TEXT NOT NULL REFERENCES batches(id),
    origin        TEXT NOT NULL CHECK (origin IN ('ROW', 'CARRY_OVER')),
    scope         TEXT NOT NULL,
    target_id     TEXT NOT NULL,
    consumer_id   TEXT,
    reason        TEXT,
    event_time    TEXT,
    reference     TEXT,
    input_ord     INTEGER,
    source_line   INTEGER,
    from_batch_id TEXT,
    disposition   TEXT,
    outcome       TEXT
  );
  CREATE INDEX items_batch_target ON items (batch_id, scope, target_id);
  CREATE INDEX items_target ON items (target_id);

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
];
