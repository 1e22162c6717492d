// One record of a card file → a `CardRow`, or the reason it is rejected (docs/design.md §7).
//
// Reject texts are short, start with the column they are about, and never contain a card number:
// the PAN test runs first, and every value quoted back is masked and cut short anyway.

import type { CardRow, Scope } from '../types.js';
import type { HeaderMap } from './header.js';
import { containsCardNumber, hasCardNumberWindow, maskCardNumbers, quoteMasked } from './pan.js';

/** The reject text of a row that holds a card number (the number itself is never repeated). */
export const PAN_REJECT = 'a card number (PAN) is in the row; card files must carry D1 card ids, not PANs';

/** D1's path patterns (docs/d1-api.md §2). */
const CARD_ID = /^[A-Za-z0-9_-]{1,48}$/;
const CONSUMER_ID = /^[A-Za-z0-9_-]{1,64}$/;

const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** What `validateRow` needs to know about the file; built once per file. */
export interface RowContext {
  readonly sourceFile: string;
  readonly header: HeaderMap;
  /** The configured reasons, trimmed and upper-cased. */
  readonly reasons: ReadonlySet<string>;
  /** The same, for messages. */
  readonly reasonList: string;
}

export function makeRowContext(sourceFile: string, header: HeaderMap, reasons: readonly string[]): RowContext {
  const set = new Set(reasons.map((r) => r.trim().toUpperCase()).filter((r) => r !== ''));
  return { sourceFile, header, reasons: set, reasonList: [...set].join(', ') };
}

/** The two-digit number at `text[i]`, or -1. */
function twoDigits(text: string, i: number): number {
  const a = text.charCodeAt(i) - 48;
  const b = text.charCodeAt(i + 1) - 48;
  return a >= 0 && a <= 9 && b >= 0 && b <= 9 ? a * 10 + b : -1;
}

/**
 * True when `value` is an ISO 8601 date or date-time (extended format) that exists on the
 * calendar: `YYYY-MM-DD`, optionally followed by `T` (or a space) `hh:mm`, optional `:ss` and
 * fraction, and optional `Z` or offset (`±hh`, `±hhmm`, `±hh:mm`). Parsed by hand: it runs on
 * every row.
 */
export function isIsoDateTime(value: string): boolean {
  const n = value.length;
  if (n < 10 || value.charCodeAt(4) !== 45 || value.charCodeAt(7) !== 45) return false;
  const hi = twoDigits(value, 0);
  const lo = twoDigits(value, 2);
  const month = twoDigits(value, 5);
  const day = twoDigits(value, 8);
  if (hi < 0 || lo < 0 || month < 1 || month > 12 || day < 1) return false;
  const year = hi * 100 + lo;
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  if (day > (month === 2 && !leap ? 28 : DAYS_IN_MONTH[month - 1]!)) return false;
  if (n === 10) return true;
  const sep = value.charCodeAt(10);
  if (sep !== 84 /* T */ && sep !== 116 /* t */ && sep !== 32) return false;
  const hour = twoDigits(value, 11);
  const minute = twoDigits(value, 14);
  if (value.charCodeAt(13) !== 58 || hour < 0 || hour > 23 || minute < 0 || minute > 59) return false;
  let i = 16;
  if (value.charCodeAt(i) === 58 /* : */) {
    const second = twoDigits(value, i + 1);
    if (second < 0 || second > 59) return false;
    i += 3;
    const dot = value.charCodeAt(i);
    if (dot === 46 || dot === 44) {
      const start = ++i;
      while (i < n && i - start < 9 && isDigitCode(value.charCodeAt(i))) i++;
      if (i === start) return false;
    }
  }
  if (i === n) return true;
  const zone = value.charCodeAt(i);
  if (zone === 90 /* Z */ || zone === 122 /* z */) return i + 1 === n;
  if (zone !== 43 /* + */ && zone !== 45 /* - */) return false;
  const offHour = twoDigits(value, i + 1);
  if (offHour < 0 || offHour > 23) return false;
  i += 3;
  if (i === n) return true;
  if (value.charCodeAt(i) === 58) i++;
  const offMinute = twoDigits(value, i);
  return offMinute >= 0 && offMinute <= 59 && i + 2 === n;
}

function isDigitCode(c: number): boolean {
  return c >= 48 && c <= 57;
}

/**
 * The reader decodes bytes that are not UTF-8 as U+FFFD, which no id, reason or scope allows; the
 * cause to fix is then the file's encoding (a Latin-1 or Windows export), not the value.
 */
function encodingHint(value: string): string {
  return value.includes('\uFFFD') ? '; the file has bytes here that are not UTF-8: export it as UTF-8' : '';
}

