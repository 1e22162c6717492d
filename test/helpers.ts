import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parse } from 'csv-parse/sync';
import { afterEach } from 'vitest';
import { runBatch, rerunBatch, type DryRunResult, type RunOptions, type RerunOptions } from '../src/batch/run.js';
import type { BatchResult } from '../src/batch/finish.js';
import { StopSignal } from '../src/batch/stop.js';
import { parseConfig } from '../src/config.js';
import { identityOf, Ledger } from '../src/ledger/index.js';
import { closeLogger, createLogger } from '../src/log.js';
import { startSimulator, type Scenario, type SimServer, type StartSimOptions } from '../src/sim/index.js';
import type { BatchSummary, Config, ProgressListener, ResultLine } from '../src/types.js';

export const ROOT = resolve(import.meta.dirname, '..');
export const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
export const ISSUER = 'TESTISSUER';
export const KID = 'test-kid-1';

/** A temp dir with a fresh test-only issuer key, a running simulator and a config pointing at both. */
export interface World {
  dir: string;
  sim: SimServer;
  config: Config;
  configFile: string;
  keyFile: string;
  file(name: string, content: string | Buffer): string;
  run(files: string[], opts?: Partial<RunOptions>, progress?: ProgressListener): Promise<BatchResult>;
  dryRun(files: string[], opts?: Partial<RunOptions>): Promise<DryRunResult>;
  rerun(opts: Partial<RerunOptions>): Promise<BatchResult>;
  ledger(): Ledger;
  /** `d1-optout init` for `config.ledger` (makeWorld does it; a test that points the config at another ledger calls it again). */
  init(): void;
  /** True while the ledger is byte for byte (and mtime) what `init` made: nothing was done to it. */
  ledgerUntouched(): boolean;
  close(): Promise<void>;
}

/**
 * What an operator's install does before the first night, in one place for every test: the
 * ledger through the init path (bound to this config's issuer and simulator) and the job's folders.
 */
export function install(config: Config): { bytes: Buffer; mtimeMs: number } {
  Ledger.create(config.ledger, identityOf(config)).close();
  for (const dir of [config.inbox, config.archive, config.quarantine, config.reportsDir, dirname(config.log.file)]) mkdirSync(dir, { recursive: true, mode: 0o700 });
  return { bytes: readFileSync(config.ledger), mtimeMs: statSync(config.ledger).mtimeMs };
}

/** Worlds not closed yet; closeWorldsAfterEach closes them, so no test file repeats the teardown. */
const openWorlds = new Set<World>();

/** Registers, in the calling test file, an afterEach that closes every world its tests made. */
export function closeWorldsAfterEach(): void {
  afterEach(async () => {
    for (const w of [...openWorlds]) await w.close();
  });
}

