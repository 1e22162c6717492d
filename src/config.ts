import { readFileSync } from 'node:fs';
import { UsageError } from './errors.js';
import { redactText } from './log.js';
import { LOG_LEVELS, type Config } from './types.js';

/** The defaults of docs/design.md §6; a config file only states what differs. */
export const DEFAULT_CONFIG: Config = {
  d1: {
    baseUrl: 'https://api.d1.thalescloud.io/banking/v1',
    tokenUrl: 'https://api.d1.thalescloud.io/authz/v1/oauth2/token',
    issuerId: '',
    keyId: '',
    privateKeyFile: '',
    tls: {},
    paths: {
      optOutCard: '/issuers/{issuerId}/cards/{cardId}/operations:clickToPayOptOut',
      optOutConsumer: '/issuers/{issuerId}/consumers/{consumerId}/operations:clickToPayOptOut',
      cardOperation: '/issuers/{issuerId}/cards/{cardId}/operations/{operationId}',
      consumerOperation: '/issuers/{issuerId}/consumers/{consumerId}/operations/{operationId}',
    },
    timeoutMs: 10_000,
    alreadyOptedOutErrorCodes: [],
    assertionAudience: '',
    notEnrolledErrorCodes: [],
  },
  rate: {
    requestsPerSecond: 20,
    concurrency: 8,
    maxAttempts: 5,
    maxAttemptsAcrossRuns: 10,
    backoffBaseMs: 500,
    backoffMaxMs: 30_000,
    allowAboveLimits: false,
  },
  pending: { pollIntervalMs: 2000, maxWaitMs: 60_000 },
  abort: { maxConsecutiveFailures: 50 },
  lock: { staleAfterSec: 120 },
  retention: { days: 0 },
  ledger: './var/ledger.sqlite',
  reportsDir: './var/reports',
  inbox: './var/inbox',
  archive: './var/archive',
  quarantine: './var/quarantine',
  input: {
    delimiter: 'auto',
    reasons: ['CLOSED', 'FRAUD', 'LOST_STOLEN', 'REGULATORY', 'CUSTOMER_REQUEST'],
    settleSec: 60,
    doneMarker: '',
  },
  log: { level: 'info', file: './var/log/d1-optout.log', progressEverySec: 30 },
  check: { minFreeMiB: 1024 },
};

/** Keys whose value may come from the environment, so secrets' paths need not sit in the file. */
const ENV_OVERRIDES: ReadonlyArray<[string, (c: Config, v: string) => void]> = [
  ['D1_PRIVATE_KEY_FILE', (c, v) => (c.d1.privateKeyFile = v)],
  ['D1_TLS_CERT_FILE', (c, v) => (c.d1.tls.certFile = v)],
  ['D1_TLS_KEY_FILE', (c, v) => (c.d1.tls.keyFile = v)],
  ['D1_TLS_CA_FILE', (c, v) => (c.d1.tls.caFile = v)],
  ['D1_ISSUER_ID', (c, v) => (c.d1.issuerId = v)],
  ['D1_KEY_ID', (c, v) => (c.d1.keyId = v)],
];

/** The file paths that the environment may set, by config key. */
const ENV_OF_KEY: Readonly<Record<string, string>> = {
  'd1.privateKeyFile': 'D1_PRIVATE_KEY_FILE',
  'd1.tls.certFile': 'D1_TLS_CERT_FILE',
  'd1.tls.keyFile': 'D1_TLS_KEY_FILE',
  'd1.tls.caFile': 'D1_TLS_CA_FILE',
};

/**
 * How an error names a config key whose value is `value`: with the environment variable that set
 * it when it came from there (the operator looks for it in the environment, not in the file).
 */
export function configKeyName(key: string, value: string, env: NodeJS.ProcessEnv = process.env): string {
  const envName = ENV_OF_KEY[key];
  return envName !== undefined && env[envName] === value ? `${envName} (config key ${key})` : `config key ${key}`;
}

/** Where the config comes from: `--config`, else `$D1_OPTOUT_CONFIG`, else `./d1-optout.config.json`. */
export function configPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return flag ?? env['D1_OPTOUT_CONFIG'] ?? './d1-optout.config.json';
}

