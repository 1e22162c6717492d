// Reading card files (docs/design.md §7): preflight, hashing, and the streaming reader.
//
// - `inspectCardFile` is the preflight the job runs on every input before ingesting anything: a
//   file it accepts can be read to the end by `readCardFile` (bad rows become rejects, never a
//   failure of the file).
// - `readCsvRecords` is the one csv-parse setup: the file's bytes (gunzipped when needed) as
//   records with the physical line each starts on, handed over synchronously in file order.
// - `readCardFile` streams on top of it: header, row validation, batches yielded as they fill.
//   Memory is bounded by a chunk, a batch and `MAX_RECORD_SIZE`, never by the file.

import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Parser, type CsvError, type Options as CsvOptions } from 'csv-parse';
import { parse as parseSync } from 'csv-parse/sync';
import { CardFileError } from '../errors.js';
import type { CardRow, RejectRow } from '../types.js';
import {
  delimiterName,
  detectDelimiter,
  matchHeader,
  type Delimiter,
  type DelimiterOption,
} from './header.js';
import { maskCardNumbers, maskPath } from './pan.js';
import { isBlankRecord, makeRowContext, validateRow, type RowContext } from './validate.js';

export type CardFileEntry = { kind: 'row'; row: CardRow } | { kind: 'reject'; reject: RejectRow };

export interface InspectOptions {
  delimiter: DelimiterOption;
}

export interface CardFileInfo {
  /** The delimiter the file is read with (detected from the header, or as configured). */
  delimiter: Delimiter;
  /** The header's column names, as written (card-number-like text masked). */
  columns: string[];
  /** True when the file is gzip (by its magic bytes). */
  gzip: boolean;
}

export interface ReadOptions {
  delimiter: DelimiterOption;
  /** The configured reasons (`input.reasons`); compared trimmed and upper-cased. */
  reasons: readonly string[];
  /** Entries per yielded batch; default 2000. */
  batchSize?: number;
}

/** How much decoded text the header checks look at. */
export const HEAD_BYTES = 64 * 1024;
/** The longest record (characters of its fields) the reader holds; a longer one stops the file. */
export const MAX_RECORD_SIZE = 64 * 1024;
/** The longest `raw` of a reject. */
export const MAX_RAW_LENGTH = 500;
export const DEFAULT_BATCH_SIZE = 2000;

const READ_CHUNK = 64 * 1024;
const LF = 10;
const CR = 13;
const QUOTE = 34;
const NEWLINES = /\r\n|\r|\n/g;
const GZ_NAME = /\.gz$/i;

// ---------------------------------------------------------------------------------------------
// Opening

/** A problem text for an error raised while opening or reading `file`. */
function ioProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  switch (code) {
    case 'ENOENT':
      return 'file not found';
    case 'EACCES':
    case 'EPERM':
      return 'cannot be read: permission denied';
    case 'EISDIR':
      return 'is a directory, not a card file';
    case 'Z_DATA_ERROR':
    case 'Z_BUF_ERROR':
    case 'Z_NEED_DICT':
    case 'Z_STREAM_ERROR':
      return 'gzip data is corrupt or truncated; was the transfer complete?';
    default:
      return `cannot be read (${code ?? (err instanceof Error ? err.name : 'unknown error')})`;
  }
}

function asCardFileError(file: string, err: unknown): CardFileError {
  return err instanceof CardFileError ? err : new CardFileError(file, ioProblem(err), { cause: err });
}

/**
 * Opens a card file for reading without waiting on it: a FIFO put in place of a file after the
 * inbox was listed would otherwise block open() until a writer comes, maybe never, and a run
 * stuck there holds the ledger lock and ignores the first SIGTERM. O_NONBLOCK changes nothing for
 * a regular file; whoever calls this refuses anything else once it is open.
 */
function openForReading(file: string): Promise<FileHandle> {
  return open(file, constants.O_RDONLY | constants.O_NONBLOCK);
}

