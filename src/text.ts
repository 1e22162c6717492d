// Text that reaches a terminal (docs/design.md §14). File names, D1's answers and anything else
// the job did not write itself may carry control characters: an ESC sequence in a file name or an
// error text would otherwise clear the operator's screen, recolour it, retitle the window or
// hide the lines around it. Card numbers are masked where such text enters the job (src/cards/pan.ts);
// this is the last step before a terminal, applied to every text printed.

/**
 * C0 controls but tab and line feed, DEL, the C1 controls (U+0080–U+009F: U+009B is a one-byte
 * CSI on some terminals), and the bidirectional overrides and isolates that can make a line
 * read differently from what it holds.
 */
const TERMINAL_UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
/** The same, tab and line feed included: for a text that must stay on one line. */
const LINE_UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** `text` without the control characters a terminal would act on; line feeds and tabs stay. */
export function terminalSafe(text: string): string {
  return text.replace(TERMINAL_UNSAFE, '');
}

/** `text` on one line: every control character (line breaks and tabs too) becomes a space. */
export function oneLine(text: string): string {
  return text.replace(LINE_UNSAFE, ' ');
}

/**
 * `value` as JSON for a terminal or a pipe: the same data (JSON.stringify escapes C0 already), with
 * the C1 controls and bidi overrides escaped as `\uXXXX`, which a JSON reader turns back into them.
 */
export function terminalJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(
    TERMINAL_UNSAFE,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/**
 * What every line the job writes on stderr starts with (docs/design.md §5): its own messages, the
 * log's lines and the progress lines alike, so cron mail and `grep '^d1-optout: '` find them all.
 */
export const STDERR_PREFIX = 'd1-optout: ';

/** `text` with STDERR_PREFIX before each of its lines, made safe for a terminal. */
export function prefixLines(text: string): string {
  return terminalSafe(text.split('\n').map((line) => STDERR_PREFIX + line).join('\n'));
}

/** Writes one message (one or more lines) on stderr, each line prefixed. */
export function say(text: string): void {
  process.stderr.write(prefixLines(text.replace(/\n+$/, '')) + '\n');
}