export function loadConfig(path: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`config file ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}); pass --config or set D1_OPTOUT_CONFIG`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`config file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  return parseConfig(parsed, env);
}

/** Merges a parsed config object over the defaults and validates every key; throws UsageError naming the key. */
export function parseConfig(input: unknown, env: NodeJS.ProcessEnv = process.env): Config {
  const config = structuredClone(DEFAULT_CONFIG);
  merge(config as unknown as Record<string, unknown>, input, '');
  const fromEnv = new Set<string>();
  for (const [name, apply] of ENV_OVERRIDES) {
    const v = env[name];
    if (v !== undefined && v !== '') {
      apply(config, v);
      fromEnv.add(name);
    }
  }
  validate(config, fromEnv);
  return config;
}

/** A value quoted back in a message: one line, and short (a wrong value may be long, or private). */
function showValue(value: unknown): string {
  // Masked here, not only where the message is printed: parseConfig has other callers.
  const text = redactText(JSON.stringify(value) ?? String(value));
  return text.length > 60 ? `${text.slice(0, 59)}…` : text;
}

/** What an unknown `key` should have been: the known keys of its level, and the likely one if it is a typo. */
function expectedKeys(target: Record<string, unknown>, key: string): string {
  const known = Object.keys(target);
  const near = known.find((k) => editDistance(k.toLowerCase(), key.toLowerCase()) <= 2);
  return near ? `did you mean ${near}? (expected one of ${known.join(', ')})` : `expected one of ${known.join(', ')}`;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Copies `input` over `target` key by key, refusing keys the defaults do not have and values of another type. */
function merge(target: Record<string, unknown>, input: unknown, prefix: string): void {
  if (!isPlainObject(input)) throw new UsageError(`config${prefix ? ` key ${prefix}` : ''}: expected an object`);
  for (const [key, value] of Object.entries(input)) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (!Object.hasOwn(target, key)) throw new UsageError(`config key ${name} is unknown; ${expectedKeys(target, key)}`);
    const current = target[key];
    if (isPlainObject(current)) {
      // tls has only optional keys, so its defaults object is empty: allow its known keys explicitly.
      if (name === 'd1.tls') {
        mergeTls(current, value);
        continue;
      }
      merge(current, value, name);
    } else if (Array.isArray(current)) {
      if (!Array.isArray(value) || !value.every((x) => typeof x === 'string')) {
        throw new UsageError(`config key ${name}: expected a list of strings`);
      }
      target[key] = [...value];
    } else {
      if (typeof value !== typeof current) {
        throw new UsageError(`config key ${name}: expected a ${typeof current}, found ${showValue(value)}`);
      }
      target[key] = value;
    }
  }
}

const TLS_KEYS = { certFile: true, keyFile: true, caFile: true };

function mergeTls(target: Record<string, unknown>, value: unknown): void {
  if (!isPlainObject(value)) throw new UsageError('config key d1.tls: expected an object');
  for (const [key, v] of Object.entries(value)) {
    if (!Object.hasOwn(TLS_KEYS, key)) {
      throw new UsageError(`config key d1.tls.${key} is unknown; expected certFile, keyFile or caFile`);
    }
    if (typeof v !== 'string') throw new UsageError(`config key d1.tls.${key}: expected a file path, found ${showValue(v)}`);
    target[key] = v;
  }
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK.has(hostname) || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

function checkUrl(name: string, value: string): void {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`config key ${name}: must be an https:// URL, found ${showValue(value)}`);
  }
  if (url.protocol === 'https:') return;
  if (url.protocol === 'http:' && isLoopbackHost(url.hostname)) return;
  throw new UsageError(
    `config key ${name}: must be an https:// URL, found ${url.protocol}//${url.host} (plain http is accepted only for a loopback simulator on 127.0.0.1 or localhost)`,
  );
}

/**
 * Ceilings no D1 contract comes near: a typo (an extra zero or three) must not turn the nightly job
 * into a flood that D1 answers by suspending the issuer. `rate.allowAboveLimits` lifts them.
 */
export const RATE_LIMITS = { requestsPerSecond: 10_000, concurrency: 1_000 } as const;

function atMost(name: keyof typeof RATE_LIMITS, v: number, allowed: boolean): void {
  if (!allowed && v > RATE_LIMITS[name]) {
    throw new UsageError(
      `config key rate.${name}: ${v} is above ${RATE_LIMITS[name]}, more than D1 would accept from one issuer; ` +
        'lower it, or set rate.allowAboveLimits to true if D1 really agreed to that much',
    );
  }
}

function positive(name: string, v: number, integer = true): void {
  if (!(v > 0) || (integer && !Number.isInteger(v))) {
    throw new UsageError(`config key ${name}: expected a positive ${integer ? 'whole ' : ''}number, found ${v}`);
  }
}

/**
 * A key file setting that holds the key itself (PEM text pasted into the config or the
 * environment) is refused without echoing it: the message must not spread the key further.
 */
function checkKeyPath(name: string, path: string | undefined, envName: string): void {
  if (path !== undefined && path.includes('-----BEGIN')) {
    throw new UsageError(
      `config key ${name} (or ${envName}): expected the path of a key file, found the key itself (PEM text); ` +
        'put the key in a file with mode 600 and give its path',
    );
  }
}

