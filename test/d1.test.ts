import { generateKeyPairSync, verify } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pollCommand } from '../src/batch/refresh.js';
import { StopSignal } from '../src/batch/stop.js';
import { parseConfig } from '../src/config.js';
import { D1Client } from '../src/d1/client.js';
import { signAssertion } from '../src/d1/token.js';
import { closeLogger, createLogger } from '../src/log.js';
import { makeSimCerts } from '../src/sim/index.js';
import { RateLimiter } from '../src/throttle/limiter.js';
import type { Config } from '../src/types.js';
import { csv, ISSUER, KID, makeWorld, results, type World, closeWorldsAfterEach } from './helpers.js';

// D1 fidelity (issue 3): every answer D1 can give, through the real client, against the simulator.
const HEADER = 'card_id,reason';

let world: World | null = null;
closeWorldsAfterEach();
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function clientFor(config: Config): D1Client {
  const limiter = new RateLimiter({ requestsPerSecond: 1000, concurrency: 64 });
  return new D1Client(config.d1, limiter, undefined, 64);
}

async function one(setup: Parameters<typeof makeWorld>[0], id = 'CARD-1') {
  world = await makeWorld(setup);
  const { summary, exitCode } = await world.run([world.file('a.csv', csv(HEADER, [`${id},CLOSED`]))]);
  return { line: results(summary)[0]!, summary, exitCode, truth: world.sim.state(), secrets: world.sim.secrets() };
}

