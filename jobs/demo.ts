// `npm run demo`: the nightly job, end to end, on embedded defaults. Starts the bundled D1
// simulator on a free loopback port, generates a throw-away issuer key, creates the ledger with
// `init` and runs `check --live`, copies the fixture inbox to var/demo/inbox and runs
// jobs/nightly-optout against it, four nights in a row: the fixture
// files, the same files again (nothing is sent), a large delivery on this terminal (live
// progress when it is a TTY), and another one as cron runs it (no TTY: progress lines). Then it
// shows what operations staff would look at: status, show, the metrics file and report.html.
// Everything it writes is under var/demo/, which it starts afresh.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { generateKeyPairSync } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Ledger } from '../src/ledger/index.js';
import { loadScenarioFile, startSimulator } from '../src/sim/index.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const demo = join(root, 'var', 'demo');
const rel = (p: string) => p.slice(root.length + 1);
rmSync(demo, { recursive: true, force: true });
mkdirSync(join(demo, 'inbox'), { recursive: true, mode: 0o700 });
mkdirSync(join(demo, 'metrics'), { recursive: true, mode: 0o700 });
// The folders an install makes (check wants them there); the ledger is made by `init` below.
for (const dir of ['archive', 'quarantine', 'reports', 'log']) mkdirSync(join(demo, dir), { recursive: true, mode: 0o700 });

const issuerId = 'DEMOISSUER';
const keyId = 'demo-key-1';
const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const keyFile = join(demo, 'issuer-es256.test-only.pem');
writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });

// D1 admits 30 requests a second while the job is configured for 40, as when a quota is lower
// than the issuer was told: the job meets 429s, pauses for Retry-After and settles below the quota.
// Three cards of the large deliveries are unknown to D1, so their failures show in the report.
const bulkUnknown = ['BULK-A-0123', 'BULK-A-0277', 'BULK-B-0042'];
const scenario = await loadScenarioFile(join(root, 'fixtures', 'sim', 'demo.json'));
const sim = await startSimulator({
  port: 0,
  scenario: { ...scenario, quotaRps: 30, unknownIds: [...(scenario.unknownIds ?? []), ...bulkUnknown] },
  issuers: [{ issuerId, kid: keyId, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() }],
});

// Paths relative to the project folder, where the job runs: what it prints reads as in the README.
const configFile = join(demo, 'd1-optout.config.json');
writeFileSync(
  configFile,
  JSON.stringify(
    {
      d1: { baseUrl: sim.baseUrl, tokenUrl: sim.tokenUrl, issuerId, keyId, privateKeyFile: rel(keyFile) },
      rate: { requestsPerSecond: 40, concurrency: 8, backoffBaseMs: 100 },
      pending: { pollIntervalMs: 250, maxWaitMs: 5000 },
      ledger: rel(join(demo, 'ledger.sqlite')),
      reportsDir: rel(join(demo, 'reports')),
      inbox: rel(join(demo, 'inbox')),
      archive: rel(join(demo, 'archive')),
      quarantine: rel(join(demo, 'quarantine')),
      // The demo copies each night's files into the inbox whole, just before it runs the job: none
      // is still being written, so none needs to settle (a real inbox keeps the default 60 s).
      input: { settleSec: 0 },
      log: { file: rel(join(demo, 'log', 'd1-optout.log')), progressEverySec: 2 },
    },
    null,
    2,
  ),
  { mode: 0o600 },
);
const metricsFile = join(demo, 'metrics', 'd1_optout.prom');

/** A delivery of `n` closed cards, with two rows an issuer's export got wrong. */
function writeBulkFile(name: string, prefix: string, n: number): void {
  const rows = Array.from({ length: n }, (_, i) => `${prefix}-${String(i + 1).padStart(4, '0')},,CLOSED,`);
  rows.splice(10, 0, `${prefix}-BAD1,,EXPIRED,`, `${prefix}-BAD2<b>,,CLOSED,`);
  writeFileSync(join(demo, 'inbox', name), ['card_id,consumer_id,reason,scope', ...rows].join('\n') + '\n');
}

const inbox = join(root, 'fixtures', 'inbox');
const nightly = join(root, 'dist', 'jobs', 'nightly-optout.js');
const cli = join(root, 'dist', 'src', 'cli', 'main.js');
const exitMeaning = (code: number | null) =>
  code === 0 ? 'completed' : code === 1 ? 'completed with failures, as the demo files intend: see failures.csv' : 'see the README, exit codes';

