// The simulator is the yardstick for the job's integration tests, so it is tested here against
// real HTTP on 127.0.0.1, with assertions signed by jose (the simulator verifies with node:crypto).

import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import {
  loadScenarioFile,
  makeSimCerts,
  startSimulator,
  type Scenario,
  type SimServer,
} from '../src/sim/index.js';
import { SlidingWindow } from '../src/sim/window.js';

const ISSUER = 'ISSUER0001';
const KID = 'kid-1';
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const keys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const strangerKeys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const issuers = [{ issuerId: ISSUER, kid: KID, publicKeyPem: keys.publicKey.export({ type: 'spki', format: 'pem' }).toString() }];

const sims: SimServer[] = [];
afterEach(async () => {
  await Promise.all(sims.splice(0).map((s) => s.close()));
});

async function start(scenario: Partial<Scenario> = {}): Promise<SimServer> {
  const sim = await startSimulator({ scenario, issuers });
  sims.push(sim);
  return sim;
}

interface AssertionOptions {
  kid?: string;
  iss?: string;
  sub?: string;
  expInSec?: number;
  key?: KeyObject;
  jti?: string;
  aud?: string;
}

function signAssertion(o: AssertionOptions = {}): Promise<string> {
  const iss = o.iss ?? ISSUER;
  return new SignJWT({ ...(o.jti !== undefined ? { jti: o.jti } : {}), ...(o.aud !== undefined ? { aud: o.aud } : {}) })
    .setProtectedHeader({ alg: 'ES256', kid: o.kid ?? KID })
    .setIssuer(iss)
    .setSubject(o.sub ?? iss)
    .setExpirationTime(Math.floor(Date.now() / 1000) + (o.expInSec ?? 300))
    .sign(o.key ?? keys.privateKey);
}

function requestToken(sim: SimServer, assertion: string, grantType = JWT_BEARER): Promise<Response> {
  return fetch(sim.tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: grantType, assertion }),
  });
}

async function token(sim: SimServer): Promise<string> {
  const res = await requestToken(sim, await signAssertion());
  expect(res.status).toBe(200);
  return ((await res.json()) as { access_token: string }).access_token;
}

const cardPath = (id: string, issuer = ISSUER) => `/issuers/${issuer}/cards/${id}/operations:clickToPayOptOut`;
const consumerPath = (id: string) => `/issuers/${ISSUER}/consumers/${id}/operations:clickToPayOptOut`;

function optOut(sim: SimServer, tok: string | null, path: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(sim.baseUrl + path, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-correlation-id': 'corr-1',
      ...(tok !== null ? { authorization: `Bearer ${tok}` } : {}),
      ...headers,
    },
    body: JSON.stringify({ reason: 'CLOSED', somethingNew: true }),
  });
}

