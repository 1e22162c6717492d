import { spawn } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ledger } from '../src/ledger/index.js';
import { CLI, csv, makeWorld, optOutCalls, ROOT, type World } from './helpers.js';

// A full job at debug level against the simulator, through the built CLI as cron runs it, with the
// bad-input corpus as its input and every command that writes: run (with unreadable files, with
// rejects, killed half-way and resumed), rerun, poll, status, show, report. Then everything the
// job wrote and printed is searched for every secret the simulator saw and every card number of
// the corpus, and every file and folder it created is checked for its mode. The processes run
// under umask 000, so a file or folder the job creates without an explicit mode shows as world-readable.

const BAD = join(ROOT, 'fixtures', 'bad');

interface Expected {
  cardNumbers: string[];
  files: Record<string, { rejects?: unknown; absent?: boolean; generatedByTest?: boolean }>;
}
const expected = JSON.parse(readFileSync(join(BAD, 'expected.json'), 'utf8')) as Expected;

/** Card numbers D1 itself echoes back in errors (scripted below): they must be masked too. */
const ECHOED_PANS = ['4000056655665556', '2223003122003222'];

interface Output {
  args: string[];
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI under umask 000; `kill` ends it with SIGKILL once it returns true. */
function cli(args: string[], kill?: () => boolean): Promise<Output> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', 'umask 000 && exec "$0" "$@"', process.execPath, CLI, ...args], { cwd: ROOT });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = kill
      ? setInterval(() => {
          if (kill()) child.kill('SIGKILL');
        }, 5)
      : null;
    child.on('close', (code) => {
      if (timer) clearInterval(timer);
      resolve({ args, code, stdout, stderr });
    });
  });
}

/** Every file under `dir`, recursively. */
function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? walk(p) : [p];
  });
}

function dirs(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? [p, ...dirs(p)] : [];
  });
}

/** `digits` as written in any grouping: single spaces, dashes or underscores between digits. */
function grouped(digits: string): RegExp {
  return new RegExp(digits.split('').join('[ _-]?'));
}

let world: World;
let var_: string;
let configFile: string;
const outputs: Output[] = [];
/** Each file the job wrote, read at the moment it was scanned (the WAL while it existed). */
const written = new Map<string, string>();
let walSeen = false;
let modesWhileKilled = new Map<string, number>();

function snapshot(): void {
  for (const f of walk(var_)) {
    if (f.startsWith(join(var_, 'inbox'))) continue;
    written.set(`${relative(var_, f)}@${written.size}`, readFileSync(f).toString('latin1'));
    if (f.endsWith('-wal')) walSeen = true;
  }
}

