import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import fetch, { type RequestInit } from 'node-fetch';
import { configKeyName } from '../config.js';
import { UsageError } from '../errors.js';
import { redactText } from '../log.js';
import { checkPrivateKeyFile } from './keys.js';
import type { TlsConfig } from '../types.js';

export interface WireResponse {
  status: number;
  headers: { get(name: string): string | null };
  body: string;
}

/** No HTTP answer: the socket failed or the client timed out. */
export interface WireFailure {
  status: 0;
  error: string;
}

function readTlsFile(key: string, path: string | undefined): Buffer | undefined {
  if (!path) return undefined;
  if (key === 'keyFile') checkPrivateKeyFile('d1.tls.keyFile', path, 'the PEM key of the mTLS client certificate');
  try {
    return readFileSync(path);
  } catch (err) {
    throw new UsageError(`${configKeyName(`d1.tls.${key}`, path)}: ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/**
 * One keep-alive agent per protocol, shared by every request of the run. The https agent carries
 * the mTLS client certificate; certificate verification is never switched off.
 */
export class Transport {
  private readonly httpAgent: http.Agent;
  private readonly httpsAgent: https.Agent;

  constructor(tls: TlsConfig, maxSockets: number) {
    this.httpAgent = new http.Agent({ keepAlive: true, maxSockets, scheduling: 'fifo' });
    this.httpsAgent = new https.Agent({
      keepAlive: true,
      maxSockets,
      scheduling: 'fifo',
      cert: readTlsFile('certFile', tls.certFile),
      key: readTlsFile('keyFile', tls.keyFile),
      ca: readTlsFile('caFile', tls.caFile),
      passphrase: process.env['D1_TLS_KEY_PASSPHRASE'],
      rejectUnauthorized: true,
    });
  }

  /** `left` is called once the request is handed to the socket (the rate limiter counts it from then). */
  async send(url: string, init: RequestInit, timeoutMs: number, left?: () => void): Promise<WireResponse | WireFailure> {
    const shared = url.startsWith('https:') ? this.httpsAgent : this.httpAgent;
    const agent = left ? tellWhenWritten(shared, left) : shared;
    try {
      // Never followed: a redirect would carry the bearer token or the signed assertion to
      // whatever host the Location names (node-fetch re-posts the body on 307/308).
      const res = await fetch(url, { ...init, agent, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
      const body = await res.text();
      return { status: res.status, headers: res.headers, body };
    } catch (err) {
      return { status: 0, error: describeNetworkError(err, timeoutMs) };
    }
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}

/**
 * The shared agent, seen through a view that hears when this one request has been written out:
 * node-fetch hides the request object, and the agent is where node's http hands it over. The
 * view inherits everything else (sockets, pool, protocol) from the shared agent.
 */
function tellWhenWritten(agent: http.Agent, left: () => void): http.Agent {
  const view = Object.create(agent) as http.Agent & { addRequest(req: http.ClientRequest, opts: unknown): void };
  view.addRequest = (req: http.ClientRequest, opts: unknown) => {
    req.once('finish', left);
    (agent as unknown as { addRequest(req: http.ClientRequest, opts: unknown): void }).addRequest(req, opts);
  };
  return view;
}

export function isRedirect(status: number): boolean {
  return status >= 300 && status < 400;
}

/**
 * "HTTP 307, a redirect to https://host:port/… that was not followed", for the report and the log.
 * Only the Location's origin is shown: its path or query may hold a token or a card id, and
 * whatever is shown is masked like any text from D1.
 */
export function describeRedirect(res: WireResponse): string {
  const location = res.headers.get('location');
  let where = 'no Location';
  if (location) {
    try {
      const u = new URL(location);
      where = `${u.protocol}//${u.host}${u.pathname !== '/' || u.search ? '/…' : ''}`;
    } catch {
      where = 'an unreadable Location';
    }
  }
  return redactText(`HTTP ${res.status}, a redirect to ${where} that was not followed`);
}

function describeNetworkError(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; code?: string; errno?: string; message?: string; type?: string };
  if (e.name === 'AbortError' || e.name === 'TimeoutError' || e.type === 'aborted') {
    return `no answer within ${timeoutMs} ms (client timeout)`;
  }
  const code = e.code ?? e.errno;
  if (code) return `network error ${code}`;
  return `network error: ${(e.message ?? 'unknown').slice(0, 120)}`;
}
