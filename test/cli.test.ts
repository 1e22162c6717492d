import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, csv, makeWorld, optOutCalls, ROOT, runCli, type World, closeWorldsAfterEach } from './helpers.js';

// The built CLI as operators and cron run it: real child processes, exit codes of docs/design.md §5.
const HEADER = 'card_id,consumer_id,reason,scope';

let world: World | null = null;
closeWorldsAfterEach();

describe('d1-optout command line', () => {
  it('run: exit 0 when everything is opted out, the summary on stdout; then status and show answer from the ledger', async () => {
    world = await makeWorld();
    const a = world.file('a.csv', csv(HEADER, ['CARD-C1,CONS-1,CLOSED,', 'CARD-C2,,FRAUD,']));
    const run = await runCli(['run', '--config', world.configFile, a]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/Batch \S+ \(run\): COMPLETED/);
    expect(run.stdout).toMatch(/OPTED_OUT\s+2/);
    expect(run.stdout).toMatch(/rows 2 = 2 valid \+ 0 rejected/);

    const status = await runCli(['status', '--config', world.configFile, '--json']);
    expect(status.code).toBe(0);
    const parsed = JSON.parse(status.stdout) as { batches: { status: string; outcomes: Record<string, number> }[] };
    expect(parsed.batches[0]).toMatchObject({ status: 'COMPLETED', outcomes: { OPTED_OUT: 2 } });

    const show = await runCli(['show', 'CARD-C1', '--config', world.configFile]);
    expect(show.code).toBe(0);
    expect(show.stdout).toMatch(/CARD CARD-C1: OPTED_OUT, operation \S+, 1 opt-out request/);
    expect(show.stdout).toMatch(/OPT_OUT\s+HTTP 200 SUCCESSFUL/);
    expect(show.stdout).toContain(`${a}:2`);
    const missing = await runCli(['show', 'CARD-NEVER', '--config', world.configFile]);
    expect(missing.code).toBe(2);
  });

  it('status is an aligned table of recent batches; show is a card\'s timeline across batches; the summary has the run\'s figures', async () => {
    world = await makeWorld({ scenario: { answers: { 'CARD-S2': { status: 503, body: { errorCode: 'UNAVAILABLE', error: 'try later' }, times: 1 } } }, config: { rate: { maxAttempts: 1 } } });
    const a = world.file('a.csv', csv(HEADER, ['CARD-S1,,CLOSED,', 'CARD-S2,,FRAUD,', 'CARD-S1,,CLOSED,', 'CARD-S3,,BAD,']));
    const run = await runCli(['run', '--config', world.configFile, a]);
    expect(run.code).toBe(1);
    for (const figure of ['Rejected rows', 'Duration', 'D1 requests', 'Achieved rate', '429 answers', 'Time paused']) {
      expect(run.stdout).toMatch(new RegExp(`^  ${figure} +\\S`, 'm'));
    }
    expect(run.stdout).toMatch(/^ {2}Rejected rows +1 +see rejects\.csv$/m);
    expect(run.stdout).toMatch(/^Report: \S+\/report\.html /m);
    const batchId = /Batch (\S+) \(run\)/.exec(run.stdout)![1]!;
    const rerun = await runCli(['rerun', '--last', '--config', world.configFile]);
    expect(rerun.code).toBe(0);
    expect(rerun.stdout).toMatch(/^Next: nothing to do/m);
    const rerunId = /Batch (\S+) \(rerun of /.exec(rerun.stdout)![1]!;

    const status = await runCli(['status', '--wide', '--config', world.configFile]);
    expect(status.code).toBe(0);
    const [header, ...rest] = status.stdout.split('\n');
    const rows = rest.slice(0, 2);
    // The rerun finished what the run left: the run says by which batch.
    expect(header).toMatch(/^BATCH +KIND +PARENT +STARTED \(UTC\) +DURATION +STATUS +ROWS +REJECTED +OPTED_OUT +FAIL_RETRY +SKIP_DUP +RESOLVED BY$/);
    expect(rows[0]).toMatch(new RegExp(`^${rerunId} +rerun +${batchId} +\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d +\\d+\\.\\d s +COMPLETED +0 +0 +1 +0 +0$`));
    expect(rows[1]).toMatch(new RegExp(`^${batchId} +run +- +\\S+ \\S+ +\\d+\\.\\d s +COMPLETED_WITH_FAILURES +4 +1 +1 +1 +1 +${rerunId}$`));
    // Aligned: text columns start, number columns end, where their heading does.
    const starts = ['BATCH', 'KIND', 'PARENT', 'STARTED', 'STATUS'].map((h) => header!.indexOf(h));
    expect(rows[1]!.indexOf(rerunId)).toBe(header!.indexOf('RESOLVED BY'));
    const ends = ['DURATION', 'ROWS', 'REJECTED', 'OPTED_OUT', 'FAIL_RETRY', 'SKIP_DUP'].map((h) => header!.indexOf(h) + h.length);
    for (const row of rows) {
      for (const at of starts) expect(row![at - 1] ?? ' ', row).toBe(' ');
      for (const at of starts) expect(row![at], row).not.toBe(' ');
      for (const at of ends) expect([row![at - 1] !== ' ', row![at] ?? ' '], row).toEqual([true, ' ']);
    }
    expect(status.stdout).toContain('FAIL_RETRY=FAILED_RETRYABLE');
    expect(status.stdout).toContain(`status --batch ${rerunId} --config ${world.configFile}`);
    expect(status.stdout).toMatch(new RegExp(`^Details: \\S+ \\S+ status --batch ${rerunId} --config `, 'm'));
    const json = JSON.parse((await runCli(['status', '--json', '--config', world.configFile])).stdout) as { batches: { id: string; parent: string | null; durationMs: number }[] };
    expect(json.batches.map((b) => [b.id, b.parent])).toEqual([[rerunId, batchId], [batchId, null]]);
    expect(json.batches[0]!.durationMs).toBeGreaterThanOrEqual(0);

    const show = await runCli(['show', 'CARD-S2', '--config', world.configFile]);
    expect(show.code).toBe(0);
    const lines = show.stdout.split('\n');
    const first = lines.findIndex((l) => l.includes(`batch ${batchId} (run, started `));
    const second = lines.findIndex((l) => l.includes(`batch ${rerunId} (rerun, started `));
    expect(first).toBeGreaterThan(0);
    expect(second).toBeGreaterThan(first);
    expect(lines.slice(first, second).join('\n')).toMatch(new RegExp(`${a}:3 \\(FRAUD\\) -> FAILED_RETRYABLE\\n +\\S+ \\S+ +OPT_OUT +HTTP 503 UNAVAILABLE try later +\\[retryable\\] +correlation \\S+`));
    expect(lines.slice(second).join('\n')).toMatch(new RegExp(`carry-over:${batchId} -> OPTED_OUT\\n +\\S+ \\S+ +OPT_OUT +HTTP 200 SUCCESSFUL +operation \\S+ +\\[done\\] +correlation \\S+`));
  });

  it('run: exit 1 with failures, naming the rerun command', async () => {
    world = await makeWorld({ scenario: { fail5xxRate: 1 }, config: { rate: { maxAttempts: 1 } } });
    const run = await runCli(['run', '--config', world.configFile, world.file('a.csv', csv(HEADER, ['CARD-F,,CLOSED,']))]);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/Next: 1 to retry: \S+ \S+main\.js rerun --batch \S+ --config \S+/);
  });

  it('exit 2: an unknown config key, named in one line; no ledger created, no call made', async () => {
    world = await makeWorld();
    const cfg = JSON.parse(readFileSync(world.configFile, 'utf8')) as Record<string, Record<string, unknown>>;
    cfg['rate']!['requestPerSecond'] = 10;
    writeFileSync(world.configFile, JSON.stringify(cfg));
    const run = await runCli(['run', '--config', world.configFile, world.file('a.csv', csv(HEADER, ['CARD-1,,CLOSED,']))]);
    expect(run.code).toBe(2);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toContain('rate.requestPerSecond is unknown');
    expect(world.ledgerUntouched()).toBe(true);
    expect(world.sim.state().requests).toBe(0);
  });

  it('exit 2: an unreadable input file stops before anything is done, even after a good file', async () => {
    world = await makeWorld();
    const good = world.file('good.csv', csv(HEADER, ['CARD-1,,CLOSED,']));
    const noHeader = world.file('bad.csv', 'CARD-2;;CLOSED\n');
    for (const bad of [join(world.dir, 'missing.csv'), noHeader]) {
      const run = await runCli(['run', '--config', world.configFile, good, bad]);
      expect(run.code).toBe(2);
      expect(run.stderr).toContain(bad);
    }
    expect(world.ledgerUntouched()).toBe(true);
    expect(world.sim.state().requests).toBe(0);
  });

  it('exit 2: a private key readable by others is refused, like ssh does', async () => {
    world = await makeWorld();
    const { chmodSync } = await import('node:fs');
    chmodSync(world.keyFile, 0o644);
    const run = await runCli(['run', '--config', world.configFile, world.file('a.csv', csv(HEADER, ['CARD-1,,CLOSED,']))]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/readable by group or others.*chmod 600/);
    expect(world.sim.state().requests).toBe(0);
  });

  it('exit 2 on a usage error echoes no card number the operator typed by mistake', async () => {
    const pan = '4111111111111111';
    for (const args of [['status', pan], ['show', 'CARD-1', pan], ['report', '--batch', 'B', '4111 1111 1111 1111']]) {
      const run = await runCli(args);
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stderr).toMatch(/^d1-optout: /);
      expect(run.stderr).toMatch(/Unknown argument: 4111.*1111/);
      expect((run.stderr + run.stdout).replace(/\D/g, '')).not.toContain(pan);
    }
  });

  it('exit 2 on usage errors, and every command documents its flags', async () => {
    expect((await runCli(['rerun'])).code).toBe(2);
    expect((await runCli(['no-such-command'])).code).toBe(2);
    for (const cmd of ['run', 'rerun', 'poll', 'status', 'show', 'report', 'sim']) {
      const help = await runCli([cmd, '--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).toContain(`d1-optout ${cmd}`);
    }
    expect((await runCli(['run', '--help'])).stdout).toMatch(/--dry-run[\s\S]*--force[\s\S]*--carry-over/);
  });

  it('exit 3: a second run while one holds the ledger lock, quickly and without calling D1; a killed holder is taken over', async () => {
    world = await makeWorld({ scenario: { latencyMs: 200 }, config: { rate: { requestsPerSecond: 5, concurrency: 1 } } });
    const rows = Array.from({ length: 40 }, (_, i) => `CARD-L${i},,CLOSED,`);
    const a = world.file('a.csv', csv(HEADER, rows));
    const holder = spawn(process.execPath, [CLI, 'run', '--config', world.configFile, a]);
    const sim = world.sim;
    while (optOutCalls(sim) === 0) await new Promise((r) => setTimeout(r, 20));
    const callsBefore = sim.state().requests;
    const started = Date.now();
    const second = await runCli(['run', '--config', world.configFile, world.file('b.csv', csv(HEADER, ['CARD-OTHER,,CLOSED,']))]);
    expect(second.code).toBe(3);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(second.stderr).toMatch(new RegExp(`holds the ledger lock: pid ${holder.pid} on \\S+, since `));
    expect(sim.state().optOutCalls['CARD:CARD-OTHER']).toBeUndefined();
    expect(sim.state().requests - callsBefore).toBeLessThan(20); // only the holder's own calls

    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('close', r));
    const after = await runCli(['run', '--config', world.configFile, join(world.dir, 'b.csv')]);
    expect(after.stderr).toMatch(/took over a stale ledger lock .*process is gone/);
    expect(after.stderr).toMatch(/was left RUNNING by a process that died; marked ABORTED/);
    expect([0, 1]).toContain(after.code);
    expect(sim.state().optOutCalls['CARD:CARD-OTHER']).toBe(1);
  });

  it('--dry-run is side-effect free: no D1 call, no ledger write', async () => {
    world = await makeWorld();
    const a = world.file('a.csv', csv(HEADER, ['CARD-1,,CLOSED,', 'CARD-2,,CLOSED,']));
    const dry1 = await runCli(['run', '--dry-run', '--config', world.configFile, a]);
    expect(dry1.code).toBe(0);
    expect(dry1.stdout).toMatch(/DRY RUN/);
    expect(dry1.stdout).toMatch(/NOT_ATTEMPTED\s+2/);
    expect(world.ledgerUntouched()).toBe(true);
    expect(world.sim.state().requests + world.sim.state().tokenRequests).toBe(0);

    await runCli(['run', '--config', world.configFile, a]);
    const before = readFileSync(world.config.ledger);
    const mtime = statSync(world.config.ledger).mtimeMs;
    const calls = world.sim.state().requests;
    const dry2 = await runCli(['run', '--dry-run', '--force', '--config', world.configFile, a]);
    expect(dry2.stderr).toBe('');
    expect(dry2.stdout).toMatch(/SKIPPED_ALREADY_OPTED_OUT\s+2/);
    expect(readFileSync(world.config.ledger).equals(before)).toBe(true);
    expect(statSync(world.config.ledger).mtimeMs).toBe(mtime);
    expect(world.sim.state().requests).toBe(calls);
  });
});

