import { lstatSync, statSync, type Stats } from 'node:fs';
import { inspectCardFile, maskPath } from '../cards/index.js';
import { CardFileError, UsageError } from '../errors.js';
import { archiveFile, inboxNames, kindOf, quarantineFiles, surveyInbox, type InboxEntry, type InboxSurvey } from '../inbox/index.js';
import { identityOf, Ledger } from '../ledger/index.js';
import type { Logger } from '../log.js';
import { refuseUnlessReady } from '../preflight.js';
import { folderProblem } from '../private-file.js';
import { buildSummary } from '../report/summary.js';
import type { BatchSummary, Config, InboxOutcome, ProgressListener } from '../types.js';
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
import { faultPoint, faultReplace } from './fault.js';

export interface RunOptions {
  files: string[];
  /**
   * Inbox mode: take every card file in `inbox` that is ready, move each to `archive` once its
   * rows are committed, and an unreadable one to the configured quarantine.
   */
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

function statIfAny(path: string): Stats | null {
  try {
    return statSync(path);
  } catch {
    return null; // the card file check says what is wrong with it
  }
}

/**
 * FILE arguments are an operator's explicit choice: any unreadable one stops the run before
 * anything is done (exit 2), and the message names every bad file, not just the first.
 */
async function checkFiles(files: readonly string[], config: Config): Promise<void> {
  const bad: CardFileError[] = [];
  for (const f of files) {
    // Looked at before it is opened: opening a FIFO waits for a writer that may never come.
    const s = statIfAny(f);
    if (s && !s.isFile()) {
      bad.push(new CardFileError(f, `is ${kindOf(s)}, not a card file`));
      continue;
    }
    try {
      await inspectCardFile(f, { delimiter: config.input.delimiter });
    } catch (err) {
      if (!(err instanceof CardFileError)) throw err;
      bad.push(err);
    }
  }
  if (bad.length === 1) throw bad[0]!;
  if (bad.length > 1) {
    throw new UsageError(`${bad.length} card files cannot be read; nothing was done: ${bad.map((e) => e.message).join('; ')}`);
  }
}

/**
 * Card files go only into a real folder of this user's that nobody else may write into (docs/design.md
 * §14): anything else at the archive or quarantine path stops the run before the ledger is
 * touched (exit 2). A folder not there yet is fine: the first move creates it 0700.
 */
function refuseUnsafeFolders(folders: readonly string[]): void {
  for (const folder of folders) {
    if (!lstatSync(folder, { throwIfNoEntry: false })) continue;
    const problem = folderProblem(folder);
    if (problem) throw new UsageError(`${problem}; card files are not moved there, nothing was done`);
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
    // Refused like the real run when bound elsewhere; binding the copy writes nothing to disk.
    copy.bindTo(identityOf(config));
    const batchId = uniqueBatchId(copy);
    await plan(copy, batchId);
    copy.items.coverCardsInBatch(batchId);
    return { dryRun: true, summary: buildSummary(copy, batchId, config.reportsDir) };
  } finally {
    copy.close();
  }
}

/** What a run takes from its inbox, or the FILE arguments as they are. */
interface RunInput {
  files: InboxEntry[];
  inbox: (InboxSurvey & { archive: string; quarantine: string }) | null;
}

/**
 * Ingest and plan into `ledger`; shared by the real run and the dry run (which plans on a copy
 * and moves no file: `moveFiles` false). Unreadable inbox files are quarantined once the batch
 * exists, so that the batch that moved them says so; the files that were left or quarantined are
 * recorded with the batch as they happen.
 */
async function ingestAndPlan(
  ledger: Ledger,
  batchId: string,
  input: RunInput,
  config: Config,
  log: Logger,
  opts: { force: boolean; carry: CarrySource; moveFiles: boolean; progress: ProgressListener },
): Promise<void> {
  ledger.batches.create(batchId, 'run', null);
  opts.progress.on({ type: 'batch', batchId });
  ledger.tx(() => ledger.targets.settleCoveredCards(null));
  const inbox = input.inbox;
  const outcome: InboxOutcome = { deferred: [...(inbox?.deferred ?? [])], quarantined: [] };
  if (inbox && opts.moveFiles) for (const f of inbox.unreadable) faultReplace(f.path, 'replace-before-quarantine');
  if (inbox) outcome.quarantined = quarantineFiles(inbox.unreadable, opts.moveFiles ? inbox.quarantine : null, batchId, log);
  if (outcome.deferred.length > 0) log.info(`${outcome.deferred.length} inbox file(s) not ready yet, left for a later run: ${outcome.deferred.map((d) => `${d.path} (${d.reason})`).join(', ')}`);
  ledger.batches.recordInbox(batchId, outcome);
  const entries = new Map(input.files.map((e) => [e.path, e]));
  await ingestFiles(ledger, batchId, input.files.map((e) => e.path), config, log, {
    force: opts.force,
    onFileDone:
      inbox && opts.moveFiles
        ? (path, _input, read) => {
            faultPoint('kill-before-archive'); // between the commit and the move
            faultReplace(path, 'replace-before-archive');
            const to = archiveFile(entries.get(path)!, read, inbox.archive, batchId, log);
            // The report names the file where it is now, not where it was read (docs/design.md §4).
            if (to !== null) ledger.batches.recordArchived(batchId, maskPath(path), maskPath(to));
          }
        : undefined,
    onChanged: (path) => {
      outcome.deferred.push({ path: maskPath(path), reason: 'changed-while-read' });
      ledger.batches.recordInbox(batchId, outcome);
    },
    progress: opts.progress,
  });
  const { carriedOver } = planBatch(ledger, batchId, opts.carry);
  if (carriedOver > 0) log.info(`${carriedOver} target(s) carried over from earlier batches`);
}

/** The run's input files: the FILE arguments (checked by `checkFiles`), or the inbox's ready files. */
async function runInput(opts: RunOptions, config: Config, log: Logger): Promise<RunInput> {
  if (!opts.inbox) {
    return { files: opts.files.map((path) => ({ path, marker: null })), inbox: null };
  }
  const survey = await surveyInbox(opts.inbox.dir, config, log);
  return { files: survey.ready, inbox: { ...survey, archive: opts.inbox.archive, quarantine: config.quarantine } };
}

/**
 * `d1-optout run`: files → rows → ledger → plan → D1 → ledger → report. With FILE arguments every
 * file is checked before anything is written, so an unreadable file means nothing was done (exit
 * 2). From the inbox, the files are surveyed once the lock is held (another run may be archiving
 * them): those still arriving are left, the unreadable ones quarantined, the rest read.
 */
export async function runBatch(
  config: Config,
  opts: RunOptions,
  log: Logger,
  stop: StopSignal,
  progress: ProgressListener = NO_PROGRESS,
): Promise<BatchResult | DryRunResult> {
  const carry: CarrySource = opts.carryOver ? { kind: 'all' } : { kind: 'none' };
  if (!opts.inbox) await checkFiles(opts.files, config);
  else {
    inboxNames(opts.inbox.dir); // an inbox that cannot be read is exit 2 before the ledger is touched
    if (!opts.dryRun) refuseUnsafeFolders([opts.inbox.archive, config.quarantine]);
  }

  if (opts.dryRun) {
    // The preflight of `d1-optout check`, so a dry run that passes means the night can run.
    refuseUnlessReady(config);
    const input = await runInput(opts, config, log);
    return dryRun(config, (copy, batchId) => ingestAndPlan(copy, batchId, input, config, log, { force: opts.force, carry, moveFiles: false, progress }));
  }

  const session = await openSession(config, 'run', log, stop, progress);
  try {
    const input = await runInput(opts, config, log);
    const batchId = uniqueBatchId(session.ledger);
    const batchLog = log.child({ batchId });
    logBatchStart(batchLog, batchId, 'run', null, `batch ${batchId} started with ${input.files.length} input file(s)`);
    try {
      await ingestAndPlan(session.ledger, batchId, input, config, batchLog, { force: opts.force, carry, moveFiles: true, progress });
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
