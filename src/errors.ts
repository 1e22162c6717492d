import type { ErrorClass } from './types.js';

/** Exit codes of docs/design.md §5. */
export const EXIT = {
  OK: 0,
  FAILURES: 1,
  USAGE: 2,
  LOCKED: 3,
  ABORTED: 4,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/**
 * An error the job expects and can explain. The message is written for the operator who reads it
 * at 3 a.m.: what went wrong and what to do, never a card number or a secret.
 */
export class JobError extends Error {
  constructor(
    readonly errorClass: ErrorClass,
    readonly exitCode: ExitCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bad flags, bad config, unreadable input: nothing was done (exit 2). */
export class UsageError extends JobError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('fatal', EXIT.USAGE, message, options);
  }
}

/** A card file that cannot be read as a card file at all (exit 2, before any D1 call). */
export class CardFileError extends UsageError {
  constructor(
    readonly file: string,
    problem: string,
    options?: { cause?: unknown },
  ) {
    super(`${file}: ${problem}`, options);
  }
}

/** Another process holds the ledger lock (exit 3). */
export class LockHeldError extends JobError {
  constructor(message: string) {
    super('fatal', EXIT.LOCKED, message);
  }
}

