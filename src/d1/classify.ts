import { hasCardNumberWindow } from '../cards/pan.js';
import { redactText } from '../log.js';
import { oneLine } from '../text.js';
import { parseRetryAfter } from '../throttle/backoff.js';
import type { AnswerClass } from '../types.js';
import { describeRedirect, isRedirect, type WireResponse } from './http.js';

export interface Classified {
  class: AnswerClass;
  operationId: string | null;
  operationStatus: string | null;
  errorCode: string | null;
  error: string | null;
  retryAfterMs: number | null;
}

const OPERATION_ID = /^[A-Za-z0-9_-]{1,64}$/;
/**
 * How much of D1's own texts the ledger keeps. D1's codes are short enumerations (docs/d1-api.md §6)
 * and its messages one sentence; a longer one is an echo or an error page, not information.
 */
export const D1_CODE_MAX = 64;
export const D1_TEXT_MAX = 200;

function str(v: unknown): string | null {
  return typeof v === 'string' && v !== '' ? v : null;
}

/**
 * A text from D1 as the ledger keeps it (docs/design.md §14): D1 may echo what it was sent, and a
 * proxy in front of it may answer anything, so its texts are untrusted like a card file. One line,
 * no control characters (removed first, so that an ESC between digits cannot hide a card number),
 * tokens and card numbers masked, at most `max` characters. Masks, then cuts: cutting first could
 * leave part of a card number too short to be recognised, and in clear. The generous first cut
 * only bounds the work on a huge body.
 */
export function d1Text(text: string, max: number): string {
  return redactText(oneLine(text.slice(0, max + 1000)).replace(/\s+/g, ' ').trim()).slice(0, max);
}

/** The same, for an optional string field of D1's JSON; null when it is missing or empty. */
function d1Field(v: unknown, max: number): string | null {
  const s = str(v);
  return s === null ? null : d1Text(s, max) || null;
}

/**
 * D1's operation id, kept as sent because it is asked for again, so only when it is one: an id of
 * D1's pattern holding no card number. Anything else is as if D1 gave none (a PENDING answer without
 * one is sent again by the next run).
 */
function operationIdOf(v: unknown): string | null {
  const id = str(v);
  return id !== null && OPERATION_ID.test(id) && !hasCardNumberWindow(id) ? id : null;
}

/** A short excerpt of a body that is not JSON, safe for a report: no token, no card number, one line. */
function excerpt(body: string): string {
  return d1Text(body, 100) || '(empty body)';
}

/**
 * Reads one D1 answer (docs/design.md §8, docs/d1-api.md §6). Unknown fields are ignored and an operation
 * status we do not know is kept as pending with its raw value, because D1 may add enum values.
 */
export function classifyResponse(res: WireResponse, alreadyOptedOutCodes: readonly string[], notEnrolledCodes: readonly string[] = []): Classified {
  let json: Record<string, unknown> | null = null;
  try {
    const parsed: unknown = JSON.parse(res.body);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) json = parsed as Record<string, unknown>;
  } catch {
    json = null;
  }
  // The configured codes are compared with what D1 sent; the ledger keeps the cleaned code.
  const rawCode = json ? str(json['errorCode']) : null;
  const errorCode = json ? d1Field(rawCode, D1_CODE_MAX) : null;
  const base = {
    operationId: json ? operationIdOf(json['operationId']) : null,
    operationStatus: json ? d1Field(json['status'], D1_CODE_MAX) : null,
    errorCode,
    error: json ? d1Field(json['error'], D1_TEXT_MAX) : res.body ? excerpt(res.body) : null,
    retryAfterMs: null as number | null,
  };

  if (rawCode && alreadyOptedOutCodes.includes(rawCode)) return { ...base, class: 'done' };
  // Whatever the HTTP status (D1 may say it with a 404): the operator listed the code as final.
  if (rawCode && notEnrolledCodes.includes(rawCode)) return { ...base, class: 'not-enrolled' };

  if (res.status >= 200 && res.status < 300) {
    if (!json) return { ...base, class: 'retryable', error: `HTTP ${res.status} with a body that is not JSON: ${excerpt(res.body)}` };
    switch (base.operationStatus) {
      case 'SUCCESSFUL':
        return { ...base, class: 'done' };
      case 'FAILED':
        // D1 took the request but the operation failed: worth another try in a later attempt.
        return { ...base, class: 'retryable', error: base.error ?? 'D1 operation FAILED' };
      case 'PENDING':
        return { ...base, class: 'pending' };
      default:
        // D1 may add status values: keep polling, and say in the report what it answered.
        return { ...base, class: 'pending', error: `D1 operation status ${JSON.stringify(base.operationStatus)} is not one this job knows; kept as pending` };
    }
  }
  if (isRetryableStatus(res.status)) {
    const retryAfter = res.headers.get('retry-after');
    return {
      ...base,
      class: 'retryable',
      retryAfterMs: res.status === 429 || res.status === 503 || retryAfter ? parseRetryAfter(retryAfter) : null,
      error: base.error ?? `HTTP ${res.status}`,
    };
  }
  // The request was not sent where D1 wanted it, and will not be: asking again changes nothing.
  if (isRedirect(res.status)) return { ...base, class: 'permanent', errorCode: null, error: describeRedirect(res) };
  if (res.status === 401) return { ...base, class: 'fatal', error: base.error ?? 'Unauthorized' };
  return { ...base, class: 'permanent', error: base.error ?? `HTTP ${res.status}` };
}

/** HTTP answers worth asking again (timeout, throttled, server side), for D1's API and its token endpoint alike. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}
