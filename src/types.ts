// Every public type of d1-optout lives here, so that the contracts of docs/design.md have one home.

export type Scope = 'CARD' | 'CONSUMER';

/** A target's state in the ledger (docs/design.md §3). */
export type TargetState =
  | 'QUEUED'
  | 'SUBMITTING'
  | 'PENDING'
  | 'OPTED_OUT'
  | 'FAILED_RETRYABLE'
  | 'FAILED_PERMANENT'
  /** Final: D1 said there is nothing to opt out (an errorCode of `d1.notEnrolledErrorCodes`). */
  | 'NOT_ENROLLED';

/** Why a valid row is not submitted in this batch (docs/design.md §3, rules 1–4). */
export type SkipDisposition =
  | 'SKIPPED_DUPLICATE'
  | 'SKIPPED_ALREADY_OPTED_OUT'
  | 'SKIPPED_ALREADY_PENDING'
  | 'SKIPPED_COVERED_BY_CONSUMER'
  | 'SKIPPED_PREVIOUSLY_FAILED'
  /** The target is NOT_ENROLLED (an earlier batch learned it): nothing to send. */
  | 'SKIPPED_NOT_ENROLLED';

/** The outcome of one input row or carried-over target, as reported (docs/design.md §4). */
export type Outcome =
  | 'OPTED_OUT'
  | 'PENDING'
  | 'FAILED_RETRYABLE'
  | 'FAILED_PERMANENT'
  | 'NOT_ATTEMPTED'
  /** D1 answered that the card or consumer is not enrolled in Click to Pay: final, not a failure. */
  | 'NOT_ENROLLED'
  | SkipDisposition;

export const OUTCOMES: readonly Outcome[] = [
  'OPTED_OUT',
  'PENDING',
  'FAILED_RETRYABLE',
  'FAILED_PERMANENT',
  'NOT_ATTEMPTED',
  'SKIPPED_DUPLICATE',
  'SKIPPED_ALREADY_OPTED_OUT',
  'SKIPPED_ALREADY_PENDING',
  'SKIPPED_COVERED_BY_CONSUMER',
  'SKIPPED_PREVIOUSLY_FAILED',
  'NOT_ENROLLED',
  'SKIPPED_NOT_ENROLLED',
];

export const FAILURE_OUTCOMES: readonly Outcome[] = ['FAILED_RETRYABLE', 'FAILED_PERMANENT', 'NOT_ATTEMPTED'];

export type BatchKind = 'run' | 'rerun';
export type BatchStatus = 'RUNNING' | 'COMPLETED' | 'COMPLETED_WITH_FAILURES' | 'ABORTED';

/** The class every error and every D1 answer carries (house rule: reject, retryable, permanent, fatal). */
export type ErrorClass = 'reject' | 'retryable' | 'permanent' | 'fatal';

// ---------------------------------------------------------------------------------------------
// Card files

/** One valid row of a card file. */
export interface CardRow {
  scope: Scope;
  /** The D1 id of the target: cardId for CARD, consumerId for CONSUMER. */
  targetId: string;
  /** The consumer the card belongs to, when the file says so (always set for CONSUMER rows). */
  consumerId: string | null;
  reason: string;
  eventTime: string | null;
  reference: string | null;
  sourceFile: string;
  /** Physical line on which the record starts; the header is line 1. */
  sourceLine: number;
}

/** One invalid row of a card file; `raw` is already masked. */
export interface RejectRow {
  sourceFile: string;
  sourceLine: number;
  error: string;
  raw: string;
}

// ---------------------------------------------------------------------------------------------
// Config (docs/design.md §6)

export interface TlsConfig {
  certFile?: string;
  keyFile?: string;
  caFile?: string;
}

export interface D1Paths {
  optOutCard: string;
  optOutConsumer: string;
  cardOperation: string;
  consumerOperation: string;
}

