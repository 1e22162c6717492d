// `npm run demo`: the nightly job, end to end, on embedded defaults. Starts the bundled D1
// simulator on a free loopback port, generates a throw-away issuer key, copies the fixture inbox
// to var/demo/inbox and runs jobs/nightly-optout against it, twice: the second run shows that
// nothing is sent again. Everything it writes is under var/demo/, which it starts afresh.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { generateKeyPairSync } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadScenarioFile, startSimulator } from '../src/sim/index.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const demo = join(root, 'var', 'demo');
rmSync(demo, { recursive: true, force: true });
mkdirSync(join(demo, 'inbox'), { recursive: true, mode: 0o700 });

const issuerId = 'DEMOISSUER';
const keyId = 'demo-key-1';
const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const keyFile = join(demo, 'issuer-es256.test-only.pem');
writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });

const sim = await startSimulator({
  port: 0,
  scenario: await loadScenarioFile(join(root, 'fixtures', 'sim', 'demo.json')),
  issuers: [{ issuerId, kid: keyId, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() }],
});

const configFile = join(demo, 'd1-optout.config.json');
writeFileSync(
  configFile,
  JSON.stringify(
    {
      d1: { baseUrl: sim.baseUrl, tokenUrl: sim.tokenUrl, issuerId, keyId, privateKeyFile: keyFile },
      rate: { requestsPerSecond: 50, concurrency: 8, backoffBaseMs: 100 },
      pending: { pollIntervalMs: 250, maxWaitMs: 5000 },
      ledger: join(demo, 'ledger.sqlite'),
      reportsDir: join(demo, 'reports'),
      inbox: join(demo, 'inbox'),
      archive: join(demo, 'archive'),
      log: { file: join(demo, 'log', 'd1-optout.log') },
    },
    null,
    2,
  ),
  { mode: 0o600 },
);

const inbox = join(root, 'fixtures', 'inbox');
const nightly = join(root, 'dist', 'jobs', 'nightly-optout.js');
// The job runs as a child process, as cron would run it; spawned asynchronously because the
// simulator it talks to lives in this process and must keep answering.
const runNightly = async (title: string): Promise<number> => {
  process.stdout.write(`\n=== ${title}\n$ node dist/jobs/nightly-optout.js --config ${configFile.slice(root.length + 1)}\n`);
  const child = spawn(process.execPath, [nightly, '--config', configFile], { stdio: 'inherit', cwd: root });
  const [code] = (await once(child, 'close')) as [number | null];
  const meaning = code === 0 ? 'completed' : code === 1 ? 'completed with failures, as the demo files intend: see failures.csv' : 'see the README, exit codes';
  process.stdout.write(`(exit code ${code ?? 'none'}: ${meaning})\n`);
  return code ?? 4;
};

let worst = 0;
try {
  for (const f of readdirSync(inbox)) copyFileSync(join(inbox, f), join(demo, 'inbox', f));
  worst = Math.max(worst, await runNightly('First night: the fixture inbox'));
  const optOuts = Object.values(sim.state().optOutCalls).reduce((n, v) => n + v, 0);
  for (const f of readdirSync(inbox)) copyFileSync(join(inbox, f), join(demo, 'inbox', f));
  worst = Math.max(worst, await runNightly('Second night: the same files delivered again'));
  const again = Object.values(sim.state().optOutCalls).reduce((n, v) => n + v, 0) - optOuts;
  process.stdout.write(`\nSimulator ground truth: ${optOuts} opt-out call(s) on the first night, ${again} on the second.\n`);
  process.stdout.write(`Everything is under ${demo.slice(root.length + 1)}/ (ledger, reports, log, archive).\n`);
  process.stdout.write(`Try: node dist/src/cli/main.js status --config ${configFile.slice(root.length + 1)}\n`);
} finally {
  await sim.close();
}
// 0 and 1 are both a job that did its work; anything else means the demo itself broke.
process.exit(worst <= 1 ? 0 : worst);
