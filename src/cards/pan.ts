// Card numbers (PANs): detection and masking, the one place that knows what a card number looks
// like (docs/design.md §14). Every writer masks through here.
//
// This module is on the hot path of both the card reader (every field) and the logger's redaction
// (every line), so it has no dependencies and a cheap first test: one pass that answers "are there
// 13 digits here with nothing but separators between them?". Only text that passes it is scanned.
//
// A candidate is a run of digit groups with any run of separators between them: any whitespace
// (NBSP and the other Unicode spaces, zero-width ones, line breaks), `.`, `-` (and the Unicode
// dashes), `_`, `/`. "4111 1111 1111 1111", "4111--1111--1111--1111", "4111.1111.1111.1111" and
// "4111\n1111\n1111\n1111" are all the same number. Text that spans fields (a reject's raw record,
// a header, a free-text field) is masked with the CSV delimiters and quotes counted as separators
// too, so a number split across two fields ("41111111,11111111") is caught as well.
//
// Finding and masking differ on purpose. A row is rejected when a whole run of 13–19 digits passes
// Luhn anywhere in it (docs/design.md §7), and an id is rejected when any 13–19-digit window of it
// passes (`hasCardNumberWindow`): an id is sent to D1 in a URL, so nothing that may be a card goes
// there. Free text is not rejected for a window, because a rejected row is a card left in Click to
// Pay and a random 16-digit reference has a Luhn-valid 13–15-digit window more often than not; it is
// masked instead, and masking, where a false hit costs nothing, takes every window.
//
// Luhn over every window is O(1) per window from two prefix sums, so masking is linear in the
// length of a digit run, however long.

const MIN_PAN = 13;
const MAX_PAN = 19;
/** Shown in clear at each end of a masked number (the PCI DSS display rule: first 6, last 4). */
const KEEP_HEAD = 6;
const KEEP_TAIL = 4;

const ZERO = 48;
const NINE = 57;

/** ASCII separators: whitespace, `.`, `-`, `_`, `/`. */
const ASCII_SEPARATORS = new Uint8Array(128);
for (const ch of '\t\n\v\f\r .-_/') ASCII_SEPARATORS[ch.charCodeAt(0)] = 1;
/** The same, plus what separates fields in a CSV record: `,` `;` `|` and quotes. */
const ASCII_SEPARATORS_ACROSS_FIELDS = ASCII_SEPARATORS.slice();
for (const ch of `,;|"'`) ASCII_SEPARATORS_ACROSS_FIELDS[ch.charCodeAt(0)] = 1;

/**
 * Unicode spaces (incl. NBSP, NEL, the zero-width ones and the BOM), line and paragraph
 * separators, dashes and hyphens, dots and slashes that look like the ASCII ones.
 */
function isUnicodeSeparator(c: number): boolean {
  if (c < 0x2000) return c === 0x85 || c === 0xa0 || c === 0xad || c === 0xb7 || c === 0x1680 || c === 0x180e;
  if (c <= 0x2015) return true; // U+2000–U+200D spaces and zero-width ones, U+2010–U+2015 dashes
  return (
    c === 0x2024 || c === 0x2027 || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x2044 || c === 0x205f ||
    c === 0x2060 || c === 0x2212 || c === 0x2215 || c === 0x3000 || c === 0x30fb || c === 0xfe58 || c === 0xfe63 ||
    c === 0xfeff || c === 0xff0d || c === 0xff0e || c === 0xff0f
  );
}

type SeparatorTest = (c: number) => boolean;

function isSeparator(c: number): boolean {
  return c < 128 ? ASCII_SEPARATORS[c] === 1 : isUnicodeSeparator(c);
}

function isSeparatorAcrossFields(c: number): boolean {
  return c < 128 ? ASCII_SEPARATORS_ACROSS_FIELDS[c] === 1 : isUnicodeSeparator(c);
}

/**
 * Fullwidth digits (U+FF10–U+FF19) are what an East Asian input method types for a number: the
 * same card number, and so masked and refused like the ASCII one.
 */
const FULLWIDTH_ZERO = 0xff10;
const FULLWIDTH_NINE = 0xff19;

function isAsciiDigit(c: number): boolean {
  return c >= ZERO && c <= NINE;
}

function isDigit(c: number): boolean {
  return isAsciiDigit(c) || (c >= FULLWIDTH_ZERO && c <= FULLWIDTH_NINE);
}

/**
 * The cheap pre-test: does `text` have a stretch of digits and separators holding at least 13
 * digits? Such a stretch spans at least 13 characters, so only every 13th character is probed; a
 * probe that hits a digit or separator counts the digits of the stretch around it. Most rows and
 * log lines are answered in a few probes, and no character is looked at more than twice.
 */
