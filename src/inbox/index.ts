// The inbox (docs/design.md §11): which arriving files a run takes, and where the files it has
// done with go — the archive once their rows are in the ledger, the quarantine when they cannot
// be read at all.
import { inspectCardFile, maskPath } from '../cards/index.js';
import { CardFileError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Config, DeferredFile } from '../types.js';
import { listInbox, type InboxEntry } from './list.js';
import type { UnreadableFile } from './move.js';
import { fileStamp, sameStamp } from './stamp.js';

export { CARD_FILE, inboxNames, kindOf, listInbox, type InboxEntry, type InboxListing } from './list.js';
export { archiveFile, quarantineFiles, type UnreadableFile } from './move.js';
export { fileStamp, sameStamp, type FileStamp } from './stamp.js';

export interface InboxSurvey {
  /** Ready and readable: the run's input files, in name order. */
  ready: InboxEntry[];
  deferred: DeferredFile[];
  unreadable: UnreadableFile[];
}

/** The problem alone, without the file name CardFileError puts in front of it. */
function problemOf(err: CardFileError): string {
  const prefix = `${err.file}: `;
  return err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
}

/**
 * Lists the inbox and checks every file that is ready with the card file check, so that all bad
 * files are found in one run. Moves nothing. A file refused by the check that changed while it
 * was checked is deferred instead: it was being written, not bad.
 */
export async function surveyInbox(dir: string, config: Config, log: Logger): Promise<InboxSurvey> {
  const listing = listInbox(dir, config.input, log);
  const survey: InboxSurvey = { ready: [], deferred: listing.deferred, unreadable: [] };
  for (const entry of listing.ready) {
    const before = fileStamp(entry.path);
    try {
      await inspectCardFile(entry.path, { delimiter: config.input.delimiter });
      survey.ready.push(entry);
    } catch (err) {
      if (!(err instanceof CardFileError)) throw err;
      if (!before || !sameStamp(before, fileStamp(entry.path))) survey.deferred.push({ path: maskPath(entry.path), reason: 'changed-while-read' });
      else survey.unreadable.push({ ...entry, problem: problemOf(err), inspected: before });
    }
  }
  return survey;
}
