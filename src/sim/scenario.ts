// A scenario says how the simulated D1 misbehaves. Every key has a default, and a key the
// simulator does not know is an error: a typo such as "quotaRPS" would otherwise run a test
// against a quota-free D1 and make it pass for the wrong reason.

import { readFile } from 'node:fs/promises';
import type { D1Paths } from '../types.js';

export interface SimTls {
  certFile: string;
  keyFile: string;
  caFile?: string;
  requireClientCert?: boolean;
}

export interface SimOutage {
  /** Milliseconds since the simulator started. */
  startMs: number;
  endMs: number;
}

/** A scripted opt-out answer for one target id: the answers D1 may give that no other knob plays. */
export interface SimAnswer {
  status: number;
  /** JSON body (default {}); ignored when `text` is given. */
  body?: unknown;
  /** A body that is not JSON (an HTML error page from a proxy, say). */
  text?: string;
  headers?: Record<string, string>;
  /** Only the first N opt-out requests for the id get this answer; then the id behaves normally. */
  times?: number;
}

export interface Scenario {
  /** For humans reading the fixture; JSON has no comments. */
  description: string;
  quotaRps: number | null;
  fail5xxRate: number;
  hangRate: number;
  hangMs: number;
  resetRate: number;
  latencyMs: number | [number, number];
  /** How long the token endpoint takes to answer: a real one signs and checks, and is not instant. */
  tokenLatencyMs: number;
  tokenTtlSec: number;
  pendingRate: number;
  pendingDelayMs: number;
  pendingFailRate: number;
  unknownIds: string[];
  /** Ids D1 knows but that are not enrolled in Click to Pay: their opt-out is answered `notEnrolledStatus` + `notEnrolledErrorCode`. */
  notEnrolledIds: string[];
  /** A 4xx (404 by default: "card not found" is one way D1 may say it). */
  notEnrolledStatus: number;
  notEnrolledErrorCode: string;
  /** "success", or the errorCode of the 409 a repeated opt-out gets. */
  repeat: string;
  consumers: Record<string, string[]>;
  outages: SimOutage[];
  seed: number;
  successStatus: 200 | 202;
  basePath: string;
  paths: D1Paths;
  tls: SimTls | null;
  /** Scripted opt-out answers by target id; a scripted answer changes no state. */
  answers: Record<string, SimAnswer>;
  /** The status value a pending operation shows: set it to a value the client does not know. */
  pendingStatus: string;
  /** A scripted answer of the token endpoint (a redirect, say), given before the assertion is read. */
  tokenAnswer: SimAnswer | null;
  /** The `aud` every client assertion must carry; null (the default) does not look at `aud`. */
  assertionAudience: string | null;
  /** Keep every request's URL (query included) and body in `calls`, for tests of what D1 is sent. */
  recordRequests: boolean;
}

export const DEFAULT_PATHS: D1Paths = {
  optOutCard: '/issuers/{issuerId}/cards/{cardId}/operations:clickToPayOptOut',
  optOutConsumer: '/issuers/{issuerId}/consumers/{consumerId}/operations:clickToPayOptOut',
  cardOperation: '/issuers/{issuerId}/cards/{cardId}/operations/{operationId}',
  consumerOperation: '/issuers/{issuerId}/consumers/{consumerId}/operations/{operationId}',
};

export function defaultScenario(): Scenario {
  return {
    description: '',
    quotaRps: null,
    fail5xxRate: 0,
    hangRate: 0,
    hangMs: 30_000,
    resetRate: 0,
    latencyMs: 0,
    tokenLatencyMs: 0,
    tokenTtlSec: 900,
    pendingRate: 0,
    pendingDelayMs: 1000,
    pendingFailRate: 0,
    unknownIds: [],
    notEnrolledIds: [],
    notEnrolledStatus: 404,
    notEnrolledErrorCode: 'CARD_NOT_ENROLLED',
    repeat: 'success',
    consumers: {},
    outages: [],
    seed: 1,
    successStatus: 200,
    basePath: '/banking/v1',
    paths: { ...DEFAULT_PATHS },
    tls: null,
    answers: {},
    pendingStatus: 'PENDING',
    tokenAnswer: null,
    assertionAudience: null,
    recordRequests: false,
  };
}

