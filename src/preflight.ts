// The checks `d1-optout check` prints and `run --dry-run` runs before planning (docs/design.md §12):
// one module, so the preflight and the dry run can never disagree. Nothing here writes a file,
// creates a folder or sends anything; only liveCheck talks to D1, for one token.
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { accessSync, constants, readFileSync, statfsSync, statSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { loadConfig } from './config.js';
import { loadPrivateKey } from './d1/keys.js';
import { Transport } from './d1/http.js';
import { TokenProvider } from './d1/token.js';
import { JobError, UsageError } from './errors.js';
import { identityOf } from './ledger/index.js';
import { inspectLedger } from './ledger/identity.js';
import { folderProblem } from './private-file.js';
import type { CheckLine, Config } from './types.js';

export function formatCheck(c: CheckLine): string {
  return `${c.ok ? 'ok  ' : 'FAIL'}  ${c.what}: ${c.detail}`;
}

const ok = (what: string, detail: string): CheckLine => ({ ok: true, what, detail });
const fail = (what: string, detail: string): CheckLine => ({ ok: false, what, detail });

function code(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? 'error';
}

/** The config file: readable, valid JSON, every key known and valid. */
export function checkConfig(path: string): { line: CheckLine; config: Config | null } {
  try {
    const config = loadConfig(path);
    return { line: ok('config', `${path}: valid`), config };
  } catch (err) {
    if (!(err instanceof JobError)) throw err;
    return { line: fail('config', err.message), config: null };
  }
}

/** Every local check, in the order an operator fixes them. */
export function localChecks(config: Config): CheckLine[] {
  return [
    privateKeyCheck(config),
    ...tlsChecks(config),
    ledgerCheck(config),
    folderCheck('inbox', 'inbox', config.inbox),
    folderCheck('archive', 'archive', config.archive, true),
    folderCheck('quarantine', 'quarantine', config.quarantine, true),
    folderCheck('reports folder', 'reportsDir', config.reportsDir),
    folderCheck('log folder', 'log.file', dirname(config.log.file)),
    ...freeSpaceChecks(config),
  ];
}

/** The local checks as one exit-2 refusal (for `run --dry-run`), or nothing when all pass. */
export function refuseUnlessReady(config: Config): void {
  const failed = localChecks(config).filter((c) => !c.ok);
  // Each detail already names its file or key and the fix; several go on one line all the same.
  if (failed.length === 1) throw new UsageError(failed[0]!.detail);
  if (failed.length > 1) throw new UsageError(`${failed.length} preflight checks failed: ${failed.map((c) => `${c.what}: ${c.detail}`).join(' | ')}`);
}

/** A file the job reads: present, a regular file, and when it is secret, private to its owner. */
function statFile(what: string, key: string, path: string, secret: boolean): Stats | CheckLine {
  let stat: Stats;
  try {
    stat = statSync(path);
  } catch (err) {
    if (code(err) === 'ENOENT') return fail(what, `${path} does not exist; put the file there, or correct config key ${key}`);
    return fail(what, `${path} cannot be read (${code(err)}); check the owner and mode of the file and its folders`);
  }
  if (!stat.isFile()) return fail(what, `${path} is not a file; correct config key ${key}`);
  if (secret && (stat.mode & 0o077) !== 0) {
    return fail(what, `${path} is readable by group or others (mode ${(stat.mode & 0o777).toString(8)}); run chmod 600 ${path}`);
  }
  return stat;
}

function privateKeyCheck(config: Config): CheckLine {
  const what = 'private key';
  const path = config.d1.privateKeyFile;
  const stat = statFile(what, 'd1.privateKeyFile', path, true);
  if ('what' in stat) return stat;
  try {
    loadPrivateKey(path);
  } catch (err) {
    if (!(err instanceof JobError)) throw err;
    return fail(what, `${err.message}; give the EC P-256 key registered with Thales, in PEM`);
  }
  return ok(what, `${path}: EC P-256 PEM, mode 600`);
}

function readCert(what: string, key: string, path: string): X509Certificate | CheckLine {
  const stat = statFile(what, key, path, false);
  if ('what' in stat) return stat;
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(readFileSync(path));
  } catch {
    return fail(what, `${path} is not a PEM certificate; give the certificate file, or correct config key ${key}`);
  }
  if (Date.parse(cert.validTo) < Date.now()) return fail(what, `${path} expired on ${cert.validTo}; install the renewed certificate`);
  return cert;
}