/**
 * Opens `file` as its decoded bytes, chunk by chunk: gunzipped when the file starts with the gzip
 * magic bytes. Throws `CardFileError` when the file is missing, unreadable, not a regular file,
 * empty, or named `.gz` without being gzip.
 *
 * With `reuse`, a plain file is read through one buffer that every chunk overwrites, for a reader
 * that is done with a chunk before it asks for the next: a stream's fresh 64 KiB chunk per read
 * leaves garbage that outruns the collector on a large file (about 30 MiB of peak RSS for a
 * 100 MB file). csv-parse may keep the tail of a chunk, so the parser gets fresh ones.
 */
async function openDecoded(file: string, opts: { reuse: boolean }): Promise<{ chunks: AsyncIterable<Buffer> & { destroy(): void }; gzip: boolean }> {
  let fh: FileHandle;
  try {
    fh = await openForReading(file);
  } catch (err) {
    throw asCardFileError(file, err);
  }
  try {
    const stat = await fh.stat();
    if (stat.isDirectory()) throw new CardFileError(file, 'is a directory, not a card file');
    if (!stat.isFile()) throw new CardFileError(file, 'is not a regular file');
    if (stat.size === 0) throw new CardFileError(file, 'is empty: no header line');
    const magic = Buffer.alloc(2);
    const { bytesRead } = await fh.read(magic, 0, 2, 0);
    const gzip = bytesRead === 2 && magic[0] === 0x1f && magic[1] === 0x8b;
    if (!gzip && GZ_NAME.test(file)) {
      throw new CardFileError(file, 'is named .gz but is not gzip data');
    }
    if (!gzip && opts.reuse) return { chunks: reusedChunks(fh), gzip };
    const raw = fh.createReadStream({ start: 0, highWaterMark: READ_CHUNK });
    if (!gzip) return { chunks: raw, gzip };
    // Errors of either stream destroy both and surface on the gunzip side.
    return { chunks: pipeline(raw, createGunzip(), () => {}), gzip };
  } catch (err) {
    await fh.close().catch(() => {});
    throw asCardFileError(file, err);
  }
}

/** The bytes of `fh` from its start, each chunk in the same buffer; closes `fh` when done or destroyed. */
function reusedChunks(fh: FileHandle): AsyncIterable<Buffer> & { destroy(): void } {
  const buffer = Buffer.allocUnsafe(READ_CHUNK);
  let closed = false;
  const close = () => {
    if (!closed) {
      closed = true;
      void fh.close().catch(() => {});
    }
  };
  return {
    async *[Symbol.asyncIterator]() {
      try {
        for (let position = 0; ; ) {
          const { bytesRead } = await fh.read(buffer, 0, buffer.length, position);
          if (bytesRead === 0) return;
          position += bytesRead;
          yield buffer.subarray(0, bytesRead);
        }
      } finally {
        close();
      }
    },
    destroy: close,
  };
}

// ---------------------------------------------------------------------------------------------
// The header

/** The index of the first CR or LF of `text` from `from` that is outside double quotes, or -1. */
function lineEnd(text: string, from: number): number {
  let quoted = false;
  for (let i = from; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) quoted = !quoted;
    else if (!quoted && (c === LF || c === CR)) return i;
  }
  return -1;
}

function parseLine(file: string, line: string, delimiter: Delimiter): string[] {
  try {
    const records = parseSync(line, {
      delimiter,
      relax_quotes: true,
      relax_column_count: true,
      record_delimiter: ['\r\n', '\n', '\r'],
    });
    return records[0] ?? [];
  } catch (err) {
    throw new CardFileError(file, 'no usable header: the first line cannot be parsed (is a quote left open?)', {
      cause: err,
    });
  }
}

/**
 * The checks on the first 64 KiB of decoded text: not binary, not empty, a usable header with
 * the required columns. `complete` says whether `head` is the whole file.
 */