/** The placeholders each path template must carry, so a route can always find its target. */
const PATH_PLACEHOLDERS: Record<keyof D1Paths, string[]> = {
  optOutCard: ['issuerId', 'cardId'],
  optOutConsumer: ['issuerId', 'consumerId'],
  cardOperation: ['issuerId', 'cardId', 'operationId'],
  consumerOperation: ['issuerId', 'consumerId', 'operationId'],
};

type Check = (value: unknown, key: string) => void;

function fail(key: string, expected: string): never {
  throw new Error(`scenario key "${key}" must be ${expected}`);
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

const rate: Check = (v, k) => {
  if (!isNum(v) || v < 0 || v > 1) fail(k, 'a number from 0 to 1');
};
const nonNegative: Check = (v, k) => {
  if (!isNum(v) || v < 0) fail(k, 'a number >= 0');
};
const string: Check = (v, k) => {
  if (typeof v !== 'string') fail(k, 'a string');
};
const stringList: Check = (v, k) => {
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) fail(k, 'an array of strings');
};

function onlyKnownKeys(obj: Record<string, unknown>, known: readonly string[], prefix: string): void {
  for (const key of Object.keys(obj)) {
    if (!known.includes(key)) throw new Error(`scenario key "${prefix}${key}" is unknown`);
  }
}

