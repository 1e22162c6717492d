import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { stringify, type Stringifier } from 'csv-stringify';

/** A CSV file written as a stream with a header row; memory does not grow with the number of lines. */
export class CsvFile<T extends object> {
  private readonly out: WriteStream;
  private readonly csv: Stringifier;
  lines = 0;

  constructor(path: string, columns: readonly (keyof T & string)[]) {
    this.out = createWriteStream(path, { mode: 0o600 });
    this.csv = stringify({ header: true, columns: [...columns], eof: true });
    this.csv.pipe(this.out);
  }

  async write(record: T): Promise<void> {
    this.lines++;
    if (!this.csv.write(record)) await once(this.csv, 'drain');
  }

  async close(): Promise<void> {
    const done = once(this.out, 'finish');
    this.csv.end();
    await done;
  }
}