describe('access token', () => {
  it('single flight: 50 concurrent calls cause one token request; after expiry, exactly one refresh', async () => {
    world = await makeWorld({ scenario: { tokenTtlSec: 2 } });
    const client = clientFor(world.config);
    try {
      const first = await Promise.all(Array.from({ length: 50 }, (_, i) => client.optOut('CARD', `CARD-SF-${i}`)));
      expect(first.every((a) => a?.class === 'done')).toBe(true);
      expect(world.sim.state().tokenRequests).toBe(1);
      await new Promise((r) => setTimeout(r, 2000));
      const second = await Promise.all(Array.from({ length: 50 }, (_, i) => client.optOut('CARD', `CARD-SF2-${i}`)));
      expect(second.every((a) => a?.class === 'done')).toBe(true);
      expect(world.sim.state().tokenRequests).toBe(2);
      expect(world.sim.state().byStatus['401'] ?? 0).toBe(0);
    } finally {
      client.close();
    }
  });

  it('a 401 refreshes the token once and retries', async () => {
    world = await makeWorld();
    const client = clientFor(world.config);
    try {
      expect((await client.optOut('CARD', 'CARD-A'))?.class).toBe('done');
      await fetch(`${world.sim.url}/__sim/revoke-tokens`, { method: 'POST' });
      const a = await client.optOut('CARD', 'CARD-B');
      expect(a).toMatchObject({ class: 'done', httpStatus: 200 });
      const s = world.sim.state();
      expect(s.tokenRequests).toBe(2);
      expect(s.byStatus['401']).toBe(1);
    } finally {
      client.close();
    }
  });

  it('a second 401 after a fresh token aborts the run (exit 4) with one clear line and no secret', async () => {
    const r = await one({ scenario: { answers: { 'CARD-1': { status: 401, body: { error: 'Unauthorized message' }, times: 2 } } } });
    expect(r.exitCode).toBe(4);
    expect(r.summary.abortReason).toMatch(/HTTP 401 twice/);
    expect(r.truth.tokenRequests).toBe(2);
    for (const t of r.secrets.tokens) expect(JSON.stringify(r.summary)).not.toContain(t);
  });

  it('the assertion signed with jose verifies with node:crypto: ES256, kid, iss = sub = issuerId, exp within 15 minutes', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const now = Math.floor(Date.now() / 1000);
    const jwt = await signAssertion(privateKey, { issuerId: ISSUER, keyId: KID }, now);
    const [h, p, sig] = jwt.split('.') as [string, string, string];
    const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as Record<string, unknown>;
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, number | string>;
    expect(header).toMatchObject({ alg: 'ES256', kid: KID });
    expect(claims).toMatchObject({ iss: ISSUER, sub: ISSUER });
    expect(claims).not.toHaveProperty('aud'); // D1 documents aud as optional, its value unconfirmed
    expect(typeof claims['jti']).toBe('string');
    const again = JSON.parse(Buffer.from((await signAssertion(privateKey, { issuerId: ISSUER, keyId: KID }, now)).split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    expect(again['jti']).not.toBe(claims['jti']);
    expect(Number(claims['exp']) - now).toBeGreaterThan(0);
    expect(Number(claims['exp']) - now).toBeLessThanOrEqual(900);
    const ok = verify('sha256', Buffer.from(`${h}.${p}`), { key: publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(sig, 'base64url'));
    expect(ok).toBe(true);
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    expect(verify('sha256', Buffer.from(`${h}.${p}`), { key: other, dsaEncoding: 'ieee-p1363' }, Buffer.from(sig, 'base64url'))).toBe(false);
  });

  it('d1.assertionAudience becomes the aud claim, for a D1 that requires one', async () => {
    const aud = 'https://d1.example/authz/v1/oauth2/token';
    const without = await one({ scenario: { assertionAudience: aud } });
    expect(without.exitCode).toBe(4);
    expect(without.summary.abortReason).toMatch(/D1 refused the client assertion \(HTTP 400 INVALID_ASSERTION: aud does not name this token endpoint\)/);
    const withAud = await one({ scenario: { assertionAudience: aud }, config: { d1: { assertionAudience: aud } } });
    expect(withAud.exitCode).toBe(0);
    expect(withAud.line).toMatchObject({ outcome: 'OPTED_OUT' });
    expect(JSON.parse(Buffer.from(withAud.secrets.assertions[0]!.split('.')[1]!, 'base64url').toString())).toMatchObject({ aud });
  });

  it('the token endpoint refusing the assertion (wrong iss) aborts with exit 4', async () => {
    // The ledger is made for this config (a ledger bound to another issuer is refused before any call).
    world = await makeWorld({ config: { d1: { issuerId: 'OTHERISSUE' } } });
    const { summary, exitCode } = await world.run([world.file('a.csv', csv(HEADER, ['CARD-1,CLOSED']))]);
    expect(exitCode).toBe(4);
    expect(summary.abortReason).toMatch(/D1 refused the client assertion \(HTTP 400 INVALID_ASSERTION: unknown issuer\)/);
    expect(world.sim.state().optOutCalls).toEqual({});
  });
});

/** A second loopback listener a redirect points at: it records whatever reaches it. */
async function startRecorder(): Promise<{ url: string; arrived: string[]; close(): Promise<void> }> {
  const arrived: string[] = [];
  const server: Server = createHttpServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      arrived.push(`${req.method} ${req.url} ${req.headers.authorization ?? ''} ${body}`);
      res.end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, arrived, close: () => new Promise<void>((r) => server.close(() => r())) };
}

describe('redirects are never followed', () => {
  it('a token endpoint answering 307 aborts the run (exit 4); the assertion goes nowhere else', async () => {
    const trap = await startRecorder();
    try {
      const location = `${trap.url}/steal/oauth2/token?session=s3cr3t-session-value`;
      const r = await one({ scenario: { tokenAnswer: { status: 307, headers: { location } } } });
      expect(r.exitCode).toBe(4);
      expect(r.summary.abortReason).toBe(`token endpoint answered HTTP 307, a redirect to ${trap.url}/… that was not followed: check d1.tokenUrl`);
      expect(trap.arrived).toEqual([]);
      expect(r.truth.tokenRequests).toBe(1);
      expect(r.truth.optOutCalls).toEqual({});
    } finally {
      await trap.close();
    }
  });

  it.each([301, 302, 303, 307, 308])('an opt-out answered %i is a permanent failure; the Location is masked and not called', async (status) => {
    const trap = await startRecorder();
    try {
      const location = `${trap.url}/cards/4111111111111111/optout?token=abcdefabcdefabcdef`;
      const r = await one({ scenario: { answers: { 'CARD-1': { status, headers: { location }, text: `Moved to ${location}` } } } });
      expect(r.exitCode).toBe(1);
      expect(r.line).toMatchObject({
        outcome: 'FAILED_PERMANENT',
        http_status: String(status),
        error_code: '',
        error_message: `HTTP ${status}, a redirect to ${trap.url}/… that was not followed`,
        attempts: '1',
      });
      expect(trap.arrived).toEqual([]);
      expect(r.truth.optOutArrivals['CARD:CARD-1']).toBe(1);
    } finally {
      await trap.close();
    }
  });
});

describe('answers D1 can give', () => {
  it('unknown response fields are ignored', async () => {
    const r = await one({ scenario: { answers: { 'CARD-1': { status: 200, body: { operationId: 'op-1', status: 'SUCCESSFUL', newField: { x: 1 } } } } } });
    expect(r.line).toMatchObject({ outcome: 'OPTED_OUT', operation_id: 'op-1', attempts: '1' });
  });

  it('400 is permanent and keeps D1 errorCode and error', async () => {
    const r = await one({ scenario: { answers: { 'CARD-1': { status: 400, body: { errorCode: 'FIELD_INVALID_FORMAT', error: 'cardId' } } } } });
    expect(r.line).toMatchObject({ outcome: 'FAILED_PERMANENT', http_status: '400', error_code: 'FIELD_INVALID_FORMAT', error_message: 'cardId', attempts: '1' });
  });

  it('403 is permanent', async () => {
    const r = await one({ scenario: { answers: { 'CARD-1': { status: 403, body: { errorCode: 'FORBIDDEN', error: 'consumer not ACTIVE' } } } } });
    expect(r.line).toMatchObject({ outcome: 'FAILED_PERMANENT', http_status: '403', error_code: 'FORBIDDEN', attempts: '1' });
  });

  it('408 is retryable: retried, then opted out', async () => {
    const r = await one({ scenario: { answers: { 'CARD-1': { status: 408, body: {}, times: 1 } } } });
    expect(r.line).toMatchObject({ outcome: 'OPTED_OUT', attempts: '2' });
    expect(r.truth.optOutArrivals['CARD:CARD-1']).toBe(2);
  });

  it('429 is retryable and pauses the limiter for Retry-After', async () => {
    const r = await one({
      scenario: { answers: { 'CARD-1': { status: 429, body: { errorCode: 'TOO_MANY_REQUESTS' }, headers: { 'retry-after': '1' }, times: 2 } } },
      config: { rate: { backoffMaxMs: 5000 } },
    });
    expect(r.line).toMatchObject({ outcome: 'OPTED_OUT', attempts: '3' });
    expect(r.summary.d1.http429).toBe(2);
    expect(r.summary.d1.throttledMs).toBeGreaterThanOrEqual(1000);
    expect(r.summary.d1.lowestRps).toBeLessThan(500);
  });

  it('a Retry-After longer than backoffMaxMs is honoured only up to backoffMaxMs', async () => {
    const started = Date.now();
    const r = await one({
      scenario: { answers: { 'CARD-1': { status: 429, body: {}, headers: { 'retry-after': '600' }, times: 1 } } },
      config: { rate: { backoffMaxMs: 300 } },
    });
    expect(r.line).toMatchObject({ outcome: 'OPTED_OUT', attempts: '2' });
    expect(r.summary.d1.throttledMs).toBeLessThanOrEqual(300);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('an unknown 5xx with a body that is not JSON is retryable, with a short safe excerpt in the report', async () => {
    const page = `<html><body>upstream error for Bearer abc.def.ghi card 4111111111111111 ${'x'.repeat(500)}</body></html>`;
    const r = await one({ scenario: { answers: { 'CARD-1': { status: 599, text: page } } }, config: { rate: { maxAttempts: 2 } } });
    expect(r.line).toMatchObject({ outcome: 'FAILED_RETRYABLE', http_status: '599', attempts: '2' });
    expect(r.line.error_message.length).toBeLessThanOrEqual(120);
    expect(r.line.error_message).toContain('<html><body>upstream error');
    expect(r.line.error_message).not.toContain('4111111111111111');
    expect(r.line.error_message).not.toContain('abc.def.ghi');
  });

  it('a 404 with a body that is not JSON is permanent', async () => {
    const r = await one({ scenario: { answers: { 'CARD-1': { status: 404, text: 'Not Found' } } } });
    expect(r.line).toMatchObject({ outcome: 'FAILED_PERMANENT', http_status: '404', error_message: 'Not Found' });
  });

  it('a client timeout is retryable', async () => {
    const r = await one({ scenario: { hangRate: 1, hangMs: 5000 }, config: { d1: { timeoutMs: 150 }, rate: { maxAttempts: 2 } } });
    expect(r.line).toMatchObject({ outcome: 'FAILED_RETRYABLE', http_status: '', attempts: '2' });
    expect(r.line.error_message).toMatch(/no answer within 150 ms/);
  });

  it('a refused connection (ECONNREFUSED) is retryable', async () => {
    const closed = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const { port } = srv.address() as AddressInfo;
        srv.close(() => resolve(port));
      });
    });
    // The token endpoint stays up; the ledger is made for this base URL.
    world = await makeWorld({ config: { rate: { maxAttempts: 2 }, d1: { baseUrl: `http://127.0.0.1:${closed}/banking/v1` } } });
    const { summary } = await world.run([world.file('a.csv', csv(HEADER, ['CARD-1,CLOSED']))]);
    expect(results(summary)[0]).toMatchObject({ outcome: 'FAILED_RETRYABLE', attempts: '2' });
    expect(results(summary)[0]!.error_message).toMatch(/ECONNREFUSED/);
  });

  it('a token endpoint that cannot be reached is no attempt at the target: it never uses up the retry budget', async () => {
    world = await makeWorld({ config: { rate: { maxAttempts: 2, maxAttemptsAcrossRuns: 2 } } });
    const live = world.config.d1.tokenUrl;
    world.config.d1.tokenUrl = live.replace(/:\d+\//, ':1/');
    const first = await world.run([world.file('a.csv', csv(HEADER, ['CARD-1,CLOSED']))]);
    expect(results(first.summary)[0]).toMatchObject({ outcome: 'FAILED_RETRYABLE', attempts: '0' });
    expect(results(first.summary)[0]!.error_message).toMatch(/token endpoint unreachable/);
    world.config.d1.tokenUrl = live;
    const second = await world.run([]);
    expect(second.summary.carriedOver).toEqual({ OPTED_OUT: 1 });
  });

  it('an operation status the client does not know is kept pending, polled, and reported with its raw value', async () => {
    const r = await one({ scenario: { pendingRate: 1, pendingDelayMs: 60_000, pendingStatus: 'IN_REVIEW' }, config: { pending: { maxWaitMs: 200 } } });
    expect(r.line.outcome).toBe('PENDING');
    expect(r.line.error_message).toMatch(/"IN_REVIEW" is not one this job knows/);
    expect(r.summary.d1.requests).toBeGreaterThanOrEqual(2); // the opt-out and at least one poll
  });
});