/** The mTLS files (docs/d1-api.md: D1 requires mutual TLS): present, parseable, the key private, the pair matching. */
function tlsChecks(config: Config): CheckLine[] {
  const { certFile, keyFile, caFile } = config.d1.tls;
  const lines: CheckLine[] = [];
  const https = config.d1.baseUrl.startsWith('https:') || config.d1.tokenUrl.startsWith('https:');
  if (!certFile && !keyFile) {
    lines.push(
      https
        ? fail('TLS client certificate', 'D1 requires mutual TLS: set d1.tls.certFile and d1.tls.keyFile (or D1_TLS_CERT_FILE and D1_TLS_KEY_FILE)')
        : ok('TLS client certificate', 'none configured; not needed for a loopback simulator over plain http'),
    );
  } else if (!certFile || !keyFile) {
    lines.push(fail('TLS client certificate', `d1.tls.${certFile ? 'keyFile' : 'certFile'} is not set; mutual TLS needs both the certificate and its key`));
  } else {
    const cert = readCert('TLS certificate', 'd1.tls.certFile', certFile);
    lines.push(cert instanceof X509Certificate ? ok('TLS certificate', `${certFile}: valid until ${cert.validTo}`) : cert);
    const key = tlsKey(keyFile);
    if ('what' in key) lines.push(key);
    else if (cert instanceof X509Certificate && !cert.checkPrivateKey(key)) {
      lines.push(fail('TLS key', `${keyFile} is not the key of the certificate ${certFile}; give the pair issued together`));
    } else lines.push(ok('TLS key', `${keyFile}: PEM private key, mode 600${cert instanceof X509Certificate ? ', matches the certificate' : ''}`));
  }
  if (caFile) {
    const ca = readCert('TLS CA', 'd1.tls.caFile', caFile);
    lines.push(ca instanceof X509Certificate ? ok('TLS CA', `${caFile}: valid until ${ca.validTo}`) : ca);
  }
  return lines;
}

function tlsKey(path: string): KeyObject | CheckLine {
  const stat = statFile('TLS key', 'd1.tls.keyFile', path, true);
  if ('what' in stat) return stat;
  try {
    return createPrivateKey({ key: readFileSync(path), passphrase: process.env['D1_TLS_KEY_PASSPHRASE'] });
  } catch {
    return fail('TLS key', `${path} is not a readable PEM private key (wrong D1_TLS_KEY_PASSPHRASE?); give the key of the client certificate`);
  }
}

function ledgerCheck(config: Config): CheckLine {
  let detail: string;
  try {
    detail = inspectLedger(config.ledger, identityOf(config));
  } catch (err) {
    if (!(err instanceof JobError)) throw err;
    return fail('ledger', err.message);
  }
  // A run writes its -wal and -shm beside the ledger.
  const dir = dirname(config.ledger);
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch (err) {
    return fail('ledger', `its folder ${dir} is not writable by this user (${code(err)}); a run writes its journal there: fix the folder's owner or mode`);
  }
  return ok('ledger', detail);
}

/**
 * A folder the job writes into: there already (the job's install makes it), a folder, writable;
 * tested without creating anything. A folder card files are moved into (`cardFiles`) must also be
 * a real folder of this user's that nobody else may write into (docs/design.md §14).
 */