/** The levels of `log.level` and `--log-level`, most severe first. */
export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Config {
  d1: {
    baseUrl: string;
    tokenUrl: string;
    issuerId: string;
    keyId: string;
    privateKeyFile: string;
    tls: TlsConfig;
    paths: D1Paths;
    timeoutMs: number;
    alreadyOptedOutErrorCodes: string[];
    /** The assertion's `aud` claim; '' (the default) sends none, as D1 documents `aud` as optional. */
    assertionAudience: string;
    /** D1 errorCodes meaning "not enrolled in Click to Pay, nothing to opt out": outcome NOT_ENROLLED. */
    notEnrolledErrorCodes: string[];
  };
  rate: {
    requestsPerSecond: number;
    concurrency: number;
    maxAttempts: number;
    maxAttemptsAcrossRuns: number;
    backoffBaseMs: number;
    backoffMaxMs: number;
    /** Lifts the sanity ceilings on requestsPerSecond and concurrency (docs/design.md §6). */
    allowAboveLimits: boolean;
  };
  pending: { pollIntervalMs: number; maxWaitMs: number };
  abort: { maxConsecutiveFailures: number };
  lock: { staleAfterSec: number };
  /** How many days of batch history (items, attempts, rejects, report folders) the nightly job keeps; 0 keeps everything. */
  retention: { days: number };
  ledger: string;
  reportsDir: string;
  inbox: string;
  archive: string;
  /** Where an unreadable inbox file is moved (docs/design.md §11). */
  quarantine: string;
  input: {
    delimiter: 'auto' | ',' | ';' | '|' | '\t';
    reasons: string[];
    /** An inbox file is taken once its size and mtime have not changed for this long. */
    settleSec: number;
    /** When set, `X.csv` is taken only once `X.csv<doneMarker>` exists; "" is off. */
    doneMarker: string;
  };
  log: { level: LogLevel; file: string; progressEverySec: number };
  /** `d1-optout check` and `run --dry-run`: a filesystem the job writes to with less free space than this fails. */
  check: { minFreeMiB: number };
}

// ---------------------------------------------------------------------------------------------
// D1 answers

/**
 * How the job reads one D1 answer (docs/design.md §8):
 * - `done`: opted out (SUCCESSFUL, or an error code configured as "already opted out");
 * - `pending`: accepted, final state to be polled with Get Operation;
 * - `not-enrolled`: an error code configured as "not enrolled": nothing to opt out, final;
 * - `retryable`, `permanent`, `fatal`: the error classes.
 */
export type AnswerClass = 'done' | 'pending' | 'retryable' | 'permanent' | 'fatal' | 'not-enrolled';

export interface D1Answer {
  class: AnswerClass;
  /** 0 when no HTTP answer arrived (network error, timeout). */
  httpStatus: number;
  operationId: string | null;
  /** D1's operation status as sent (`SUCCESSFUL`, `PENDING`, `FAILED` or a value we do not know). */
  operationStatus: string | null;
  errorCode: string | null;
  /** A short, safe text: D1's `error`, or what went wrong on the wire. */
  error: string | null;
  correlationId: string;
  /** For 429/503: how long D1 asked us to wait. */
  retryAfterMs: number | null;
  startedAt: number;
  endedAt: number;
  /** False when the request never left (no access token could be had): it is no attempt at D1. */
  sent: boolean;
  /** The 401 this answer follows, when the token was refreshed and the request sent again. */
  refused?: D1Answer;
}

export type AttemptKind = 'OPT_OUT' | 'GET_OPERATION';

// ---------------------------------------------------------------------------------------------
// Ledger rows as the rest of the job sees them

export interface TargetRecord {
  pk: number;
  scope: Scope;
  targetId: string;
  consumerId: string | null;
  state: TargetState;
  operationId: string | null;
  /** Opt-out requests sent for this target over all batches. */
  attempts: number;
  lastHttpStatus: number | null;
  lastErrorCode: string | null;
  lastError: string | null;
  lastBatchId: string | null;
  updatedAt: string;
}