export async function makeWorld(
  opts: { scenario?: Partial<Scenario>; config?: Record<string, unknown>; onRequest?: StartSimOptions['onRequest'] } = {},
): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), 'd1-optout-test-'));
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const keyFile = join(dir, 'issuer.test-only.pem');
  writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  const sim = await startSimulator({
    port: 0,
    scenario: opts.scenario ?? {},
    ...(opts.onRequest ? { onRequest: opts.onRequest } : {}),
    issuers: [{ issuerId: ISSUER, kid: KID, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() }],
  });
  const raw = deepMerge(
    {
      d1: { baseUrl: sim.baseUrl, tokenUrl: sim.tokenUrl, issuerId: ISSUER, keyId: KID, privateKeyFile: keyFile, timeoutMs: 2000 },
      rate: { requestsPerSecond: 500, concurrency: 8, backoffBaseMs: 5, backoffMaxMs: 50 },
      pending: { pollIntervalMs: 50, maxWaitMs: 3000 },
      ledger: join(dir, 'ledger.sqlite'),
      reportsDir: join(dir, 'reports'),
      inbox: join(dir, 'inbox'),
      archive: join(dir, 'archive'),
      quarantine: join(dir, 'quarantine'),
      // Tests write their inbox files whole before a run starts, so none is still arriving; the
      // tests of arriving files (inbox.test.ts) set their own settle time.
      input: { settleSec: 0 },
      log: { level: 'debug', file: join(dir, 'log', 'd1-optout.log') },
    },
    opts.config ?? {},
  );
  const config = parseConfig(raw, {});
  const configFile = join(dir, 'config.json');
  writeFileSync(configFile, JSON.stringify(raw, null, 2));
  const withLogger = async <T>(fn: (log: ReturnType<typeof createLogger>) => Promise<T>): Promise<T> => {
    const log = createLogger({ level: 'debug', file: config.log.file, console: false });
    try {
      return await fn(log);
    } finally {
      await closeLogger(log);
    }
  };
  let installed = install(config);
  const runOpts = (o: Partial<RunOptions>): RunOptions => ({ files: [], inbox: null, dryRun: false, force: false, carryOver: true, ...o });
  const world: World = {
    dir,
    sim,
    config,
    configFile,
    keyFile,
    file(name, content) {
      const p = join(dir, name);
      writeFileSync(p, content);
      return p;
    },
    run: (files, o = {}, progress) => withLogger(async (log) => (await runBatch(config, runOpts({ ...o, files }), log, new StopSignal(), progress)) as BatchResult),
    dryRun: (files, o = {}) => withLogger(async (log) => (await runBatch(config, runOpts({ ...o, files, dryRun: true }), log, new StopSignal())) as DryRunResult),
    rerun: (o) =>
      withLogger(async (log) => (await rerunBatch(config, { batch: null, last: true, includePermanent: false, dryRun: false, ...o }, log, new StopSignal())) as BatchResult),
    ledger: () => Ledger.open(config.ledger, { readonly: true }),
    init() {
      installed = install(config);
    },
    ledgerUntouched: () => readFileSync(config.ledger).equals(installed.bytes) && statSync(config.ledger).mtimeMs === installed.mtimeMs,
    async close() {
      openWorlds.delete(world);
      await sim.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  openWorlds.add(world);
  return world;
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && cur && typeof cur === 'object' && !Array.isArray(cur)
        ? deepMerge(cur as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

export function readCsv<T = Record<string, string>>(path: string): T[] {
  return parse(readFileSync(path), { columns: true, skip_empty_lines: true }) as T[];
}

export function results(summary: BatchSummary): (Omit<ResultLine, 'attempts'> & { attempts: string })[] {
  return readCsv(join(summary.reportDir, 'results.csv'));
}

export function readSummary(summary: BatchSummary): BatchSummary {
  return JSON.parse(readFileSync(join(summary.reportDir, 'summary.json'), 'utf8')) as BatchSummary;
}

/** The reconciliation invariant of docs/design.md §4. */
export function assertReconciles(s: BatchSummary): void {
  const sum = (o: Partial<Record<string, number>>) => Object.values(o).reduce((n: number, v) => n + (v ?? 0), 0);
  if (s.rows.total !== s.rows.valid + s.rows.rejected) throw new Error(`rows.total ${s.rows.total} != valid ${s.rows.valid} + rejected ${s.rows.rejected}`);
  if (sum(s.outcomes) !== s.rows.valid) throw new Error(`outcomes sum to ${sum(s.outcomes)}, rows.valid is ${s.rows.valid}`);
}

export function optOutCalls(sim: SimServer): number {
  return Object.values(sim.state().optOutCalls).reduce((n, v) => n + v, 0);
}

export function csv(header: string, rows: string[]): string {
  return [header, ...rows].join('\n') + '\n';
}

/** Runs the built CLI as a child process; with `deadlineMs`, SIGKILLs it then (code null), so that a hang fails the test. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, opts: { deadlineMs?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, cwd: ROOT, timeout: opts.deadlineMs, killSignal: 'SIGKILL' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
  });
}
