import { redactText } from '../log.js';
import { parseRetryAfter } from '../throttle/backoff.js';
import type { AnswerClass } from '../types.js';
import type { WireResponse } from './http.js';

export interface Classified {
  class: AnswerClass;
  operationId: string | null;
  operationStatus: string | null;
  errorCode: string | null;
  error: string | null;
  retryAfterMs: number | null;
}

const OPERATION_ID = /^[A-Za-z0-9_-]{1,64}$/;

function str(v: unknown): string | null {
  return typeof v === 'string' && v !== '' ? v : null;
}

/**
 * Masks, then cuts: cutting first could leave part of a card number or token too short to be
 * recognised, and in clear. The generous first cut only bounds the work on a huge body.
 */
export function safeCut(text: string, max: number): string {
  return redactText(text.slice(0, max + 1000)).slice(0, max);
}

/** A short excerpt of a body that is not JSON, safe for a report: no token, no card number, one line. */
function excerpt(body: string): string {
  return safeCut(body.replace(/\s+/g, ' ').trim(), 100) || '(empty body)';
}

/**
 * Reads one D1 answer (DESIGN.md §8, d1-api.md §6). Unknown fields are ignored and an operation
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
  const errorCode = json ? str(json['errorCode']) : null;
  const base = {
    operationId: json && str(json['operationId']) && OPERATION_ID.test(json['operationId'] as string) ? (json['operationId'] as string) : null,
    operationStatus: json ? str(json['status']) : null,
    errorCode,
    // D1's texts are informational and may echo what they were sent: masked like everything else.
    error: json ? (str(json['error']) ? safeCut(str(json['error'])!, 200) : null) : res.body ? excerpt(res.body) : null,
    retryAfterMs: null as number | null,
  };

  if (errorCode && alreadyOptedOutCodes.includes(errorCode)) return { ...base, class: 'done' };
  // Whatever the HTTP status (D1 may say it with a 404): the operator listed the code as final.
  if (errorCode && notEnrolledCodes.includes(errorCode)) return { ...base, class: 'not-enrolled' };

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
  if (res.status === 401) return { ...base, class: 'fatal', error: base.error ?? 'Unauthorized' };
  return { ...base, class: 'permanent', error: base.error ?? `HTTP ${res.status}` };
}

/** HTTP answers worth asking again (timeout, throttled, server side), for D1's API and its token endpoint alike. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}