function analyzeHead(
  file: string,
  head: Buffer,
  complete: boolean,
  option: DelimiterOption,
): { delimiter: Delimiter; columns: string[] } {
  if (head.subarray(0, HEAD_BYTES).includes(0)) {
    throw new CardFileError(
      file,
      'looks binary (NUL bytes in the first 64 KiB): not a CSV text file; a spreadsheet, or UTF-16 text?',
    );
  }
  let text = head.subarray(0, HEAD_BYTES).toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  complete &&= head.length <= HEAD_BYTES;
  let pos = 0;
  for (;;) {
    if (pos >= text.length) {
      throw new CardFileError(
        file,
        complete ? 'is empty: no header line' : 'no usable header: only blank lines in the first 64 KiB',
      );
    }
    const end = lineEnd(text, pos);
    if (end === -1 && !complete) {
      throw new CardFileError(
        file,
        'no usable header: the first line is longer than 64 KiB (is a quote left open, or is this not a CSV file?)',
      );
    }
    const line = text.slice(pos, end === -1 ? text.length : end);
    const detected = detectDelimiter(line);
    const delimiter = option === 'auto' ? detected : option;
    const names = parseLine(file, line, delimiter);
    if (!isBlankRecord(names)) {
      const hint =
        option !== 'auto' && detected !== option && line.includes(detected)
          ? `the configured delimiter is ${delimiterName(option)} but the first line looks ${delimiterName(detected)}-delimited`
          : undefined;
      matchHeader(file, names, hint);
      return { delimiter, columns: names.map((n) => maskCardNumbers(n, { acrossFields: true })) };
    }
    if (end === -1) {
      throw new CardFileError(file, 'is empty: no header line');
    }
    pos = end + (text.charCodeAt(end) === CR && text.charCodeAt(end + 1) === LF ? 2 : 1);
  }
}

/**
 * Follows the record structure of the whole file the way the reader's csv-parse settings do
 * (quotes open a field only at its start, `""` inside quotes, a stray quote is literal) and
 * reports the first record whose fields exceed `MAX_RECORD_SIZE`, which the reader could not get
 * past. Byte counts are at least csv-parse's character counts, so nothing it would fail on passes.
 */
class RecordSizeScanner {
  private line = 1;
  private recordLine = 1;
  private recordEmpty = true;
  private fieldStart = true;
  /** 0 outside quotes, 1 inside, 2 just after a quote inside quotes. */
  private quote = 0;
  private size = 0;
  private prevCR = false;
  private readonly delimiter: number;

  constructor(delimiter: Delimiter) {
    this.delimiter = delimiter.charCodeAt(0);
  }

  /** Feeds decoded bytes; returns the oversized record (its start line, and whether a quote is open), or null. */
  feed(buf: Buffer): { line: number; quoted: boolean } | null {
    const delim = this.delimiter;
    let { line, recordLine, recordEmpty, fieldStart, quote, size, prevCR } = this;
    for (let i = 0; i < buf.length; i++) {
      const b = buf[i]!;
      const newline = b === LF || b === CR;
      if (quote === 2) {
        if (b === QUOTE) {
          quote = 1;
          size++;
          continue;
        }
        quote = 0;
        if (b !== delim && !newline) size++; // the stray quote stays in the field
      }
      if (quote === 1) {
        if (b === QUOTE) quote = 2;
        else size++;
      } else if (b === QUOTE && fieldStart) {
        quote = 1;
        fieldStart = false;
      } else if (b === delim) {
        fieldStart = true;
      } else if (newline) {
        size = 0;
        fieldStart = true;
        recordEmpty = true;
      } else {
        size++;
        fieldStart = false;
      }
      if (newline) {
        if (!(b === LF && prevCR)) line++;
      } else if (recordEmpty) {
        recordEmpty = false;
        recordLine = line;
      }
      prevCR = b === CR;
      if (size > MAX_RECORD_SIZE) return { line: recordLine, quoted: quote !== 0 };
    }
    Object.assign(this, { line, recordLine, recordEmpty, fieldStart, quote, size, prevCR });
    return null;
  }
}

/**
 * The reader holds one record at a time and no more than `MAX_RECORD_SIZE` of it, so a longer
 * record stops the file. A record that long inside quotes is nearly always a quote left open; one
 * without is a field no card file has (an id is at most 64 characters).
 */
