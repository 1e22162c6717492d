// Card numbers (PANs): detection and masking.
//
// A card file must carry D1 card ids, never PANs, and no log line or report may show one. This
// module is on the hot path of both the card reader (every row) and the logger's redaction (every
// line), so it has no dependencies and a cheap first test: one pass over the characters that
// answers "is there any run of 13 digits here at all?". Only text that passes it is scanned.
//
// A candidate is a run of digits in which single spaces, dashes or underscores may separate
// digits ("4111 1111 1111 1111", "4111-1111-1111-1111", "4111_1111_1111_1111").
//
// Finding and masking differ on purpose. A row is rejected only when a whole run of 13–19 digits
// passes Luhn (DESIGN.md §7): a rejected row is a card left in Click to Pay, and checking every
// window would reject most long reference numbers (a random 16-digit number has a Luhn-valid
// 13–15-digit window more often than not). Masking, where a false hit costs nothing, checks every
// 13–19-digit window, so a PAN glued to other digits ("99" + PAN + "7") never shows in a log.

const MIN_PAN = 13;
const MAX_PAN = 19;
/** Shown in clear at each end of a masked number (the PCI DSS display rule: first 6, last 4). */
const KEEP_HEAD = 6;
const KEEP_TAIL = 4;

const ZERO = 48;
const NINE = 57;
const SPACE = 32;
const DASH = 45;
/** An underscore too: "4111_1111_1111_1111" fits the D1 card id pattern, so it must not slip through as one. */
const UNDERSCORE = 95;

function isSeparator(c: number): boolean {
  return c === SPACE || c === DASH || c === UNDERSCORE;
}

function isDigit(c: number): boolean {
  return c >= ZERO && c <= NINE;
}

/** A character that can be part of a candidate: a digit, a space or a dash. */
function isRunChar(c: number): boolean {
  return (c >= ZERO && c <= NINE) || isSeparator(c);
}

/** In `text[from, to)`: 13 digits in a row, single spaces or dashes allowed between them? */
function hasCandidateIn(text: string, from: number, to: number): boolean {
  let run = 0;
  let afterSeparator = false;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (c >= ZERO && c <= NINE) {
      if (++run >= MIN_PAN) return true;
      afterSeparator = false;
    } else if (run > 0 && !afterSeparator) {
      afterSeparator = true; // a first space or dash after a digit
    } else {
      run = 0;
      afterSeparator = false;
    }
  }
  return false;
}

/**
 * The cheap pre-test: does `text` have 13 digits in a row, single spaces or dashes allowed
 * between them? A candidate spans at least 13 characters of digits, spaces and dashes, so only
 * every 13th character is probed; a probe that hits such a character looks at the stretch of them
 * around it. Most rows and log lines are answered in a few probes.
 */
function hasCandidate(text: string): boolean {
  const n = text.length;
  let i = MIN_PAN - 1;
  while (i < n) {
    if (!isRunChar(text.charCodeAt(i))) {
      i += MIN_PAN;
      continue;
    }
    let start = i;
    while (start > 0 && isRunChar(text.charCodeAt(start - 1))) start--;
    let end = i + 1;
    while (end < n && isRunChar(text.charCodeAt(end))) end++;
    if (end - start >= MIN_PAN && hasCandidateIn(text, start, end)) return true;
    // text[end] is not a run character: the next candidate covers end+1 … end+13 at least.
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
    if (!isDigit(digits.charCodeAt(i))) return false;
  }
  return luhnAt(digits, 0, n);
}

/** One run of digits (separators allowed) of at least 13 digits. */
interface DigitRun {
  /** Index in the text of the run's first digit. */
  start: number;
  /** Index in the text just after the run's last digit. */
  end: number;
  /** The run's digits, separators removed. */
  digits: string;
}

/** Every run of at least 13 digits in `text`, single spaces or dashes allowed between digits. */
function digitRuns(text: string): DigitRun[] {
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
    let j = i;
    for (;;) {
      digits += text[j];
      j++;
      if (j < n && isDigit(text.charCodeAt(j))) continue;
      if (j + 1 < n) {
        const sep = text.charCodeAt(j);
        if (isSeparator(sep) && isDigit(text.charCodeAt(j + 1))) {
          j++;
          continue;
        }
      }
      break;
    }
    if (digits.length >= MIN_PAN) runs.push({ start, end: j, digits });
    i = j;
  }
  return runs;
}

/** True when `text` holds a card number: a whole 13–19-digit run that passes Luhn. The per-row test. */
export function containsCardNumber(text: string): boolean {
  if (!hasCandidate(text)) return false;
  for (const { digits } of digitRuns(text)) {
    if (digits.length <= MAX_PAN && luhnAt(digits, 0, digits.length)) return true;
  }
  return false;
}

/**
 * The card numbers in `text`, as digit strings without separators, in the order they appear.
 * A run that is itself a valid 13–19-digit number is reported whole; in other runs the windows
 * are taken left to right, the longest valid window first, without overlap.
 */
export function findCardNumbers(text: string): string[] {
  if (!hasCandidate(text)) return [];
  const found: string[] = [];
  for (const { digits } of digitRuns(text)) {
    const n = digits.length;
    if (n <= MAX_PAN && luhnAt(digits, 0, n)) {
      found.push(digits);
      continue;
    }
    let s = 0;
    while (s + MIN_PAN <= n) {
      let matched = 0;
      for (let len = Math.min(MAX_PAN, n - s); len >= MIN_PAN; len--) {
        if (luhnAt(digits, s, len)) {
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

/**
 * `text` with every card number masked: its first 6 and last 4 digits stay, the digits between
 * become `*` (the number of digits is kept, and so are the separators). When windows of one run
 * overlap, the union of their middles is masked, so no valid window shows more than its first 6
 * and last 4 digits.
 */
export function maskCardNumbers(text: string): string {
  if (!hasCandidate(text)) return text;
  let out = '';
  let copied = 0;
  for (const run of digitRuns(text)) {
    const { digits } = run;
    const n = digits.length;
    let mask: Uint8Array | null = null;
    for (let len = MIN_PAN; len <= MAX_PAN && len <= n; len++) {
      for (let s = 0; s + len <= n; s++) {
        if (!luhnAt(digits, s, len)) continue;
        mask ??= new Uint8Array(n);
        mask.fill(1, s + KEEP_HEAD, s + len - KEEP_TAIL);
      }
    }
    if (mask === null) continue;
    out += text.slice(copied, run.start);
    let d = 0;
    for (let i = run.start; i < run.end; i++) {
      const c = text.charCodeAt(i);
      if (isDigit(c)) {
        out += mask[d] === 1 ? '*' : text[i];
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
  const masked = maskCardNumbers(text);
  return JSON.stringify(masked.length > 40 ? `${masked.slice(0, 39)}…` : masked);
}