export interface AttemptRecord {
  id: number;
  batchId: string;
  scope: Scope;
  targetId: string;
  kind: AttemptKind;
  correlationId: string;
  startedAt: string;
  endedAt: string | null;
  httpStatus: number | null;
  errorCode: string | null;
  error: string | null;
  operationId: string | null;
  operationStatus: string | null;
  class: AnswerClass | null;
}

export interface BatchRecord {
  id: string;
  kind: BatchKind;
  parentId: string | null;
  startedAt: string;
  endedAt: string | null;
  status: BatchStatus;
}

/** The lines of results.csv, in the column order of docs/design.md §4. */
export interface ResultLine {
  scope: Scope;
  target_id: string;
  consumer_id: string;
  reason: string;
  outcome: Outcome;
  operation_id: string;
  http_status: string;
  error_code: string;
  error_message: string;
  attempts: number;
  correlation_id: string;
  source_file: string;
  source_line: string;
}

export interface InputSummary {
  path: string;
  sha256: string;
  rows: number;
  rejected: number;
  /** True when the file had been ingested by an earlier batch and was not read again. */
  seenBefore: boolean;
  firstBatchId: string | null;
  /** Where the file is now when the batch moved it from the inbox to the archive; null otherwise. */
  archivedTo: string | null;
}

/** Why an inbox file was left where it is, to be taken by a later run (docs/design.md §11). */
export type DeferReason = 'settling' | 'no-marker' | 'changed-while-read';

/** A file the batch saw but did not take; `path` is masked like any text the job writes. */
export interface DeferredFile {
  path: string;
  reason: DeferReason;
}

/** An inbox file that cannot be read at all, moved out of the inbox (docs/design.md §11). */
export interface QuarantinedFile {
  path: string;
  /** What is wrong with it, in the words of the card file check. */
  reason: string;
  /** Where it is now; null when it could not be moved (it is then still in the inbox). */
  movedTo: string | null;
}

/** What a run did with the inbox besides reading it, as the ledger records it per batch. */
export interface InboxOutcome {
  deferred: DeferredFile[];
  quarantined: QuarantinedFile[];
}

/** summary.json (docs/design.md §4). Extra keys may be added; none may be renamed. */
export interface BatchSummary {
  batchId: string;
  kind: BatchKind;
  parentBatchId: string | null;
  startedAt: string;
  endedAt: string | null;
  status: BatchStatus;
  abortReason: string | null;
  inputs: InputSummary[];
  /** Files left in the inbox (or not admitted) for a later run: not an error. */
  deferred: DeferredFile[];
  /** Unreadable inbox files moved to the quarantine folder: the batch has failures. */
  quarantined: QuarantinedFile[];
  rows: { total: number; valid: number; rejected: number };
  outcomes: Partial<Record<Outcome, number>>;
  carriedOver: Partial<Record<Outcome, number>>;
  d1: {
    requests: number;
    requestsByStatus: Record<string, number>;
    retries: number;
    throttledMs: number;
    http429: number;
    lowestRps: number | null;
    /** Opt-out requests per second between the first and the last one sent (429 pauses included); null before any was sent. */
    achievedRps: number | null;
    /** The most requests (opt-outs and polls) started in any one calendar second. */
    peakRps: number;
    /**
     * Requests to D1's token endpoint, counted apart from `requests` (the API's), and those that
     * got no token: when the token endpoint is down nothing reaches the API (docs/design.md §13).
     */
    tokenRequests: number;
    tokenFailures: number;
  };
  /**
   * Lines reported FAILED_RETRYABLE whose target is still SUBMITTING for this batch: the process
   * stopped while their request was in flight, so D1 may or may not have it (the next run resends).
   */
  inDoubt: number;
  /**
   * The later batch that finished everything this one left undone (failed, not attempted,
   * pending): its "Next" steps are done. Null while anything is left, or when nothing was.
   */
  resolvedBy: string | null;
  reportDir: string;
}