/** The reject text for a consumer id that breaks D1's pattern, on a CARD row or a CONSUMER row alike. */
function badConsumerId(consumerId: string): string {
  return `consumer_id: ${quoteMasked(consumerId)} is not a D1 consumer id (1-64 of A-Z a-z 0-9 _ -)${encodingHint(consumerId)}`;
}

/** True when every field of the record is empty or blank: a line that carries nothing. */
export function isBlankRecord(fields: readonly string[]): boolean {
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i]!;
    if (f.length !== 0 && f.trim().length !== 0) return false;
  }
  return true;
}

/** True when a field of the record holds a card number (a whole 13–19-digit run passing Luhn). */
function fieldsHoldPan(fields: readonly string[]): boolean {
  for (let i = 0; i < fields.length; i++) {
    if (containsCardNumber(fields[i]!)) return true;
  }
  return false;
}

/**
 * Validates one record (its field values, in the header's column order). Every field is tested
 * for a card number, known column or not; the ids also for a card number glued to other digits,
 * since they go to D1 in a URL. Tested field by field, not over the raw record: a tab is a
 * separator inside a number, and with a tab delimiter two short numeric fields would otherwise
 * read as one long number. Returns the `CardRow`, or the reject text.
 */
export function validateRow(ctx: RowContext, fields: readonly string[], sourceLine: number): CardRow | string {
  if (fieldsHoldPan(fields)) return PAN_REJECT;

  const h = ctx.header;
  if (fields.length !== h.fieldCount) {
    return `expected ${h.fieldCount} fields, found ${fields.length}`;
  }
  const cardId = h.cardId < 0 ? '' : fields[h.cardId]!.trim();
  const consumerId = h.consumerId < 0 ? '' : fields[h.consumerId]!.trim();
  const scopeText = h.scope < 0 ? '' : fields[h.scope]!.trim();
  if (hasCardNumberWindow(cardId) || hasCardNumberWindow(consumerId)) return PAN_REJECT;

  let scope: Scope;
  if (scopeText === '') {
    scope = cardId === '' && consumerId !== '' ? 'CONSUMER' : 'CARD';
  } else {
    const upper = scopeText.toUpperCase();
    if (upper === 'CARD') scope = 'CARD';
    else if (upper === 'CONSUMER') scope = 'CONSUMER';
    else return `scope: ${quoteMasked(scopeText)} is not CARD or CONSUMER${encodingHint(scopeText)}`;
  }

  let targetId: string;
  if (scope === 'CARD') {
    if (cardId === '') {
      return h.cardId < 0
        ? 'card_id: the file has no card_id column, so a CARD row cannot name its card'
        : 'card_id: missing (a CARD row needs the D1 card id)';
    }
    if (!CARD_ID.test(cardId)) {
      return `card_id: ${quoteMasked(cardId)} is not a D1 card id (1-48 of A-Z a-z 0-9 _ -)${encodingHint(cardId)}`;
    }
    if (consumerId !== '' && !CONSUMER_ID.test(consumerId)) return badConsumerId(consumerId);
    targetId = cardId;
  } else {
    if (consumerId === '') {
      return h.consumerId < 0
        ? 'consumer_id: the file has no consumer_id column, so a CONSUMER row cannot name its consumer'
        : 'consumer_id: missing (a CONSUMER row needs the D1 consumer id)';
    }
    if (!CONSUMER_ID.test(consumerId)) return badConsumerId(consumerId);
    targetId = consumerId;
  }

  const reasonText = fields[h.reason]!.trim();
  if (reasonText === '') return 'reason: missing';
  const reason = reasonText.toUpperCase();
  if (!ctx.reasons.has(reason)) {
    return `reason: ${quoteMasked(reasonText)} is not one of the configured reasons (${ctx.reasonList})${encodingHint(reasonText)}`;
  }

  let eventTime: string | null = null;
  if (h.eventTime >= 0) {
    const t = fields[h.eventTime]!.trim();
    if (t !== '') {
      if (!isIsoDateTime(t)) return `event_time: ${quoteMasked(t)} is not an ISO 8601 date or date-time`;
      eventTime = t;
    }
  }

  let reference: string | null = null;
  if (h.reference >= 0) {
    // Free text is kept masked: a number that only looks like a card glued to other digits is not
    // reason enough to leave a card in Click to Pay, but it is no reason to store it either.
    const r = fields[h.reference]!.trim();
    if (r !== '') reference = maskCardNumbers(r, { acrossFields: true });
  }

  return {
    scope,
    targetId,
    consumerId: consumerId === '' ? null : consumerId,
    reason,
    eventTime,
    reference,
    sourceFile: ctx.sourceFile,
    sourceLine,
  };
}