function validate(c: Config, fromEnv: ReadonlySet<string>): void {
  const via = (envName: string): string => (fromEnv.has(envName) ? ` (set by ${envName})` : '');
  checkUrl('d1.baseUrl', c.d1.baseUrl);
  checkUrl('d1.tokenUrl', c.d1.tokenUrl);
  if (!c.d1.issuerId) {
    throw new UsageError('config key d1.issuerId is required: the 10-character issuer id given at D1 onboarding (or set D1_ISSUER_ID)');
  }
  if (c.d1.issuerId.length !== 10) {
    throw new UsageError(
      `config key d1.issuerId${via('D1_ISSUER_ID')}: expected the 10-character issuer id given at D1 onboarding, found ${c.d1.issuerId.length} characters`,
    );
  }
  if (!c.d1.keyId) throw new UsageError('config key d1.keyId is required: the kid under which D1 holds your public key (or set D1_KEY_ID)');
  if (!c.d1.privateKeyFile) throw new UsageError('config key d1.privateKeyFile is required: the path of the ES256 private key (or set D1_PRIVATE_KEY_FILE)');
  checkKeyPath('d1.privateKeyFile', c.d1.privateKeyFile, 'D1_PRIVATE_KEY_FILE');
  checkKeyPath('d1.tls.keyFile', c.d1.tls.keyFile, 'D1_TLS_KEY_FILE');
  const placeholders: Record<keyof Config['d1']['paths'], string[]> = {
    optOutCard: ['{cardId}'],
    optOutConsumer: ['{consumerId}'],
    cardOperation: ['{cardId}', '{operationId}'],
    consumerOperation: ['{consumerId}', '{operationId}'],
  };
  for (const [key, needed] of Object.entries(placeholders)) {
    const path = c.d1.paths[key as keyof Config['d1']['paths']];
    if (!path.startsWith('/')) throw new UsageError(`config key d1.paths.${key}: expected a path starting with /`);
    for (const p of needed) {
      if (!path.includes(p)) throw new UsageError(`config key d1.paths.${key}: the path must contain ${p}`);
    }
  }
  positive('d1.timeoutMs', c.d1.timeoutMs);
  const both = c.d1.notEnrolledErrorCodes.filter((code) => c.d1.alreadyOptedOutErrorCodes.includes(code));
  if (both.length > 0) {
    throw new UsageError(`config keys d1.alreadyOptedOutErrorCodes and d1.notEnrolledErrorCodes both list ${both.join(', ')}; an error code means one or the other`);
  }
  positive('rate.requestsPerSecond', c.rate.requestsPerSecond, false);
  positive('rate.concurrency', c.rate.concurrency);
  atMost('requestsPerSecond', c.rate.requestsPerSecond, c.rate.allowAboveLimits);
  atMost('concurrency', c.rate.concurrency, c.rate.allowAboveLimits);
  positive('rate.maxAttempts', c.rate.maxAttempts);
  positive('rate.maxAttemptsAcrossRuns', c.rate.maxAttemptsAcrossRuns);
  positive('rate.backoffBaseMs', c.rate.backoffBaseMs);
  positive('rate.backoffMaxMs', c.rate.backoffMaxMs);
  positive('pending.pollIntervalMs', c.pending.pollIntervalMs);
  if (!(c.pending.maxWaitMs >= 0)) throw new UsageError('config key pending.maxWaitMs: expected 0 or more milliseconds');
  positive('abort.maxConsecutiveFailures', c.abort.maxConsecutiveFailures);
  positive('lock.staleAfterSec', c.lock.staleAfterSec);
  positive('log.progressEverySec', c.log.progressEverySec);
  if (!(Number.isInteger(c.retention.days) && c.retention.days >= 0)) {
    throw new UsageError(`config key retention.days: expected 0 (keep everything) or a whole number of days, found ${c.retention.days}`);
  }
  if (!['auto', ',', ';', '|', '\t'].includes(c.input.delimiter)) {
    throw new UsageError('config key input.delimiter: expected "auto", ",", ";", "|" or "\\t"');
  }
  if (c.input.reasons.length === 0) throw new UsageError('config key input.reasons: expected at least one reason');
  if (!(c.input.settleSec >= 0) || !Number.isFinite(c.input.settleSec)) {
    throw new UsageError(`config key input.settleSec: expected 0 or more seconds, found ${c.input.settleSec}`);
  }
  // The marker is a suffix of a file name in the same folder: a path separator would point elsewhere.
  // A marker named like a card file would be taken as one.
  if (/[/\\\0]/.test(c.input.doneMarker) || /\.(csv|gz)$/i.test(c.input.doneMarker)) {
    throw new UsageError(`config key input.doneMarker: expected a file name suffix such as ".done", found ${showValue(c.input.doneMarker)}`);
  }
  if (!(LOG_LEVELS as readonly string[]).includes(c.log.level)) {
    throw new UsageError('config key log.level: expected error, warn, info or debug');
  }
  if (!(c.check.minFreeMiB >= 0)) throw new UsageError('config key check.minFreeMiB: expected 0 or more MiB (0 turns the free-space check off)');
  for (const key of ['ledger', 'reportsDir', 'inbox', 'archive', 'quarantine'] as const) {
    if (!c[key]) throw new UsageError(`config key ${key}: expected a path`);
  }
}
