import { closeSync, constants, copyFileSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, unlinkSync } from 'node:fs';
import { basename, join } from 'node:path';
import { inspectCardFile } from '../cards/index.js';
import { UsageError } from '../errors.js';
import { Ledger } from '../ledger/index.js';
import type { Logger } from '../log.js';
import { buildSummary } from '../report/summary.js';
import type { BatchSummary, Config, InputSummary, ProgressListener } from '../types.js';
import { newBatchId } from './batch-id.js';
import { NO_PROGRESS } from './context.js';
import { logBatchStart } from './events.js';
import { executeBatch } from './execute.js';
import type { BatchResult } from './finish.js';
import { ingestFiles } from './ingest.js';
import { planBatch, type CarrySource } from './plan.js';
import { abortBatch } from './recover.js';
import { openSession } from './session.js';
import type { StopSignal } from './stop.js';
import { faultPoint } from './fault.js';

export interface RunOptions {
  files: string[];
  /** Inbox mode: read every card file in `inbox`, move each to `archive` once its rows are committed. */
  inbox: { dir: string; archive: string } | null;
  dryRun: boolean;
  force: boolean;
  carryOver: boolean;
}

export interface DryRunResult {
  dryRun: true;
  summary: BatchSummary;
}

/** `rerun` of a batch that has nothing left to do: no batch is created (exit 0). */
export interface NothingToRerun {
  nothingToRerun: true;
  parentBatchId: string;
  /** The later batch that finished what the parent left, if one did. */
  resolvedBy: string | null;
}

/** Thrown inside the planning transaction so that an empty rerun leaves no batch behind. */
class EmptyRerun extends Error {
  constructor(readonly result: NothingToRerun) {
    super(`nothing to rerun in batch ${result.parentBatchId}`);
  }
}

const CARD_FILE = /\.csv(\.gz)?$/i;

