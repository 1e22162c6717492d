import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { stringify, type Stringifier } from 'csv-stringify';
import { createExclusiveFile } from '../private-file.js';

/** A CSV file written as a stream with a header row; memory does not grow with the number of lines. */
export class CsvFile<T extends object> {
  private readonly out: WriteStream;
  private readonly csv: Stringifier;
  private error: Error | null = null;
  lines = 0;

  constructor(path: string, columns: readonly (keyof T & string)[]) {
    // Created new, never through a planted link or into someone else's file (docs/design.md §14).
    this.out = createWriteStream(path, { fd: createExclusiveFile(path, 0o600) });
    // A cell starting with = + - @ tab or CR is a formula to a spreadsheet: rejects' raw and D1's
    // texts come from outside, so every cell is escaped the OWASP way (a leading ').
    this.csv = stringify({ header: true, columns: [...columns], eof: true, escape_formulas: true });
    // A full disk must fail the report, not crash the process with an unhandled 'error' event.
    const fail = (err: Error) => {
      this.error ??= new Error(`cannot write ${path}: ${err.message}`);
    };
    this.out.on('error', fail);
    this.csv.on('error', fail);
    this.csv.pipe(this.out);
  }

  async write(record: T): Promise<void> {
    if (this.error) throw this.error;
    this.lines++;
    if (!this.csv.write(record)) await this.settle(this.csv, 'drain');
  }

  async close(): Promise<void> {
    if (this.error) throw this.error;
    const done = this.settle(this.out, 'close');
    this.csv.end();
    await done;
  }

  /** Waits for `event`, or for either stream to fail, whichever comes first. */
  private async settle(emitter: NodeJS.EventEmitter, event: string): Promise<void> {
    const ac = new AbortController();
    const { signal } = ac;
    try {
      const [err] = (await Promise.race([
        once(emitter, event, { signal }).then(() => [null]),
        once(this.out, 'error', { signal }),
        once(this.csv, 'error', { signal }),
      ])) as [Error | null];
      if (err) this.error ??= err;
    } finally {
      ac.abort();
    }
    if (this.error) throw this.error;
  }
}
