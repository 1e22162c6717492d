// The HTTP face of the simulated D1: routing, the token endpoint, and fault injection in the
// order a real gateway applies it (outage, quota, auth, then the backend's own failures).
// A faulted request never reaches the handler, so it changes no target: that is the property
// the job's retry logic relies on and the tests check.

import { readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { resolve as resolvePath } from 'node:path';
import { performance } from 'node:perf_hooks';
import { AssertionVerifier, type SimIssuer } from './assertion.js';
import { rngStreams, type RngStreams } from './random.js';
import { compileRoutes, type RouteMatch } from './routes.js';
import { resolveScenario, type Scenario, type SimAnswer, type SimTls } from './scenario.js';
import { GroundTruth, targetKey, type SimCall, type SimSecrets, type SimState } from './state.js';
import type { Scope } from '../types.js';

export interface StartSimOptions {
  scenario?: Partial<Scenario>;
  /** 0 (the default) picks a free port. */
  port?: number;
  issuers: SimIssuer[];
  /**
   * Called as each opt-out or Get Operation request arrives, before any fault or answer: lets a
   * test look at the job's ledger at the moment D1 first sees a request.
   */
  onRequest?: (arrival: SimArrival) => void;
}

export interface SimArrival {
  kind: RouteMatch['kind'];
  scope: Scope;
  targetId: string;
  correlationId: string | null;
}

export interface SimServer {
  url: string;
  baseUrl: string;
  tokenUrl: string;
  port: number;
  state(): SimState;
  /** The tokens it issued and the assertions it received: in-process only, for leak searches. */
  secrets(): SimSecrets;
  close(): Promise<void>;
}

export const TOKEN_PATH = '/authz/v1/oauth2/token';
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const MAX_BODY_BYTES = 1024 * 1024;
const ID_PATTERN = { CARD: /^[A-Za-z0-9_-]{1,48}$/, CONSUMER: /^[A-Za-z0-9_-]{1,64}$/ } as const;
const OPAQUE_ID = /^[A-Za-z0-9_-]{1,64}$/; // x-correlation-id and operationId share it

interface Reply {
  status: number;
  body: unknown;
  /** Sent as it is instead of the JSON body. */
  text?: string;
  headers?: Record<string, string>;
}

const error = (status: number, errorCode: string, message: string, headers?: Record<string, string>): Reply => ({
  status,
  body: { errorCode, error: message },
  ...(headers ? { headers } : {}),
});

class Simulator {
  readonly truth: GroundTruth;
  private readonly rng: RngStreams;
  private readonly match: ReturnType<typeof compileRoutes>;
  private readonly unknownIds: Set<string>;
  private readonly notEnrolledIds: Set<string>;
  private readonly t0 = performance.now();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly scriptedUses = new Map<string, number>();
  private tokenAnswerUses = 0;
  private stopped = false;
  /** The Host values a request may carry; set once the port is known. */
  private hosts = new Set<string>();

  constructor(
    private readonly scenario: Scenario,
    private readonly verifier: AssertionVerifier,
    private readonly onRequest: StartSimOptions['onRequest'] = undefined,
  ) {
    this.rng = rngStreams(scenario.seed);
    this.truth = new GroundTruth(scenario, this.rng);
    this.match = compileRoutes(scenario.basePath, scenario.paths);
    this.unknownIds = new Set(scenario.unknownIds);
    this.notEnrolledIds = new Set(scenario.notEnrolledIds);
  }

  /**
   * Only loopback names with this port: a web page on a name the attacker controls, rebound by DNS
   * to 127.0.0.1, arrives with its own Host and is refused before any route, so it can neither
   * read the ground truth nor reset it nor ask for a token.
   */
  listeningOn(port: number, defaultPort: number): void {
    const names = ['127.0.0.1', 'localhost', '[::1]'];
    this.hosts = new Set(names.flatMap((n) => (port === defaultPort ? [n, `${n}:${port}`] : [`${n}:${port}`])));
  }

  stop(): void {
    this.stopped = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }

  dispatch(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.handle(req, res).catch((err: unknown) => {
      if (res.headersSent || res.destroyed) return;
      send(res, error(500, 'INTERNAL_SERVER_ERROR', `simulator error: ${(err as Error).message}`));
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const at = performance.now() - this.t0;
    const method = req.method ?? 'GET';
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    if (!this.hosts.has((req.headers.host ?? '').toLowerCase())) {
      req.resume();
      return send(res, error(421, 'MISDIRECTED_REQUEST', 'the Host header must be 127.0.0.1, localhost or [::1] with the port of this simulator'));
    }

    // The observer's own routes: never counted, never faulted, no auth.
    if (path === '/__sim/state' && method === 'GET') return send(res, { status: 200, body: this.truth.snapshot() });
    if (path === '/__sim/revoke-tokens' && method === 'POST') {
      req.resume();
      this.truth.revokeTokens();
      return send(res, { status: 200, body: { revoked: true } });
    }
    if (path === '/__sim/reset' && method === 'POST') {
      req.resume();
      this.truth.reset();
      return send(res, { status: 200, body: { reset: true } });
    }

    const call: SimCall = { at, method, path, key: null, status: 0, correlationId: header(req, 'x-correlation-id') };
    const body = await readBody(req);
    if (body === null) return this.answer(res, call, error(413, 'FIELD_INVALID_FORMAT', 'request body too large'));
    if (this.scenario.recordRequests) Object.assign(call, { url: req.url ?? '', body });
    this.truth.settle();

    if (path === TOKEN_PATH && method === 'POST') {
      if (this.scenario.tokenLatencyMs > 0) await new Promise<void>((done) => this.after(this.scenario.tokenLatencyMs, done));
      if (this.stopped) return;
      return this.answer(res, call, this.token(req, body, at));
    }
    const route = this.match(method, path);
    if (!route) return this.answer(res, call, error(404, 'NOT_FOUND', 'No such resource'));
    call.key = targetKey(route.scope, route.targetId);
    return this.api(req, res, route, body, call);
  }

  private token(req: http.IncomingMessage, body: string, at: number): Reply {
    this.truth.tokenRequests++;
    const outage = this.outage(at);
    if (outage) return outage;
    const scripted = this.scenario.tokenAnswer;
    if (scripted && (scripted.times === undefined || this.tokenAnswerUses < scripted.times)) {
      this.tokenAnswerUses++;
      return toReply(scripted);
    }
    const form = parseTokenBody(body, header(req, 'content-type') ?? '');
    if (form.grant_type !== JWT_BEARER) return error(400, 'FIELD_INVALID_VALUE', `grant_type must be ${JWT_BEARER}`);
    if (!form.assertion) return error(400, 'INVALID_ASSERTION', 'missing assertion');
    this.truth.recordAssertion(form.assertion);
    const result = this.verifier.verify(form.assertion);
    if (!result.ok) return error(400, 'INVALID_ASSERTION', result.reason);
    return {
      status: 200,
      headers: { 'cache-control': 'no-store' },
      body: {
        access_token: this.truth.issueToken(result.issuerId, this.scenario.tokenTtlSec),
        token_type: 'Bearer',
        expires_in: this.scenario.tokenTtlSec,
        scope: 'd1-api:account:full',
      },
    };
  }

  private async api(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    route: RouteMatch,
    body: string,
    call: SimCall,
  ): Promise<void> {
    const { at, key } = call;
    this.truth.requestOpened();
    res.once('close', () => this.truth.requestClosed());
    this.onRequest?.({ kind: route.kind, scope: route.scope, targetId: route.targetId, correlationId: call.correlationId });
    this.truth.apiWindow.add(at);
    if (route.kind === 'optOut' && key !== null) {
      this.truth.optOutWindow.add(at);
      this.truth.optOutArrivals.set(key, (this.truth.optOutArrivals.get(key) ?? 0) + 1);
    }

    const refused = this.outage(at) ?? this.quota(at);
    if (refused) return this.answer(res, call, refused);
    const issuerId = this.authenticate(req);
    if (issuerId === null) {
      return this.answer(res, call, {
        status: 401,
        headers: { 'www-authenticate': 'Bearer' },
        body: { errorCode: 'AUTHORIZER_UNAUTHORIZED', error: 'Unauthorized message' },
      });
    }

    if (this.draw(this.scenario.resetRate)) {
      this.truth.recordAnswer(call);
      req.socket.destroy();
      return;
    }
    if (this.draw(this.scenario.hangRate)) {
      // Counted as unanswered now: a client that waits hangMs is rare, one that times out is the point.
      this.truth.recordAnswer(call);
      this.after(this.scenario.hangMs, () => send(res, error(504, 'GATEWAY_TIMEOUT', 'Gateway Timeout')));
      return;
    }
    if (this.draw(this.scenario.fail5xxRate)) return this.answer(res, call, this.serverError());

    const latency = this.latency();
    if (latency > 0) await new Promise<void>((done) => this.after(latency, done));
    if (this.stopped) return;

    const reply = route.kind === 'optOut' ? this.optOut(req, route, issuerId, body) : this.getOperation(req, route, issuerId);
    return this.answer(res, call, reply);
  }

  private optOut(req: http.IncomingMessage, route: RouteMatch, issuerId: string, body: string): Reply {
    const key = targetKey(route.scope, route.targetId);
    this.truth.optOutCalls.set(key, (this.truth.optOutCalls.get(key) ?? 0) + 1);
    const invalid = this.checkRequest(req, route, issuerId) ?? checkJsonBody(body);
    if (invalid) return invalid;
    const scripted = this.scripted(route.targetId);
    if (scripted) return scripted;
    if (this.unknownIds.has(route.targetId)) {
      return error(404, 'NOT_FOUND', route.scope === 'CARD' ? 'Card not found' : 'Consumer not found');
    }
    if (this.notEnrolledIds.has(route.targetId)) {
      return error(this.scenario.notEnrolledStatus, this.scenario.notEnrolledErrorCode, `${route.scope === 'CARD' ? 'Card' : 'Consumer'} is not enrolled in Click to Pay`);
    }
    const outcome = this.truth.optOut(route.scope, route.targetId);
    if (outcome.kind === 'conflict') return error(409, outcome.errorCode, 'Already opted out');
    return { status: this.scenario.successStatus, body: { operationId: outcome.operationId, status: this.shown(outcome.status) } };
  }

  /** The scripted answer for this id, while it has uses left. */
  private scripted(targetId: string): Reply | null {
    const a = this.scenario.answers[targetId];
    if (!a) return null;
    const used = this.scriptedUses.get(targetId) ?? 0;
    if (a.times !== undefined && used >= a.times) return null;
    this.scriptedUses.set(targetId, used + 1);
    return toReply(a);
  }

  private shown(status: string): string {
    return status === 'PENDING' ? this.scenario.pendingStatus : status;
  }

  private getOperation(req: http.IncomingMessage, route: RouteMatch, issuerId: string): Reply {
    const invalid = this.checkRequest(req, route, issuerId);
    if (invalid) return invalid;
    const operationId = route.operationId ?? '';
    if (!OPAQUE_ID.test(operationId)) return error(400, 'FIELD_INVALID_FORMAT', 'operationId has an invalid format');
    const op = this.truth.getOperation(route.scope, route.targetId, operationId);
    return op ? { status: 200, body: { ...op, status: this.shown(op.status) } } : error(404, 'NOT_FOUND', 'Operation not found');
  }

  private checkRequest(req: http.IncomingMessage, route: RouteMatch, issuerId: string): Reply | null {
    const correlationId = header(req, 'x-correlation-id');
    if (correlationId !== null && !OPAQUE_ID.test(correlationId)) {
      return error(400, 'FIELD_INVALID_FORMAT', 'x-correlation-id has an invalid format');
    }
    // A token only ever speaks for the issuer whose key signed its assertion.
    if (route.issuerId !== issuerId) return error(403, 'FORBIDDEN', 'issuerId does not match the access token');
    if (!ID_PATTERN[route.scope].test(route.targetId)) {
      return error(400, 'FIELD_INVALID_FORMAT', `${route.scope === 'CARD' ? 'cardId' : 'consumerId'} has an invalid format`);
    }
    return null;
  }

  private outage(at: number): Reply | null {
    const window = this.scenario.outages.find((o) => o.startMs <= at && at < o.endMs);
    if (!window) return null;
    const retryAfter = Math.max(1, Math.ceil((window.endMs - at) / 1000));
    return error(503, 'SERVICE_UNAVAILABLE', 'Service unavailable', { 'retry-after': String(retryAfter) });
  }

  /** Only admitted requests use up the quota, as with a gateway's usage plan. */
  private quota(at: number): Reply | null {
    const { quotaRps } = this.scenario;
    if (quotaRps === null) return null;
    const { quota } = this.truth;
    if (quota.count(at) < quotaRps) {
      quota.add(at);
      return null;
    }
    const retryAfter = Math.max(1, Math.ceil(quota.msUntilSlotFrees(at) / 1000));
    return error(429, 'TOO_MANY_REQUESTS', 'Rate limit exceeded', { 'retry-after': String(retryAfter) });
  }

  private authenticate(req: http.IncomingMessage): string | null {
    const token = /^Bearer\s+(\S+)\s*$/i.exec(header(req, 'authorization') ?? '')?.[1];
    return token === undefined ? null : this.truth.tokenIssuer(token);
  }

  private serverError(): Reply {
    const pick = Math.floor(this.rng.faults() * 3);
    if (pick === 0) return error(500, 'INTERNAL_SERVER_ERROR', 'Internal Server Error');
    if (pick === 1) return { status: 502, body: { error: 'Bad Gateway' } };
    return error(503, 'SERVICE_UNAVAILABLE', 'Service unavailable', { 'retry-after': '1' });
  }

  private draw(rate: number): boolean {
    return rate > 0 && this.rng.faults() < rate;
  }

  private latency(): number {
    const l = this.scenario.latencyMs;
    return typeof l === 'number' ? l : l[0] + this.rng.faults() * (l[1] - l[0]);
  }

  /** A timer that close() can cancel, so a stopped simulator keeps no event-loop work alive. */
  private after(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
  }

  private answer(res: http.ServerResponse, call: SimCall, reply: Reply): void {
    this.truth.recordAnswer({ ...call, status: reply.status });
    send(res, reply);
  }
}

function toReply(a: SimAnswer): Reply {
  return { status: a.status, body: a.body ?? {}, ...(a.text !== undefined ? { text: a.text } : {}), ...(a.headers ? { headers: a.headers } : {}) };
}

function send(res: http.ServerResponse, reply: Reply): void {
  if (res.headersSent || res.destroyed) return;
  const payload = reply.text ?? JSON.stringify(reply.body);
  res.writeHead(reply.status, {
    'content-type': reply.text === undefined ? 'application/json; charset=utf-8' : 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(payload),
    ...reply.headers,
  });
  res.end(payload);
}

function header(req: http.IncomingMessage, name: string): string | null {
  const value = req.headers[name];
  return typeof value === 'string' ? value : null;
}

/** The whole body as text, or null when it is larger than any D1 request could be. */
function readBody(req: http.IncomingMessage): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () => resolve(size > MAX_BODY_BYTES ? null : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** D1 documents form encoding and also lists JSON for the token request. */
function parseTokenBody(body: string, contentType: string): { grant_type?: string; assertion?: string } {
  const pick = (get: (k: string) => unknown) => {
    const grant = get('grant_type');
    const assertion = get('assertion');
    return {
      ...(typeof grant === 'string' ? { grant_type: grant } : {}),
      ...(typeof assertion === 'string' ? { assertion } : {}),
    };
  };
  if (contentType.toLowerCase().includes('application/json')) {
    try {
      const parsed: unknown = JSON.parse(body);
      return typeof parsed === 'object' && parsed !== null ? pick((k) => (parsed as Record<string, unknown>)[k]) : {};
    } catch {
      return {};
    }
  }
  const form = new URLSearchParams(body);
  return pick((k) => form.get(k) ?? undefined);
}

/** The opt-out body is optional; when present it must be a JSON object (unknown fields are fine). */
function checkJsonBody(body: string): Reply | null {
  if (body.trim() === '') return null;
  try {
    const parsed: unknown = JSON.parse(body);
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) return null;
  } catch {
    // fall through
  }
  return error(400, 'FIELD_INVALID_FORMAT', 'request body is not a JSON object');
}

async function tlsOptions(tls: SimTls): Promise<https.ServerOptions> {
  // Relative paths are relative to the working directory, where the job and `d1-optout sim` run.
  const read = (file: string) => readFile(resolvePath(file));
  const requireClientCert = tls.requireClientCert === true;
  return {
    cert: await read(tls.certFile),
    key: await read(tls.keyFile),
    ...(tls.caFile !== undefined ? { ca: await read(tls.caFile) } : {}),
    requestCert: requireClientCert,
    rejectUnauthorized: requireClientCert,
  };
}

export async function startSimulator(opts: StartSimOptions): Promise<SimServer> {
  const scenario = resolveScenario(opts.scenario);
  const sim = new Simulator(scenario, new AssertionVerifier(opts.issuers, scenario.assertionAudience), opts.onRequest);
  const listener: http.RequestListener = (req, res) => sim.dispatch(req, res);
  const server = scenario.tls
    ? https.createServer(await tlsOptions(scenario.tls), listener)
    : http.createServer(listener);

  // Tracked so close() can cut hung and keep-alive connections instead of waiting for them.
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });

  const port = (server.address() as AddressInfo).port;
  sim.listeningOn(port, scenario.tls ? 443 : 80);
  const url = `${scenario.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  let closing: Promise<void> | null = null;
  return {
    url,
    baseUrl: url + scenario.basePath,
    tokenUrl: url + TOKEN_PATH,
    port,
    state: () => sim.truth.snapshot(),
    secrets: () => sim.truth.secrets(),
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        sim.stop();
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      })),
  };
}
