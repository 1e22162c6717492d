import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CardFileError, EXIT } from '../src/errors.js';
import type { CardRow, RejectRow } from '../src/types.js';
import {
  PAN_REJECT,
  containsCardNumber,
  detectDelimiter,
  fileSha256,
  findCardNumbers,
  hasCardNumberWindow,
  inspectCardFile,
  isIsoDateTime,
  luhnValid,
  makeRowContext,
  maskCardNumbers,
  matchColumn,
  matchHeader,
  rawForReject,
  readCardFile,
  validateRow,
  type CardFileEntry,
  type ReadOptions,
} from '../src/cards/index.js';

const FIXTURES = fileURLToPath(new URL('../fixtures', import.meta.url));
const REASONS = ['CLOSED', 'FRAUD', 'LOST_STOLEN', 'REGULATORY', 'CUSTOMER_REQUEST'];
const TEST_PANS = ['4111111111111111', '5555555555554444', '378282246310005', '4222222222222', '6011111111111117'];

let dir: string;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'd1-optout-cards-'));
  for (const sub of ['cards', 'inbox']) {
    fs.mkdirSync(path.join(dir, sub));
    for (const name of fs.readdirSync(path.join(FIXTURES, sub))) {
      fs.copyFileSync(path.join(FIXTURES, sub, name), path.join(dir, sub, name));
    }
  }
});

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A copied fixture of fixtures/cards. */
function fixture(name: string): string {
  return path.join(dir, 'cards', name);
}

/** Writes `content` to a new file of the temp dir and returns its path. */
function write(name: string, content: string | Buffer): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, content);
  return file;
}

interface ReadResult {
  batches: CardFileEntry[][];
  entries: CardFileEntry[];
  rows: CardRow[];
  rejects: RejectRow[];
}

async function readAll(file: string, opts: Partial<ReadOptions> = {}): Promise<ReadResult> {
  const batches: CardFileEntry[][] = [];
  for await (const batch of readCardFile(file, { delimiter: 'auto', reasons: REASONS, ...opts })) {
    batches.push(batch);
  }
  const entries = batches.flat();
  return {
    batches,
    entries,
    rows: entries.flatMap((e) => (e.kind === 'row' ? [e.row] : [])),
    rejects: entries.flatMap((e) => (e.kind === 'reject' ? [e.reject] : [])),
  };
}

/** The CardFileError `promise` rejects with (fails the test when it resolves or throws another). */
async function cardFileError(promise: Promise<unknown>): Promise<CardFileError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(CardFileError);
    return err as CardFileError;
  }
  throw new Error('expected a CardFileError, but the call succeeded');
}

// ---------------------------------------------------------------------------------------------

describe('luhnValid', () => {
  it('accepts numbers with a valid check digit', () => {
    for (const pan of [...TEST_PANS, '79927398713', '00']) expect(luhnValid(pan), pan).toBe(true);
  });

  it('rejects wrong check digits, non-digits and too-short input', () => {
    for (const s of ['4111111111111112', '79927398710', '1234567812345678', '', '0', 'abcd', '4111 1111 1111 1111', '41111111111111x1']) {
      expect(luhnValid(s), s).toBe(false);
    }
  });
});

