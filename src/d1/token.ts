import { randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import type { Clock } from '../throttle/clock.js';
import { realClock } from '../throttle/clock.js';
import { D1_CODE_MAX, d1Text, isRetryableStatus } from './classify.js';
import { describeRedirect, isRedirect, type Transport } from './http.js';

/** The assertion lives 5 minutes: well inside D1's 15-minute ceiling, with room for clock skew. */
const ASSERTION_TTL_SEC = 300;

export interface TokenSettings {
  tokenUrl: string;
  issuerId: string;
  keyId: string;
  timeoutMs: number;
  /** The `aud` claim; '' sends none. */
  assertionAudience: string;
}

/** Why no token could be had. `fatal` means D1 refused us: retrying cannot help. */
export class TokenError extends Error {
  constructor(
    readonly fatal: boolean,
    readonly httpStatus: number,
    message: string,
  ) {
    super(message);
    this.name = 'TokenError';
  }
}

/**
 * Signs the ES256 client assertion of docs/d1-api.md §1 (RFC 7523 JWT bearer). A fresh random
 * `jti` on every one, so a copied assertion cannot be replayed at an endpoint that remembers them;
 * `aud` only when configured, because D1 documents it as optional and its value is unconfirmed.
 */
export async function signAssertion(
  key: KeyObject,
  s: Pick<TokenSettings, 'issuerId' | 'keyId'> & Partial<Pick<TokenSettings, 'assertionAudience'>>,
  nowSec: number,
): Promise<string> {
  return new SignJWT(s.assertionAudience ? { aud: s.assertionAudience } : {})
    .setProtectedHeader({ alg: 'ES256', kid: s.keyId, typ: 'JWT' })
    .setIssuer(s.issuerId)
    .setSubject(s.issuerId)
    .setIssuedAt(nowSec)
    .setExpirationTime(nowSec + ASSERTION_TTL_SEC)
    .setJti(randomUUID())
    .sign(key);
}

/**
 * The access token, cached until shortly before it expires and fetched by one request however
 * many calls ask at once (single flight). Never logged, never stored.
 */
export class TokenProvider {
  private token: string | null = null;
  private expiresAt = 0;
  private inflight: Promise<string> | null = null;
  requests = 0;
  /** Token requests that got no token: the summary says so apart from D1's API requests (docs/design.md §13). */
  failures = 0;

  constructor(
    private readonly key: KeyObject,
    private readonly s: TokenSettings,
    private readonly transport: Transport,
    private readonly clock: Clock = realClock,
  ) {}

  async get(): Promise<string> {
    if (this.token && this.clock.now() < this.expiresAt) return this.token;
    this.inflight ??= this.fetchToken()
      .catch((err: unknown) => {
        this.failures++;
        throw err;
      })
      .finally(() => {
        this.inflight = null;
      });
    return this.inflight;
  }

  /** Forgets `token` after D1 refused it (401), unless a newer one already replaced it. */
  invalidate(token: string): void {
    if (this.token === token) {
      this.token = null;
      this.expiresAt = 0;
    }
  }

  private async fetchToken(): Promise<string> {
    this.requests++;
    const assertion = await signAssertion(this.key, this.s, Math.floor(Date.now() / 1000));
    const body = new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion });
    const res = await this.transport.send(
      this.s.tokenUrl,
      {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', 'x-correlation-id': randomUUID().replaceAll('-', '') },
        body: body.toString(),
      },
      this.s.timeoutMs,
    );
    if ('error' in res) throw new TokenError(false, 0, `token endpoint unreachable: ${res.error}`);
    let json: { access_token?: unknown; expires_in?: unknown; errorCode?: unknown; error?: unknown } = {};
    try {
      json = JSON.parse(res.body) as typeof json;
    } catch {
      // classified by status below
    }
    if (res.status >= 200 && res.status < 300 && typeof json.access_token === 'string' && json.access_token) {
      const ttlSec = typeof json.expires_in === 'number' && json.expires_in > 0 ? json.expires_in : 900;
      // Renew a little early (a tenth of the lifetime, at most a minute) so no call carries a token
      // that expires on the way.
      const marginMs = Math.min(60_000, ttlSec * 100);
      this.token = json.access_token;
      this.expiresAt = this.clock.now() + ttlSec * 1000 - marginMs;
      return this.token;
    }
    if (isRedirect(res.status)) {
      // Fatal, like a refused assertion: the configured token URL is not where D1 answers, and
      // following it would hand the signed assertion to another host.
      throw new TokenError(true, res.status, `token endpoint answered ${describeRedirect(res)}: check d1.tokenUrl`);
    }
    const detail = [typeof json.errorCode === 'string' ? d1Text(json.errorCode, D1_CODE_MAX) : null, typeof json.error === 'string' ? d1Text(json.error, 120) : null]
      .filter(Boolean)
      .join(': ');
    const retryable = isRetryableStatus(res.status);
    throw new TokenError(
      !retryable,
      res.status,
      retryable
        ? `token endpoint answered HTTP ${res.status}${detail ? ` (${detail})` : ''}`
        : `D1 refused the client assertion (HTTP ${res.status}${detail ? ` ${detail}` : ''}): check d1.issuerId, d1.keyId and the private key registered with Thales`,
    );
  }
}
