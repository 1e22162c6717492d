import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config.js';
import { EXIT } from '../src/errors.js';
import { csv, makeWorld, runCli, type World } from './helpers.js';

// Config validation through the built CLI: a bad config stops `run` with exit 2 and one line that
// names the key and says what is expected, before any D1 call and before the ledger exists.

type Json = Record<string, unknown>;

let world: World;
let base: Json;
let cardFile: string;

beforeAll(async () => {
  world = await makeWorld();
  base = JSON.parse(readFileSync(world.configFile, 'utf8')) as Json;
  cardFile = world.file('cards.csv', csv('card_id,reason', ['CARD-CFG-1,CLOSED']));
});

afterAll(async () => {
  await world.close();
});

/** `base` with `edit` applied to a deep copy. */
function variant(edit: (c: Json & { d1: Json; rate: Json }) => void): Json {
  const c = structuredClone(base) as Json & { d1: Json; rate: Json };
  edit(c);
  return c;
}

let n = 0;
async function runWith(config: Json | string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stderr: string; stdout: string }> {
  const file = join(world.dir, `config-${++n}.json`);
  writeFileSync(file, typeof config === 'string' ? config : JSON.stringify(config, null, 2));
  return runCli(['run', '--config', file, cardFile], env);
}

/** Exit 2, one line on stderr, nothing on stdout, nothing done. */
function expectRefused(run: { code: number | null; stderr: string; stdout: string }): string {
  expect(run.code).toBe(EXIT.USAGE);
  expect(run.stdout).toBe('');
  const lines = run.stderr.trimEnd().split('\n');
  expect(lines, run.stderr).toHaveLength(1);
  expect(lines[0]!.startsWith('d1-optout: ')).toBe(true);
  expect(world.sim.state().requests + world.sim.state().tokenRequests).toBe(0);
  expect(world.ledgerUntouched()).toBe(true);
  return lines[0]!;
}