function inboxFiles(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    throw new UsageError(`inbox ${dir} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  return names.filter((n) => CARD_FILE.test(n)).sort().map((n) => join(dir, n));
}

/**
 * Moves an ingested file to the archive; across filesystems by copy, fsync and unlink. A file
 * that cannot be moved stays in the inbox, which is harmless: the ledger knows its sha256, so
 * the next run reports it as seen and does not read it again.
 */
function archiveFile(path: string, archive: string, batchId: string, log: Logger): void {
  faultPoint('kill-before-archive'); // between the commit and the move
  try {
    mkdirSync(archive, { recursive: true, mode: 0o700 });
    let dest = join(archive, basename(path));
    if (existsSync(dest)) dest = join(archive, `${basename(path)}.${batchId}`);
    try {
      renameSync(path, dest);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
      copyFileSync(path, dest, constants.COPYFILE_EXCL);
      const fd = openSync(dest, 'r');
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      unlinkSync(path);
    }
  } catch (err) {
    log.warn(`could not move ${path} to the archive ${archive} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); it stays in the inbox and the next run skips it as already ingested`);
  }
}

function uniqueBatchId(ledger: Ledger): string {
  for (;;) {
    const id = newBatchId();
    if (!ledger.batches.get(id)) return id;
  }
}

/**
 * `--dry-run`: the real planning code on an in-memory copy of the ledger, so what it shows is
 * what a run would do, and nothing is written, moved or sent.
 */
async function dryRun(config: Config, plan: (copy: Ledger, batchId: string) => Promise<void> | void): Promise<DryRunResult> {
  const copy = Ledger.copyOf(config.ledger);
  try {
    const batchId = uniqueBatchId(copy);
    await plan(copy, batchId);
    copy.items.coverCardsInBatch(batchId);
    return { dryRun: true, summary: buildSummary(copy, batchId, config.reportsDir) };
  } finally {
    copy.close();
  }
}

/** Ingest and plan into `ledger`; shared by the real run and the dry run (which plans on a copy). */
async function ingestAndPlan(
  ledger: Ledger,
  batchId: string,
  files: string[],
  config: Config,
  log: Logger,
  opts: { force: boolean; carry: CarrySource; onFileDone?: (path: string, input: InputSummary) => void; progress: ProgressListener },
): Promise<void> {
  ledger.batches.create(batchId, 'run', null);
  opts.progress.on({ type: 'batch', batchId });
  ledger.tx(() => ledger.targets.settleCoveredCards(null));
  await ingestFiles(ledger, batchId, files, config, log, { force: opts.force, onFileDone: opts.onFileDone, progress: opts.progress });
  const { carriedOver } = planBatch(ledger, batchId, opts.carry);
  if (carriedOver > 0) log.info(`${carriedOver} target(s) carried over from earlier batches`);
}

/**
 * `d1-optout run`: files → rows → ledger → plan → D1 → ledger → report. Every input file is
 * checked before anything is written, so an unreadable file means nothing was done (exit 2).
 */
export async function runBatch(
  config: Config,
  opts: RunOptions,
  log: Logger,
  stop: StopSignal,
  progress: ProgressListener = NO_PROGRESS,
): Promise<BatchResult | DryRunResult> {
  const files = opts.inbox ? inboxFiles(opts.inbox.dir) : opts.files;
  for (const f of files) await inspectCardFile(f, { delimiter: config.input.delimiter });
  const carry: CarrySource = opts.carryOver ? { kind: 'all' } : { kind: 'none' };

  if (opts.dryRun) return dryRun(config, (copy, batchId) => ingestAndPlan(copy, batchId, files, config, log, { force: opts.force, carry, progress }));

  const session = await openSession(config, 'run', log, stop, progress);
  try {
    const batchId = uniqueBatchId(session.ledger);
    const batchLog = log.child({ batchId });
    logBatchStart(batchLog, batchId, 'run', null, `batch ${batchId} started with ${files.length} input file(s)`);
    const inbox = opts.inbox;
    try {
      await ingestAndPlan(session.ledger, batchId, files, config, batchLog, {
        force: opts.force,
        carry,
        onFileDone: inbox ? (path) => archiveFile(path, inbox.archive, batchId, batchLog) : undefined,
        progress,
      });
    } catch (err) {
      // The files were all readable a moment ago (inspected): this is a failure mid-way, so the
      // batch is closed as ABORTED with what it has, and the next run picks up the rest.
      const reason = `reading the input stopped: ${(err as Error).message}`;
      batchLog.error(reason);
      return (await abortBatch(session.ledger, batchId, config.reportsDir, reason, {}, batchLog)).result;
    }
    return await executeBatch(session.context(batchId, batchLog));
  } finally {
    session.close();
  }
}

export interface RerunOptions {
  batch: string | null;
  last: boolean;
  includePermanent: boolean;
  dryRun: boolean;
}

/** `d1-optout rerun`: a new batch whose items are what a parent batch left undone. */
export async function rerunBatch(
  config: Config,
  opts: RerunOptions,
  log: Logger,
  stop: StopSignal,
  progress: ProgressListener = NO_PROGRESS,
): Promise<BatchResult | DryRunResult | NothingToRerun> {
  const pickParent = (ledger: Ledger): string => {
    const parent = opts.last ? ledger.batches.last() : opts.batch ? ledger.batches.get(opts.batch) : undefined;
    if (!parent) throw new UsageError(opts.last ? 'there is no batch to rerun yet' : `no batch ${opts.batch ?? ''} in the ledger (see d1-optout status)`);
    return parent.id;
  };
  const plan = (ledger: Ledger, batchId: string, parentId: string): Set<number> => {
    ledger.batches.create(batchId, 'rerun', parentId);
    ledger.targets.settleCoveredCards(null);
    const permanentBefore = new Set(opts.includePermanent ? ledger.items.permanentTargetsOf(parentId) : []);
    const { carriedOver } = planBatch(ledger, batchId, { kind: 'parent', parentId, includePermanent: opts.includePermanent });
    if (carriedOver === 0) throw new EmptyRerun({ nothingToRerun: true, parentBatchId: parentId, resolvedBy: ledger.items.resolvedBy(parentId) });
    return permanentBefore;
  };

  if (opts.dryRun) {
    try {
      return await dryRun(config, (copy, batchId) => void plan(copy, batchId, pickParent(copy)));
    } catch (err) {
      if (err instanceof EmptyRerun) return err.result;
      throw err;
    }
  }

  const session = await openSession(config, 'rerun', log, stop, progress);
  try {
    const parentId = pickParent(session.ledger);
    const batchId = uniqueBatchId(session.ledger);
    const batchLog = log.child({ batchId });
    let fresh: Set<number>;
    try {
      fresh = session.ledger.tx(() => plan(session.ledger, batchId, parentId));
    } catch (err) {
      if (!(err instanceof EmptyRerun)) throw err;
      log.info(`rerun of batch ${parentId}: nothing to rerun; no batch created`);
      return err.result;
    }
    logBatchStart(batchLog, batchId, 'rerun', parentId, `rerun ${batchId} of batch ${parentId} started`);
    progress.on({ type: 'batch', batchId });
    const ctx = session.context(batchId, batchLog);
    for (const pk of fresh) ctx.freshBudget.add(pk);
    return await executeBatch(ctx);
  } finally {
    session.close();
  }
}
