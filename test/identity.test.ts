import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { Ledger, readHistory, readIdentity } from '../src/ledger/index.js';
import { MIGRATIONS } from '../src/ledger/migrations.js';
import { makeSimCerts, startSimulator } from '../src/sim/index.js';
import { closeWorldsAfterEach, csv, ISSUER, makeWorld, runCli, type World } from './helpers.js';

// The ledger's identity and the preflight (docs/design.md §12, issue 15 point 3), with the built
// CLI in child processes, real SQLite files and the simulator's ground truth.
const HEADER = 'card_id,reason';

closeWorldsAfterEach();

/** A copy of the world's config file with `change` applied, written beside it; returns its path. */
function variant(world: World, name: string, change: (c: Record<string, Record<string, unknown>>) => void): string {
  const cfg = JSON.parse(readFileSync(world.configFile, 'utf8')) as Record<string, Record<string, unknown>>;
  change(cfg);
  const file = join(world.dir, `${name}.config.json`);
  writeFileSync(file, JSON.stringify(cfg, null, 2));
  return file;
}

function sent(world: World): number {
  const s = world.sim.state();
  return s.requests + s.tokenRequests;
}

function oneLine(stderr: string): string {
  const lines = stderr.trimEnd().split('\n');
  expect(lines, stderr).toHaveLength(1);
  return lines[0]!;
}

/** The ledger's recorded identity and history, read without changing it. */
function identity(path: string) {
  const l = Ledger.open(path, { readonly: true });
  try {
    return { id: readIdentity(l.db), history: readHistory(l.db) };
  } finally {
    l.close();
  }
}