// The job runs as a child process, as cron would run it; spawned asynchronously because the
// simulator it talks to lives in this process and must keep answering.
async function runNightly(title: string, how: 'terminal' | 'cron'): Promise<number> {
  const args = [nightly, '--config', rel(configFile), '--metrics-file', rel(metricsFile)];
  process.stdout.write(`\n=== ${title}\n$ node ${rel(nightly)} --config ${rel(configFile)} --metrics-file ${rel(metricsFile)}${how === 'cron' ? ' 2>&1 | cat' : ''}\n`);
  // On a terminal the child shares it (live bars on a TTY); as cron, its output is a pipe, shown here line by line.
  const child = spawn(process.execPath, args, { stdio: how === 'terminal' ? 'inherit' : ['ignore', 'pipe', 'pipe'], cwd: root });
  if (how === 'cron') {
    for (const s of [child.stdout, child.stderr]) if (s) createInterface({ input: s }).on('line', (line) => process.stdout.write(`  | ${line}\n`));
  }
  const [code] = (await once(child, 'close')) as [number | null];
  process.stdout.write(`(exit code ${code ?? 'none'}: ${exitMeaning(code)})\n`);
  return code ?? 4;
}

async function runCli(args: string[]): Promise<number> {
  process.stdout.write(`\n$ d1-optout ${args.join(' ')} --config ${rel(configFile)}\n`);
  const child = spawn(process.execPath, [cli, ...args, '--config', rel(configFile)], { stdio: 'inherit', cwd: root });
  const [code] = (await once(child, 'close')) as [number | null];
  return code ?? 4;
}

/** A card whose opt-out D1 answered PENDING and later settled: its timeline shows both requests. */
function cardPolledOnce(): string | undefined {
  const ledger = Ledger.open(join(demo, 'ledger.sqlite'), { readonly: true });
  try {
    return ledger.db
      .prepare<[], { target_id: string }>(
        `SELECT t.target_id FROM attempts a JOIN targets t ON t.pk = a.target_pk
          WHERE a.kind = 'GET_OPERATION' AND t.scope = 'CARD' AND t.state = 'OPTED_OUT' ORDER BY a.id LIMIT 1`,
      )
      .get()?.target_id;
  } finally {
    ledger.close();
  }
}

const optOutCalls = () => Object.values(sim.state().optOutCalls).reduce((n, v) => n + v, 0);
let worst = 0;
try {
  // The first install: init binds the ledger to this D1 (here the simulator), check --live proves the setup with one token.
  process.stdout.write('\n=== Install: create the ledger, then check everything (one token from D1, nothing else sent)');
  worst = Math.max(worst, await runCli(['init']), await runCli(['check', '--live']));
  for (const f of readdirSync(inbox)) copyFileSync(join(inbox, f), join(demo, 'inbox', f));
  worst = Math.max(worst, await runNightly('First night: the fixture inbox', 'terminal'));
  const first = optOutCalls();
  for (const f of readdirSync(inbox)) copyFileSync(join(inbox, f), join(demo, 'inbox', f));
  worst = Math.max(worst, await runNightly('Second night: the same files delivered again', 'terminal'));
  const second = optOutCalls() - first;
  process.stdout.write(`Simulator ground truth: ${first} opt-out call(s) on the first night, ${second} on the second.\n`);

  writeBulkFile('closed-cards-2026-11-30.csv', 'BULK-A', 300);
  const before = new Set(readdirSync(join(demo, 'reports')));
  worst = Math.max(worst, await runNightly('Third night: 300 cards while D1 admits 30 requests a second (live bars when this is a terminal)', 'terminal'));
  const thirdNight = readdirSync(join(demo, 'reports')).find((b) => !before.has(b));
  writeBulkFile('closed-cards-2026-12-01.csv', 'BULK-B', 200);
  worst = Math.max(worst, await runNightly('Fourth night: 200 cards as cron runs it, output to a file (a progress line every log.progressEverySec)', 'cron'));

  process.stdout.write('\n=== What operations staff look at in the morning\n');
  await runCli(['status']);
  await runCli(['show', bulkUnknown[0]!]);
  const polled = cardPolledOnce();
  if (polled) await runCli(['show', polled]);
  process.stdout.write(`\n$ cat ${rel(metricsFile)}   # for the Prometheus textfile collector\n${readFileSync(metricsFile, 'utf8')}`);
  process.stdout.write(`\nEach batch folder has a report.html for people; the third night's: ${rel(join(demo, 'reports', thirdNight ?? '', 'report.html'))}\n`);
  process.stdout.write(`Everything is under ${rel(demo)}/ (ledger, reports, log, archive, metrics).\n`);
} finally {
  await sim.close();
}
// 0 and 1 are both a job that did its work; anything else means the demo itself broke.
process.exit(worst <= 1 ? 0 : worst);