describe('findCardNumbers', () => {
  it('finds plain numbers and numbers grouped by single spaces or dashes', () => {
    expect(findCardNumbers('card 4111111111111111 here')).toEqual(['4111111111111111']);
    expect(findCardNumbers('4111 1111 1111 1111')).toEqual(['4111111111111111']);
    expect(findCardNumbers('amex 3782-822463-10005.')).toEqual(['378282246310005']);
    expect(findCardNumbers('a 4222222222222 b 5555555555554444')).toEqual(['4222222222222', '5555555555554444']);
  });

  it('finds a number glued to other digits (windows inside a longer run)', () => {
    const found = findCardNumbers('ref 99' + '6011111111111117' + '7');
    expect(found.length).toBeGreaterThan(0);
    for (const n of found) expect(luhnValid(n)).toBe(true);
    // Rejecting a row needs a whole 13–19-digit run that passes Luhn; masking takes every window.
    expect(containsCardNumber('ref 99' + '6011111111111117' + '7')).toBe(false);
    expect(maskCardNumbers('ref 99' + '6011111111111117' + '7')).not.toContain('6011111111111117');
  });

  it('finds a number written with underscores, which would otherwise pass as a D1 card id', () => {
    expect(containsCardNumber('4111_1111_1111_1111')).toBe(true);
    expect(maskCardNumbers('id 4111_1111_1111_1111')).toBe('id 4111_11**_****_1111');
  });

  it('finds a number whatever runs of separators group it (docs/design.md §14)', () => {
    const written = [
      '4111--1111--1111--1111',
      '4111  1111 1111 1111',
      '4111.1111.1111.1111',
      '4111/1111/1111/1111',
      '4111\u00a01111\u00a01111\u00a01111', // non-breaking spaces
      '4111\u202f1111\u20091111\u30001111', // narrow, thin and ideographic spaces
      '4111\u200b1111\ufeff1111\u20601111', // zero-width ones
      '4111\u20131111\u20141111\u22121111', // en dash, em dash, minus sign
      '4111\n1111\r\n1111\t1111', // line breaks inside a quoted field, a tab
      '4111 - 1111 _ 1111 ./ 1111',
    ];
    for (const w of written) {
      expect(findCardNumbers(`ref ${w} end`), JSON.stringify(w)).toEqual(['4111111111111111']);
      expect(containsCardNumber(w), JSON.stringify(w)).toBe(true);
      const masked = maskCardNumbers(`ref ${w} end`);
      expect(masked.replace(/[^0-9]/g, ''), JSON.stringify(masked)).toBe('4111111111');
    }
  });

  it('ignores short runs, non-Luhn runs and runs broken by other characters', () => {
    expect(findCardNumbers('411111111111')).toEqual([]); // 12 digits
    expect(findCardNumbers('1234567812345678')).toEqual([]); // no valid 13–19-digit window
    expect(findCardNumbers('4111x1111x1111x1111')).toEqual([]);
    expect(findCardNumbers('4111,1111,1111,1111')).toEqual([]); // a comma is a CSV delimiter, see acrossFields
    expect(findCardNumbers('2026-11-28T10:00:00Z CARD-0001-K7QM')).toEqual([]);
    expect(containsCardNumber('1234567812345678')).toBe(false);
  });

  it('masks across CSV delimiters and quotes when asked (a record, a header, free text)', () => {
    expect(maskCardNumbers('41111111,11111111')).toBe('41111111,11111111');
    expect(maskCardNumbers('41111111,11111111', { acrossFields: true })).toBe('411111**,****1111');
    expect(maskCardNumbers('"41111111";"11111111"', { acrossFields: true })).toBe('"411111**";"****1111"');
    expect(maskCardNumbers('4111|1111|1111|1111', { acrossFields: true })).toBe('4111|11**|****|1111');
  });

  it('tells a number inside a longer run (an id holding one) from a whole run', () => {
    // A PAN plus one digit: no whole run passes Luhn, but a window does.
    expect(containsCardNumber('41111111111111110')).toBe(false);
    expect(hasCardNumberWindow('41111111111111110')).toBe(true);
    expect(hasCardNumberWindow('CARD-99-4111111111111111-7')).toBe(true);
    expect(hasCardNumberWindow('CARD-0001-K7QM')).toBe(false);
    expect(hasCardNumberWindow('1234567812345678')).toBe(false);
    expect(maskCardNumbers('41111111111111110')).not.toContain('1111111111111111');
  });

  it('masks in time linear in the length of a digit run', () => {
    // Every window of a long run is checked; a quadratic scan would take seconds here.
    const long = '4111111111111111'.repeat(20_000); // 320,000 digits
    const t0 = performance.now();
    const masked = maskCardNumbers(long);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(findCardNumbers(masked)).toEqual([]);
  });
});

describe('containsCardNumber', () => {
  /** The definition, written plainly: runs with any separators between digits, a whole 13–19-digit run passing Luhn. */
  function reference(text: string): boolean {
    for (const m of text.matchAll(/[0-9](?:[\s._\/-]*[0-9])*/g)) {
      const digits = m[0].replace(/[^0-9]/g, '');
      if (digits.length >= 13 && digits.length <= 19 && luhnValid(digits)) return true;
    }
    return false;
  }

  it('agrees with the plain definition on random text', () => {
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const alphabets = ['0123456789 -_', '0123456789012345678901234567890123456789 -,aZ:', '01 -x,', '0123456789012345678901234567890123456789./\u00a0\n\t  x'];
    let positives = 0;
    for (let k = 0; k < 3000; k++) {
      const alphabet = alphabets[k % alphabets.length]!;
      let text = '';
      const len = 5 + rand(80);
      for (let i = 0; i < len; i++) text += alphabet[rand(alphabet.length)];
      const want = reference(text);
      if (want) positives++;
      expect(containsCardNumber(text), JSON.stringify(text)).toBe(want);
    }
    // enough positives that agreement means something (whole-run hits are rarer than window hits)
    expect(positives).toBeGreaterThan(25);
  });
});

