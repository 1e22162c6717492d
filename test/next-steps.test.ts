import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'node-html-parser';
import { describe, expect, it } from 'vitest';
import type { BatchSummary } from '../src/types.js';
import { CLI, closeWorldsAfterEach, csv, makeWorld, runCli } from './helpers.js';

// Every "Next:" line is a command that runs as printed on the machine that printed it.
const HEADER = 'card_id,consumer_id,reason,scope';
closeWorldsAfterEach();

/** Runs a printed command line through the shell, elsewhere and without the job's environment. */
function sh(line: string, cwd: string): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve) => {
    const env: NodeJS.ProcessEnv = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/' };
    const child = spawn('/bin/sh', ['-c', line], { cwd, env });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.on('close', (code) => resolve({ code, stdout }));
  });
}

const nextCommands = (stdout: string) => [...stdout.matchAll(/^Next: .*?: (.+)$/gm)].map((m) => m[1]!);

describe('Next: lines', () => {
  it('run as printed from another folder and environment: the same CLI and the same config (given via $D1_OPTOUT_CONFIG)', async () => {
    const world = await makeWorld({ scenario: { answers: { 'CARD-F': { status: 503, body: {}, times: 1 } }, unknownIds: ['CARD-404'], pendingRate: 1, pendingDelayMs: 1500 }, config: { rate: { maxAttempts: 1 }, pending: { maxWaitMs: 0 } } });
    const file = world.file('a.csv', csv(HEADER, ['CARD-F,,CLOSED,', 'CARD-404,,CLOSED,', 'CARD-P,,CLOSED,']));
    const run = await runCli(['run', '--json', file], { D1_OPTOUT_CONFIG: world.configFile });
    const s = JSON.parse(run.stdout) as BatchSummary;
    const text = await runCli(['status', '--batch', s.batchId], { D1_OPTOUT_CONFIG: world.configFile });
    const commands = nextCommands(text.stdout);
    expect(commands).toHaveLength(3); // retry, permanent, pending
    for (const c of commands) expect(c).toContain(`--config ${world.configFile}`);

    // The same lines in report.html.
    const html = parse(readFileSync(join(s.reportDir, 'report.html'), 'utf8'));
    expect(html.querySelectorAll('#next code').map((c) => c.text)).toEqual(commands);

    const elsewhere = tmpdir();
    const poll = await sh(commands.find((c) => / poll /.test(c))!, elsewhere);
    expect(poll.code).toBe(0);
    expect(poll.stdout).toContain(`Batch ${s.batchId}: 0 still pending`);
    const retry = await sh(commands.find((c) => / rerun --batch \S+ --config/.test(c))!, elsewhere);
    expect(retry.code).toBe(0); // CARD-F opted out; CARD-404 is left for --include-permanent
    expect(retry.stdout).toMatch(/\(rerun of \S+\): COMPLETED/);
    expect(world.sim.state().optOutCalls['CARD:CARD-F']).toBe(2);
    const status = await runCli(['status'], { D1_OPTOUT_CONFIG: world.configFile });
    const details = /^Details: (.+)$/m.exec(status.stdout)![1]!;
    expect((await sh(details, elsewhere)).code).toBe(0);
  });

  it('init: its Next line (check --live) runs as printed, with the config init was given', async () => {
    const world = await makeWorld();
    const config = JSON.parse(readFileSync(world.configFile, 'utf8')) as Record<string, unknown>;
    const ledger = join(world.dir, 'fresh', 'ledger.sqlite');
    const file = join(world.dir, 'fresh.config.json');
    writeFileSync(file, JSON.stringify({ ...config, ledger }), { mode: 0o600 });
    const init = await runCli(['init'], { D1_OPTOUT_CONFIG: file });
    expect(init.code).toBe(0);
    const next = /^Next: (.+)$/m.exec(init.stdout)?.[1];
    expect(next).toContain(`check --live --config ${file}`);
    const check = await sh(next!, tmpdir());
    expect(check.stdout).toMatch(new RegExp(`^ok +ledger: ${ledger}: sound, bound to issuer`, 'm'));
    expect(check.stdout).toMatch(/^ok +D1 token/m);
  });

  it('an installed d1-optout (a symlink on PATH) prints its own path', async () => {
    const world = await makeWorld({ scenario: { fail5xxRate: 1 }, config: { rate: { maxAttempts: 1 } } });
    const bin = join(world.dir, 'bin');
    mkdirSync(bin);
    const link = join(bin, 'd1-optout');
    symlinkSync(CLI, link);
    chmodSync(CLI, statSync(CLI).mode | 0o111); // what npm install -g does to a bin
    const run = await sh(`${link} run --config ${world.configFile} ${world.file('a.csv', csv(HEADER, ['CARD-F,,CLOSED,']))}`, world.dir);
    expect(run.code).toBe(1);
    const [retry] = nextCommands(run.stdout);
    const batchId = /^Batch (\S+) \(run\)/m.exec(run.stdout)![1]!;
    expect(retry).toBe(`${link} rerun --batch ${batchId} --config ${world.configFile}`);
    expect((await sh(retry!, tmpdir())).code).toBe(1);
  });
});