beforeAll(async () => {
  world = await makeWorld({
    scenario: {
      tokenTtlSec: 1,
      pendingRate: 0.3,
      pendingDelayMs: 150,
      fail5xxRate: 0.05,
      latencyMs: [1, 4],
      seed: 11,
      unknownIds: ['CARD-SEC-UNKNOWN'],
      answers: {
        'CARD-SEC-401': { status: 401, body: { errorCode: 'AUTHORIZER_UNAUTHORIZED', error: 'token expired' }, times: 1 },
        'CARD-SEC-ECHO': { status: 400, body: { errorCode: 'FIELD_INVALID', error: `card ${ECHOED_PANS[0]} is not a card id` } },
        'CARD-SEC-PROXY': { status: 502, text: `<html><body>Bad gateway for ${ECHOED_PANS[1]}</body></html>`, times: 10 },
      },
    },
    config: { rate: { maxAttempts: 2 } },
  });
  var_ = join(world.dir, 'var');
  const cfg = JSON.parse(readFileSync(world.configFile, 'utf8')) as Record<string, Record<string, unknown>>;
  Object.assign(cfg, {
    ledger: join(var_, 'ledger', 'db', 'ledger.sqlite'),
    reportsDir: join(var_, 'reports'),
    inbox: join(var_, 'inbox'),
    archive: join(var_, 'archive'),
    log: { level: 'debug', file: join(var_, 'log', 'd1-optout.log') },
  });
  configFile = join(world.dir, 'secrets.config.json');
  writeFileSync(configFile, JSON.stringify(cfg, null, 2));
  const c = ['--config', configFile];
  // The install: the ledger's parent folder and the log's, then `init` (which makes only the ledger's own folder).
  mkdirSync(join(var_, 'ledger'), { recursive: true, mode: 0o700 });
  mkdirSync(join(var_, 'log'), { mode: 0o700 });
  outputs.push(await cli(['init', ...c]));

  const inputs = join(world.dir, 'in');
  mkdirSync(inputs);
  const readable: string[] = [];
  for (const [name, e] of Object.entries(expected.files)) {
    if (e.absent || e.generatedByTest) continue;
    const copy = join(inputs, name);
    copyFileSync(join(BAD, name), copy);
    if (e.rejects) readable.push(copy);
    else outputs.push(await cli(['run', ...c, copy]));
  }
  const special = world.file(
    'in/special.csv',
    csv('card_id,reason', ['CARD-SEC-401,CLOSED', 'CARD-SEC-ECHO,CLOSED', 'CARD-SEC-PROXY,FRAUD', 'CARD-SEC-UNKNOWN,FRAUD']),
  );
  outputs.push(await cli(['run', ...c, ...readable, special]));

  // Killed with requests in flight: the ledger's -wal and -shm are on disk, as after a crash.
  const many = world.file('in/many.csv', csv('card_id,reason', Array.from({ length: 400 }, (_, i) => `CARD-SEC-M${i},CLOSED`)));
  const before = optOutCalls(world.sim);
  const ledgerPath = cfg['ledger'] as unknown as string;
  outputs.push(await cli(['run', ...c, many], () => optOutCalls(world.sim) > before + 20 && existsSync(`${ledgerPath}-wal`)));
  modesWhileKilled = new Map(walk(var_).map((f) => [relative(var_, f), statSync(f).mode & 0o777]));
  snapshot();
  outputs.push(await cli(['run', ...c, many]));

  mkdirSync(join(var_, 'inbox'), { recursive: true });
  copyFileSync(join(BAD, 'gzip.csv.gz'), join(var_, 'inbox', 'again.csv.gz'));
  outputs.push(await cli(['run', ...c, '--force', '--inbox', join(var_, 'inbox'), '--archive', join(var_, 'archive')]));
  outputs.push(await cli(['rerun', ...c, '--last']));
  outputs.push(await cli(['poll', ...c, '--wait', '1']));
  outputs.push(await cli(['status', ...c]));
  outputs.push(await cli(['status', ...c, '--json']));
  for (const id of ['CARD-SEC-ECHO', 'CARD-SEC-PROXY', 'CARD-PAN10']) outputs.push(await cli(['show', ...c, id, '--json']));
  const ledger = Ledger.open(ledgerPath, { readonly: true });
  const last = ledger.batches.list(1)[0]!.id;
  ledger.close();
  outputs.push(await cli(['report', ...c, '--batch', last, '--out', join(var_, 'copy', 'of', 'reports')]));
  snapshot();
}, 120_000);

afterAll(async () => {
  await world.close();
});

