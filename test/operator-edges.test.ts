import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, closeWorldsAfterEach, csv, makeWorld, runCli } from './helpers.js';

const HEADER = 'card_id,consumer_id,reason,scope';
closeWorldsAfterEach();

function node(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, cwd: ROOT });
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
});
