import { randomBytes } from 'node:crypto';
import type { Clock } from '../throttle/clock.js';
import { realClock } from '../throttle/clock.js';
import type { RateLimiter } from '../throttle/limiter.js';
import type { Config, D1Answer, Scope } from '../types.js';
import { classifyResponse } from './classify.js';
import { Transport } from './http.js';
import { loadPrivateKey } from './keys.js';
import { TokenError, TokenProvider } from './token.js';

/**
 * A fresh random correlation id per request: D1 logs it in clear, so it is never derived from card
 * data. 16 random bytes in base64url fit D1's `^[A-Za-z0-9_-]{1,64}$`.
 */
/**
 * Random, never derived from card data (D1 logs it in clear). It starts with a letter or digit: a
 * leading `-` would be escaped as a formula in results.csv, and the id there must be the one D1 saw.
 */
function correlationId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (/^[A-Za-z0-9]/.test(id)) return id;
  }
}

function fill(template: string, values: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (_, k: string) => encodeURIComponent(values[k] ?? ''));
}

/**
 * The D1 client: opt out a card or a consumer, get an operation. Every request goes through the
 * shared rate limiter and answers with a classified D1Answer; it never throws for a D1 error.
 */
export class D1Client {
  readonly tokens: TokenProvider;
  private readonly transport: Transport;

  constructor(
    private readonly cfg: Config['d1'],
    private readonly limiter: RateLimiter,
    private readonly clock: Clock = realClock,
    concurrency = 8,
  ) {
    this.transport = new Transport(cfg.tls, concurrency + 2);
    this.tokens = new TokenProvider(loadPrivateKey(cfg.privateKeyFile), cfg, this.transport, clock);
  }

  /**
   * `cancelled` is asked when the request's turn comes: a run that is stopping sends nothing more,
   * and gets null for a request that never left.
   */
  optOut(scope: Scope, id: string, cancelled?: () => boolean): Promise<D1Answer | null> {
    const path = scope === 'CARD' ? this.cfg.paths.optOutCard : this.cfg.paths.optOutConsumer;
    const url = this.cfg.baseUrl + fill(path, { issuerId: this.cfg.issuerId, cardId: id, consumerId: id });
    return this.request('POST', url, '{}', cancelled);
  }

  getOperation(scope: Scope, id: string, operationId: string, cancelled?: () => boolean): Promise<D1Answer | null> {
    const path = scope === 'CARD' ? this.cfg.paths.cardOperation : this.cfg.paths.consumerOperation;
    const url = this.cfg.baseUrl + fill(path, { issuerId: this.cfg.issuerId, cardId: id, consumerId: id, operationId });
    return this.request('GET', url, undefined, cancelled);
  }

  close(): void {
    this.transport.close();
  }

  /** One logical request; a 401 gets one more try with a fresh token (the old one may have been revoked). */
  private async request(method: 'GET' | 'POST', url: string, body: string | undefined, cancelled?: () => boolean): Promise<D1Answer | null> {
    // The token is had before the request takes its start: a token fetched inside the start would
    // hold it while the requests behind keep theirs, and they would all arrive together. It is
    // asked for again once the start comes (from the cache, at once), because the wait for the
    // start may outlast it.
    const withToken = async (left: () => void): Promise<{ answer: D1Answer; token: string | null } | null> => {
      if (cancelled?.()) return null;
      const token = await this.token();
      return typeof token === 'string' ? this.once(method, url, body, token, left) : token;
    };
    const send = () =>
      this.limiter.schedule(withToken, async () => {
        if (cancelled?.()) return { skip: null };
        const token = await this.token();
        // The run may have stopped while the token was fetched (this very failure may have stopped it).
        if (cancelled?.()) return { skip: null };
        return typeof token === 'string' ? null : { skip: token };
      });
    const first = await send();
    if (!first) return null;
    if (first.answer.httpStatus !== 401 || first.token === null) return this.noteThrottle(first.answer);
    this.tokens.invalidate(first.token);
    const second = await send();
    if (!second) return this.noteThrottle(first.answer);
    const refused = first.answer;
    if (second.answer.httpStatus === 401) {
      return { ...second.answer, refused, class: 'fatal', error: 'D1 refused a freshly issued access token (HTTP 401 twice): check the issuer onboarding and scopes' };
    }
    return this.noteThrottle({ ...second.answer, refused });
  }

  private noteThrottle(a: D1Answer): D1Answer {
    if (a.httpStatus === 429) this.limiter.onThrottled(a.retryAfterMs ?? 1000);
    return a;
  }

  /** The access token, or the answer of a request that could not be sent without one. */
  private async token(): Promise<string | { answer: D1Answer; token: null }> {
    try {
      return await this.tokens.get();
    } catch (err) {
      const e = err instanceof TokenError ? err : new TokenError(false, 0, `token request failed: ${(err as Error).message}`);
      const at = this.clock.now();
      const answer: D1Answer = { correlationId: correlationId(), startedAt: at, endedAt: at, operationId: null, operationStatus: null, errorCode: null, retryAfterMs: null, sent: false, class: e.fatal ? 'fatal' : 'retryable', httpStatus: 0, error: e.message };
      return { answer, token: null };
    }
  }

  private async once(method: string, url: string, body: string | undefined, token: string, left: () => void): Promise<{ answer: D1Answer; token: string | null }> {
    const cid = correlationId();
    const startedAt = this.clock.now();
    const base = { correlationId: cid, startedAt, operationId: null, operationStatus: null, errorCode: null, retryAfterMs: null, sent: true };
    const res = await this.transport.send(
      url,
      {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          'x-correlation-id': cid,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body,
      },
      this.cfg.timeoutMs,
      left,
    );
    const endedAt = this.clock.now();
    if ('error' in res) {
      return { answer: { ...base, class: 'retryable', httpStatus: 0, error: res.error, endedAt }, token };
    }
    const c = classifyResponse(res, this.cfg.alreadyOptedOutErrorCodes, this.cfg.notEnrolledErrorCodes);
    return { answer: { ...base, ...c, httpStatus: res.status, endedAt }, token };
  }
}
