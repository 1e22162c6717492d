import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import winston from 'winston';
import { maskCardNumbers } from './cards/pan.js';
import { UsageError } from './errors.js';
import { ensurePrivateFile } from './private-file.js';
import { prefixLines } from './text.js';

export type Logger = winston.Logger;

/**
 * Fields whose value is a secret whatever it looks like (an opaque access token has no shape to
 * recognise): `token`, `accessToken`, `refresh_token`, `assertion`, `Authorization`, `password`,
 * `passphrase`, `secret`, `clientSecret`, `cookie`, `apiKey`, `privateKey`. Not `tokenUrl` or
 * `privateKeyFile`, which are settings an operator needs to see.
 */
const SECRET_KEYS =
  /^(?:[a-z0-9]*[_-]?)?(?:token|assertion|authorization|password|passphrase|secret|cookie|api[_-]?key|private[_-]?key)$/i;
const BEARER = /\bBearer\s+[A-Za-z0-9\-._~+/]+=*/gi;
/** A JWT's header is JSON, so its base64url starts with `eyJ` (`{"`); an ES256 assertion is one. */
const JWT = /\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g;
/** Up to the END line, or to the end of the text when a PEM block was cut off. */
const PEM = /-----BEGIN [A-Z0-9 ]+-----[\s\S]*?(-----END [A-Z0-9 ]+-----|$)/g;
/** Deeper than this, metadata is replaced rather than walked: nothing unredacted gets past. */
const MAX_DEPTH = 8;

/**
 * Masks bearer tokens, JWTs (assertions), PEM blocks and card numbers in one piece of text. Text
 * that spans CSV fields (a reject's raw record, a header) is masked across them where it is made.
 */
export function redactText(text: string): string {
  return maskCardNumbers(
    text.replace(PEM, '[REDACTED PEM]').replace(BEARER, 'Bearer [REDACTED]').replace(JWT, '[REDACTED JWT]'),
  );
}

/**
 * A redacted copy of `value`. Strings are masked; objects, arrays and errors are copied with
 * every string inside masked and every secret-named field replaced; anything that cannot be walked
 * (too deep, a cycle) becomes a placeholder, never the original.
 */
function redactValue(value: unknown, depth: number, seen: Set<object>): unknown {
  if (typeof value === 'string') return redactText(value);
  if (value === null || typeof value !== 'object') return value;
  if (depth > MAX_DEPTH) return '[nested too deep]';
  if (seen.has(value)) return '[circular]';
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1, seen));
    if (value instanceof Error) {
      // Own properties (code, errno, syscall help the operator), then those that are not enumerable.
      const out = redactFields(value, depth, seen);
      out['name'] = value.name;
      out['message'] = redactText(value.message);
      if (value.stack) out['stack'] = redactText(value.stack);
      if (value.cause !== undefined) out['cause'] = redactValue(value.cause, depth + 1, seen);
      return out;
    }
    return redactFields(value, depth, seen);
  } finally {
    seen.delete(value);
  }
}

function redactFields(value: object, depth: number, seen: Set<object>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[redactText(k)] = SECRET_KEYS.test(k) ? '[REDACTED]' : redactValue(v, depth + 1, seen);
  }
  return out;
}

/**
 * Redaction sits at logger level, after error stacks are expanded, so no transport and no call
 * site can forget it. Winston's own bookkeeping lives on symbol keys, which are left alone.
 */
const redact = winston.format((info) => {
  const seen = new Set<object>([info]);
  for (const key of Object.keys(info)) {
    const v = info[key];
    delete info[key];
    info[redactText(key)] = SECRET_KEYS.test(key) ? '[REDACTED]' : redactValue(v, 0, seen);
  }
  return info;
});

const readable = winston.format.printf((info) => {
  const { level, message, timestamp, batchId, ...rest } = info as Record<string, unknown>;
  const extras = Object.entries(rest)
    .filter(([k]) => k !== 'stack')
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  const batch = batchId ? ` [${String(batchId)}]` : '';
  const stack = typeof info['stack'] === 'string' && level === 'debug' ? `\n${info['stack']}` : '';
  return prefixLines(`${String(timestamp)} ${level}${batch}: ${String(message)}${extras ? ` ${extras}` : ''}${stack}`);
});

export interface LoggerOptions {
  level: string;
  /** JSON lines go here; null for commands that only read (status, show) and for tests. */
  file: string | null;
  /** Readable lines on stderr; off a TTY only warnings and errors, so cron mail stays short. */
  console: boolean;
}

export function createLogger(opts: LoggerOptions): Logger {
  const transports: winston.transport[] = [];
  if (opts.file) {
    // Before the transport opens it, which would create it with the umask's mode and follow a
    // symbolic link planted at the path: a link or another user's file is refused here
    // (docs/design.md §14). The transport opens the same path an instant later; only someone who
    // may write into the log's folder could swap it in between, and that folder is the job's own.
    // The log's folder is made at install, like the job's other folders: a job that made it would
    // leave folders behind on a mistyped or not yet installed path (docs/design.md §12).
    const folder = dirname(opts.file);
    if (!existsSync(folder)) throw new UsageError(`log folder ${folder} does not exist; create it (mkdir -p -m 700 ${folder}) or correct config key log.file`);
    ensurePrivateFile(opts.file, 'config key log.file');
    transports.push(
      new winston.transports.File({
        filename: opts.file,
        format: winston.format.json(),
      }),
    );
  }
  if (opts.console) {
    transports.push(
      new winston.transports.Console({
        // Off a terminal (cron mail) warnings and errors at most, fewer when the level asks for fewer.
        level: process.stderr.isTTY || opts.level === 'error' ? opts.level : 'warn',
        stderrLevels: ['error', 'warn', 'info', 'debug'],
        format: readable,
      }),
    );
  }
  return winston.createLogger({
    level: opts.level,
    format: winston.format.combine(winston.format.errors({ stack: true }), redact(), winston.format.timestamp()),
    transports: transports.length > 0 ? transports : [new winston.transports.Console({ silent: true })],
  });
}

/** Writes to the log file only: for lines the command has already told the operator on stderr. */
export function logToFileOnly(logger: Logger, level: 'error' | 'warn', message: string, meta: Record<string, unknown>): void {
  const consoles = logger.transports.filter((t) => t instanceof winston.transports.Console);
  for (const c of consoles) c.silent = true;
  logger.log(level, message, meta);
  for (const c of consoles) c.silent = false;
}

/** Ends the logger and waits until every line is on disk, so an exit never loses the last words. */
export async function closeLogger(logger: Logger): Promise<void> {
  const done = logger.transports.map(
    (t) =>
      new Promise<void>((resolve) => {
        t.once('finish', () => resolve());
        t.once('error', () => resolve());
      }),
  );
  logger.end();
  await Promise.race([Promise.all(done), new Promise((r) => setTimeout(r, 3000).unref())]);
}
