import { fileSha256, readCardFile } from '../cards/index.js';
import type { Ledger } from '../ledger/index.js';
import { admitRow } from './dedupe.js';
import type { Logger } from '../log.js';
import type { CardRow, Config, InputSummary, ProgressListener, RejectRow } from '../types.js';
import { NO_PROGRESS } from './context.js';

/**
 * Rows per transaction. Larger ones commit less often (each commit writes the index pages its
 * random card ids touched), but every row waits in memory for its commit, and beyond a few
 * thousand the waiting rows are what grows the heap on a large file. Measured with `npm run
 * bench` (1M rows): 10,000 → 5,000 costs about 7% of ingest time and takes peak RSS from
 * 109-127 MiB (it varied run to run) to 106-108 MiB.
 */
const ROWS_PER_TX = 5_000;

export interface IngestOptions {
  force: boolean;
  /** Called once a file's rows are committed (or it was seen before), e.g. to move it to the archive. */
  onFileDone?: (path: string, input: InputSummary) => void;
  progress?: ProgressListener;
}

/**
 * Reads every file into the batch's items and rejects. A file is recorded by sha256; one already
 * ingested by an earlier batch is listed as seen before and not read again, unless `force`.
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
  for (const [ord, path] of files.entries()) {
    const sha256 = await fileSha256(path);
    const seen = ledger.files.findIngested(sha256);
    if (seen && !opts.force) {
      ledger.files.addInput(batchId, ord, path, sha256, true);
      log.info(`input ${path} was already ingested by batch ${seen.firstBatchId}; not read again (use --force to read it anyway)`);
      const input = { path, sha256, rows: 0, rejected: 0, seenBefore: true, firstBatchId: seen.firstBatchId };
      inputs.push(input);
      opts.onFileDone?.(path, input);
      progress.on({ type: 'rows', rows: 0, rejected: 0, fileDone: true });
      continue;
    }
    ledger.tx(() => {
      ledger.files.addInput(batchId, ord, path, sha256, false);
      ledger.files.startIngest(sha256, batchId, path);
    });
    let rows = 0;
    let rejected = 0;
    let pending: CardRow[] = [];
    let pendingRejects: RejectRow[] = [];
    const commit = (alsoInSameTx?: () => void) => {
      const r = pending;
      const j = pendingRejects;
      pending = [];
      pendingRejects = [];
      ledger.tx(() => {
        for (const row of r) admitRow(ledger, batchId, ord, row);
        for (const rej of j) ledger.items.insertReject(batchId, ord, rej);
        alsoInSameTx?.();
      });
      // Only a file's last commit carries its INGESTED mark.
      progress.on({ type: 'rows', rows: r.length + j.length, rejected: j.length, fileDone: alsoInSameTx !== undefined });
    };
    for await (const chunk of readCardFile(path, { delimiter: config.input.delimiter, reasons: config.input.reasons })) {
      for (const entry of chunk) {
        rows++;
        if (entry.kind === 'row') pending.push(entry.row);
        else {
          rejected++;
          pendingRejects.push(entry.reject);
        }
      }
      if (pending.length + pendingRejects.length >= ROWS_PER_TX) commit();
    }
    // The last rows and the file's INGESTED mark commit together: a file is either wholly in the
    // ledger or read again from the start by the next run.
    commit(() => ledger.files.finishIngest(batchId, ord, sha256, rows, rejected));
    log.info(`ingested ${path}: ${rows} rows, ${rejected} rejected`, { rows, rejected });
    const input = { path, sha256, rows, rejected, seenBefore: false, firstBatchId: batchId };
    inputs.push(input);
    opts.onFileDone?.(path, input);
  }
  return inputs;
}
