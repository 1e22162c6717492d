// Verifies the client's ES256 assertion with node:crypto alone. The client signs with jose; if
// the simulator verified with jose too, a bug shared by both sides (say, DER instead of raw r||s
// signatures) would pass every test and fail only against the real D1.

import { createPublicKey, verify, type KeyObject } from 'node:crypto';

export interface SimIssuer {
  issuerId: string;
  kid: string;
  publicKeyPem: string;
}

/** D1 accepts `exp` at most 15 minutes ahead. */
const MAX_LIFETIME_SEC = 15 * 60;
/** Room for clocks that disagree by a few seconds, as any real verifier allows. */
const CLOCK_SKEW_SEC = 5;

export type AssertionResult = { ok: true; issuerId: string } | { ok: false; reason: string };

interface KnownKey {
  issuerId: string;
  kid: string;
  key: KeyObject;
}

export class AssertionVerifier {
  private readonly keys: KnownKey[];
  /** jti -> exp of every assertion accepted and not yet expired: a replay is refused. */
  private readonly seenJti = new Map<string, number>();

  /**
   * Several entries may share an issuerId with different kids: that is how key rotation looks.
   * `audience`: the `aud` an assertion must carry, or null to ignore `aud` (D1 documents it as
   * optional and its value is not confirmed).
   */
  constructor(
    issuers: SimIssuer[],
    private readonly audience: string | null = null,
  ) {
    this.keys = issuers.map((issuer) => {
      const key = createPublicKey(issuer.publicKeyPem);
      if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
        throw new Error(`simulator issuer ${issuer.issuerId} (kid ${issuer.kid}): public key is not EC P-256`);
      }
      return { issuerId: issuer.issuerId, kid: issuer.kid, key };
    });
  }

  verify(assertion: string, nowMs = Date.now()): AssertionResult {
    const parts = assertion.split('.');
    if (parts.length !== 3) return refuse('not a compact JWS');
    const [headerB64, payloadB64, signatureB64] = parts as [string, string, string];

    const header = decodeJson(headerB64);
    const claims = decodeJson(payloadB64);
    if (!header || !claims) return refuse('malformed JWT');
    if (header.alg !== 'ES256') return refuse('alg must be ES256');
    if (typeof header.kid !== 'string' || header.kid === '') return refuse('missing kid');
    if (typeof claims.iss !== 'string' || !this.keys.some((k) => k.issuerId === claims.iss)) {
      return refuse('unknown issuer');
    }
    if (claims.sub !== claims.iss) return refuse('sub must equal iss');
    const known = this.keys.find((k) => k.issuerId === claims.iss && k.kid === header.kid);
    if (!known) return refuse('unknown kid');

    // JWS ES256 signatures are the raw 64-byte r||s (RFC 7518 §3.4), not DER.
    const signature = Buffer.from(signatureB64, 'base64url');
    if (signature.length !== 64) return refuse('bad signature');
    const signed = Buffer.from(`${headerB64}.${payloadB64}`, 'ascii');
    const valid = verify('sha256', signed, { key: known.key, dsaEncoding: 'ieee-p1363' }, signature);
    if (!valid) return refuse('bad signature');

    const now = nowMs / 1000;
    if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) return refuse('missing exp');
    if (claims.exp < now - CLOCK_SKEW_SEC) return refuse('assertion expired');
    if (claims.exp > now + MAX_LIFETIME_SEC + CLOCK_SKEW_SEC) return refuse('exp more than 15 minutes ahead');
    if (typeof claims.nbf === 'number' && claims.nbf > now + CLOCK_SKEW_SEC) return refuse('assertion not yet valid');
    if (this.audience !== null) {
      const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
      if (!aud.includes(this.audience)) return refuse('aud does not name this token endpoint');
    }

    // Checked last, so only an assertion that would otherwise pass uses up its jti. D1 does not
    // confirm jti for this flow, so one without it is accepted, but a jti is never accepted twice:
    // a signed assertion copied from a log or a proxy must not buy a second token.
    if (claims.jti !== undefined) {
      if (typeof claims.jti !== 'string' || claims.jti === '') return refuse('jti must be a non-empty string');
      for (const [jti, exp] of this.seenJti) if (exp < now - CLOCK_SKEW_SEC) this.seenJti.delete(jti);
      if (this.seenJti.has(claims.jti)) return refuse('assertion replayed (jti already used)');
      this.seenJti.set(claims.jti, claims.exp);
    }
    return { ok: true, issuerId: known.issuerId };
  }
}

function refuse(reason: string): AssertionResult {
  return { ok: false, reason };
}

function decodeJson(segment: string): Record<string, unknown> | null {
  if (!/^[A-Za-z0-9_-]+$/.test(segment)) return null;
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}