describe('init: the ledger, and nothing created by accident', () => {
  it('init creates the ledger (0600) and only its own folder (0700), recording d1.issuerId and d1.baseUrl', async () => {
    const world = await makeWorld();
    const fresh = join(world.dir, 'fresh');
    const file = variant(world, 'fresh', (c) => {
      Object.assign(c, {
        ledger: join(fresh, 'ledger.sqlite'),
        reportsDir: join(fresh, 'reports'),
        inbox: join(fresh, 'inbox'),
        archive: join(fresh, 'archive'),
        log: { file: join(fresh, 'log', 'job.log') },
      });
    });
    const init = await runCli(['init', '--config', file]);
    expect(init.stderr).toBe('');
    expect(init.code).toBe(0);
    expect(init.stdout).toContain(`Created ledger ${join(fresh, 'ledger.sqlite')} for issuer ${ISSUER} at ${world.config.d1.baseUrl}`);
    expect((statSync(fresh).mode & 0o777).toString(8)).toBe('700');
    expect((statSync(join(fresh, 'ledger.sqlite')).mode & 0o777).toString(8)).toBe('600');
    for (const other of ['reports', 'inbox', 'archive', 'log']) expect(existsSync(join(fresh, other)), other).toBe(false);
    const { id, history } = identity(join(fresh, 'ledger.sqlite'));
    expect(id).toEqual({ issuerId: ISSUER, baseUrl: world.config.d1.baseUrl });
    expect(history).toEqual([expect.objectContaining({ event: 'init', issuerId: ISSUER, baseUrl: world.config.d1.baseUrl, previousIssuerId: null })]);
    expect(sent(world)).toBe(0);
  });

  it('init makes no folder above the ledger\'s own: a mistyped path is exit 2', async () => {
    const world = await makeWorld();
    const file = variant(world, 'deep', (c) => (c['ledger'] = join(world.dir, 'no-such', 'var', 'ledger.sqlite') as never));
    const init = await runCli(['init', '--config', file]);
    expect(init.code).toBe(2);
    expect(oneLine(init.stderr)).toContain(`the folder above ${join(world.dir, 'no-such', 'var')} does not exist`);
    expect(existsSync(join(world.dir, 'no-such'))).toBe(false);
  });

  it('init refuses an existing ledger (exit 2) and leaves it as it was', async () => {
    const world = await makeWorld();
    const init = await runCli(['init', '--config', world.configFile]);
    expect(init.code).toBe(2);
    expect(oneLine(init.stderr)).toBe(
      `d1-optout: a ledger already exists at ${world.config.ledger}; init never touches an existing ledger (to move it to this config deliberately: d1-optout init --rebind)`,
    );
    expect(world.ledgerUntouched()).toBe(true);
  });

  it('run, rerun and poll never create a ledger: exit 2, one line naming init, no folder, nothing sent', async () => {
    const world = await makeWorld();
    const ledger = join(world.dir, 'mistyped', 'ledger.sqlite');
    const file = variant(world, 'missing', (c) => (c['ledger'] = ledger as never));
    const a = world.file('a.csv', csv(HEADER, ['CARD-1,CLOSED']));
    for (const args of [['run', a], ['run', '--dry-run', a], ['rerun', '--last'], ['poll', '--wait', '0']]) {
      const r = await runCli([...args, '--config', file]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(oneLine(r.stderr)).toBe(`d1-optout: no ledger at ${ledger}; create it with \`d1-optout init\``);
      expect(existsSync(join(world.dir, 'mistyped')), args.join(' ')).toBe(false);
    }
    expect(sent(world)).toBe(0);
  });

  it('run, rerun, poll and backup with a data folder that does not exist: exit 2, and no folder created (not even the log\'s)', async () => {
    const world = await makeWorld();
    const data = join(world.dir, 'not-installed');
    const file = variant(world, 'not-installed', (c) => Object.assign(c, { ledger: join(data, 'ledger.sqlite'), log: { file: join(data, 'log', 'd1-optout.log') } }));
    const a = world.file('a.csv', csv(HEADER, ['CARD-1,CLOSED']));
    for (const args of [['run', a], ['run', '--dry-run', a], ['rerun', '--last'], ['poll', '--wait', '0'], ['backup', '--to', join(world.dir, 'b.sqlite')]]) {
      const r = await runCli([...args, '--config', file]);
      expect(r.code, args.join(' ')).toBe(2);
      // run --dry-run writes no log: its preflight names the missing ledger and log folder together.
      expect(oneLine(r.stderr)).toMatch(/^d1-optout: .*log folder:? \S+ does not exist; create it \(mkdir -p -m 700 \S+\) or correct config key log\.file$/);
      expect(existsSync(data), args.join(' ')).toBe(false);
    }
    expect(sent(world)).toBe(0);
  });

  it('a ledger filled against one D1 is refused with another base URL or issuer (exit 2, both values named), nothing sent to either', async () => {
    const world = await makeWorld();
    const a = world.file('a.csv', csv(HEADER, ['CARD-1,CLOSED', 'CARD-2,FRAUD']));
    expect((await runCli(['run', '--config', world.configFile, a])).code).toBe(0);
    const before = sent(world);
    // "Production": another D1, which must see nothing at all.
    const prod = await startSimulator({ port: 0, scenario: {}, issuers: [] });
    try {
      const elsewhere = variant(world, 'prod', (c) => Object.assign(c['d1']!, { baseUrl: prod.baseUrl, tokenUrl: prod.tokenUrl }));
      for (const args of [['run', '--force', a], ['run', '--dry-run', '--force', a], ['rerun', '--last'], ['poll', '--wait', '0']]) {
        const r = await runCli([...args, '--config', elsewhere]);
        expect(r.code, args.join(' ')).toBe(2);
        expect(oneLine(r.stderr)).toContain(`d1.baseUrl: recorded ${world.config.d1.baseUrl}, configured ${prod.baseUrl}`);
        // Only the base URL differs: the deliberate move is offered.
        expect(oneLine(r.stderr)).toMatch(/: use the ledger made for this config, or move this one deliberately with d1-optout init --rebind$/);
      }
      expect(prod.state().requests + prod.state().tokenRequests).toBe(0);

      const otherIssuer = variant(world, 'issuer', (c) => (c['d1']!['issuerId'] = 'OTHERISSUE'));
      const r = await runCli(['run', '--force', '--config', otherIssuer, a]);
      expect(r.code).toBe(2);
      expect(oneLine(r.stderr)).toMatch(/^d1-optout: ledger \S+ holds the history of another D1 \(d1\.issuerId: recorded TESTISSUER, configured OTHERISSUE\): use the ledger made for this config, or create a new ledger for issuer OTHERISSUE with d1-optout init and a new ledger path$/);
      expect(sent(world)).toBe(before);
    } finally {
      await prod.close();
    }
    // Read-only commands keep answering from it whatever the config.
    const status = await runCli(['status', '--config', variant(world, 'ro', (c) => (c['d1']!['issuerId'] = 'OTHERISSUE'))]);
    expect(status.code).toBe(0);
  });

  it('init --rebind moves the ledger deliberately, under the lock, and its history records when and from what', async () => {
    const world = await makeWorld();
    const moved = 'http://127.0.0.1:9/banking/v1';
    const file = variant(world, 'moved', (c) => (c['d1']!['baseUrl'] = moved));
    expect((await runCli(['run', '--dry-run', '--config', file, world.file('a.csv', csv(HEADER, ['CARD-1,CLOSED']))])).code).toBe(2);
    const t0 = new Date().toISOString();
    const rebind = await runCli(['init', '--rebind', '--config', file]);
    expect(rebind.stderr).toBe('');
    expect(rebind.code).toBe(0);
    expect(rebind.stdout).toContain(`moved from issuer ${ISSUER} at ${world.config.d1.baseUrl} to issuer ${ISSUER} at ${moved}`);
    const { id, history } = identity(world.config.ledger);
    expect(id).toEqual({ issuerId: ISSUER, baseUrl: moved });
    expect(history.map((h) => h.event)).toEqual(['init', 'rebind']);
    expect(history[1]).toMatchObject({ baseUrl: moved, previousIssuerId: ISSUER, previousBaseUrl: world.config.d1.baseUrl });
    expect(history[1]!.at >= t0).toBe(true);
    // Bound to the new config now; the old one is the stranger.
    expect((await runCli(['check', '--config', file])).stdout).toMatch(new RegExp(`^ok +ledger: .*bound to issuer ${ISSUER} at ${moved.replaceAll('.', '\\.')}$`, 'm'));
    expect((await runCli(['run', '--config', world.configFile, join(world.dir, 'a.csv')])).code).toBe(2);
    const again = await runCli(['init', '--rebind', '--config', file]);
    expect(again.stdout).toContain('nothing changed');
    expect(identity(world.config.ledger).history).toHaveLength(2);
    expect(sent(world)).toBe(0);
  });

  it('init --rebind never moves a ledger to another issuer: exit 2, one line, identity and history untouched, that issuer still refused', async () => {
    const world = await makeWorld();
    const a = world.file('a.csv', csv(HEADER, ['CARD-1,CLOSED']));
    expect((await runCli(['run', '--config', world.configFile, a])).code).toBe(0);
    const before = identity(world.config.ledger);
    const sentBefore = sent(world);
    const moves = [{ issuerId: 'OTHERISSUE' }, { issuerId: 'OTHERISSUE', baseUrl: 'http://127.0.0.1:9/banking/v1' }];
    for (const move of moves) {
      const other = variant(world, 'other', (c) => Object.assign(c['d1']!, move));
      const r = await runCli(['init', '--rebind', '--config', other]);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(
        `d1-optout: ledger ${world.config.ledger} records issuer ${ISSUER}, not OTHERISSUE; a ledger holds one issuer's history: create a new ledger for issuer OTHERISSUE with d1-optout init and a new ledger path\n`,
      );
      expect(identity(world.config.ledger)).toEqual(before);
      // Nothing of that issuer's is skipped as this one's: its run is still refused.
      expect((await runCli(['run', '--force', '--config', other, a])).code).toBe(2);
    }
    expect(sent(world)).toBe(sentBefore);
  });

  it('a ledger made before identities existed is bound on first open, with a warning, and keeps its history', async () => {
    const world = await makeWorld();
    const old = join(world.dir, 'old.sqlite');
    const db = new Database(old);
    db.pragma('journal_mode = WAL');
    db.exec(MIGRATIONS[0]!);
    db.pragma('user_version = 1');
    db.close();
    chmodSync(old, 0o600);
    const file = variant(world, 'old', (c) => (c['ledger'] = old as never));
    const a = world.file('a.csv', csv(HEADER, ['CARD-1,CLOSED']));
    const first = await runCli(['run', '--config', file, a]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toContain(`ledger ${old} had no recorded identity (it predates d1-optout init): bound it to issuer ${ISSUER} at ${world.config.d1.baseUrl}`);
    const { id, history } = identity(old);
    expect(id).toEqual({ issuerId: ISSUER, baseUrl: world.config.d1.baseUrl });
    expect(history.map((h) => h.event)).toEqual(['bind']);
    const second = await runCli(['run', '--config', file, a]);
    expect(second.code).toBe(0);
    expect(second.stderr).toBe('');
    const other = await runCli(['run', '--force', '--config', variant(world, 'old-other', (c) => Object.assign(c, { ledger: old, d1: { ...c['d1'], issuerId: 'OTHERISSUE' } })), a]);
    expect(other.code).toBe(2);
    expect(other.stderr).toContain('recorded TESTISSUER, configured OTHERISSUE');
  });
});

describe('check: the preflight', () => {
  it('init and check document their flags', async () => {
    for (const [cmd, flag] of [['init', '--rebind'], ['check', '--live']] as const) {
      const help = await runCli([cmd, '--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).toContain(`d1-optout ${cmd}`);
      expect(help.stdout).toContain(flag);
    }
  });

  it('all ok: one ok line per check, exit 0, and nothing written (no log, the ledger as init made it)', async () => {
    const world = await makeWorld();
    const r = await runCli(['check', '--config', world.configFile]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    for (const what of ['config', 'private key', 'TLS client certificate', 'ledger', 'inbox', 'archive', 'reports folder', 'log folder', 'free space']) {
      expect(lines.some((l) => l.startsWith(`ok    ${what}`)), `${what}\n${r.stdout}`).toBe(true);
    }
    expect(lines.filter((l) => /^(ok|FAIL) /.test(l)).every((l) => l.startsWith('ok'))).toBe(true);
    expect(lines.at(-1)).toBe('All checks passed.');
    expect(existsSync(world.config.log.file)).toBe(false);
    expect(world.ledgerUntouched()).toBe(true);
    expect(sent(world)).toBe(0);
  });

  it('a config that does not load is the one FAIL line, naming the key', async () => {
    const world = await makeWorld();
    const bad = variant(world, 'typo', (c) => (c['rate']!['requestPerSecond'] = 10));
    const r = await runCli(['check', '--config', bad]);
    expect(r.code).toBe(2);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^FAIL {2}config: config key rate\.requestPerSecond is unknown; did you mean requestsPerSecond\? \(expected one of /);
    expect(lines[1]).toBe('1 check(s) failed.');
  });

  /** Runs `check` with a broken setup; returns its FAIL lines. */
  async function failing(world: World, configFile: string): Promise<string[]> {
    const r = await runCli(['check', '--config', configFile]);
    expect(r.code, r.stdout).toBe(2);
    expect(r.stdout).toMatch(/\d+ check\(s\) failed\.\n$/);
    expect(sent(world)).toBe(0);
    return r.stdout.split('\n').filter((l) => l.startsWith('FAIL'));
  }

  it('the private key: mode 0644, missing, not PEM; each a FAIL with its fix, exit 2', async () => {
    const world = await makeWorld();
    chmodSync(world.keyFile, 0o644);
    expect(await failing(world, world.configFile)).toEqual([`FAIL  private key: ${world.keyFile} is readable by group or others (mode 644); run chmod 600 ${world.keyFile}`]);
    chmodSync(world.keyFile, 0o600);
    const missing = variant(world, 'nokey', (c) => (c['d1']!['privateKeyFile'] = join(world.dir, 'gone.pem')));
    expect(await failing(world, missing)).toEqual([`FAIL  private key: ${join(world.dir, 'gone.pem')} does not exist; put the file there, or correct config key d1.privateKeyFile`]);
    const garbage = join(world.dir, 'garbage.pem');
    writeFileSync(garbage, '-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n', { mode: 0o600 });
    const bad = variant(world, 'badkey', (c) => (c['d1']!['privateKeyFile'] = garbage));
    expect(await failing(world, bad)).toEqual([
      `FAIL  private key: config key d1.privateKeyFile: ${garbage} is not a readable PEM private key (wrong passphrase?); give the EC P-256 key registered with Thales, in PEM`,
    ]);
  });

  it('the TLS key readable by others is a FAIL; a matching pair with its CA is ok', async () => {
    const world = await makeWorld();
    const certs = await makeSimCerts(join(world.dir, 'certs'));
    const tls = variant(world, 'tls', (c) => (c['d1']!['tls'] = { certFile: certs.clientCertFile, keyFile: certs.clientKeyFile, caFile: certs.caFile }));
    chmodSync(certs.clientKeyFile, 0o600);
    const good = await runCli(['check', '--config', tls]);
    expect(good.code, good.stdout).toBe(0);
    expect(good.stdout).toMatch(/^ok +TLS key: .*matches the certificate$/m);
    chmodSync(certs.clientKeyFile, 0o644);
    expect(await failing(world, tls)).toEqual([`FAIL  TLS key: ${certs.clientKeyFile} is readable by group or others (mode 644); run chmod 600 ${certs.clientKeyFile}`]);
  });

  it('a ledger bound elsewhere, a folder that cannot be one, and too little free space: each a FAIL with its fix', async () => {
    const world = await makeWorld();
    const elsewhere = variant(world, 'elsewhere', (c) => (c['d1']!['issuerId'] = 'OTHERISSUE'));
    const [ledgerLine, ...rest] = await failing(world, elsewhere);
    expect(rest).toEqual([]);
    expect(ledgerLine).toMatch(/^FAIL {2}ledger: ledger \S+ holds the history of another D1 \(d1\.issuerId: recorded TESTISSUER, configured OTHERISSUE\): use the ledger made for this config, or create a new ledger for issuer OTHERISSUE with d1-optout init and a new ledger path$/);

    // Tests run as root, which writes through any mode bits: a folder under a regular file can never be written.
    const plain = world.file('plain-file', 'x');
    const unwritable = variant(world, 'unwritable', (c) => (c['reportsDir'] = join(plain, 'reports') as never));
    expect(await failing(world, unwritable)).toEqual([`FAIL  reports folder: ${join(plain, 'reports')} cannot be used as a folder (ENOTDIR); correct config key reportsDir`]);

    const full = variant(world, 'full', (c) => (c['check'] = { minFreeMiB: 1024 ** 4 }));
    const lines = await failing(world, full);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^FAIL {2}free space \(ledger, inbox, archive, quarantine, reports, log\): [\d.]+ GiB free on the filesystem of \S+, less than check\.minFreeMiB \(1099511627776 MiB\); free some space, or move the job's folders to a larger filesystem$/);

    // run --dry-run runs the same checks before planning.
    const dry = await runCli(['run', '--dry-run', '--config', full, world.file('a.csv', csv(HEADER, ['CARD-1,CLOSED']))]);
    expect(dry.code).toBe(2);
    expect(oneLine(dry.stderr)).toMatch(/^d1-optout: [\d.]+ GiB free on the filesystem of \S+, less than check\.minFreeMiB/);
    expect(dry.stdout).toBe('');
  });

  it('run --dry-run refuses (exit 2) when a folder the night needs is missing, and plans when it is back', async () => {
    const world = await makeWorld();
    const a = world.file('a.csv', csv(HEADER, ['CARD-1,CLOSED']));
    const file = variant(world, 'noarchive', (c) => (c['archive'] = join(world.dir, 'no-archive') as never));
    const dry = await runCli(['run', '--dry-run', '--config', file, a]);
    expect(dry.code).toBe(2);
    expect(oneLine(dry.stderr)).toBe(`d1-optout: ${join(world.dir, 'no-archive')} does not exist; create it (mkdir -p -m 700 ${join(world.dir, 'no-archive')}) or correct config key archive`);
    mkdirSync(join(world.dir, 'no-archive'));
    expect((await runCli(['run', '--dry-run', '--config', file, a])).code).toBe(0);
    expect(world.ledgerUntouched()).toBe(true);
  });

  it('check --live gets one token through the real token code and sends nothing else', async () => {
    const world = await makeWorld();
    const r = await runCli(['check', '--live', '--config', world.configFile]);
    expect(r.code, r.stdout).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^ok +D1 token: ${world.config.d1.tokenUrl} issued a token in \\d+ ms`, 'm'));
    const s = world.sim.state();
    // The simulator counts the token request among its requests: that one and nothing else.
    expect([s.tokenRequests, s.tokensIssued, s.requests]).toEqual([1, 1, 1]);
    expect(s.optOutCalls).toEqual({});
    expect(r.stdout).not.toContain(world.sim.secrets().tokens[0]!);

    // A key D1 does not know: the token endpoint refuses the assertion, a FAIL naming what to check.
    const other = variant(world, 'kid', (c) => (c['d1']!['keyId'] = 'unknown-kid'));
    const refused = await runCli(['check', '--live', '--config', other]);
    expect(refused.code).toBe(2);
    expect(refused.stdout).toMatch(/^FAIL {2}D1 token: D1 refused the client assertion \(HTTP 4\d\d.*check d1\.issuerId, d1\.keyId and the private key/m);
    expect(world.sim.state().optOutCalls).toEqual({});
    expect(world.sim.state().requests).toBe(world.sim.state().tokenRequests);
  });
});

describe('check --live over mutual TLS', () => {
  it('gets its one token through the client certificate; without one, both the local check and the live one FAIL', async () => {
    const certDir = mkdtempSync(join(tmpdir(), 'd1-optout-certs-'));
    try {
      const certs = await makeSimCerts(certDir);
      const world = await makeWorld({
        scenario: { tls: { certFile: certs.certFile, keyFile: certs.keyFile, caFile: certs.caFile, requireClientCert: true } },
        config: { d1: { tls: { certFile: certs.clientCertFile, keyFile: certs.clientKeyFile, caFile: certs.caFile } } },
      });
      expect(world.config.d1.tokenUrl.startsWith('https://127.0.0.1:')).toBe(true);
      const r = await runCli(['check', '--live', '--config', world.configFile]);
      expect(r.code, r.stdout).toBe(0);
      expect(r.stdout).toMatch(/^ok +D1 token: https:\S+ issued a token in \d+ ms \(mTLS and client assertion accepted\)$/m);
      expect([world.sim.state().tokenRequests, world.sim.state().requests]).toEqual([1, 1]);

      const noCert = variant(world, 'nocert', (c) => (c['d1']!['tls'] = { caFile: certs.caFile }));
      const refused = await runCli(['check', '--live', '--config', noCert]);
      expect(refused.code).toBe(2);
      expect(refused.stdout).toMatch(/^FAIL {2}TLS client certificate: D1 requires mutual TLS: set d1\.tls\.certFile and d1\.tls\.keyFile/m);
      expect(refused.stdout).toMatch(/^FAIL {2}D1 token: token endpoint unreachable: network error/m);
      expect(world.sim.state().tokensIssued).toBe(1);
    } finally {
      rmSync(certDir, { recursive: true, force: true });
    }
  });
});

describe('a damaged ledger', () => {
  it('bytes overwritten in the middle: run, rerun and poll exit 2 with the restore hint, nothing sent; check says FAIL', async () => {
    const world = await makeWorld();
    const a = world.file('a.csv', csv(HEADER, Array.from({ length: 300 }, (_, i) => `CARD-D${i},CLOSED`)));
    expect((await runCli(['run', '--config', world.configFile, a])).code).toBe(0);
    const { size } = statSync(world.config.ledger);
    const pageSize = 4096;
    const middle = Math.floor(size / pageSize / 2) * pageSize;
    const fd = openSync(world.config.ledger, 'r+');
    writeSync(fd, Buffer.alloc(pageSize, 0xa5), 0, pageSize, middle);
    closeSync(fd);
    const before = world.sim.state();
    for (const args of [['run', '--force', a], ['rerun', '--last'], ['poll', '--wait', '0']]) {
      const r = await runCli([...args, '--config', world.configFile]);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(oneLine(r.stderr)).toMatch(new RegExp(`^d1-optout: ledger ${world.config.ledger} is damaged \\(.+\\); nothing was sent; restore the latest backup of the ledger$`));
    }
    const after = world.sim.state();
    expect([after.requests, after.tokenRequests]).toEqual([before.requests, before.tokenRequests]);
    const check = await runCli(['check', '--config', world.configFile]);
    expect(check.code).toBe(2);
    expect(check.stdout).toMatch(/^FAIL {2}ledger: .* is damaged \(.+\); .*restore the latest backup of the ledger$/m);
  });
});