describe('poll command', () => {
  it('polls pending targets after the run and writes the batch report again', async () => {
    world = await makeWorld({ scenario: { pendingRate: 1, pendingDelayMs: 300 }, config: { pending: { maxWaitMs: 0 } } });
    const { summary } = await world.run([world.file('a.csv', csv(HEADER, ['CARD-1,CLOSED', 'CARD-2,CLOSED']))]);
    expect(summary.outcomes).toEqual({ PENDING: 2 });
    await new Promise((r) => setTimeout(r, 350));
    const log = createLogger({ level: 'warn', file: null, console: false });
    const after = await pollCommand(world.config, { batch: null, waitMs: 2000 }, log, new StopSignal());
    await closeLogger(log);
    expect(after).toHaveLength(1);
    expect(after[0]!.outcomes).toEqual({ OPTED_OUT: 2 });
    expect(after[0]!.status).toBe('COMPLETED');
    expect(results(after[0]!).map((l) => l.outcome)).toEqual(['OPTED_OUT', 'OPTED_OUT']);
    expect(world.sim.state().optOutCalls).toEqual({ 'CARD:CARD-1': 1, 'CARD:CARD-2': 1 });
  });
});

describe('mutual TLS', () => {
  it('a client without a certificate is refused; with one it succeeds; the server certificate is always verified', async () => {
    const certDir = mkdtempSync(join(tmpdir(), 'd1-optout-certs-'));
    dirs.push(certDir);
    const certs = await makeSimCerts(certDir);
    world = await makeWorld({
      scenario: { tls: { certFile: certs.certFile, keyFile: certs.keyFile, caFile: certs.caFile, requireClientCert: true } },
      config: { rate: { maxAttempts: 1 } },
    });
    expect(world.sim.url.startsWith('https://127.0.0.1:')).toBe(true);
    const base = { ...world.config };
    const attempt = async (tls: Config['d1']['tls']) => {
      const client = clientFor(parseConfig({ ...base, d1: { ...base.d1, tls } }, {}));
      try {
        return await client.optOut('CARD', `CARD-TLS-${Object.keys(tls).length}`);
      } finally {
        client.close();
      }
    };
    const noCert = await attempt({ caFile: certs.caFile });
    expect(noCert).toMatchObject({ class: 'retryable', httpStatus: 0 });
    const noCa = await attempt({ certFile: certs.clientCertFile, keyFile: certs.clientKeyFile });
    expect(noCa?.class).toBe('retryable');
    expect(noCa?.error).toMatch(/SELF_SIGNED|UNABLE_TO_VERIFY|unable to verify|self.signed/i);
    const ok = await attempt({ certFile: certs.clientCertFile, keyFile: certs.clientKeyFile, caFile: certs.caFile });
    expect(ok).toMatchObject({ class: 'done', httpStatus: 200 });
    expect(world.sim.state().optOutCalls).toEqual({ 'CARD:CARD-TLS-3': 1 });
  });

  it('plain http is refused for anything but loopback', () => {
    const good = { d1: { issuerId: ISSUER, keyId: KID, privateKeyFile: '/k.pem' } };
    expect(() => parseConfig({ d1: { ...good.d1, baseUrl: 'http://d1.example.com/banking/v1' } }, {})).toThrow(/d1.baseUrl: must be an https:\/\/ URL/);
    expect(() => parseConfig({ d1: { ...good.d1, baseUrl: 'http://127.0.0.1:9/banking/v1', tokenUrl: 'http://localhost:9/t' } }, {})).not.toThrow();
  });
});