describe('config validation (exit 2, one line naming the key and what is expected)', () => {
  it.each<[string, () => Json | string, RegExp]>([
    [
      'an unknown key, with the likely one suggested',
      () => variant((c) => (c.rate['requestPerSecond'] = 10)),
      /config key rate\.requestPerSecond is unknown; did you mean requestsPerSecond\? \(expected one of requestsPerSecond, concurrency, /,
    ],
    [
      'an unknown top-level key',
      () => variant((c) => (c['colour'] = 'blue')),
      /config key colour is unknown; expected one of d1, rate, pending, abort, lock, retention, ledger, reportsDir, inbox, archive, quarantine, input, log, check$/,
    ],
    [
      'an unknown TLS key',
      () => variant((c) => (c.d1['tls'] = { cert: 'x.pem' })),
      /config key d1\.tls\.cert is unknown; expected certFile, keyFile or caFile$/,
    ],
    ['a number given as text', () => variant((c) => (c.rate['concurrency'] = '8')), /config key rate\.concurrency: expected a number, found "8"$/],
    ['a section given as a value', () => variant((c) => ((c as Json)['rate'] = 5)), /config key rate: expected an object$/],
    ['a list given as text', () => variant((c) => (c['input'] = { reasons: 'CLOSED' })), /config key input\.reasons: expected a list of strings$/],
    ['a negative settle time', () => variant((c) => (c['input'] = { settleSec: -1 })), /config key input\.settleSec: expected 0 or more seconds, found -1$/],
    [
      'a done-marker that is a path',
      () => variant((c) => (c['input'] = { doneMarker: '/done' })),
      /config key input\.doneMarker: expected a file name suffix such as "\.done", found "\/done"$/,
    ],
    ['a done-marker that names a card file', () => variant((c) => (c['input'] = { doneMarker: '.ok.csv' })), /config key input\.doneMarker: expected a file name suffix/],
    ['retention.days of a part day', () => variant((c) => ((c as Json)['retention'] = { days: 1.5 })), /config key retention\.days: expected 0 \(keep everything\) or a whole number of days, found 1\.5$/],
    ['a negative retention.days', () => variant((c) => ((c as Json)['retention'] = { days: -30 })), /config key retention\.days: expected 0 \(keep everything\) or a whole number of days, found -30$/],
    [
      'a long wrong value, cut short',
      () => variant((c) => (c.d1['timeoutMs'] = 'x'.repeat(500))),
      /config key d1\.timeoutMs: expected a number, found "x{58}…$/,
    ],
    ['a missing issuerId', () => variant((c) => delete c.d1['issuerId']), /config key d1\.issuerId is required: the 10-character issuer id given at D1 onboarding \(or set D1_ISSUER_ID\)$/],
    ['a missing keyId', () => variant((c) => delete c.d1['keyId']), /config key d1\.keyId is required: the kid under which D1 holds your public key/],
    ['a missing privateKeyFile', () => variant((c) => delete c.d1['privateKeyFile']), /config key d1\.privateKeyFile is required: the path of the ES256 private key \(or set D1_PRIVATE_KEY_FILE\)$/],
    [
      'plain http to a host that is not loopback',
      () => variant((c) => (c.d1['baseUrl'] = 'http://api.d1.example.com/banking/v1')),
      /config key d1\.baseUrl: must be an https:\/\/ URL, found http:\/\/api\.d1\.example\.com \(plain http is accepted only for a loopback simulator/,
    ],
    [
      'plain http for the token URL, credentials in it not echoed',
      () => variant((c) => (c.d1['tokenUrl'] = 'http://user:hunter2@10.0.0.8/token')),
      /config key d1\.tokenUrl: must be an https:\/\/ URL, found http:\/\/10\.0\.0\.8 \(/,
    ],
    ['a URL that is no URL', () => variant((c) => (c.d1['baseUrl'] = 'api.d1.example.com')), /config key d1\.baseUrl: must be an https:\/\/ URL, found "api\.d1\.example\.com"$/],
    [
      'an issuerId of 9 characters',
      () => variant((c) => (c.d1['issuerId'] = 'ISSUER001')),
      /config key d1\.issuerId: expected the 10-character issuer id given at D1 onboarding, found 9 characters$/,
    ],
    [
      'an issuerId of 11 characters',
      () => variant((c) => (c.d1['issuerId'] = 'ISSUER00001')),
      /config key d1\.issuerId: expected the 10-character issuer id given at D1 onboarding, found 11 characters$/,
    ],
    ['a config that is not JSON', () => '{ "d1": { "issuerId": "TESTISSUER", } ', /config file \S+ is not valid JSON/],
  ])('refuses %s', async (_what, config, message) => {
    const line = expectRefused(await runWith(config()));
    expect(line).toMatch(message);
    expect(line).not.toContain('hunter2');
  });

  it('names the environment variable when the bad value came from it', async () => {
    const line = expectRefused(await runWith(base, { D1_ISSUER_ID: 'SHORT' }));
    expect(line).toMatch(/config key d1\.issuerId \(set by D1_ISSUER_ID\): expected the 10-character issuer id given at D1 onboarding, found 5 characters$/);
  });

  it('refuses a key given where its path belongs, without repeating it', async () => {
    const pem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const body = pem.split('\n')[1]!;
    for (const run of [
      await runWith(variant((c) => (c.d1['privateKeyFile'] = pem))),
      await runWith(base, { D1_PRIVATE_KEY_FILE: pem }),
    ]) {
      const line = expectRefused(run);
      expect(line).toMatch(/config key d1\.privateKeyFile \(or D1_PRIVATE_KEY_FILE\): expected the path of a key file, found the key itself \(PEM text\)/);
      expect(run.stderr).not.toContain(body);
    }
  });

  it('refuses a config file that cannot be read, naming where config comes from', async () => {
    const run = await runCli(['run', '--config', join(world.dir, 'nope.json'), cardFile]);
    expect(expectRefused(run)).toMatch(/config file \S+nope\.json cannot be read \(ENOENT\); pass --config or set D1_OPTOUT_CONFIG$/);
  });

  it('refuses an mTLS client key readable by group or others, like the signing key', async () => {
    const tlsKey = join(world.dir, 'tls-client.key');
    writeFileSync(tlsKey, readFileSync(world.keyFile), { mode: 0o600 });
    chmodSync(tlsKey, 0o640);
    const line = expectRefused(await runWith(variant((c) => (c.d1['tls'] = { keyFile: tlsKey }))));
    expect(line).toMatch(/config key d1\.tls\.keyFile: \S+tls-client\.key is readable by group or others \(mode 640\); run chmod 600 on it$/);
  });

  it.each([
    ['requestsPerSecond', 10_001, /config key rate\.requestsPerSecond: 10001 is above 10000, .*set rate\.allowAboveLimits to true/],
    ['concurrency', 1001, /config key rate\.concurrency: 1001 is above 1000, .*set rate\.allowAboveLimits to true/],
  ])('refuses rate.%s above its ceiling unless rate.allowAboveLimits says so', async (key, value, message) => {
    expect(expectRefused(await runWith(variant((c) => (c.rate[key] = value))))).toMatch(message);
    const atCeiling = variant((c) => (c.rate[key] = value - 1));
    expect(parseConfig(atCeiling, {}).rate[key as 'concurrency']).toBe(value - 1);
    const lifted = variant((c) => Object.assign(c.rate, { [key]: value * 3, allowAboveLimits: true }));
    expect(parseConfig(lifted, {}).rate[key as 'concurrency']).toBe(value * 3);
  });

  it('refuses a private key readable by its group only, as ssh does (others: test/cli.test.ts)', async () => {
    chmodSync(world.keyFile, 0o640);
    try {
      const line = expectRefused(await runWith(base));
      expect(line).toMatch(/config key d1\.privateKeyFile: \S+ is readable by group or others \(mode 640\); run chmod 600 on it$/);
    } finally {
      chmodSync(world.keyFile, 0o600);
    }
  });

  it('refuses a key path that is a folder, and a key D1 cannot use', async () => {
    const folder = expectRefused(await runWith(variant((c) => (c.d1['privateKeyFile'] = world.dir))));
    expect(folder).toMatch(/config key d1\.privateKeyFile: \S+ is not a file; expected the path of an EC P-256 PEM key$/);
    const rsa = join(world.dir, 'rsa.pem');
    writeFileSync(rsa, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    const wrongType = expectRefused(await runWith(variant((c) => (c.d1['privateKeyFile'] = rsa))));
    expect(wrongType).toMatch(/config key d1\.privateKeyFile: \S+ must be an EC P-256 key \(D1 accepts only ES256\)$/);
  });

  it('accepts plain http for the loopback simulator (every other test relies on it)', () => {
    expect(world.config.d1.baseUrl.startsWith('http://127.0.0.1:')).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------

/** The flags and positionals of a command's --help, each with the text that describes it. */
function documented(help: string): Map<string, string> {
  const out = new Map<string, string>();
  let section = '';
  for (const line of help.split('\n')) {
    if (/^\S.*:$/.test(line)) section = line;
    if (section !== 'Options:' && section !== 'Positionals:') continue;
    // yargs indents an entry by two spaces; the wrapped rest of its description is indented further.
    const m = /^ {2}(?:-\w, )?(--[\w-]+|[\w-]+)(?: {2,}(.*))?$/.exec(line);
    if (!m) continue;
    const text = (m[2] ?? '').replace(/\[[^\]]*\]/g, '').trim();
    out.set(m[1]!, text);
  }
  return out;
}

describe('--help', () => {
  // The flags of docs/design.md §5, which scripts depend on; a command may have more.
  const CONTRACT: Record<string, string[]> = {
    run: ['files', '--inbox', '--archive', '--config', '--dry-run', '--force', '--carry-over', '--json'],
    rerun: ['--batch', '--last', '--include-permanent', '--dry-run', '--json', '--config'],
    poll: ['--batch', '--wait', '--config'],
    status: ['--batch', '--limit', '--json', '--config'],
    show: ['id', '--json', '--config'],
    report: ['--batch', '--out', '--config'],
    sim: ['--port', '--scenario', '--config'],
    backup: ['--to', '--config'],
    prune: ['--older-than', '--dry-run', '--json', '--config'],
  };

  it.each(Object.entries(CONTRACT))('%s documents every flag it has', async (cmd, flags) => {
    const help = await runCli([cmd, '--help']);
    expect(help.code).toBe(0);
    const entries = documented(help.stdout);
    expect(entries.get('--help')).toBe('Show help');
    for (const f of flags) expect(entries.has(f), `${cmd} --help lacks ${f}`).toBe(true);
    for (const [flag, text] of entries) expect(text.length, `${cmd} ${flag} has no description`).toBeGreaterThan(3);
  });
});

describe('a ledger setting that points at some other file', () => {
  it('is refused with exit 2 by run, run --dry-run and status, and the file is left as it was', async () => {
    const other = world.file('not-a-ledger.csv', 'card_id,reason\nCARD-1,CLOSED\n');
    const file = join(world.dir, 'other-ledger.config.json');
    writeFileSync(file, JSON.stringify({ ...base, ledger: other }));
    const before = statSync(other);
    for (const args of [['run', cardFile], ['run', '--dry-run', cardFile], ['status']]) {
      const run = await runCli([...args, '--config', file]);
      expect(run.code, run.stderr).toBe(EXIT.USAGE);
      expect(run.stderr).toBe(`d1-optout: config key ledger: ${other} is not a SQLite database, so it is no d1-optout ledger; check the path\n`);
    }
    const after = statSync(other);
    expect([after.mode, after.size, after.mtimeMs]).toEqual([before.mode, before.size, before.mtimeMs]);
    expect(world.sim.state().requests + world.sim.state().tokenRequests).toBe(0);
  });
});