/** Requests a batch started in one calendar second (UTC), from the ledger's attempts: the rate chart's data. */
export interface RequestSecond {
  /** `YYYY-MM-DDTHH:MM:SS`, UTC. */
  second: string;
  requests: number;
  http429: number;
  /** Answered with a 5xx: D1 (or a gateway in front of it) failing. */
  http5xx: number;
  /** No answer at all: a timeout or a network error (the ledger records those without a status). */
  noAnswer: number;
}

/** One line of `status`: a batch at a glance. Counts add the input rows and the carried-over targets. */
export interface BatchOverview {
  id: string;
  kind: BatchKind;
  parent: string | null;
  startedAt: string;
  endedAt: string | null;
  durationMs: number | null;
  status: BatchStatus;
  rows: BatchSummary['rows'];
  outcomes: Partial<Record<Outcome, number>>;
  carriedOver: Partial<Record<Outcome, number>>;
  /** When `prune` removed the batch's rows and D1 requests (its outcome counts went with them); null while kept whole. */
  prunedAt: string | null;
  /** Of the FAILED_RETRYABLE counts, the targets still in doubt (see BatchSummary.inDoubt). */
  inDoubt: number;
  /** See BatchSummary.resolvedBy. */
  resolvedBy: string | null;
}

/** Cards QUEUED because their consumer's opt-out is PENDING at D1. */
export interface WaitingCards {
  consumerId: string;
  cards: number;
}

// ---------------------------------------------------------------------------------------------
// Progress (what the pipeline tells a progress display; src/report/progress.ts draws it)

export type ProgressStage = 'read' | 'send' | 'poll';

/** What D1 has been sent so far by this process, as the shared rate limiter counts it. */
export interface RequestCounters {
  requests: number;
  http429: number;
  throttledMs: number;
}

/**
 * One step of a batch. Counts are increments, except `to-send`, so that several batches polled
 * at once (`d1-optout poll`) add up on one display.
 */
export type ProgressEvent =
  | { type: 'batch'; batchId: string }
  /** Reading starts with this many input files. */
  | { type: 'files'; files: number }
  /** Rows read (valid ones staged for the ledger); `fileDone` once a file is committed to the ledger or skipped as seen before. */
  | { type: 'rows'; rows: number; rejected: number; fileDone: boolean }
  /** Targets this batch still has to send: fewer once a consumer opt-out has covered some cards. */
  | { type: 'to-send'; targets: number }
  /** One target has its answer for this batch, retries included. */
  | { type: 'sent'; d1: RequestCounters }
  /**
   * One D1 answer (429s excluded: they are the limiter's); a display names the failure class
   * while D1 keeps failing, so an outage reads as one in the progress lines.
   */
  | { type: 'answer'; failed: boolean; what: string | null }
  /** More PENDING operations to poll. */
  | { type: 'to-poll'; operations: number }
  /** One Get Operation answer; `settled` when the operation is final. */
  | { type: 'polled'; settled: boolean; d1: RequestCounters };

export interface ProgressListener {
  on(event: ProgressEvent): void;
}

// ---------------------------------------------------------------------------------------------
// The ledger's identity and the preflight (docs/design.md §12)

/** What a ledger's history was made against: recorded by `init`, checked by every run, rerun and poll. */
export interface LedgerIdentity {
  issuerId: string;
  baseUrl: string;
}

/** One change of a ledger's identity: made by init, bound on first open (older ledgers), moved by init --rebind. */
export interface LedgerHistoryEntry {
  at: string;
  event: 'init' | 'bind' | 'rebind';
  issuerId: string;
  baseUrl: string;
  previousIssuerId: string | null;
  previousBaseUrl: string | null;
}

/** One line of `d1-optout check`: what was checked, and what is fine or what to do. */
export interface CheckLine {
  ok: boolean;
  what: string;
  detail: string;
}