describe('a burst of 429s', () => {
  it('leaves the ledger exact: every request recorded, 429s not counted against the target', async () => {
    world = await makeWorld({ scenario: { quotaRps: 15 }, config: { rate: { requestsPerSecond: 200, concurrency: 8, maxAttempts: 20, backoffBaseMs: 20, backoffMaxMs: 2000 } } });
    const ids = Array.from({ length: 40 }, (_, i) => `CARD-Q${String(i).padStart(2, '0')}`);
    const { summary } = await world.run([world.file('a.csv', csv(HEADER, ids.map((id) => `${id},CLOSED`)))]);
    const truth = world.sim.state();
    expect(summary.outcomes).toEqual({ OPTED_OUT: 40 });
    expect(truth.byStatus['429']).toBeGreaterThan(0);
    expect(summary.d1.http429).toBe(truth.byStatus['429']);
    expect(summary.d1.requests).toBe(truth.requests - truth.tokenRequests);
    for (const line of results(summary)) expect(Number(line.attempts)).toBe(truth.optOutArrivals[`CARD:${line.target_id}`]);
    const ledger = world.ledger();
    try {
      for (const id of ids) expect(ledger.targets.get('CARD', id)).toMatchObject({ state: 'OPTED_OUT', attempts: 1 });
    } finally {
      ledger.close();
    }
  });
});