function folderCheck(what: string, key: string, path: string, cardFiles = false): CheckLine {
  let stat: Stats;
  try {
    stat = statSync(path);
  } catch (err) {
    if (code(err) === 'ENOENT') return fail(what, `${path} does not exist; create it (mkdir -p -m 700 ${path}) or correct config key ${key}`);
    return fail(what, `${path} cannot be used as a folder (${code(err)}); correct config key ${key}`);
  }
  if (!stat.isDirectory()) return fail(what, `${path} is not a folder; correct config key ${key}`);
  try {
    accessSync(path, constants.W_OK | constants.X_OK);
  } catch (err) {
    return fail(what, `${path} is not writable by this user (${code(err)}); fix its owner or mode`);
  }
  const problem = cardFiles ? folderProblem(path) : null;
  if (problem) return fail(what, `${problem} (config key ${key})`);
  return ok(what, `${path}: exists, writable${cardFiles ? ', private to this user' : ''}`);
}

const MIB = 1024 * 1024;

function gib(bytes: number): string {
  return `${(bytes / (1024 * MIB)).toFixed(1)} GiB`;
}

/** Free space on every filesystem the job writes to (ledger, inbox, archive, quarantine, reports, log), one line each. */
function freeSpaceChecks(config: Config): CheckLine[] {
  const min = config.check.minFreeMiB;
  if (min === 0) return [ok('free space', 'not checked (check.minFreeMiB is 0)')];
  const folders: [string, string][] = [
    ['ledger', dirname(config.ledger)],
    ['inbox', config.inbox],
    ['archive', config.archive],
    ['quarantine', config.quarantine],
    ['reports', config.reportsDir],
    ['log', dirname(config.log.file)],
  ];
  const byDevice = new Map<number, { roles: string[]; dir: string }>();
  for (const [role, dir] of folders) {
    let dev: number;
    try {
      dev = statSync(dir).dev;
    } catch {
      continue; // a missing folder has its own FAIL above
    }
    const seen = byDevice.get(dev);
    if (seen) seen.roles.push(role);
    else byDevice.set(dev, { roles: [role], dir });
  }
  return [...byDevice.values()].map(({ roles, dir }) => {
    const what = `free space (${roles.join(', ')})`;
    let free: number;
    try {
      const fs = statfsSync(dir);
      free = fs.bavail * fs.bsize;
    } catch (err) {
      return fail(what, `cannot be measured on the filesystem of ${dir} (${code(err)})`);
    }
    if (free < min * MIB) {
      return fail(what, `${gib(free)} free on the filesystem of ${dir}, less than check.minFreeMiB (${min} MiB); free some space, or move the job's folders to a larger filesystem`);
    }
    return ok(what, `${gib(free)} free on the filesystem of ${dir} (at least ${min} MiB needed)`);
  });
}

/**
 * `check --live`: one token from D1 through the job's own token code (mTLS agent, ES256 client
 * assertion). Nothing else is sent, and the token is neither printed nor kept.
 */
export async function liveCheck(config: Config): Promise<CheckLine> {
  const what = 'D1 token';
  let key: KeyObject;
  try {
    key = loadPrivateKey(config.d1.privateKeyFile);
  } catch (err) {
    if (!(err instanceof JobError)) throw err;
    return fail(what, 'not tried: fix the private key first');
  }
  let transport: Transport;
  try {
    transport = new Transport(config.d1.tls, 1);
  } catch (err) {
    if (!(err instanceof JobError)) throw err;
    return fail(what, `not tried: ${err.message}`);
  }
  const started = Date.now();
  try {
    const { tokenUrl } = config.d1;
    await new TokenProvider(key, config.d1, transport).get();
    const accepted = tokenUrl.startsWith('https:') ? 'mTLS and client assertion accepted' : 'client assertion accepted';
    return ok(what, `${tokenUrl} issued a token in ${Date.now() - started} ms (${accepted})`);
  } catch (err) {
    return fail(what, `${(err as Error).message}`);
  } finally {
    transport.close();
  }
}