function oversizedRecord(file: string, line: number, quoted: boolean): CardFileError {
  return new CardFileError(
    file,
    `line ${line}: a record is longer than ${MAX_RECORD_SIZE / 1024} KiB, so the file cannot be read past it ` +
      (quoted ? '(is a quote left open?)' : '(a single field that long: is this really a card file?)'),
  );
}

/** Reads the first 64 KiB (decoded) of a card file; `done` when that was the whole file. */
async function readHead(iterator: AsyncIterator<Buffer>): Promise<{ head: Buffer; done: boolean }> {
  const chunks: Buffer[] = [];
  let length = 0;
  while (length <= HEAD_BYTES) {
    const next = await iterator.next();
    if (next.done === true) return { head: Buffer.concat(chunks), done: true };
    chunks.push(Buffer.from(next.value)); // the next read may overwrite this chunk
    length += next.value.length;
  }
  return { head: Buffer.concat(chunks), done: false };
}

async function checkFile(file: string, option: DelimiterOption, wholeFile: boolean): Promise<CardFileInfo> {
  const { chunks, gzip } = await openDecoded(file, { reuse: true });
  try {
    const iterator = chunks[Symbol.asyncIterator]();
    const { head, done } = await readHead(iterator);
    const info = analyzeHead(file, head, done, option);
    if (wholeFile) {
      const scanner = new RecordSizeScanner(info.delimiter);
      const bom = head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf ? 3 : 0;
      let bad = scanner.feed(head.subarray(bom));
      if (!done) {
        for (;;) {
          if (bad !== null) break;
          const next = await iterator.next();
          if (next.done === true) break;
          bad = scanner.feed(next.value);
        }
      }
      if (bad !== null) throw oversizedRecord(file, bad.line, bad.quoted);
    }
    return { ...info, gzip };
  } catch (err) {
    throw asCardFileError(file, err);
  } finally {
    chunks.destroy();
  }
}

/**
 * Preflight of one card file. Throws `CardFileError` when the file is missing or unreadable, is
 * named `.gz` but is not gzip (or its gzip data is corrupt or truncated), looks binary, is empty,
 * has no usable header, lacks a required column, names a known column twice, or holds a record
 * too long to read. Reads the whole file once (gzip is checked to its end).
 */
export async function inspectCardFile(path: string, opts: InspectOptions): Promise<CardFileInfo> {
  return checkFile(path, opts.delimiter, true);
}

/** The sha256 (hex) of the file's bytes as stored (read through one reused buffer). */
export async function fileSha256(path: string): Promise<string> {
  let fh: FileHandle;
  try {
    fh = await openForReading(path);
  } catch (err) {
    throw asCardFileError(path, err);
  }
  const hash = createHash('sha256');
  try {
    if (!(await fh.stat()).isFile()) throw new CardFileError(path, 'is not a regular file');
    for await (const chunk of reusedChunks(fh)) hash.update(chunk);
  } catch (err) {
    await fh.close().catch(() => {});
    throw asCardFileError(path, err);
  }
  return hash.digest('hex');
}

// ---------------------------------------------------------------------------------------------
// Reading

/** Physical lines in `text`: LF, CRLF and a lone CR each end one. */
function countNewlines(text: string): number {
  let n = 0;
  let i = text.indexOf('\n');
  while (i !== -1) {
    n++;
    i = text.indexOf('\n', i + 1);
  }
  i = text.indexOf('\r');
  while (i !== -1) {
    if (text.charCodeAt(i + 1) !== LF) n++;
    i = text.indexOf('\r', i + 1);
  }
  return n;
}

/** The index of the first character of `text` that is not CR or LF. */
function skipNewlines(text: string): number {
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c !== LF && c !== CR) break;
    i++;
  }
  return i;
}

/**
 * A record's raw text as a reject shows it: without the blank lines before it and its line end,
 * card numbers masked, newlines as `\n`, at most 500 characters.
 */
