// The header line of a card file: which columns we know, where they are, and the delimiter.
// docs/design.md §7: names match case-insensitively with `_`, `-` and spaces ignored; other columns
// are allowed and ignored; `reason` is required, and at least one of `card_id`/`consumer_id`.

import { CardFileError } from '../errors.js';
import type { Config } from '../types.js';
import { maskCardNumbers, quoteMasked } from './pan.js';

/** A delimiter a card file may use. */
export type Delimiter = ',' | ';' | '|' | '\t';
/** The `input.delimiter` config value: a delimiter, or `auto` to detect it from the header. */
export type DelimiterOption = Config['input']['delimiter'];

export const DELIMITERS: readonly Delimiter[] = [',', ';', '|', '\t'];

/** The columns the job reads, by their canonical names. */
export type KnownColumn = 'card_id' | 'consumer_id' | 'reason' | 'scope' | 'event_time' | 'reference';

export const KNOWN_COLUMNS: readonly KnownColumn[] = [
  'card_id',
  'consumer_id',
  'reason',
  'scope',
  'event_time',
  'reference',
];

/** Where each known column sits in a record (0-based), or -1 when the file has no such column. */
export interface HeaderMap {
  /** The number of fields of the header: every record must have exactly this many. */
  readonly fieldCount: number;
  readonly cardId: number;
  readonly consumerId: number;
  readonly reason: number;
  readonly scope: number;
  readonly eventTime: number;
  readonly reference: number;
}

const IGNORED_IN_NAMES = /[_\- ]/g;

const BY_NORMALIZED: ReadonlyMap<string, KnownColumn> = new Map(
  KNOWN_COLUMNS.map((c) => [normalizeColumnName(c), c] as const),
);

/** `Card ID`, `card-id`, `CARD_ID` → `cardid`: the form header names are compared in. */
export function normalizeColumnName(name: string): string {
  return name.trim().toLowerCase().replace(IGNORED_IN_NAMES, '');
}

/** The known column a header name stands for, or null for a column the job ignores. */
export function matchColumn(name: string): KnownColumn | null {
  return BY_NORMALIZED.get(normalizeColumnName(name)) ?? null;
}

/** A header name as it may appear in a message: masked, trimmed, short. */
function showName(name: string): string {
  return quoteMasked(name.trim());
}

/**
 * Maps the header's names to the known columns. Throws `CardFileError` (naming `file`) when a
 * known column appears twice, when no known column is there at all (no usable header), or when a
 * required column is missing. `hint` is added to the missing-column texts (e.g. a delimiter doubt).
 */
export function matchHeader(file: string, names: readonly string[], hint?: string): HeaderMap {
  const at = new Map<KnownColumn, number>();
  names.forEach((name, i) => {
    const column = matchColumn(name);
    if (column === null) return;
    const first = at.get(column);
    if (first !== undefined) {
      throw new CardFileError(
        file,
        `column "${column}" appears twice in the header (columns ${first + 1} and ${i + 1}); keep one`,
      );
    }
    at.set(column, i);
  });
  // Masked whole too: a number split across two names ("41111111","11111111") is caught that way.
  const found =
    (names.length === 0 ? '(nothing)' : maskCardNumbers(names.map(showName).join(', '), { acrossFields: true })) +
    (hint ? ` (${hint})` : '');
  if (at.size === 0) {
    throw new CardFileError(
      file,
      `no usable header: the first line names none of the known columns ` +
        `(${KNOWN_COLUMNS.join(', ')}); it has ${found}. ` +
        `The first line must be the header, with the file's delimiter`,
    );
  }
  if (!at.has('reason')) {
    throw new CardFileError(file, `missing required column "reason"; the header has ${found}`);
  }
  if (!at.has('card_id') && !at.has('consumer_id')) {
    throw new CardFileError(
      file,
      `missing column "card_id" or "consumer_id" (one of them is required); the header has ${found}`,
    );
  }
  const col = (c: KnownColumn): number => at.get(c) ?? -1;
  return {
    fieldCount: names.length,
    cardId: col('card_id'),
    consumerId: col('consumer_id'),
    reason: col('reason'),
    scope: col('scope'),
    eventTime: col('event_time'),
    reference: col('reference'),
  };
}

/**
 * The delimiter of a header line: the one of `,` `;` `|` tab that occurs most often outside
 * double quotes; `,` when none occurs. Ties go to the earlier one in that list.
 */
export function detectDelimiter(headerLine: string): Delimiter {
  const counts = [0, 0, 0, 0];
  let quoted = false;
  for (let i = 0; i < headerLine.length; i++) {
    const ch = headerLine[i];
    if (ch === '"') {
      quoted = !quoted;
    } else if (!quoted) {
      const k = DELIMITERS.indexOf(ch as Delimiter);
      if (k !== -1) counts[k]!++;
    }
  }
  let best = 0;
  for (let k = 1; k < counts.length; k++) {
    if (counts[k]! > counts[best]!) best = k;
  }
  return DELIMITERS[best]!;
}

/** `'\t'` → `tab`, for messages. */
export function delimiterName(d: Delimiter): string {
  return d === '\t' ? 'tab' : `'${d}'`;
}