function getOperation(sim: SimServer, tok: string, scopePath: string, operationId: string): Promise<Response> {
  return fetch(`${sim.baseUrl}/issuers/${ISSUER}/${scopePath}/operations/${operationId}`, {
    headers: { authorization: `Bearer ${tok}` },
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
type Json = Record<string, unknown>;

describe('token endpoint', () => {
  it('issues an opaque bearer token for a valid assertion', async () => {
    const sim = await start();
    const assertion = await signAssertion();
    const res = await requestToken(sim, assertion);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Json;
    expect(body).toMatchObject({ token_type: 'Bearer', expires_in: 900, scope: 'd1-api:account:full' });
    expect(String(body.access_token).length).toBeGreaterThanOrEqual(32);
    const state = sim.state();
    expect(state.tokensIssued).toBe(1);
    expect(state.tokenRequests).toBe(1);
    expect(sim.secrets()).toEqual({ tokens: [body.access_token], assertions: [assertion] });
    // What it serves holds neither: a token read from there once opted a card out.
    const served = await fetch(`${sim.url}/__sim/state`).then((r) => r.text());
    expect(served).toContain('"tokensIssued":1');
    for (const secret of [String(body.access_token), assertion, assertion.split('.')[2]!]) expect(served).not.toContain(secret);
  });

  it('refuses a replayed assertion (same jti), and requires the aud its scenario names', async () => {
    const sim = await start();
    const jti = 'jti-0001';
    const assertion = await signAssertion({ jti });
    expect((await requestToken(sim, assertion)).status).toBe(200);
    const replay = await requestToken(sim, assertion);
    expect(replay.status).toBe(400);
    expect(await replay.json()).toEqual({ errorCode: 'INVALID_ASSERTION', error: 'assertion replayed (jti already used)' });
    expect((await requestToken(sim, await signAssertion({ jti }))).status).toBe(400);
    expect((await requestToken(sim, await signAssertion({ jti: 'jti-0002' }))).status).toBe(200);
    expect(sim.state().tokensIssued).toBe(2);

    const strict = await start({ assertionAudience: 'https://d1.example/token' });
    const noAud = await requestToken(strict, await signAssertion({ jti: 'a1' }));
    expect(await noAud.json()).toEqual({ errorCode: 'INVALID_ASSERTION', error: 'aud does not name this token endpoint' });
    expect((await requestToken(strict, await signAssertion({ jti: 'a2', aud: 'https://elsewhere/token' }))).status).toBe(400);
    expect((await requestToken(strict, await signAssertion({ jti: 'a3', aud: 'https://d1.example/token' }))).status).toBe(200);
  });

  it('also accepts a JSON body', async () => {
    const sim = await start();
    const res = await fetch(sim.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ grant_type: JWT_BEARER, assertion: await signAssertion() }),
    });
    expect(res.status).toBe(200);
  });

  const forged = (): string => {
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const claims = { iss: ISSUER, sub: ISSUER, exp: Math.floor(Date.now() / 1000) + 60 };
    return `${b64({ alg: 'HS256', kid: KID })}.${b64(claims)}.${Buffer.alloc(32).toString('base64url')}`;
  };

  it.each([
    ['unknown kid', () => signAssertion({ kid: 'kid-2' })],
    ['unknown issuer', () => signAssertion({ iss: 'ISSUER0002' })],
    ['sub must equal iss', () => signAssertion({ sub: 'ISSUER0002' })],
    ['exp more than 15 minutes ahead', () => signAssertion({ expInSec: 15 * 60 + 30 })],
    ['assertion expired', () => signAssertion({ expInSec: -60 })],
    ['bad signature', () => signAssertion({ key: strangerKeys.privateKey })],
    ['alg must be ES256', async () => forged()],
  ])('refuses the assertion: %s', async (reason, make) => {
    const sim = await start();
    const assertion = await make();
    const res = await requestToken(sim, assertion);
    expect(res.status).toBe(400);
    const text = await res.text();
    expect(JSON.parse(text)).toEqual({ errorCode: 'INVALID_ASSERTION', error: reason });
    expect(text).not.toContain(assertion.split('.')[2]);
    expect(sim.state().tokensIssued).toBe(0);
  });

  it('refuses a wrong grant_type with FIELD_INVALID_VALUE', async () => {
    const sim = await start();
    const res = await requestToken(sim, await signAssertion(), 'client_credentials');
    expect(res.status).toBe(400);
    expect(((await res.json()) as Json).errorCode).toBe('FIELD_INVALID_VALUE');
  });
});

describe('authorization on API calls', () => {
  it('answers 401 without a token or with one the simulator never issued', async () => {
    const sim = await start();
    for (const tok of [null, 'not-a-token-issued-by-this-simulator']) {
      const res = await optOut(sim, tok, cardPath('card1'));
      expect(res.status).toBe(401);
      expect(await res.json()).toEqual({ errorCode: 'AUTHORIZER_UNAUTHORIZED', error: 'Unauthorized message' });
    }
    const state = sim.state();
    expect(state.targets).toEqual({});
    expect(state.optOutCalls).toEqual({});
    expect(state.optOutArrivals).toEqual({ 'CARD:card1': 2 });
  });

  it('stops accepting a token after tokenTtlSec', async () => {
    const sim = await start({ tokenTtlSec: 1 });
    const tok = await token(sim);
    expect((await optOut(sim, tok, cardPath('card1'))).status).toBe(200);
    await sleep(1100);
    expect((await optOut(sim, tok, cardPath('card2'))).status).toBe(401);
    expect(Object.keys(sim.state().targets)).toEqual(['CARD:card1']);
  });

  it('refuses a path issuerId that is not the token issuer (403)', async () => {
    const sim = await start();
    const res = await optOut(sim, await token(sim), cardPath('card1', 'ISSUER0002'));
    expect(res.status).toBe(403);
    expect(sim.state().targets).toEqual({});
  });
});