export function rawForReject(raw: string): string {
  let end = raw.length;
  while (end > 0) {
    const c = raw.charCodeAt(end - 1);
    if (c !== LF && c !== CR) break;
    end--;
  }
  const start = skipNewlines(raw);
  // Mask the record whole, with delimiters and quotes as separators, so that a number split across
  // two fields is caught too; and before cutting, as a number cut in two would not be recognised.
  let text = maskCardNumbers(start < end ? raw.slice(start, end) : '', { acrossFields: true }).replace(NEWLINES, '\\n');
  if (text.length > MAX_RAW_LENGTH) {
    let cut = MAX_RAW_LENGTH - 1;
    const c = text.charCodeAt(cut - 1);
    if (c >= 0xd800 && c <= 0xdbff) cut--; // do not split a surrogate pair
    text = `${text.slice(0, cut)}…`;
  }
  return text;
}

/** What csv-parse hands over per record with `raw: true`. */
interface RawRecord {
  record: string[];
  raw: string;
}

/** One record of a CSV file, as the card reader parses it. */
export interface CsvRecord {
  /** The physical line the record starts on; the first line of the file is 1. */
  line: number;
  /** The record's fields; null when a quoted field is still open at the end of the file. */
  fields: string[] | null;
  /** The record's text as read (blank lines before it and its line end included). */
  raw: string;
}

/**
 * Collects what csv-parse hands over, synchronously and in file order: each record through
 * `onRecord`, each record error through `onSkip`; both know the physical line it starts on.
 */
class RecordCollector {
  /** The physical line the next record's text starts on (blank lines before it included). */
  private nextLine = 1;
  /** Records parsed and not yet yielded. */
  records: CsvRecord[] = [];
  /** Set when the file cannot be read on; the reader stops at the next chunk boundary. */
  failure: CardFileError | null = null;

  constructor(private readonly file: string) {}

  /** The line the record whose raw text is `raw` starts on; advances past it. */
  private startLine(raw: string): number {
    const c = raw.charCodeAt(0);
    const line = c === LF || c === CR ? this.nextLine + countNewlines(raw.slice(0, skipNewlines(raw))) : this.nextLine;
    this.nextLine += countNewlines(raw);
    return line;
  }

  onRecord(rec: RawRecord): void {
    if (this.failure !== null) return;
    this.records.push({ line: this.startLine(rec.raw), fields: rec.record, raw: rec.raw });
  }

  /** csv-parse's `on_skip`: a record it could not parse. Throwing stops the parser. */
  onSkip(err: CsvError | undefined, raw: string | undefined): undefined {
    const text = raw ?? '';
    const line = this.startLine(text);
    if (err?.code === 'CSV_QUOTE_NOT_CLOSED') {
      this.records.push({ line, fields: null, raw: text });
      return undefined;
    }
    // csv-parse cannot go on after the other errors (the record-size limit, mainly).
    const failure =
      err?.code === 'CSV_MAX_RECORD_SIZE'
        ? oversizedRecord(this.file, line, true)
        : new CardFileError(this.file, `line ${line}: cannot be parsed as CSV (${err?.code ?? 'unknown error'})`);
    this.failure ??= failure;
    throw failure;
  }
}

/**
 * csv-parse's stream parser, with the records it pushes handed straight to the collector instead
 * of an object-mode buffer: in order, synchronously, without a per-record `await`.
 */
class RecordParser extends Parser {
  constructor(
    options: CsvOptions,
    private readonly collector: RecordCollector,
  ) {
    super(options);
  }

  override push(chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk === null) return super.push(null, encoding);
    this.collector.onRecord(chunk as RawRecord);
    return true;
  }
}

function write(parser: Parser, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    parser.write(chunk, (err) => (err ? reject(err) : resolve()));
  });
}

function finish(parser: Parser): Promise<void> {
  return new Promise((resolve, reject) => {
    parser.once('error', reject);
    parser.once('finish', resolve);
    parser.end();
  });
}

/**
 * Streams the records of a CSV file (gunzipped when it is gzip), as parsed for card files: the
 * one place the csv-parse settings live. Yields the records of each chunk read; blank lines are
 * skipped, but a record of empty fields (`,,`) is yielded. A quoted field still open at the end
 * of the file is yielded with `fields: null`. Throws `CardFileError` naming the file and line at a
 * record it cannot get past (longer than `MAX_RECORD_SIZE`), or when the file cannot be read.
 * Knows nothing of headers: `readCardFile` checks those.
 */
