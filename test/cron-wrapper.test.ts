import { spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, ROOT, closeWorldsAfterEach, csv, makeWorld, type World } from './helpers.js';

// jobs/notify-on-failure.sh: cron mails its stdout, so a clean night must print nothing and
// every other night the summary and the reason.
const HEADER = 'card_id,consumer_id,reason,scope';
const WRAPPER = join(ROOT, 'jobs', 'notify-on-failure.sh');
closeWorldsAfterEach();

function wrapped(world: World, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; dated: string }> {
  const logDir = join(world.dir, 'cron-out');
  return new Promise((resolve) => {
    const child = spawn(WRAPPER, [logDir, 'nightly', process.execPath, CLI, ...args], { cwd: world.dir });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => {
      const files = readdirSync(logDir);
      expect(files).toEqual([`nightly-${new Date().toISOString().slice(0, 10)}.out`]);
      resolve({ code, stdout, stderr, dated: readFileSync(join(logDir, files[0]!), 'utf8') });
    });
  });
}

describe('cron wrapper', () => {
  it('exit 0: nothing on stdout (no mail), the full summary in the dated file', async () => {
    const world = await makeWorld();
    const r = await wrapped(world, ['run', '--config', world.configFile, world.file('a.csv', csv(HEADER, ['CARD-1,,CLOSED,']))]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('');
    expect(r.dated).toMatch(/^Batch \S+ \(run\): COMPLETED in /m);
    expect(r.dated).toMatch(/^Next: nothing to do/m);
  });

  it('exit 1: the exit code, the summary paragraph and the Next lines', async () => {
    const world = await makeWorld({ scenario: { unknownIds: ['CARD-404'] } });
    const r = await wrapped(world, ['run', '--config', world.configFile, world.file('a.csv', csv(HEADER, ['CARD-1,,CLOSED,', 'CARD-404,,CLOSED,']))]);
    expect(r.code).toBe(1);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(/^d1-optout nightly on \S+ exited 1 \(completed with failures\)\.$/);
    expect(lines[1]).toMatch(/^Full output: \S+nightly-\d{4}-\d\d-\d\d\.out$/);
    expect(r.stdout).toMatch(/^Batch \S+ \(run\): COMPLETED_WITH_FAILURES in /m);
    expect(r.stdout).toMatch(/^Inputs: 1 file\(s\) read; rows 2 = 2 valid \+ 0 rejected$/m);
    expect(r.stdout).toMatch(/^Next: 1 failed permanently .* rerun --batch \S+ --include-permanent --config /m);
    expect(r.stdout).not.toMatch(/Outcome \(input rows\)/); // the paragraph only; the rest is in the file
    expect(r.dated).toMatch(/Outcome \(input rows\)/);
  });

  it('exit 2: the reason the job gave on stderr', async () => {
    const world = await makeWorld();
    const r = await wrapped(world, ['run', '--config', world.configFile, join(world.dir, 'missing.csv')]);
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/exited 2 \(refused: usage, configuration or unreadable input; nothing was done\)/);
    expect(r.stdout).toMatch(/^d1-optout: .*missing\.csv/m);
    expect(r.dated).toMatch(/^d1-optout: .*missing\.csv/m);
  });

  it('exit 4: the abort reason', async () => {
    const world = await makeWorld({ scenario: { outages: [{ startMs: 0, endMs: 600_000 }] }, config: { rate: { concurrency: 1, maxAttempts: 2 }, abort: { maxConsecutiveFailures: 6 } } });
    const rows = Array.from({ length: 10 }, (_, i) => `CARD-O${i},,CLOSED,`);
    const r = await wrapped(world, ['run', '--config', world.configFile, world.file('a.csv', csv(HEADER, rows))]);
    expect(r.code).toBe(4);
    expect(r.stdout).toMatch(/exited 4 \(aborted; the next run resumes from the ledger\)/);
    expect(r.stdout).toMatch(/^Aborted: D1's token endpoint looks unavailable: 6 requests in a row got no access token/m);
    expect(r.stdout).toMatch(/^Next: \d+ to retry: /m);
  });

  it('the mail quotes the job\'s own lines from stderr (warnings, errors), not its progress lines', async () => {
    const world = await makeWorld({ scenario: { unknownIds: ['CARD-404'] }, config: { rate: { requestsPerSecond: 8 }, log: { level: 'info', progressEverySec: 1 } } });
    const rows = [...Array.from({ length: 16 }, (_, i) => `CARD-W${i},,CLOSED,`), 'CARD-404,,CLOSED,'];
    const r = await wrapped(world, ['run', '--config', world.configFile, world.file('a.csv', csv(HEADER, rows))]);
    expect(r.code).toBe(1);
    expect(r.dated).toMatch(/^d1-optout: \S+Z progress \[/m);
    expect(r.stdout).toMatch(/^d1-optout: \S+Z warn \[\S+\]: opt-out of CARD CARD-404 failed/m);
    expect(r.stdout).not.toMatch(/ progress /);
  });

  it('writes nothing through another user\'s link or into another user\'s folder: exit 2, one line, the job not run', async () => {
    const world = await makeWorld();
    // Tests run as root; uid 65534 is the other user of the host, who may plant links in a folder it can write.
    const OTHER_UID = 65534;
    const victim = join(world.dir, 'bashrc');
    writeFileSync(victim, 'PS1=x\n', { mode: 0o600 });
    const dated = (dir: string) => join(dir, `nightly-${new Date().toISOString().slice(0, 10)}.out`);
    const refused = async (logDir: string, message: string) => {
      const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(WRAPPER, [logDir, 'nightly', process.execPath, CLI, 'run', '--config', world.configFile, world.file('a.csv', csv(HEADER, ['CARD-1,,CLOSED,']))], { cwd: world.dir });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(`d1-optout: ${message}\n`);
      expect(readFileSync(victim, 'utf8')).toBe('PS1=x\n');
      expect(world.sim.state().requests).toBe(0);
    };

    const linked = join(world.dir, 'linked');
    mkdirSync(linked, { mode: 0o700 });
    symlinkSync(victim, dated(linked));
    await refused(linked, `${dated(linked)} is a symbolic link; refusing to write through it (remove it)`);

    const theirsFile = join(world.dir, 'theirs-file');
    mkdirSync(theirsFile, { mode: 0o700 });
    writeFileSync(dated(theirsFile), '');
    chownSync(dated(theirsFile), OTHER_UID, OTHER_UID);
    await refused(theirsFile, `${dated(theirsFile)} does not belong to this user (root); refusing to write to it (remove it)`);

    const open = join(world.dir, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    await refused(open, `${open} is writable by group or others; run chmod go-w ${open}`);

    const theirs = join(world.dir, 'theirs');
    mkdirSync(theirs, { mode: 0o700 });
    chownSync(theirs, OTHER_UID, OTHER_UID);
    await refused(theirs, `${theirs} does not belong to this user (root); give a folder of its own as LOG_DIR`);

    const dirLink = join(world.dir, 'dir-link');
    symlinkSync(linked, dirLink);
    await refused(dirLink, `${dirLink} is a symbolic link; give the real folder as LOG_DIR`);
  });

  it('a new LOG_DIR and its dated file are the job user\'s only (0700, 0600)', async () => {
    const world = await makeWorld();
    const r = await wrapped(world, ['run', '--config', world.configFile, world.file('a.csv', csv(HEADER, ['CARD-1,,CLOSED,']))]);
    expect(r.code).toBe(0);
    const logDir = join(world.dir, 'cron-out');
    expect(statSync(logDir).mode & 0o777).toBe(0o700);
    expect(statSync(join(logDir, readdirSync(logDir)[0]!)).mode & 0o777).toBe(0o600);
  });
});