function hasCandidate(text: string, sep: SeparatorTest): boolean {
  const n = text.length;
  let i = MIN_PAN - 1;
  while (i < n) {
    let c = text.charCodeAt(i);
    if (!isDigit(c) && !sep(c)) {
      i += MIN_PAN;
      continue;
    }
    let digits = 0;
    let start = i;
    while (start > 0) {
      c = text.charCodeAt(start - 1);
      if (isDigit(c)) digits++;
      else if (!sep(c)) break;
      start--;
    }
    let end = i;
    while (end < n) {
      c = text.charCodeAt(end);
      if (isDigit(c)) {
        if (++digits >= MIN_PAN) return true;
      } else if (!sep(c)) break;
      end++;
    }
    // text[end] is neither: the next candidate covers end+1 … end+13 at least.
    i = end + MIN_PAN;
  }
  return false;
}

/** Luhn over `digits[start, start+length)`; the caller guarantees these are ASCII digits. */
function luhnAt(digits: string, start: number, length: number): boolean {
  let sum = 0;
  let double = false;
  for (let i = start + length - 1; i >= start; i--) {
    let d = digits.charCodeAt(i) - ZERO;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/** True when `digits` is 2 or more ASCII digits (nothing else) whose Luhn checksum is valid. */
export function luhnValid(digits: string): boolean {
  const n = digits.length;
  if (n < 2) return false;
  for (let i = 0; i < n; i++) {
    if (!isAsciiDigit(digits.charCodeAt(i))) return false;
  }
  return luhnAt(digits, 0, n);
}

/** One run of at least 13 digits, separators allowed between them. */
interface DigitRun {
  /** Index in the text of the run's first digit. */
  start: number;
  /** Index in the text just after the run's last digit. */
  end: number;
  /** The run's digits, separators removed. */
  digits: string;
}

/** Every run of at least 13 digits in `text`, any run of separators allowed between digits. */
function digitRuns(text: string, sep: SeparatorTest): DigitRun[] {
  const runs: DigitRun[] = [];
  const n = text.length;
  let i = 0;
  while (i < n) {
    if (!isDigit(text.charCodeAt(i))) {
      i++;
      continue;
    }
    const start = i;
    let digits = '';
    let end = i; // just after the last digit taken
    let j = i;
    while (j < n) {
      const c = text.charCodeAt(j);
      if (isDigit(c)) {
        digits += isAsciiDigit(c) ? text[j] : String.fromCharCode(c - FULLWIDTH_ZERO + ZERO);
        end = ++j;
      } else if (sep(c)) {
        j++;
      } else {
        break;
      }
    }
    if (digits.length >= MIN_PAN) runs.push({ start, end, digits });
    i = j;
  }
  return runs;
}

/**
 * Luhn sums of every window of one run in O(1) each. In a window ending at index e, a digit is
 * doubled when its distance from e is odd: so `plainEven` (digits at even indexes as they are, at
 * odd ones doubled) serves windows ending at an even index, `plainOdd` the others. The arrays are
 * reused from run to run (masking runs on every log line; allocating them per run cost more than
 * the sums), so only one run is prepared at a time.
 */
let plainEven = new Int32Array(64);
let plainOdd = new Int32Array(64);
let marks = new Int32Array(64);

/** Prepares the sums for `digits`; `windowValid` then answers for its windows. */
function prepareWindows(digits: string): void {
  const n = digits.length;
  if (plainEven.length <= n) {
    const size = 2 * (n + 1);
    plainEven = new Int32Array(size);
    plainOdd = new Int32Array(size);
    marks = new Int32Array(size);
  }
  plainEven[0] = 0;
  plainOdd[0] = 0;
  for (let i = 0; i < n; i++) {
    const d = digits.charCodeAt(i) - ZERO;
    const doubled = d < 5 ? d * 2 : d * 2 - 9;
    const even = (i & 1) === 0;
    plainEven[i + 1] = plainEven[i]! + (even ? d : doubled);
    plainOdd[i + 1] = plainOdd[i]! + (even ? doubled : d);
  }
}

/** Luhn of the window `[start, start+length)` of the run last prepared. */
function windowValid(start: number, length: number): boolean {
  const sums = ((start + length - 1) & 1) === 0 ? plainEven : plainOdd;
  return (sums[start + length]! - sums[start]!) % 10 === 0;
}

/** True when a 13–19-digit window of `digits` passes Luhn. */
function anyValidWindow(digits: string): boolean {
  const n = digits.length;
  prepareWindows(digits);
  for (let len = MIN_PAN; len <= MAX_PAN && len <= n; len++) {
    for (let s = 0; s + len <= n; s++) if (windowValid(s, len)) return true;
  }
  return false;
}

/** True when `text` holds a card number: a whole 13–19-digit run that passes Luhn. The per-field test of a row. */
export function containsCardNumber(text: string): boolean {
  if (!hasCandidate(text, isSeparator)) return false;
  for (const { digits } of digitRuns(text, isSeparator)) {
    if (digits.length <= MAX_PAN && luhnAt(digits, 0, digits.length)) return true;
  }
  return false;
}

/**
 * True when any 13–19-digit window of a run of `text` passes Luhn ("99" + PAN + "7" included):
 * the test for ids, which are sent to D1 in a URL and so must not even hold a card number.
 */
export function hasCardNumberWindow(text: string): boolean {
  if (!hasCandidate(text, isSeparator)) return false;
  for (const { digits } of digitRuns(text, isSeparator)) {
    if (anyValidWindow(digits)) return true;
  }
  return false;
}

/**
 * The card numbers in `text`, as digit strings without separators, in the order they appear.
 * A run that is itself a valid 13–19-digit number is reported whole; in other runs the windows
 * are taken left to right, the longest valid window first, without overlap.
 */
export function findCardNumbers(text: string): string[] {
  if (!hasCandidate(text, isSeparator)) return [];
  const found: string[] = [];
  for (const { digits } of digitRuns(text, isSeparator)) {
    const n = digits.length;
    if (n <= MAX_PAN && luhnAt(digits, 0, n)) {
      found.push(digits);
      continue;
    }
    prepareWindows(digits);
    let s = 0;
    while (s + MIN_PAN <= n) {
      let matched = 0;
      for (let len = Math.min(MAX_PAN, n - s); len >= MIN_PAN; len--) {
        if (windowValid(s, len)) {
          matched = len;
          break;
        }
      }
      if (matched === 0) {
        s++;
      } else {
        found.push(digits.slice(s, s + matched));
        s += matched;
      }
    }
  }
  return found;
}

export interface MaskOptions {
  /**
   * Count the CSV delimiters and quotes (`,` `;` `|` `"` `'`) as separators too: for text that
   * spans fields (a reject's raw record, a header) or free text, where a false hit costs nothing.
   */
  acrossFields?: boolean;
}

/**
 * A file name or path as the job writes or prints it (ledger, reports, summaries, messages): a
 * number split by a comma or a quote is still a number in a name, so fields do not separate it.
 */
export function maskPath(path: string): string {
  return maskCardNumbers(path, { acrossFields: true });
}

/**
 * `text` with every card number masked: its first 6 and last 4 digits stay, the digits between
 * become `*` (the number of digits is kept, and so are the separators). When windows of one run
 * overlap, the union of their middles is masked, so no valid window shows more than its first 6
 * and last 4 digits.
 */
export function maskCardNumbers(text: string, opts: MaskOptions = {}): string {
  const sep = opts.acrossFields === true ? isSeparatorAcrossFields : isSeparator;
  if (!hasCandidate(text, sep)) return text;
  let out = '';
  let copied = 0;
  for (const run of digitRuns(text, sep)) {
    const { digits } = run;
    const n = digits.length;
    prepareWindows(digits);
    // +1 at the first masked digit of a window, -1 after its last: masked where the sum is > 0.
    let found = false;
    for (let len = MIN_PAN; len <= MAX_PAN && len <= n; len++) {
      for (let s = 0; s + len <= n; s++) {
        if (!windowValid(s, len)) continue;
        if (!found) {
          marks.fill(0, 0, n + 1);
          found = true;
        }
        marks[s + KEEP_HEAD]!++;
        marks[s + len - KEEP_TAIL]!--;
      }
    }
    if (!found) continue;
    out += text.slice(copied, run.start);
    let d = 0;
    let depth = 0;
    for (let i = run.start; i < run.end; i++) {
      if (isDigit(text.charCodeAt(i))) {
        depth += marks[d]!;
        out += depth > 0 ? '*' : text[i];
        d++;
      } else {
        out += text[i];
      }
    }
    copied = run.end;
  }
  return copied === 0 ? text : out + text.slice(copied);
}

/** Text quoted back in a message (a reject, a refused header): card numbers masked, cut to 40 characters. */
export function quoteMasked(text: string): string {
  const masked = maskCardNumbers(text, { acrossFields: true });
  return JSON.stringify(masked.length > 40 ? `${masked.slice(0, 39)}…` : masked);
}
