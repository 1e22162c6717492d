import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
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
});