const CHECKS: Record<keyof Scenario, Check> = {
  description: string,
  answers: (v, k) => {
    if (!isObject(v)) fail(k, 'an object of targetId -> answer');
    for (const [id, answer] of Object.entries(v)) checkAnswer(answer, `${k}.${id}`);
  },
  assertionAudience: (v, k) => {
    if (v !== null && (typeof v !== 'string' || v === '')) fail(k, 'a non-empty string, or null to accept any aud');
  },
  tokenAnswer: (v, k) => {
    if (v !== null) checkAnswer(v, k);
  },
  pendingStatus: (v, k) => {
    if (typeof v !== 'string' || v === '' || v === 'SUCCESSFUL' || v === 'FAILED') fail(k, 'a non-final status string');
  },
  recordRequests: (v, k) => {
    if (typeof v !== 'boolean') fail(k, 'true or false');
  },
  quotaRps: (v, k) => {
    if (v !== null && (!isNum(v) || v <= 0)) fail(k, 'a number > 0, or null for no quota');
  },
  fail5xxRate: rate,
  hangRate: rate,
  hangMs: nonNegative,
  resetRate: rate,
  latencyMs: (v, k) => {
    if (isNum(v) && v >= 0) return;
    if (Array.isArray(v) && v.length === 2 && isNum(v[0]) && isNum(v[1]) && v[0] >= 0 && v[0] <= v[1]) return;
    fail(k, 'a number >= 0 or [min, max]');
  },
  tokenLatencyMs: nonNegative,
  tokenTtlSec: (v, k) => {
    if (!Number.isInteger(v) || (v as number) < 1) fail(k, 'an integer >= 1');
  },
  pendingRate: rate,
  pendingDelayMs: nonNegative,
  pendingFailRate: rate,
  unknownIds: stringList,
  notEnrolledIds: stringList,
  notEnrolledStatus: (v, k) => {
    if (!Number.isInteger(v) || (v as number) < 400 || (v as number) > 499) fail(k, 'a 4xx HTTP status');
  },
  notEnrolledErrorCode: (v, k) => {
    if (typeof v !== 'string' || v === '') fail(k, 'an errorCode string');
  },
  repeat: (v, k) => {
    if (typeof v !== 'string' || v === '') fail(k, '"success" or an errorCode string');
  },
  consumers: (v, k) => {
    if (!isObject(v)) fail(k, 'an object of consumerId -> [cardId, ...]');
    for (const [id, cards] of Object.entries(v)) stringList(cards, `${k}.${id}`);
  },
  outages: (v, k) => {
    if (!Array.isArray(v)) fail(k, 'an array of { "startMs": n, "endMs": n }');
    v.forEach((o: unknown, i) => {
      const at = `${k}[${i}]`;
      if (!isObject(o)) fail(at, 'an object { "startMs": n, "endMs": n }');
      onlyKnownKeys(o, ['startMs', 'endMs'], `${at}.`);
      nonNegative(o.startMs, `${at}.startMs`);
      if (!isNum(o.endMs) || o.endMs <= (o.startMs as number)) fail(`${at}.endMs`, 'a number > startMs');
    });
  },
  seed: (v, k) => {
    if (!Number.isInteger(v)) fail(k, 'an integer');
  },
  successStatus: (v, k) => {
    if (v !== 200 && v !== 202) fail(k, '200 or 202');
  },
  basePath: (v, k) => {
    if (typeof v !== 'string' || !/^(\/[^/?#{}]+)*$/.test(v)) fail(k, 'a path like "/banking/v1" (or "")');
  },
  paths: (v, k) => {
    if (!isObject(v)) fail(k, 'an object with optOutCard, optOutConsumer, cardOperation, consumerOperation');
    onlyKnownKeys(v, Object.keys(PATH_PLACEHOLDERS), `${k}.`);
    for (const [name, template] of Object.entries(v)) {
      const at = `${k}.${name}`;
      if (typeof template !== 'string' || !template.startsWith('/')) fail(at, 'a path starting with "/"');
      const used = [...template.matchAll(/\{([^}]*)\}/g)].map((m) => m[1]);
      const needed = PATH_PLACEHOLDERS[name as keyof D1Paths];
      const ok = used.length === needed.length && needed.every((p) => used.includes(p));
      if (!ok) fail(at, `a path with exactly the placeholders ${needed.map((p) => `{${p}}`).join(', ')}`);
    }
  },
  tls: (v, k) => {
    if (v === null) return;
    if (!isObject(v)) fail(k, 'null or { "certFile", "keyFile", "caFile"?, "requireClientCert"? }');
    onlyKnownKeys(v, ['certFile', 'keyFile', 'caFile', 'requireClientCert'], `${k}.`);
    string(v.certFile, `${k}.certFile`);
    string(v.keyFile, `${k}.keyFile`);
    if (v.caFile !== undefined) string(v.caFile, `${k}.caFile`);
    if (v.requireClientCert !== undefined && typeof v.requireClientCert !== 'boolean') {
      fail(`${k}.requireClientCert`, 'true or false');
    }
    if (v.requireClientCert === true && v.caFile === undefined) {
      fail(`${k}.caFile`, 'set when requireClientCert is true (the CA that signs client certificates)');
    }
  },
};

function checkAnswer(v: unknown, k: string): void {
  if (!isObject(v)) fail(k, 'an object { "status", "body"?, "text"?, "headers"?, "times"? }');
  onlyKnownKeys(v, ['status', 'body', 'text', 'headers', 'times'], `${k}.`);
  if (!Number.isInteger(v.status) || (v.status as number) < 100 || (v.status as number) > 599) fail(`${k}.status`, 'an HTTP status');
  if (v.text !== undefined) string(v.text, `${k}.text`);
  if (v.times !== undefined && (!Number.isInteger(v.times) || (v.times as number) < 1)) fail(`${k}.times`, 'an integer >= 1');
  if (v.headers !== undefined) {
    if (!isObject(v.headers)) fail(`${k}.headers`, 'an object of header -> string');
    for (const [h, value] of Object.entries(v.headers)) string(value, `${k}.headers.${h}`);
  }
}

/** Checks a partial scenario as it came from JSON or a test; throws an Error naming the bad key. */
export function validateScenario(input: unknown): Partial<Scenario> {
  if (!isObject(input)) throw new Error('scenario must be a JSON object');
  onlyKnownKeys(input, Object.keys(CHECKS), '');
  for (const [key, value] of Object.entries(input)) {
    if (value !== undefined) CHECKS[key as keyof Scenario](value, key);
  }
  return input as Partial<Scenario>;
}

/** A complete scenario: the defaults, overridden by the validated partial. */
export function resolveScenario(partial: Partial<Scenario> = {}): Scenario {
  const valid = validateScenario(partial);
  const defined = Object.fromEntries(Object.entries(valid).filter(([, v]) => v !== undefined));
  const base = defaultScenario();
  return { ...base, ...defined, paths: { ...base.paths, ...(valid.paths ?? {}) } };
}

export async function loadScenarioFile(path: string): Promise<Partial<Scenario>> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new Error(`${path}: cannot read scenario: ${(err as Error).message}`, { cause: err });
  }
  try {
    return validateScenario(parsed);
  } catch (err) {
    throw new Error(`${path}: ${(err as Error).message}`, { cause: err });
  }
}