describe('opt-out', () => {
  it('opts a card out and records the ground truth', async () => {
    const sim = await start();
    const tok = await token(sim);
    const res = await optOut(sim, tok, cardPath('card_1-A'));
    expect(res.status).toBe(200);
    const body = (await res.json()) as { operationId: string; status: string };
    expect(body.status).toBe('SUCCESSFUL');
    expect(body.operationId).toMatch(/^[A-Za-z0-9_-]{1,64}$/);

    const state = sim.state();
    expect(state.targets['CARD:card_1-A']).toMatchObject({ state: 'OPTED_OUT', operationId: body.operationId });
    expect(state.targets['CARD:card_1-A']?.optedOutAt).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(state.optOutCalls).toEqual({ 'CARD:card_1-A': 1 });
    expect(state.optOutArrivals).toEqual({ 'CARD:card_1-A': 1 });
    expect(state.calls.at(-1)).toMatchObject({ method: 'POST', key: 'CARD:card_1-A', status: 200, correlationId: 'corr-1' });

    const op = await getOperation(sim, tok, 'cards/card_1-A', body.operationId);
    expect(op.status).toBe(200);
    expect(await op.json()).toMatchObject({
      operationId: body.operationId,
      operation: 'CLICK_TO_PAY_OPT_OUT',
      status: 'SUCCESSFUL',
      cardId: 'card_1-A',
    });
    expect((await getOperation(sim, tok, 'cards/other', body.operationId)).status).toBe(404);
  });

  it('opts out every card of a consumer with the consumer', async () => {
    const sim = await start({ consumers: { cons1: ['cA', 'cB'], cons2: ['cC'] } });
    const res = await optOut(sim, await token(sim), consumerPath('cons1'));
    expect(res.status).toBe(200);
    const { operationId } = (await res.json()) as { operationId: string };
    const { targets } = sim.state();
    expect(targets['CONSUMER:cons1']).toMatchObject({ state: 'OPTED_OUT', operationId });
    expect(targets['CARD:cA']).toMatchObject({ state: 'OPTED_OUT', via: 'cons1', operationId });
    expect(targets['CARD:cB']).toMatchObject({ state: 'OPTED_OUT', via: 'cons1' });
    expect(targets['CARD:cC']).toBeUndefined();
    expect(Object.keys(targets)).toHaveLength(3);
  });

  it('answers 404 for unknown ids and changes nothing', async () => {
    const sim = await start({ unknownIds: ['ghost', 'nobody'] });
    const tok = await token(sim);
    const card = await optOut(sim, tok, cardPath('ghost'));
    expect(card.status).toBe(404);
    expect(await card.json()).toEqual({ errorCode: 'NOT_FOUND', error: 'Card not found' });
    const consumer = await optOut(sim, tok, consumerPath('nobody'));
    expect(consumer.status).toBe(404);
    expect(((await consumer.json()) as Json).error).toBe('Consumer not found');
    expect(sim.state().targets).toEqual({});
    expect(sim.state().optOutCalls).toEqual({ 'CARD:ghost': 1, 'CONSUMER:nobody': 1 });
  });

  it('answers 400 FIELD_INVALID_FORMAT for ids or correlation ids that break the pattern', async () => {
    const sim = await start();
    const tok = await token(sim);
    const bad = [
      await optOut(sim, tok, cardPath('x'.repeat(49))),
      await optOut(sim, tok, cardPath('has.dot')),
      await optOut(sim, tok, consumerPath('c'.repeat(65))),
      await optOut(sim, tok, cardPath('fine'), { 'x-correlation-id': 'not valid!' }),
    ];
    for (const res of bad) {
      expect(res.status).toBe(400);
      expect(((await res.json()) as Json).errorCode).toBe('FIELD_INVALID_FORMAT');
    }
    expect((await optOut(sim, tok, consumerPath('c'.repeat(64)))).status).toBe(200);
    expect(Object.keys(sim.state().targets)).toEqual([`CONSUMER:${'c'.repeat(64)}`]);
  });

  it('moves a PENDING opt-out to SUCCESSFUL after pendingDelayMs', async () => {
    const sim = await start({ pendingRate: 1, pendingDelayMs: 150 });
    const tok = await token(sim);
    const res = await optOut(sim, tok, cardPath('card1'));
    const { operationId, status } = (await res.json()) as { operationId: string; status: string };
    expect(status).toBe('PENDING');
    expect(((await (await getOperation(sim, tok, 'cards/card1', operationId)).json()) as Json).status).toBe('PENDING');
    expect(sim.state().targets['CARD:card1']?.state).toBe('PENDING');

    await sleep(200);
    const op = (await (await getOperation(sim, tok, 'cards/card1', operationId)).json()) as Json;
    expect(op.status).toBe('SUCCESSFUL');
    expect(op.endTime).toEqual(expect.any(String));
    expect(sim.state().targets['CARD:card1']?.state).toBe('OPTED_OUT');
  });

  it('fails a PENDING consumer opt-out with OPT_OUT_FAILED, cards included, and allows a new try', async () => {
    const sim = await start({ pendingRate: 1, pendingDelayMs: 50, pendingFailRate: 1, consumers: { cons1: ['cA'] } });
    const tok = await token(sim);
    const { operationId } = (await (await optOut(sim, tok, consumerPath('cons1'))).json()) as { operationId: string };
    expect(sim.state().targets['CARD:cA']?.state).toBe('PENDING');
    await sleep(100);
    const op = (await (await getOperation(sim, tok, 'consumers/cons1', operationId)).json()) as Json;
    expect(op).toMatchObject({ status: 'FAILED', errorCode: 'OPT_OUT_FAILED', consumerId: 'cons1' });
    expect(sim.state().targets['CONSUMER:cons1']?.state).toBe('FAILED');
    expect(sim.state().targets['CARD:cA']?.state).toBe('FAILED');

    const again = (await (await optOut(sim, tok, consumerPath('cons1'))).json()) as { operationId: string };
    expect(again.operationId).not.toBe(operationId);
    expect(sim.state().targets['CONSUMER:cons1']).toMatchObject({ state: 'PENDING', operationId: again.operationId });
  });

  it('answers a repeat with success by default, leaving the original record alone', async () => {
    const sim = await start();
    const tok = await token(sim);
    const first = (await (await optOut(sim, tok, cardPath('card1'))).json()) as { operationId: string };
    const res = await optOut(sim, tok, cardPath('card1'));
    expect(res.status).toBe(200);
    const second = (await res.json()) as { operationId: string; status: string };
    expect(second.status).toBe('SUCCESSFUL');
    expect(second.operationId).not.toBe(first.operationId);
    expect(sim.state().targets['CARD:card1']?.operationId).toBe(first.operationId);
    expect(sim.state().optOutCalls['CARD:card1']).toBe(2);
  });

  it('answers a repeat with 409 and the configured code, also for a card its consumer took along', async () => {
    const sim = await start({ repeat: 'ALREADY_OPTED_OUT', consumers: { cons1: ['cA'] } });
    const tok = await token(sim);
    expect((await optOut(sim, tok, cardPath('card1'))).status).toBe(200);
    expect((await optOut(sim, tok, consumerPath('cons1'))).status).toBe(200);
    for (const path of [cardPath('card1'), cardPath('cA'), consumerPath('cons1')]) {
      const res = await optOut(sim, tok, path);
      expect(res.status).toBe(409);
      expect(await res.json()).toEqual({ errorCode: 'ALREADY_OPTED_OUT', error: 'Already opted out' });
    }
  });

  it('answers with successStatus 202 when configured', async () => {
    const sim = await start({ successStatus: 202 });
    const res = await optOut(sim, await token(sim), cardPath('card1'));
    expect(res.status).toBe(202);
    expect(((await res.json()) as Json).status).toBe('SUCCESSFUL');
  });

  it('serves configured path templates instead of the defaults', async () => {
    const sim = await start({ basePath: '/d1', paths: { optOutCard: '/v9/{issuerId}/card/{cardId}:optOut' } as Scenario['paths'] });
    expect(sim.baseUrl).toBe(`${sim.url}/d1`);
    const tok = await token(sim);
    expect((await optOut(sim, tok, `/v9/${ISSUER}/card/card1:optOut`)).status).toBe(200);
    expect((await optOut(sim, tok, cardPath('card2'))).status).toBe(404);
    expect(Object.keys(sim.state().targets)).toEqual(['CARD:card1']);
  });
});