describe('d1-optout sim', () => {
  it('runs every shipped scenario, mTLS included once its test certificates are made', async () => {
    const made = await runCli(['sim', '--make-certs', 'var/sim-certs']);
    expect(made.code).toBe(0);
    expect(made.stdout).toMatch(/clientCertFile\s+var\/sim-certs\/client.crt/);
    for (const name of ['happy', 'flaky', 'quota', 'outage', 'mtls', 'demo']) {
      const child = spawn(process.execPath, [CLI, 'sim', '--scenario', `fixtures/sim/${name}.json`], { cwd: ROOT });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      while (!/ground truth (\S+)/.test(out) && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
      const stateUrl = /ground truth (\S+)/.exec(out)?.[1];
      expect(stateUrl, `${name}: ${out}`).toBeDefined();
      expect(stateUrl!.startsWith(name === 'mtls' ? 'https://127.0.0.1:' : 'http://127.0.0.1:')).toBe(true);
      if (name !== 'mtls') {
        const state = (await (await fetch(stateUrl!)).json()) as { requests: number };
        expect(state.requests).toBe(0);
      }
      child.kill('SIGTERM');
      const [code] = (await once(child, 'close')) as [number];
      expect(code).toBe(0);
    }
  });
  it('without --config trusts no issuer: neither $D1_OPTOUT_CONFIG nor ./d1-optout.config.json is loaded', async () => {
    world = await makeWorld();
    writeFileSync(join(world.dir, 'd1-optout.config.json'), readFileSync(world.configFile));
    const started = async (args: string[]) => {
      const child = spawn(process.execPath, [CLI, 'sim', ...args], { cwd: world!.dir, env: { ...process.env, D1_OPTOUT_CONFIG: world!.configFile } });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      while (!/trusts/.test(out) && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
      child.kill('SIGTERM');
      await once(child, 'close');
      return out;
    };
    expect(await started([])).toMatch(/trusts no issuer: pass --config/);
    expect(await started(['--config', world.configFile])).toMatch(/trusts issuer TESTISSUER \(kid test-kid-1\)/);
  });
});