describe('maskCardNumbers', () => {
  it('keeps the first 6 and last 4 digits and the number of digits', () => {
    expect(maskCardNumbers('4111111111111111')).toBe('411111******1111');
    expect(maskCardNumbers('pan: 4111 1111 1111 1111!')).toBe('pan: 4111 11** **** 1111!');
    expect(maskCardNumbers('378282246310005')).toBe('378282*****0005');
    expect(maskCardNumbers('x 4222222222222 y 5555555555554444')).toBe('x 422222***2222 y 555555******4444');
  });

  it('returns text without card numbers unchanged', () => {
    const text = 'CARD-0001-K7QM,,CLOSED,CARD,2026-11-27T18:02:11Z,order 1234567812345678';
    expect(maskCardNumbers(text)).toBe(text);
  });

  it('never leaves a card number behind and keeps the length (random digit soup)', () => {
    let seed = 42;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const alphabet = '0123456789012345678901234567890123456789 -x';
    for (let k = 0; k < 2000; k++) {
      let text = '';
      const len = 10 + rand(60);
      for (let i = 0; i < len; i++) text += alphabet[rand(alphabet.length)];
      const masked = maskCardNumbers(text);
      expect(masked.length).toBe(text.length);
      expect(containsCardNumber(masked), `${text} -> ${masked}`).toBe(false);
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('header matching', () => {
  it('matches names case-insensitively, ignoring _ - and spaces', () => {
    const cases: Array<[string, string | null]> = [
      ['card_id', 'card_id'],
      ['Card ID', 'card_id'],
      [' CARD-ID ', 'card_id'],
      ['cardId', 'card_id'],
      ['Consumer Id', 'consumer_id'],
      ['REASON', 'reason'],
      ['Scope', 'scope'],
      ['Event-Time', 'event_time'],
      ['event time', 'event_time'],
      ['Reference', 'reference'],
      ['card_number', null],
      ['note', null],
      ['', null],
    ];
    for (const [name, want] of cases) expect(matchColumn(name), name).toBe(want);
  });

  it('maps the known columns to their positions and ignores the others', () => {
    const map = matchHeader('f.csv', ['Note', 'Reason', 'Card ID', 'event_time']);
    expect(map).toEqual({
      fieldCount: 4,
      cardId: 2,
      consumerId: -1,
      reason: 1,
      scope: -1,
      eventTime: 3,
      reference: -1,
    });
  });

  it('rejects a known column named twice, a missing reason, and a missing id column', () => {
    expect(() => matchHeader('f.csv', ['card_id', 'reason', 'CARD-ID'])).toThrow(/"card_id" appears twice .*columns 1 and 3/);
    expect(() => matchHeader('f.csv', ['card_id', 'reference'])).toThrow(/missing required column "reason"/);
    expect(() => matchHeader('f.csv', ['reason', 'scope'])).toThrow(/"card_id" or "consumer_id"/);
    expect(() => matchHeader('f.csv', ['CARD-1', 'CLOSED'])).toThrow(/no usable header/);
  });

  it('detects the delimiter that occurs most outside quotes, comma when none', () => {
    expect(detectDelimiter('card_id,reason,scope')).toBe(',');
    expect(detectDelimiter('card_id;reason;scope')).toBe(';');
    expect(detectDelimiter('card_id|reason')).toBe('|');
    expect(detectDelimiter('card_id\treason\tscope')).toBe('\t');
    expect(detectDelimiter('"a,b,c";reason;scope')).toBe(';');
    expect(detectDelimiter('card_id')).toBe(',');
  });
});

// ---------------------------------------------------------------------------------------------

describe('validateRow', () => {
  const header = matchHeader('f.csv', ['card_id', 'consumer_id', 'reason', 'scope', 'event_time', 'reference', 'note']);
  const ctx = makeRowContext('f.csv', header, [' closed', 'Fraud ']);
  const row = (...fields: string[]): CardRow | string => validateRow(ctx, fields, 7);

  it('builds a CARD row with trimmed values and an upper-cased reason', () => {
    expect(row(' CARD-1 ', ' CONS-1 ', ' closed ', '', ' 2026-11-28T10:00:00Z ', ' ref ', 'x')).toEqual({
      scope: 'CARD',
      targetId: 'CARD-1',
      consumerId: 'CONS-1',
      reason: 'CLOSED',
      eventTime: '2026-11-28T10:00:00Z',
      reference: 'ref',
      sourceFile: 'f.csv',
      sourceLine: 7,
    });
  });

  it('defaults the scope to CONSUMER when only consumer_id is given', () => {
    const r = row('', 'CONS-1', 'FRAUD', '', '', '', '');
    expect(r).toMatchObject({ scope: 'CONSUMER', targetId: 'CONS-1', consumerId: 'CONS-1', reference: null, eventTime: null });
  });

  it('ignores card_id on a CONSUMER row, even an invalid one', () => {
    expect(row('not a card id!', 'CONS-2', 'closed', 'consumer', '', '', '')).toMatchObject({
      scope: 'CONSUMER',
      targetId: 'CONS-2',
    });
  });

  it('rejects with a message that names the column', () => {
    expect(row('CARD-1', '', 'CLOSED', '', '')).toBe('expected 7 fields, found 5');
    expect(row('CARD-1', '', 'CLOSED', 'BRANCH', '', '', '')).toMatch(/^scope: /);
    expect(row('', '', 'CLOSED', 'CARD', '', '', '')).toMatch(/^card_id: missing/);
    expect(row('x'.repeat(49), '', 'CLOSED', '', '', '', '')).toMatch(/^card_id: /);
    expect(row('CARD.1', '', 'CLOSED', '', '', '', '')).toMatch(/^card_id: "CARD.1" is not a D1 card id/);
    expect(row('CARD-1', 'c'.repeat(65), 'CLOSED', '', '', '', '')).toMatch(/^consumer_id: /);
    expect(row('', '', 'CLOSED', 'CONSUMER', '', '', '')).toMatch(/^consumer_id: missing/);
    expect(row('CARD-1', '', '', '', '', '', '')).toBe('reason: missing');
    expect(row('CARD-1', '', 'LOST_STOLEN', '', '', '', '')).toMatch(/^reason: "LOST_STOLEN" is not one of the configured reasons \(CLOSED, FRAUD\)/);
    expect(row('CARD-1', '', 'CLOSED', '', 'tomorrow', '', '')).toMatch(/^event_time: "tomorrow"/);
  });

  it('accepts ids at the D1 length limits', () => {
    expect(row('c'.repeat(48), 'd'.repeat(64), 'CLOSED', '', '', '', '')).toMatchObject({ targetId: 'c'.repeat(48) });
  });

  it('rejects a PAN in any field (here without raw text) and never repeats it', () => {
    for (let i = 0; i < 7; i++) {
      const fields = ['CARD-1', '', 'CLOSED', '', '', '', ''];
      fields[i] = `x 4111 1111 1111 1111 y`;
      const r = row(...fields);
      expect(r).toBe(PAN_REJECT);
      expect(r as string).not.toMatch(/\d{4}/);
    }
  });

  it('rejects an id holding a card number, even glued to other digits or grouped oddly', () => {
    for (const id of ['41111111111111110', '4111--1111--1111--1111', 'X9-4111111111111111', '4111_1111__1111_1111']) {
      expect(row(id, '', 'CLOSED', '', '', '', ''), id).toBe(PAN_REJECT);
      expect(row('', id, 'CLOSED', 'CONSUMER', '', '', ''), id).toBe(PAN_REJECT);
      expect(row('CARD-1', id, 'CLOSED', '', '', '', ''), id).toBe(PAN_REJECT);
    }
  });

  it('masks a card number glued to other digits in the reference, and keeps the row', () => {
    const r = row('CARD-1', '', 'CLOSED', '', '', 'order 41111111111111110; 4111,1111,1111,1111', '');
    expect(r).toMatchObject({ targetId: 'CARD-1' });
    expect((r as CardRow).reference).not.toMatch(/4111.?1111.?1111.?1111/);
    expect((r as CardRow).reference).toMatch(/^order 411111/);
  });

  it('tests field by field: two numeric fields of a tab-delimited file are not one number', () => {
    // 1234567 + 891234563 would be a valid 16-digit number if the tab between them counted.
    expect(luhnValid('1234567891234563')).toBe(true);
    expect(row('1234567', '891234563', 'CLOSED', '', '', '', '')).toMatchObject({ targetId: '1234567' });
  });

  it('parses ISO 8601 dates and date-times, and only those', () => {
    const good = [
      '2026-11-28',
      '2026-11-28T10:00Z',
      '2026-11-28T10:00:00Z',
      '2026-11-28T10:00:00.123456Z',
      '2026-11-28T10:00:00+01:00',
      '2026-11-28T10:00:00-0530',
      '2026-11-28T10:00:00+01',
      '2026-11-28 23:59:59',
      '2024-02-29',
    ];
    const bad = [
      '',
      'yesterday',
      '28/11/2026',
      '2026-11-28T',
      '2026-13-01',
      '2026-02-29',
      '2026-11-31',
      '2026-11-28T24:00:00Z',
      '2026-11-28T10:60:00Z',
      '2026-11-28T10:00:00ZZ',
      '2026-11-28T10:00:00+25:00',
      '20261128',
      '1764324000000',
    ];
    for (const v of good) expect(isIsoDateTime(v), v).toBe(true);
    for (const v of bad) expect(isIsoDateTime(v), v).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------

describe('readCardFile: formats', () => {
  it('matches header variants and ignores unknown columns', async () => {
    const file = fixture('header-variants.csv');
    const { rows, rejects } = await readAll(file);
    expect(rejects).toEqual([]);
    expect(rows).toEqual([
      {
        scope: 'CARD',
        targetId: 'CARD-H001',
        consumerId: null,
        reason: 'CLOSED',
        eventTime: '2026-11-28',
        reference: 'first row',
        sourceFile: file,
        sourceLine: 2,
      },
      {
        scope: 'CONSUMER',
        targetId: 'CONS-H001',
        consumerId: 'CONS-H001',
        reason: 'FRAUD',
        eventTime: null,
        reference: 'second row',
        sourceFile: file,
        sourceLine: 3,
      },
    ]);
  });

  it.each([
    ['semicolon.csv', ';', ['CARD-S001', 'CARD-S002']],
    ['pipe.csv', '|', ['CARD-P001', 'CARD-P002']],
    ['tab.tsv', '\t', ['CARD-T001', 'CARD-T002']],
    ['bad-rows.csv', ',', ['CARD-X001', 'CARD-X011']],
  ])('reads %s with delimiter %j', async (name, delimiter, ids) => {
    const file = fixture(name);
    expect((await inspectCardFile(file, { delimiter: 'auto' })).delimiter).toBe(delimiter);
    const { rows } = await readAll(file);
    expect(rows.map((r) => r.targetId)).toEqual(ids);
    // The same file read with the delimiter configured instead of detected.
    const configured = await readAll(file, { delimiter: delimiter as ReadOptions['delimiter'] });
    expect(configured.rows).toEqual(rows);
  });

  it('keeps a delimiter inside a quoted field', async () => {
    const { rows } = await readAll(fixture('semicolon.csv'));
    expect(rows[0]!.reference).toBe('a; b');
  });

  it('reads UTF-8 with a BOM and CRLF line ends', async () => {
    const file = fixture('bom-crlf.csv');
    expect(fs.readFileSync(file).subarray(0, 3)).toEqual(Buffer.from([0xef, 0xbb, 0xbf]));
    const info = await inspectCardFile(file, { delimiter: 'auto' });
    expect(info.columns).toEqual(['card_id', 'reason']);
    const { rows } = await readAll(file);
    expect(rows.map((r) => [r.targetId, r.reason, r.sourceLine])).toEqual([
      ['CARD-B001', 'CLOSED', 2],
      ['CARD-B002', 'FRAUD', 3],
    ]);
  });

  it('reads gzip, by name and by magic bytes', async () => {
    const file = fixture('gzip-pipe.csv.gz');
    expect(await inspectCardFile(file, { delimiter: 'auto' })).toEqual({
      delimiter: '|',
      columns: ['card_id', 'reason', 'event_time'],
      gzip: true,
    });
    const byName = await readAll(file);
    expect(byName.rows.map((r) => [r.targetId, r.reason, r.eventTime, r.sourceLine])).toEqual([
      ['CARD-G001', 'CLOSED', '2026-11-28', 2],
      ['CARD-G002', 'LOST_STOLEN', null, 3],
    ]);
    const unnamed = write('gzip-without-suffix.csv', fs.readFileSync(file));
    expect((await readAll(unnamed)).rows.map((r) => r.targetId)).toEqual(['CARD-G001', 'CARD-G002']);
  });

  it('counts physical lines across quoted newlines and blank lines', async () => {
    const { rows, rejects } = await readAll(fixture('quoted-newlines.csv'));
    expect(rejects).toEqual([]);
    expect(rows.map((r) => [r.targetId, r.sourceLine])).toEqual([
      ['CARD-Q001', 2],
      ['CARD-Q002', 4],
      ['CARD-Q003', 6],
      ['CARD-Q004', 9],
      ['CARD-Q005', 13],
    ]);
    expect(rows[0]!.reference).toBe('two\nlines');
    expect(rows[2]!.reference).toBe('three\n\nlines');
  });

  it('counts lines the same way in a CRLF file with quoted newlines and blank lines', async () => {
    const file = write(
      'crlf-quoted.csv',
      'card_id,reason,reference\r\n\r\nCARD-C001,CLOSED,"a\r\nb"\r\n   \r\n,,\r\nCARD-C002,FRAUD,x\r\n',
    );
    const { rows, rejects } = await readAll(file);
    expect(rejects).toEqual([]);
    expect(rows.map((r) => [r.targetId, r.sourceLine])).toEqual([
      ['CARD-C001', 3],
      ['CARD-C002', 7],
    ]);
  });

  it('reads a file whose line ends change half-way (LF and CRLF mixed)', async () => {
    const file = write('mixed-eol.csv', 'card_id,reason\r\nCARD-M001,CLOSED\nCARD-M002,FRAUD\r\nCARD-M003,CLOSED');
    const { rows } = await readAll(file);
    expect(rows.map((r) => [r.targetId, r.reason, r.sourceLine])).toEqual([
      ['CARD-M001', 'CLOSED', 2],
      ['CARD-M002', 'FRAUD', 3],
      ['CARD-M003', 'CLOSED', 4],
    ]);
  });

  it('gives sourceFile exactly as the path was given', async () => {
    const relative = path.relative(process.cwd(), fixture('pipe.csv'));
    const { rows } = await readAll(relative);
    expect(rows.map((r) => r.sourceFile)).toEqual([relative, relative]);
  });

  it('fails on a configured delimiter the header does not use, and says so', async () => {
    const err = await cardFileError(readAll(fixture('semicolon.csv'), { delimiter: ',' }));
    expect(err.message).toMatch(/no usable header/);
    expect(err.message).toMatch(/configured delimiter is ',' but the first line looks ';'-delimited/);
  });
});

describe('readCardFile: rejects', () => {
  it('rejects each bad row with its line, and goes on', async () => {
    const file = fixture('bad-rows.csv');
    const { entries } = await readAll(file);
    const summary = entries.map((e) =>
      e.kind === 'row' ? [e.row.sourceLine, 'row', e.row.targetId] : [e.reject.sourceLine, 'reject', e.reject.error.split(':')[0]],
    );
    expect(summary).toEqual([
      [2, 'row', 'CARD-X001'],
      [3, 'reject', 'expected 6 fields, found 5'],
      [4, 'reject', 'card_id'],
      [5, 'reject', 'reason'],
      [6, 'reject', 'scope'],
      [7, 'reject', 'card_id'],
      [8, 'reject', 'consumer_id'],
      [9, 'reject', 'consumer_id'],
      [10, 'reject', 'event_time'],
      [11, 'reject', 'event_time'],
      [12, 'reject', 'reason'],
      [13, 'reject', 'expected 6 fields, found 7'],
      [14, 'row', 'CARD-X011'],
      [15, 'reject', 'card_id'],
    ]);
    const rejects = entries.flatMap((e) => (e.kind === 'reject' ? [e.reject] : []));
    expect(rejects.every((r) => r.sourceFile === file)).toBe(true);
    expect(rejects[0]!.raw).toBe('CARD-X002,,CLOSED,CARD,2026-11-28T10:00:00Z');
    expect(rejects[2]!.error).toMatch(/"STOLEN\?"/);
  });

  it('rejects a PAN in any column, masks it in raw, and never shows it', async () => {
    const { rows, rejects, entries } = await readAll(fixture('pan-rows.csv'));
    expect(rejects.map((r) => r.sourceLine)).toEqual([2, 3, 4, 5, 8, 9]);
    expect(rejects.every((r) => r.error === PAN_REJECT)).toBe(true);
    // Line 6 holds a PAN glued to other digits: no whole run passes Luhn, so the row stands, masked.
    expect(rows.map((r) => [r.targetId, r.sourceLine, r.reference])).toEqual([
      ['CARD-N004', 6, 'order 996011********1117'],
      ['CARD-N005', 7, 'order 1234567890123'],
    ]);
    expect(rejects.map((r) => r.raw)).toEqual([
      '411111******1111,,CLOSED,,',
      'CARD-N001,555555******4444,CLOSED,,',
      'CARD-N002,,CLOSED,call about 3782-82****-*0005,',
      'CARD-N003,,CLOSED,,pan 422222***2222 in the note',
      'CARD-N006,,411*********1111,,', // masked across the delimiters: "006,,4111…" is one run
      'CARD-N007,,CLOSED,"5555 55** **** 4444\\nsecond line"',
    ]);
    const everything = JSON.stringify(entries);
    for (const pan of TEST_PANS) expect(everything).not.toContain(pan);
    expect(containsCardNumber(everything)).toBe(false);
  });

  it('rejects a PAN in an unknown column, in the reference and between quotes of any row shape', async () => {
    const file = write(
      'pan-anywhere.csv',
      'card_id,reason,reference,extra\n' +
        'CARD-1,CLOSED,,"4111-1111-1111-1111"\n' +
        'CARD-2,CLOSED,ref 4111111111111111\n' + // also a wrong field count: the PAN reject wins
        'CARD-3,CLOSED,,\n',
    );
    const { rows, rejects } = await readAll(file);
    expect(rejects.map((r) => [r.sourceLine, r.error])).toEqual([
      [2, PAN_REJECT],
      [3, PAN_REJECT],
    ]);
    expect(rows.map((r) => r.targetId)).toEqual(['CARD-3']);
    expect(JSON.stringify(rejects)).not.toMatch(/4111.?1111.?1111.?1111/);
  });

  it('rejects an unclosed quote at the end of the file with the line it starts on', async () => {
    const { rows, rejects } = await readAll(fixture('unclosed-quote.csv'));
    expect(rows.map((r) => [r.targetId, r.sourceLine])).toEqual([['CARD-U001', 2]]);
    expect(rejects).toHaveLength(1);
    expect(rejects[0]).toMatchObject({ sourceLine: 3, error: expect.stringMatching(/^unclosed quote/) });
    expect(rejects[0]!.raw).toBe('CARD-U002,CLOSED,"never closed\\nCARD-U003,CLOSED,swallowed');
  });

  it('truncates raw to 500 characters, after masking', () => {
    const long = 'x'.repeat(495) + '4111111111111111' + 'y'.repeat(100);
    const raw = rawForReject(long + '\r\n');
    expect(raw).toHaveLength(500);
    expect(raw.endsWith('…')).toBe(true);
    expect(raw).toContain('x'.repeat(495) + '4111');
    expect(containsCardNumber(raw)).toBe(false);
    expect(rawForReject('\n\na\r\nb\rc\n')).toBe('a\\nb\\nc');
  });

  it('skips blank lines and rows of empty fields without rejecting them', async () => {
    const file = write('blanks.csv', '\n\ncard_id,reason\n\n  \n,\nCARD-1,CLOSED\n\n');
    const { rows, rejects } = await readAll(file);
    expect(rejects).toEqual([]);
    expect(rows.map((r) => [r.targetId, r.sourceLine])).toEqual([['CARD-1', 7]]);
  });

  it('stops with CardFileError naming file and line at a record it cannot hold', async () => {
    const lines = ['card_id,reason,reference'];
    for (let i = 0; i < 3000; i++) lines.push(`CARD-${i},CLOSED,r${i}`);
    lines.push('CARD-OPEN,CLOSED,"a quote left open');
    for (let i = 0; i < 5000; i++) lines.push(`CARD-B${i},CLOSED,r${i}`);
    const file = write('open-quote-big.csv', lines.join('\n') + '\n');

    const inspected = await cardFileError(inspectCardFile(file, { delimiter: 'auto' }));
    expect(inspected.message).toBe(
      `${file}: line 3002: a record is longer than 64 KiB, so the file cannot be read past it (is a quote left open?)`,
    );

    let seen = 0;
    const read = await cardFileError(
      (async () => {
        for await (const batch of readCardFile(file, { delimiter: 'auto', reasons: REASONS, batchSize: 500 })) {
          seen += batch.length;
        }
      })(),
    );
    expect(read.file).toBe(file);
    expect(read.message).toMatch(/line 3002: a record is longer than 64 KiB/);
    expect(seen).toBe(3000);
  });
});

describe('readCardFile: batching', () => {
  function bigFile(name: string, n: number): string {
    let text = 'card_id,reason\n';
    for (let i = 0; i < n; i++) text += i % 7 === 3 ? `CARD-${i},NOPE\n` : `CARD-${i},CLOSED\n`;
    return write(name, text);
  }

  it('yields every entry in file order, in batches of batchSize', async () => {
    const { batches, entries } = await readAll(bigFile('batch.csv', 5003), { batchSize: 1000 });
    expect(batches.map((b) => b.length)).toEqual([1000, 1000, 1000, 1000, 1000, 3]);
    const lines = entries.map((e) => (e.kind === 'row' ? e.row.sourceLine : e.reject.sourceLine));
    expect(lines).toEqual(Array.from({ length: 5003 }, (_, i) => i + 2));
    expect(entries.filter((e) => e.kind === 'reject')).toHaveLength(715);
    expect(entries[3]).toMatchObject({ kind: 'reject', reject: { sourceLine: 5 } });
  });

  it('defaults to batches of 2000', async () => {
    const { batches } = await readAll(bigFile('batch-default.csv', 4500));
    expect(batches.map((b) => b.length)).toEqual([2000, 2000, 500]);
  });

  it('can be left early, and releases the file', async () => {
    const file = bigFile('batch-early.csv', 10_000);
    const fdCount = (): number => (fs.existsSync('/proc/self/fd') ? fs.readdirSync('/proc/self/fd').length : 0);
    const before = fdCount();
    let first: CardFileEntry[] | undefined;
    for await (const batch of readCardFile(file, { delimiter: 'auto', reasons: REASONS, batchSize: 100 })) {
      first = batch;
      break;
    }
    expect(first).toHaveLength(100);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(fdCount()).toBeLessThanOrEqual(before);
  });

  it('yields nothing for a file with only a header', async () => {
    const { batches } = await readAll(write('header-only.csv', 'card_id,reason\n'));
    expect(batches).toEqual([]);
  });

  it('rejects a batch size that is not a positive integer', async () => {
    await expect(readAll(fixture('pipe.csv'), { batchSize: 0 })).rejects.toThrow(RangeError);
  });
});

// ---------------------------------------------------------------------------------------------

describe('inspectCardFile', () => {
  const inspect = (file: string): Promise<unknown> => inspectCardFile(file, { delimiter: 'auto' });

  it('returns the delimiter and the columns as written', async () => {
    expect(await inspect(fixture('header-variants.csv'))).toEqual({
      delimiter: ',',
      columns: [' Card ID ', 'CONSUMER-ID', 'Reason', 'SCOPE', 'Event_Time', 'reference', 'Note'],
      gzip: false,
    });
  });

  it.each([
    ['a missing file', () => path.join(dir, 'nope.csv'), /: file not found$/],
    ['a directory', () => dir, /is a directory/],
    ['an empty file', () => fixture('empty.csv'), /is empty/],
    ['a file of blank lines', () => fixture('blank-lines-only.csv'), /is empty/],
    ['a file without a header', () => fixture('no-header.csv'), /no usable header/],
    ['a header without reason', () => fixture('no-reason.csv'), /missing required column "reason"/],
    ['a header without card_id or consumer_id', () => fixture('no-id.csv'), /"card_id" or "consumer_id"/],
    ['a known column named twice', () => fixture('duplicate-column.csv'), /"card_id" appears twice/],
    ['a spreadsheet', () => fixture('spreadsheet.xlsx'), /looks binary/],
    ['UTF-16 text', () => fixture('utf16.csv'), /looks binary/],
    ['a .gz that is not gzip', () => fixture('not-gzip.csv.gz'), /named \.gz but is not gzip/],
  ])('refuses %s', async (_what, file, problem) => {
    const target = file();
    const err = await cardFileError(inspect(target));
    expect(err.file).toBe(target);
    expect(err.message.startsWith(`${target}: `)).toBe(true);
    expect(err.message).toMatch(problem);
    expect(err.exitCode).toBe(EXIT.USAGE);
    // readCardFile runs the same checks before it yields anything.
    await expect(readAll(target)).rejects.toThrow(problem);
  });

  it('refuses truncated gzip data', async () => {
    const whole = gzipSync(Buffer.from('card_id,reason\n' + 'CARD-1,CLOSED\n'.repeat(2000)));
    const file = write('truncated.csv.gz', whole.subarray(0, whole.length - 12));
    const err = await cardFileError(inspect(file));
    expect(err.message).toMatch(/gzip data is corrupt or truncated/);
  });

  it('finds an open quote several read chunks into the file, at its line', async () => {
    // The preflight scan reads through one reused buffer; it must see every byte once, in order.
    const lines = ['card_id,reason,reference'];
    for (let i = 0; i < 20_000; i++) lines.push(`CARD-${i},CLOSED,r${i}`);
    lines.push('CARD-OPEN,CLOSED,"a quote left open');
    for (let i = 0; i < 5000; i++) lines.push(`CARD-B${i},CLOSED,r${i}`);
    const file = write('open-quote-far.csv', lines.join('\n') + '\n');
    expect(fs.statSync(file).size).toBeGreaterThan(5 * 64 * 1024);
    const err = await cardFileError(inspect(file));
    expect(err.message).toBe(`${file}: line 20002: a record is longer than 64 KiB, so the file cannot be read past it (is a quote left open?)`);
  });

  it('refuses a first line longer than 64 KiB', async () => {
    const file = write('long-line.csv', 'card_id,reason,' + 'x'.repeat(70_000) + '\nCARD-1,CLOSED,y\n');
    const err = await cardFileError(inspect(file));
    expect(err.message).toMatch(/no usable header: the first line is longer than 64 KiB/);
  });

  it('masks a card number written into the header', async () => {
    const file = write('pan-header.csv', 'card_id,reason,4111111111111111\nCARD-1,CLOSED,x\n');
    const info = (await inspect(file)) as { columns: string[] };
    expect(info.columns).toEqual(['card_id', 'reason', '411111******1111']);
    const err = await cardFileError(inspect(write('pan-header-bad.csv', '4111111111111111,CLOSED\n')));
    expect(err.message).not.toContain('4111111111111111');
    expect(err.message).toContain('411111******1111');
  });
});

describe('fileSha256', () => {
  it('hashes the bytes as stored (gzip is not decompressed)', async () => {
    for (const name of ['bom-crlf.csv', 'gzip-pipe.csv.gz']) {
      const file = fixture(name);
      const want = createHash('sha256').update(fs.readFileSync(file)).digest('hex');
      expect(await fileSha256(file)).toBe(want);
    }
  });

  it('hashes a file of many read chunks, the last one short, like node:crypto over the whole file', async () => {
    // The hash reads through one reused buffer: a chunk overwritten too early would change it.
    const file = write('many-chunks.csv', 'card_id,reason\n' + Array.from({ length: 30_001 }, (_, i) => `CARD-${i},CLOSED\n`).join(''));
    expect(fs.statSync(file).size % (64 * 1024)).not.toBe(0);
    expect(fs.statSync(file).size).toBeGreaterThan(5 * 64 * 1024);
    expect(await fileSha256(file)).toBe(createHash('sha256').update(fs.readFileSync(file)).digest('hex'));
  });

  it('throws CardFileError for a missing file', async () => {
    const err = await cardFileError(fileSha256(path.join(dir, 'missing.csv')));
    expect(err.message).toMatch(/file not found/);
  });
});

// ---------------------------------------------------------------------------------------------

describe('the demo inbox', () => {
  it('closed-cards: 20 rows, one bad reason and one PAN rejected, two CONSUMER rows', async () => {
    const { rows, rejects } = await readAll(path.join(dir, 'inbox', 'closed-cards-2026-11-28.csv'));
    expect(rows).toHaveLength(18);
    expect(rejects.map((r) => [r.sourceLine, r.error.split(':')[0]])).toEqual([
      [11, 'reason'],
      [12, PAN_REJECT.split(':')[0]],
    ]);
    expect(rows.filter((r) => r.scope === 'CONSUMER').map((r) => r.targetId)).toEqual(['CONS-ALPHA-0001', 'CONS-BETA-0002']);
    expect(rows.filter((r) => r.targetId === 'CARD-0002-P3ZX')).toHaveLength(2);
    expect(rows.filter((r) => r.targetId.startsWith('UNKNOWN-'))).toHaveLength(2);
    expect(rows.filter((r) => r.scope === 'CARD' && r.consumerId === 'CONS-ALPHA-0001').length).toBeGreaterThanOrEqual(3);
  });

  it('fraud-cards: semicolons, BOM, CRLF, a quoted delimiter and a card from the closed file', async () => {
    const file = path.join(dir, 'inbox', 'fraud-cards-2026-11-28.csv');
    const bytes = fs.readFileSync(file);
    expect(bytes.subarray(0, 3)).toEqual(Buffer.from([0xef, 0xbb, 0xbf]));
    expect(bytes.includes('\r\n')).toBe(true);
    const { rows, rejects } = await readAll(file);
    expect(rejects).toEqual([]);
    expect(rows).toHaveLength(10);
    expect(new Set(rows.map((r) => r.reason))).toEqual(new Set(['FRAUD', 'LOST_STOLEN']));
    expect(rows.some((r) => r.reference?.includes(';'))).toBe(true);
    expect(rows.map((r) => r.targetId)).toContain('CARD-0005-W6HJ');
  });

  it('regulatory: gzip, pipes, header "Card ID|Reason|Event-Time"', async () => {
    const file = path.join(dir, 'inbox', 'regulatory-2026-11-28.csv.gz');
    expect(await inspectCardFile(file, { delimiter: 'auto' })).toEqual({
      delimiter: '|',
      columns: ['Card ID', 'Reason', 'Event-Time'],
      gzip: true,
    });
    const { rows } = await readAll(file);
    expect(rows).toHaveLength(5);
    expect(rows.every((r) => r.reason === 'REGULATORY' && r.eventTime !== null)).toBe(true);
  });
});
