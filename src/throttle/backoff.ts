/**
 * Exponential backoff with full jitter (a random wait between 0 and the exponential cap), so
 * retries of many targets after one outage do not arrive together. D1's Retry-After, when given,
 * is a floor (capped at maxMs).
 */
export function backoffMs(
  attempt: number,
  baseMs: number,
  maxMs: number,
  retryAfterMs: number | null,
  random: () => number = Math.random,
): number {
  const cap = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  // Retry-After is honoured up to the longest backoff we allow: a D1 asking for an hour gets
  // backoffMaxMs, and the run's own retry budget decides the rest.
  return Math.max(Math.min(retryAfterMs ?? 0, maxMs), Math.floor(random() * cap));
}

/**
 * Reads a Retry-After header: delta seconds or an HTTP date (RFC 9110 §10.2.3). A missing or
 * unreadable value means one second; a date in the past means no wait.
 */
export function parseRetryAfter(value: string | null | undefined, nowMs: number = Date.now()): number {
  if (value == null || value.trim() === '') return 1000;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  // An HTTP date starts with a day name; anything else numeric-looking ("-3", "1.5") is garbage,
  // though Date.parse would happily read it as a year.
  if (!/^[A-Za-z]/.test(v)) return 1000;
  const at = Date.parse(v);
  if (Number.isNaN(at)) return 1000;
  return Math.max(0, at - nowMs);
}
