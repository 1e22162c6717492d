import { fileSha256, readCardFile } from '../cards/index.js';
import type { Ledger } from '../ledger/index.js';
import type { Logger } from '../log.js';
import type { CardRow, Config, InputSummary, ProgressListener, RejectRow } from '../types.js';
import { NO_PROGRESS } from './context.js';
import { fileStamp, sameStamp, type FileStamp } from '../inbox/index.js';
import { faultAppend, faultPoint } from './fault.js';

export interface IngestOptions {
  force: boolean;
  /**
   * Called once a file's rows are committed (or it was seen before), e.g. to move it to the
   * archive, with the stamp of the file that was read: the name may be another file's by then.
   */
  onFileDone?: (path: string, input: InputSummary, read: FileStamp) => void;
  /** Called for a file that changed while it was read: nothing of it was admitted, it is left where it is. */
  onChanged?: (path: string) => void;
  progress?: ProgressListener;
}

/**
 * Reads every file into the batch's items and rejects. A file is recorded by sha256; one already
 * ingested by an earlier batch is listed as seen before and not read again, unless `force`.
 * A file whose size, mtime or inode is not, when its rows would be admitted, what it was when its
 * reading started is not admitted at all (docs/design.md §11): a writer was still at it.
 */
export async function ingestFiles(
  ledger: Ledger,
  batchId: string,
  files: readonly string[],
  config: Config,
  log: Logger,
  opts: IngestOptions,
): Promise<InputSummary[]> {
  const inputs: InputSummary[] = [];
  const progress = opts.progress ?? NO_PROGRESS;
  progress.on({ type: 'files', files: files.length });
  const changedWhileRead = (path: string) => {
    log.warn(`input ${path} changed while it was read; not admitted, left for a later run`);
    opts.onChanged?.(path);
    progress.on({ type: 'rows', rows: 0, rejected: 0, fileDone: true });
  };
  for (const [ord, path] of files.entries()) {
    const before = fileStamp(path);
    const changed = () => !sameStamp(before, fileStamp(path));
    const sha256 = await fileSha256(path);
    const seen = ledger.files.findIngested(sha256);
    if (seen && !opts.force) {
      if (changed()) {
        changedWhileRead(path);
        continue;
      }
      ledger.files.addInput(batchId, ord, path, sha256, true);
      log.info(`input ${path} was already ingested by batch ${seen.firstBatchId}; not read again (use --force to read it anyway)`);
      const input = { path, sha256, rows: 0, rejected: 0, seenBefore: true, firstBatchId: seen.firstBatchId, archivedTo: null };
      inputs.push(input);
      opts.onFileDone?.(path, input, before!); // not changed(), so stamped
      progress.on({ type: 'rows', rows: 0, rejected: 0, fileDone: true });
      continue;
    }
    ledger.tx(() => {
      ledger.files.addInput(batchId, ord, path, sha256, false);
      ledger.files.startIngest(sha256, batchId, path);
    });
    let rows = 0;
    let rejected = 0;
    let admitted = false;
    ledger.intake.begin();
    try {
      for await (const chunk of readCardFile(path, { delimiter: config.input.delimiter, reasons: config.input.reasons })) {
        const valid: CardRow[] = [];
        const rejects: RejectRow[] = [];
        for (const entry of chunk) {
          if (entry.kind === 'row') valid.push(entry.row);
          else rejects.push(entry.reject);
        }
        ledger.intake.stage(valid, rejects);
        rows += chunk.length;
        rejected += rejects.length;
        progress.on({ type: 'rows', rows: chunk.length, rejected: rejects.length, fileDone: false });
        faultPoint('kill-while-staging');
      }
      faultAppend(path);
      // The file's rows and its INGESTED mark commit together: a file is either wholly in the
      // ledger or read again from the start by the next run. It is compared with what it was
      // inside this transaction, so no write before the commit goes unseen.
      admitted = ledger.bulkTx(() => {
        if (changed()) {
          ledger.files.forgetInput(batchId, ord, sha256);
          return false;
        }
        ledger.intake.admit(batchId, ord);
        ledger.files.finishIngest(batchId, ord, sha256, rows, rejected);
        faultPoint('kill-before-ingest-commit'); // everything written, nothing committed
        return true;
      });
    } catch (err) {
      ledger.intake.discard();
      // A file cut off by its writer may fail to read (a gzip stream ends early): not bad, unfinished.
      if (!changed()) throw err;
      ledger.tx(() => ledger.files.forgetInput(batchId, ord, sha256));
    }
    if (!admitted) {
      ledger.intake.discard();
      changedWhileRead(path);
      continue;
    }
    progress.on({ type: 'rows', rows: 0, rejected: 0, fileDone: true });
    log.info(`ingested ${path}: ${rows} rows, ${rejected} rejected`, { rows, rejected });
    const input = { path, sha256, rows, rejected, seenBefore: false, firstBatchId: batchId, archivedTo: null };
    inputs.push(input);
    opts.onFileDone?.(path, input, before!); // not changed(), so stamped
  }
  return inputs;
}