export async function* readCsvRecords(path: string, opts: { delimiter: Delimiter }): AsyncGenerator<CsvRecord[]> {
  const collector = new RecordCollector(path);
  const parser = new RecordParser(
    {
      delimiter: opts.delimiter,
      bom: true,
      raw: true,
      relax_column_count: true,
      relax_quotes: true,
      skip_empty_lines: true,
      skip_records_with_error: true,
      max_record_size: MAX_RECORD_SIZE,
      record_delimiter: ['\r\n', '\n', '\r'],
      on_skip: (err, raw) => collector.onSkip(err, raw),
    },
    collector,
  );
  // Errors reach us through the write and end callbacks; keep the emitter from throwing them.
  parser.on('error', () => {});
  const { chunks } = await openDecoded(path, { reuse: false });
  const take = (): CsvRecord[] => {
    const records = collector.records;
    collector.records = [];
    return records;
  };
  try {
    for await (const chunk of chunks) {
      await write(parser, chunk);
      if (collector.failure !== null) throw collector.failure;
      if (collector.records.length > 0) yield take();
    }
    await finish(parser);
    if (collector.failure !== null) throw collector.failure;
    if (collector.records.length > 0) yield take();
  } catch (err) {
    throw collector.failure ?? asCardFileError(path, err);
  } finally {
    chunks.destroy();
    parser.destroy();
  }
}

/** Turns the records of one card file into entries: the first non-blank one is the header. */
class EntryMaker {
  private ctx: RowContext | null = null;
  /** The file's name as rows and rejects carry it: masked like any text (docs/design.md §14). */
  private readonly sourceFile: string;

  constructor(
    private readonly file: string,
    private readonly reasons: readonly string[],
  ) {
    this.sourceFile = maskPath(file);
  }

  /** The entry for `rec`, or null for a blank record or the header. */
  entry(rec: CsvRecord): CardFileEntry | null {
    const { line, fields, raw } = rec;
    const ctx = this.ctx;
    if (fields === null) {
      if (ctx === null) {
        throw new CardFileError(this.file, `line ${line}: cannot be parsed as CSV (a quote opened here is never closed)`);
      }
      return {
        kind: 'reject',
        reject: {
          sourceFile: this.sourceFile,
          sourceLine: line,
          error: 'unclosed quote: a quoted field runs to the end of the file',
          raw: rawForReject(raw),
        },
      };
    }
    if (isBlankRecord(fields)) return null;
    if (ctx === null) {
      this.ctx = makeRowContext(this.sourceFile, matchHeader(this.file, fields), this.reasons);
      return null;
    }
    const result = validateRow(ctx, fields, line);
    return typeof result === 'string'
      ? { kind: 'reject', reject: { sourceFile: this.sourceFile, sourceLine: line, error: result, raw: rawForReject(raw) } }
      : { kind: 'row', row: result };
  }
}

/**
 * Streams one card file as batches of entries (rows and rejects) in file order. Runs the header
 * checks of `inspectCardFile` first (they throw `CardFileError`); a file the reader cannot get
 * through (a record longer than `MAX_RECORD_SIZE`, corrupt gzip) throws `CardFileError` naming
 * the file and line, after the batches before it were yielded.
 */
export async function* readCardFile(path: string, opts: ReadOptions): AsyncGenerator<CardFileEntry[]> {
  const batchSize = opts.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
  }
  const { delimiter } = await checkFile(path, opts.delimiter, false);
  const maker = new EntryMaker(path, opts.reasons);
  let pending: CardFileEntry[] = [];
  for await (const records of readCsvRecords(path, { delimiter })) {
    for (const rec of records) {
      const entry = maker.entry(rec);
      if (entry !== null) pending.push(entry);
    }
    if (pending.length >= batchSize) {
      const full = pending.length - (pending.length % batchSize);
      const ready = pending;
      pending = ready.slice(full);
      for (let i = 0; i < full; i += batchSize) yield ready.slice(i, i + batchSize);
    }
  }
  for (let i = 0; i < pending.length; i += batchSize) yield pending.slice(i, i + batchSize);
}