describe('fault injection', () => {
  it('enforces quotaRps with 429 + Retry-After and counts every arrival in the window', async () => {
    const sim = await start({ quotaRps: 5 });
    const tok = await token(sim);
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => optOut(sim, tok, cardPath(`card${i}`))));
    const limited = answers.filter((r) => r.status === 429);
    expect(answers.filter((r) => r.status === 200)).toHaveLength(5);
    expect(limited).toHaveLength(7);
    for (const res of limited) {
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(Number.isInteger(Number(res.headers.get('retry-after')))).toBe(true);
      expect(await res.json()).toEqual({ errorCode: 'TOO_MANY_REQUESTS', error: 'Rate limit exceeded' });
    }
    const state = sim.state();
    expect(state.maxOptOutsInAnyWindow).toBe(12);
    expect(state.maxRequestsInAnyWindow).toBe(12);
    expect(Object.keys(state.targets)).toHaveLength(5);
    expect(Object.values(state.optOutCalls).reduce((a, b) => a + b, 0)).toBe(5);

    await sleep(1050);
    expect((await optOut(sim, tok, cardPath('later'))).status).toBe(200);
  });

  it('answers 5xx with fail5xxRate 1 and changes no target', async () => {
    const sim = await start({ fail5xxRate: 1 });
    const tok = await token(sim);
    const answers = await Promise.all(Array.from({ length: 12 }, () => optOut(sim, tok, cardPath('card1'))));
    for (const res of answers) {
      expect([500, 502, 503]).toContain(res.status);
      if (res.status === 503) expect(res.headers.get('retry-after')).toBe('1');
    }
    const state = sim.state();
    expect(state.targets).toEqual({});
    expect(state.optOutCalls).toEqual({});
    expect(state.optOutArrivals).toEqual({ 'CARD:card1': 12 });
    expect(new Set(answers.map((r) => r.status)).size).toBeGreaterThan(1);
  });

  it('answers 503 with Retry-After during an outage, token requests included', async () => {
    const sim = await start({ outages: [{ startMs: 400, endMs: 60_000 }] });
    const tok = await token(sim);
    await sleep(450);
    const res = await optOut(sim, tok, cardPath('card1'));
    expect(res.status).toBe(503);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(50);
    const tokenRes = await requestToken(sim, await signAssertion());
    expect(tokenRes.status).toBe(503);
    const state = sim.state();
    expect(state.targets).toEqual({});
    expect(state.tokensIssued).toBe(1);
    expect(state.byStatus['503']).toBe(2);
  });

  it('drops the connection with resetRate 1 and holds it with hangRate 1', async () => {
    const sim = await start({ resetRate: 1 });
    const tok = await token(sim);
    await expect(optOut(sim, tok, cardPath('card1'))).rejects.toThrow();
    expect(sim.state().byStatus['0']).toBe(1);
    expect(sim.state().targets).toEqual({});

    const hung = await start({ hangRate: 1, hangMs: 100 });
    const started = Date.now();
    const res = await optOut(hung, await token(hung), cardPath('card1'));
    expect(res.status).toBe(504);
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
    expect(hung.state().targets).toEqual({});
  });

  it('close() cuts a hung request instead of waiting for it', async () => {
    const sim = await startSimulator({ scenario: { hangRate: 1, hangMs: 60_000 }, issuers });
    const tok = await token(sim);
    const pending = optOut(sim, tok, cardPath('card1'));
    await sleep(50);
    const started = Date.now();
    await sim.close();
    await expect(pending).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('adds latency and replays the same faults for the same seed', async () => {
    const statuses = async (seed: number): Promise<number[]> => {
      const sim = await start({ fail5xxRate: 0.5, seed, latencyMs: [20, 30] });
      const tok = await token(sim);
      const out: number[] = [];
      const started = Date.now();
      for (let i = 0; i < 16; i++) out.push((await optOut(sim, tok, cardPath(`c${i}`))).status);
      const ok = out.filter((s) => s === 200).length;
      expect(Date.now() - started).toBeGreaterThanOrEqual(ok * 20 - 5);
      return out;
    };
    const a = await statuses(7);
    expect(await statuses(7)).toEqual(a);
    expect(a).toContain(200);
    expect(a.some((s) => s >= 500)).toBe(true);
  });
});

