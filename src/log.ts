import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import winston from 'winston';
import { maskCardNumbers } from './cards/pan.js';

export type Logger = winston.Logger;

const SECRET_KEYS = /^(access_?token|assertion|authorization|private_?key|password|passphrase|secret|client_?secret)$/i;
const BEARER = /\bBearer\s+[A-Za-z0-9\-._~+/]+=*/gi;
const JWT = /\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g;
const PEM = /-----BEGIN [A-Z0-9 ]+-----[\s\S]*?(-----END [A-Z0-9 ]+-----|$)/g;

/** Masks bearer tokens, JWTs (assertions), PEM blocks and card numbers in one piece of text. */
export function redactText(text: string): string {
  return maskCardNumbers(
    text.replace(PEM, '[REDACTED PEM]').replace(BEARER, 'Bearer [REDACTED]').replace(JWT, '[REDACTED JWT]'),
  );
}

function redactValue(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return redactText(value);
  if (depth > 8 || value === null || typeof value !== 'object') return value;
  if (value instanceof Error) {
    return { name: value.name, message: redactText(value.message), stack: value.stack ? redactText(value.stack) : undefined };
  }
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = SECRET_KEYS.test(k) ? '[REDACTED]' : redactValue(v, depth + 1);
  return out;
}

/**
 * Redaction sits at logger level, after error stacks are expanded, so no transport and no call
 * site can forget it. Winston's own bookkeeping lives on symbol keys, which are left alone.
 */
const redact = winston.format((info) => {
  for (const key of Object.keys(info)) {
    const v = info[key];
    info[key] = SECRET_KEYS.test(key) ? '[REDACTED]' : redactValue(v, 0);
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
  return `${String(timestamp)} ${level}${batch}: ${String(message)}${extras ? ` ${extras}` : ''}${stack}`;
});

/** Creates a file private to the job's user before any transport opens it (DESIGN.md §10: 0600). */
export function ensurePrivateFile(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  closeSync(openSync(path, 'a', 0o600));
}

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
    ensurePrivateFile(opts.file);
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
        level: process.stderr.isTTY ? opts.level : 'warn',
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