describe('nothing the job writes or prints holds a secret or a card number', () => {
  it('ran every command as intended (the search below covers real work)', () => {
    const unreadable = Object.values(expected.files).filter((e) => !e.rejects && !e.absent && !e.generatedByTest).length;
    expect(outputs.filter((o) => o.code === 2)).toHaveLength(unreadable);
    expect(outputs.find((o) => o.code === null)?.args[0]).toBe('run'); // the killed one
    for (const o of outputs.filter((x) => x.code !== 2 && x.code !== null)) expect([0, 1], `${o.args.join(' ')}\n${o.stderr}`).toContain(o.code);
    const secrets = world.sim.secrets();
    expect(secrets.tokens.length).toBeGreaterThanOrEqual(3);
    expect(secrets.assertions.length).toBeGreaterThanOrEqual(secrets.tokens.length);
    expect(walSeen).toBe(true);
    const names = [...written.keys()].map((k) => k.replace(/@\d+$/, ''));
    for (const want of ['log/d1-optout.log', 'ledger/db/ledger.sqlite', 'ledger/db/ledger.sqlite-wal']) expect(names).toContain(want);
    for (const report of ['summary.json', 'results.csv', 'failures.csv', 'rejects.csv']) {
      expect(names.some((n) => n.startsWith('reports/') && n.endsWith(report)), report).toBe(true);
    }
    expect([...written.values()].join('\n')).toContain('opt-out answer'); // debug lines were written
  });

  it('holds no access token and no client assertion (not even its signature)', () => {
    const { tokens, assertions } = world.sim.secrets();
    const needles = [...tokens, ...assertions, ...assertions.map((a) => a.split('.')[2]!)];
    expect(needles.every((s) => s.length >= 20)).toBe(true);
    for (const [file, text] of written) for (const s of needles) expect(text.includes(s), `${file} holds a secret`).toBe(false);
    for (const o of outputs) for (const s of needles) expect(`${o.stdout}${o.stderr}`.includes(s), o.args.join(' ')).toBe(false);
  });

  it('holds no private key material: PEM body, its lines, the raw key in base64, base64url or hex', () => {
    const pem = readFileSync(world.keyFile, 'utf8');
    const bodyLines = pem.split('\n').filter((l) => l !== '' && !l.startsWith('-----'));
    const d = createPrivateKey(pem).export({ format: 'jwk' }).d!;
    const raw = Buffer.from(d, 'base64url');
    const needles = [bodyLines.join(''), ...bodyLines, d, raw.toString('base64'), raw.toString('hex')];
    for (const [file, text] of written) for (const s of needles) expect(text.includes(s), `${file} holds key material`).toBe(false);
    for (const o of outputs) for (const s of needles) expect(`${o.stdout}${o.stderr}`.includes(s), o.args.join(' ')).toBe(false);
  });

  it('holds no card number of the bad corpus, nor one D1 echoed back, in any grouping', () => {
    for (const pan of [...expected.cardNumbers, ...ECHOED_PANS]) {
      const re = grouped(pan);
      for (const [file, text] of written) expect(re.test(text), `${file} holds ${pan.slice(0, 6)}…`).toBe(false);
      for (const o of outputs) expect(re.test(`${o.stdout}${o.stderr}`), `${o.args.join(' ')} printed ${pan.slice(0, 6)}…`).toBe(false);
    }
    // The masked forms are there: the rows were written, only their numbers hidden.
    const all = [...written.values()].join('\n');
    expect(all).toContain('411111******1111');
    expect(all).toContain('400005******5556');
  });
});

describe('files on disk (under umask 000)', () => {
  it('creates every file of the ledger, the reports and the log 0600, and every folder 0700', () => {
    const files = walk(var_).filter((f) => !f.startsWith(join(var_, 'inbox')) && !f.startsWith(join(var_, 'archive')));
    expect(files.length).toBeGreaterThan(10);
    for (const f of files) expect((statSync(f).mode & 0o777).toString(8), relative(var_, f)).toBe('600');
    const folders = dirs(var_).filter((d) => d !== join(var_, 'inbox'));
    expect(folders.map((d) => relative(var_, d))).toEqual(expect.arrayContaining(['ledger', 'ledger/db', 'log', 'reports', 'archive', 'copy/of/reports']));
    for (const d of folders) expect((statSync(d).mode & 0o777).toString(8), relative(var_, d)).toBe('700');
  });

  it('has the -wal and -shm of a killed run 0600 too', () => {
    expect(modesWhileKilled.get('ledger/db/ledger.sqlite-wal')).toBe(0o600);
    expect(modesWhileKilled.get('ledger/db/ledger.sqlite-shm')).toBe(0o600);
  });

  it('narrows a log and a ledger that something else left readable to 0600', async () => {
    const cfg = JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>;
    const loose = join(world.dir, 'loose');
    mkdirSync(loose, { mode: 0o755 });
    Object.assign(cfg, { ledger: join(loose, 'ledger.sqlite'), log: { level: 'debug', file: join(loose, 'job.log') } });
    const file = join(world.dir, 'loose.config.json');
    writeFileSync(file, JSON.stringify(cfg));
    writeFileSync(join(loose, 'job.log'), '', { mode: 0o644 });
    expect((await cli(['init', '--config', file])).code).toBe(0);
    chmodSync(join(loose, 'ledger.sqlite'), 0o644);
    const run = await cli(['run', '--config', file, world.file('in/loose.csv', csv('card_id,reason', ['CARD-LOOSE-1,CLOSED']))]);
    expect(run.code, run.stderr).toBe(0);
    for (const f of ['job.log', 'ledger.sqlite']) expect((statSync(join(loose, f)).mode & 0o777).toString(8), f).toBe('600');
    // A folder the job did not create is not the job's to change (it may be shared, like /var/log).
    expect((statSync(loose).mode & 0o777).toString(8)).toBe('755');
  });
});