describe('observer routes and scenarios', () => {
  it('serves /__sim/state and /__sim/reset, keeping tokens valid', async () => {
    const sim = await start();
    const tok = await token(sim);
    await optOut(sim, tok, cardPath('card1'));
    expect((await fetch(`${sim.url}/__sim/state`).then((r) => r.json())) as Json).toEqual(
      JSON.parse(JSON.stringify(sim.state())),
    );
    expect((await fetch(`${sim.url}/__sim/reset`, { method: 'POST' })).status).toBe(200);
    expect(sim.state()).toMatchObject({ requests: 0, targets: {}, optOutCalls: {}, maxOptOutsInAnyWindow: 0 });
    expect((await optOut(sim, tok, cardPath('card1'))).status).toBe(200);
    expect((await fetch(`${sim.url}/nowhere`)).status).toBe(404);
    expect(sim.state().requests).toBe(2);
  });

  it('answers only a loopback Host with its own port, on every route (no DNS rebinding)', async () => {
    const sim = await start();
    const tok = await token(sim);
    const raw = (method: string, path: string, host: string, body = '', headers: Record<string, string> = {}) =>
      new Promise<number>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port: sim.port, method, path, headers: { host, ...headers }, agent: false }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end(body);
      });
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const routes: [string, string, string, Record<string, string>][] = [
      ['GET', '/__sim/state', '', {}],
      ['POST', '/__sim/reset', '', {}],
      ['POST', '/__sim/revoke-tokens', '', {}],
      ['POST', '/authz/v1/oauth2/token', new URLSearchParams({ grant_type: JWT_BEARER, assertion: await signAssertion() }).toString(), form],
      ['POST', `/banking/v1${cardPath('card-rebound')}`, '{}', { authorization: `Bearer ${tok}`, 'content-type': 'application/json' }],
    ];
    const before = sim.state();
    for (const host of ['attacker.example', `attacker.example:${sim.port}`, `127.0.0.1:${sim.port + 1}`, '127.0.0.1', `localhost.attacker.example:${sim.port}`]) {
      for (const [method, path, body, headers] of routes) expect(await raw(method, path, host, body, headers), `${method} ${path} Host ${host}`).toBe(421);
    }
    expect(sim.state()).toEqual(before);
    expect((await optOut(sim, tok, cardPath('card-after'))).status).toBe(200); // not revoked, not reset
    for (const host of [`127.0.0.1:${sim.port}`, `localhost:${sim.port}`, `LOCALHOST:${sim.port}`, `[::1]:${sim.port}`]) {
      expect(await raw('GET', '/__sim/state', host), host).toBe(200);
    }
  });

  it('keeps an exact sliding-window maximum', () => {
    const w = new SlidingWindow();
    for (const t of [0, 500, 999, 1000, 1500, 2600]) w.add(t);
    // (0, 1000] holds 500, 999, 1000; no 1000 ms window holds four.
    expect(w.max).toBe(3);
    w.add(2601);
    w.add(2602);
    expect(w.max).toBe(3);
    w.add(3599);
    expect(w.max).toBe(4);
  });

  it('loads every fixture and names an unknown key', async () => {
    const dir = join(import.meta.dirname, '..', 'fixtures', 'sim');
    const files = (await readdir(dir)).filter((f) => f.endsWith('.json'));
    expect(files).toEqual(expect.arrayContaining(['happy.json', 'flaky.json', 'quota.json', 'outage.json', 'mtls.json']));
    for (const f of files) await expect(loadScenarioFile(join(dir, f))).resolves.toEqual(expect.any(Object));

    const tmp = await mkdtemp(join(tmpdir(), 'sim-scenario-'));
    try {
      await writeFile(join(tmp, 'bad.json'), JSON.stringify({ quotaRPS: 20 }));
      await expect(loadScenarioFile(join(tmp, 'bad.json'))).rejects.toThrow(/bad\.json.*"quotaRPS" is unknown/);
      await writeFile(join(tmp, 'nested.json'), JSON.stringify({ tls: { certFile: 'a', keyFile: 'b', cafile: 'c' } }));
      await expect(loadScenarioFile(join(tmp, 'nested.json'))).rejects.toThrow(/"tls\.cafile" is unknown/);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    await expect(startSimulator({ scenario: { fail5xxRate: 2 }, issuers })).rejects.toThrow(/"fail5xxRate"/);
  });

  const hasOpenssl = ['/usr/bin/openssl', '/usr/local/bin/openssl', '/bin/openssl'].some((p) => existsSync(p));
  it.skipIf(!hasOpenssl)('serves HTTPS and refuses a client without a certificate when requireClientCert', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sim-certs-'));
    try {
      const certs = await makeSimCerts(dir);
      const sim = await start({
        tls: { certFile: certs.certFile, keyFile: certs.keyFile, caFile: certs.caFile, requireClientCert: true },
      });
      expect(sim.url.startsWith('https://127.0.0.1:')).toBe(true);
      const { readFile } = await import('node:fs/promises');
      const ca = await readFile(certs.caFile);
      const get = (client: { cert?: Buffer; key?: Buffer }) =>
        new Promise<number>((resolve, reject) => {
          https.get(`${sim.url}/__sim/state`, { ca, ...client, agent: false }, (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          }).on('error', reject);
        });
      expect(await get({ cert: await readFile(certs.clientCertFile), key: await readFile(certs.clientKeyFile) })).toBe(200);
      await expect(get({})).rejects.toThrow();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
