import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'node-html-parser';
import { describe, expect, it } from 'vitest';
import type { BatchSummary } from '../src/types.js';
import { closeWorldsAfterEach, csv, makeWorld, readSummary, runCli, type World } from './helpers.js';

// A batch whose work a later batch finished says so, and says nothing stale to do.
const HEADER = 'card_id,consumer_id,reason,scope';
closeWorldsAfterEach();

const busy = (times: number) => ({ status: 503, body: { errorCode: 'SERVICE_UNAVAILABLE', error: 'busy' }, times });

function batchCount(world: World): number {
  const l = world.ledger();
  try {
    return l.batches.list(1000).length;
  } finally {
    l.close();
  }
}

function html(s: BatchSummary) {
  return parse(readFileSync(join(s.reportDir, 'report.html'), 'utf8'));
}

describe('resolved by a later batch', () => {
  it('a rerun that finishes a batch: status, status --batch and its rewritten report.html say so, with no stale Next', async () => {
    const world = await makeWorld({ scenario: { answers: { 'CARD-F': busy(1) } }, config: { rate: { maxAttempts: 1 } } });
    const a = await world.run([world.file('a.csv', csv(HEADER, ['CARD-1,,CLOSED,', 'CARD-F,,CLOSED,']))]);
    expect(a.exitCode).toBe(1);
    const aId = a.summary.batchId;
    expect(html(a.summary).querySelector('#next')!.text).toContain(`rerun --batch ${aId}`);
    expect(a.summary.resolvedBy).toBeNull();

    const b = await world.rerun({ batch: aId, last: false });
    expect(b.exitCode).toBe(0);
    const bId = b.summary.batchId;

    const status = await runCli(['status', '--wide', '--config', world.configFile]);
    const lines = status.stdout.split('\n');
    const cols = lines[0]!.trim().split(/\s{2,}/);
    const rowA = lines.find((l) => l.startsWith(aId))!.trim().split(/\s{2,}/);
    expect(rowA[cols.indexOf('RESOLVED BY')]).toBe(bId);
    const detail = await runCli(['status', '--batch', aId, '--config', world.configFile]);
    expect(detail.stdout).toContain(`Resolved by ${bId}`);
    expect(detail.stdout).not.toMatch(/rerun --batch/);
    expect(detail.stdout).toMatch(new RegExp(`Next: nothing to do: batch ${bId} finished what this batch left`));

    const rewritten = readSummary(a.summary);
    expect(rewritten.resolvedBy).toBe(bId);
    expect(rewritten.outcomes).toEqual(a.summary.outcomes); // what happened in A is history
    const page = html(a.summary);
    expect(page.querySelector('#resolved-by')!.text).toContain(bId);
    expect(page.querySelector('#next')!.text).not.toContain('rerun');
  });

  it('rerun with nothing to do prints "nothing to rerun", exits 0 and creates no batch', async () => {
    const world = await makeWorld({ scenario: { answers: { 'CARD-F': busy(1) } }, config: { rate: { maxAttempts: 1 } } });
    const a = await world.run([world.file('a.csv', csv(HEADER, ['CARD-F,,CLOSED,']))]);
    const aId = a.summary.batchId;
    const b = await runCli(['rerun', '--last', '--config', world.configFile]);
    expect(b.code).toBe(0);
    const before = batchCount(world);

    const last = await runCli(['rerun', '--last', '--config', world.configFile]);
    expect(last.code).toBe(0);
    expect(last.stdout).toMatch(/^Nothing to rerun in batch \S+: it left nothing undone\. No batch was created\.$/m);
    const again = await runCli(['rerun', '--batch', aId, '--config', world.configFile]);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(new RegExp(`Nothing to rerun in batch ${aId}: batch \\S+ finished what it left`));
    const dry = await runCli(['rerun', '--batch', aId, '--dry-run', '--config', world.configFile]);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain(`Nothing to rerun in batch ${aId}`);
    const json = JSON.parse((await runCli(['rerun', '--batch', aId, '--json', '--config', world.configFile])).stdout) as { nothingToRerun: boolean; parentBatchId: string };
    expect(json).toMatchObject({ nothingToRerun: true, parentBatchId: aId });
    expect(batchCount(world)).toBe(before);
  });

  it('carried over night after night: the first batch is resolved by the one that finished it, and its report rewritten', async () => {
    const world = await makeWorld({ scenario: { answers: { 'CARD-F': busy(2) } }, config: { rate: { maxAttempts: 1 } } });
    const a = await world.run([world.file('a.csv', csv(HEADER, ['CARD-F,,CLOSED,']))]);
    const n1 = await world.run([]);
    expect(n1.summary.carriedOver).toEqual({ FAILED_RETRYABLE: 1 });
    expect(readSummary(a.summary).resolvedBy).toBeNull();
    const n2 = await world.run([]);
    expect(n2.summary.carriedOver).toEqual({ OPTED_OUT: 1 });
    for (const earlier of [a.summary, n1.summary]) {
      expect(readSummary(earlier).resolvedBy).toBe(n2.summary.batchId);
      expect(html(earlier).querySelector('#resolved-by')!.text).toContain(n2.summary.batchId);
    }
  });
});
