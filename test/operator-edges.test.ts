import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, closeWorldsAfterEach, csv, makeWorld, runCli } from './helpers.js';

const HEADER = 'card_id,consumer_id,reason,scope';
closeWorldsAfterEach();

function node(args: string[], env: NodeJS.ProcessEnv = {}, cwd = ROOT): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('operator edges', () => {
  it('a key path set by the environment that points nowhere: exit 2 naming the variable', async () => {
    const world = await makeWorld();
    const missing = join(world.dir, 'no-such-key.pem');
    const r = await runCli(['run', '--config', world.configFile, world.file('a.csv', csv(HEADER, ['CARD-1,,CLOSED,']))], { D1_PRIVATE_KEY_FILE: missing });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`D1_PRIVATE_KEY_FILE (config key d1.privateKeyFile): ${missing} cannot be read (ENOENT)`);
    // From the file, it is named as the config key.
    const cfg = world.configFile;
    const raw = JSON.parse(readFileSync(cfg, 'utf8')) as { d1: Record<string, unknown> };
    writeFileSync(cfg, JSON.stringify({ ...raw, d1: { ...raw.d1, privateKeyFile: missing } }));
    const f = await runCli(['run', '--config', cfg, join(world.dir, 'a.csv')]);
    expect(f.code).toBe(2);
    expect(f.stderr).toContain(`d1-optout: config key d1.privateKeyFile: ${missing} cannot be read`);
    expect(world.sim.state().requests).toBe(0);
  });

  it('nightly-optout --inbox DIR reads that folder instead of the configured inbox', async () => {
    const world = await makeWorld();
    const inbox = join(world.dir, 'other-inbox');
    const archive = join(world.dir, 'other-archive');
    mkdirSync(inbox);
    writeFileSync(join(inbox, 'a.csv'), csv(HEADER, ['CARD-IN1,,CLOSED,']));
    const r = await node([join(ROOT, 'dist', 'jobs', 'nightly-optout.js'), '--config', world.configFile, '--inbox', inbox, '--archive', archive, '--json', '--quiet']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ outcomes: { OPTED_OUT: 1 } });
    expect(existsSync(join(archive, 'a.csv'))).toBe(true);
    expect(world.sim.state().optOutCalls['CARD:CARD-IN1']).toBe(1);
  });

  it('every command\'s --help works without any config, with exit codes, environment variables and an example', async () => {
    for (const cmd of ['run', 'rerun', 'poll', 'status', 'show', 'report', 'sim']) {
      const r = await node([join(ROOT, 'dist', 'src', 'cli', 'main.js'), cmd, '--help'], { D1_OPTOUT_CONFIG: join(ROOT, 'no-such-config.json') });
      expect(r.code, cmd).toBe(0);
      expect(r.stdout, cmd).toMatch(new RegExp(`Examples:\\n +d1-optout ${cmd}\\b`));
      expect(r.stdout, cmd).toMatch(/Exit codes: 0 completed, 1 completed with failures[\s\S]*4 aborted/);
      expect(r.stdout, cmd).toMatch(/D1_OPTOUT_CONFIG[\s\S]*D1_PRIVATE_KEY_FILE/);
    }
  });

  it('--help needs no config at all, for every command and both cron entries (no --config, no $D1_OPTOUT_CONFIG, none in the folder)', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'd1-optout-noconfig-'));
    const { D1_OPTOUT_CONFIG: _unset, ...env } = process.env;
    try {
      const main = join(ROOT, 'dist', 'src', 'cli', 'main.js');
      const entries = [
        ...['init', 'check', 'run', 'rerun', 'poll', 'status', 'show', 'report', 'sim', 'backup', 'prune'].map((cmd) => [main, cmd, '--help']),
        [join(ROOT, 'dist', 'jobs', 'nightly-optout.js'), '--help'],
        [join(ROOT, 'dist', 'jobs', 'rerun-failed.js'), '--help'],
      ];
      for (const args of entries) {
        const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
          const child = spawn(process.execPath, args, { env, cwd: empty });
          let stdout = '';
          let stderr = '';
          child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
          child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
          child.on('close', (code) => resolve({ code, stdout, stderr }));
        });
        const what = args.slice(0, 2).join(' ');
        expect(r.stderr, what).toBe('');
        expect(r.code, what).toBe(0);
        expect(r.stdout, what).toMatch(/^d1-optout \S+/);
        expect(r.stdout, what).toContain('--log-level');
      }
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('--log-level on any command overrides log.level, for the log file and stderr; a level it does not know is exit 2', async () => {
    const world = await makeWorld({ scenario: { unknownIds: ['CARD-404'] }, config: { log: { level: 'error' } } });
    const levels = () => readFileSync(world.config.log.file, 'utf8').split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { level: string }).level);
    const debug = await runCli(['run', '--log-level', 'debug', '--config', world.configFile, world.file('a.csv', csv(HEADER, ['CARD-1,,CLOSED,']))]);
    expect(debug.code).toBe(0);
    expect(levels()).toContain('debug');
    rmSync(world.config.log.file);
    // log.level error in the config, --log-level warn: the 404 is a warning in the log and on stderr.
    const warn = await runCli(['run', '--log-level=warn', '--config', world.configFile, world.file('b.csv', csv(HEADER, ['CARD-404,,CLOSED,']))]);
    expect(warn.code).toBe(1);
    expect(levels()).toContain('warn');
    expect(warn.stderr).toMatch(/^d1-optout: \S+Z warn \[\S+\]: opt-out of CARD CARD-404 failed/m);
    rmSync(world.config.log.file);
    // And the other way round: error only, so neither the log nor stderr (cron mail) gets the warning.
    const rerun = await runCli(['rerun', '--last', '--include-permanent', '--log-level', 'error', '--config', world.configFile]);
    expect(rerun.code).toBe(1);
    expect(rerun.stderr).toBe('');
    expect(existsSync(world.config.log.file) ? levels() : []).toEqual([]);
    for (const cmd of [['status'], ['show', 'CARD-1'], ['poll', '--wait', '0'], ['report', '--batch', 'NOPE']]) {
      const r = await runCli([...cmd, '--log-level', 'debug', '--config', world.configFile]);
      expect(r.code, cmd.join(' ')).toBe(cmd[0] === 'report' ? 2 : 0);
    }
    const bad = await runCli(['status', '--log-level', 'loud', '--config', world.configFile]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/log-level/);
  });

  it('every line the job writes on stderr starts with "d1-optout: ": errors, usage, warnings, progress, the simulator, the nightly job', async () => {
    const world = await makeWorld({ scenario: { unknownIds: ['CARD-404'], latencyMs: 30 }, config: { rate: { requestsPerSecond: 10 }, log: { level: 'info', progressEverySec: 1 } } });
    const runs = [
      // A warning from the log and progress lines off a terminal.
      await runCli(['run', '--config', world.configFile, world.file('a.csv', csv(HEADER, [...Array.from({ length: 15 }, (_, i) => `CARD-P${i},,CLOSED,`), 'CARD-404,,CLOSED,']))]),
      // A usage error of yargs over several lines.
      await runCli(['status', '--log-level', 'loud', '--config', world.configFile]),
      await runCli(['run', '--config', world.configFile, join(world.dir, 'missing.csv')]),
      await runCli(['sim', '--scenario', join(world.dir, 'missing-scenario.json')]),
      await node([join(ROOT, 'dist', 'jobs', 'nightly-optout.js'), '--config', join(world.dir, 'no-such-config.json')]),
    ];
    expect(runs.map((r) => r.code)).toEqual([1, 2, 2, 2, 2]);
    expect(runs[0]!.stderr).toMatch(/^d1-optout: \S+Z progress \[/m);
    expect(runs[0]!.stderr).toMatch(/^d1-optout: \S+Z warn \[/m);
    for (const r of runs) {
      const lines = r.stderr.replace(/\n$/, '').split('\n');
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) expect(line, r.stderr).toMatch(/^d1-optout: ./);
    }
  });

  it('status keeps within 120 columns (outcomes summed, the rest folded under each batch); --wide shows every column', async () => {
    const busy = { status: 503, body: { errorCode: 'UNAVAILABLE', error: 'later' } };
    const world = await makeWorld({
      scenario: { unknownIds: ['CARD-404'], notEnrolledIds: ['CARD-NE'], pendingRate: 0, answers: { 'CARD-503': busy } },
      config: { rate: { maxAttempts: 1 }, pending: { maxWaitMs: 0 }, d1: { notEnrolledErrorCodes: ['CARD_NOT_ENROLLED'] } },
    });
    const rows = ['CARD-1,,CLOSED,', 'CARD-1,,CLOSED,', 'CARD-404,,CLOSED,', 'CARD-503,,CLOSED,', 'CARD-NE,,CLOSED,', 'CARD-X,,NOPE,'];
    expect((await runCli(['run', '--config', world.configFile, world.file('a.csv', csv(HEADER, rows))])).code).toBe(1);
    expect((await runCli(['run', '--config', world.configFile, world.file('b.csv', csv(HEADER, ['CARD-1,,CLOSED,', 'CARD-NE,,CLOSED,']))])).code).toBe(1);
    expect((await runCli(['rerun', '--last', '--config', world.configFile])).code).toBe(1);

    const wide = await runCli(['status', '--wide', '--config', world.configFile]);
    expect(wide.code).toBe(0);
    const wideHeader = wide.stdout.split('\n')[0]!;
    for (const col of ['PARENT', 'OPTED_OUT', 'FAIL_RETRY', 'FAIL_PERM', 'SKIP_DUP', 'SKIP_DONE', 'NOT_ENROL', 'SKIP_NOENR']) expect(wideHeader).toContain(col);
    expect(wideHeader.length).toBeGreaterThan(120);

    const status = await runCli(['status', '--config', world.configFile]);
    expect(status.code).toBe(0);
    const lines = status.stdout.replace(/\n$/, '').split('\n');
    // Every line fits, but the command to type next: it is copied whole.
    for (const line of lines.filter((l) => !l.startsWith('Details: '))) expect(line.length, line).toBeLessThanOrEqual(120);
    const header = lines[0]!;
    expect(header).toMatch(/^BATCH +.*STATUS +.*ROWS +.*OPTED_OUT +.*FAILED/);
    expect(header).not.toMatch(/FAIL_RETRY|FAIL_PERM|SKIP_DUP/);
    expect(status.stdout).toContain('FAILED=FAILED_RETRYABLE+FAILED_PERMANENT+NOT_ATTEMPTED');
    expect(status.stdout).toMatch(/Folded to fit 120 columns.*--wide shows every/s);
    // The first run: 6 rows, 1 rejected, 1 opted out, 2 failed (404, 503), 1 not enrolled, 1 duplicate;
    // the numbers of the folded table add up to the wide one's.
    const json = JSON.parse((await runCli(['status', '--json', '--config', world.configFile])).stdout) as { batches: { id: string; parent: string | null }[] };
    const first = json.batches[2]!.id;
    const cols = header.split(/\s{2,}/);
    const row = lines.find((l) => l.startsWith(first))!.split(/\s{2,}/);
    const cell = (name: string) => row[cols.indexOf(name)];
    expect([cell('ROWS'), cell('FAILED'), cell('OPTED_OUT')]).toEqual(['6', '2', '1']);
    // The rerun's parent is still there, whole, on the line under it (or in its column when it fits).
    const rerunId = json.batches[0]!.id;
    const parent = json.batches[0]!.parent!;
    const at = lines.findIndex((l) => l.startsWith(rerunId));
    expect(cols.includes('PARENT') ? lines[at] : lines[at + 1]).toContain(parent);
  });
});

