import { describe, expect, it } from 'vitest';
import type { ProgressEvent } from '../src/types.js';
import { assertReconciles, csv, makeWorld, results, closeWorldsAfterEach } from './helpers.js';

// Rule 3 (docs/design.md §3) as D1 and the ledger see it: results.csv saying
// SKIPPED_COVERED_BY_CONSUMER is not enough, the card must not have been called, and the ledger
// must say what happened to it.
const HEADER = 'card_id,consumer_id,reason,scope';

closeWorldsAfterEach();

describe('cards covered by their consumer', () => {
  it('a card whose consumer D1 answered PENDING in this batch is not called', async () => {
    const world = await makeWorld({
      scenario: { pendingRate: 1, pendingDelayMs: 60_000, consumers: { 'CONS-P': ['CARD-P1', 'CARD-P2'] } },
      config: { pending: { maxWaitMs: 0 } },
    });
    const { summary } = await world.run([world.file('a.csv', csv(HEADER, ['CARD-P1,CONS-P,FRAUD,', 'CARD-P2,CONS-P,FRAUD,', ',CONS-P,FRAUD,CONSUMER', 'CARD-Q1,CONS-Q,FRAUD,']))]);
    assertReconciles(summary);
    expect(results(summary).map((l) => [l.target_id, l.outcome])).toEqual([
      ['CARD-P1', 'SKIPPED_COVERED_BY_CONSUMER'],
      ['CARD-P2', 'SKIPPED_COVERED_BY_CONSUMER'],
      ['CONS-P', 'PENDING'],
      ['CARD-Q1', 'PENDING'],
    ]);
    expect(world.sim.state().optOutCalls).toEqual({ 'CONSUMER:CONS-P': 1, 'CARD:CARD-Q1': 1 });

    // The next run carries the pending consumer over to poll it, and still leaves its cards alone.
    const next = await world.run([]);
    assertReconciles(next.summary);
    expect(world.sim.state().optOutCalls).toEqual({ 'CONSUMER:CONS-P': 1, 'CARD:CARD-Q1': 1 });
  });

  it('a card covered by a consumer opted out in this batch is OPTED_OUT in the ledger, with a note naming the consumer', async () => {
    const world = await makeWorld({ scenario: { consumers: { 'CONS-S': ['CARD-S1'] } } });
    const toSend: number[] = [];
    const progress = { on: (e: ProgressEvent) => void (e.type === 'to-send' && toSend.push(e.targets)) };
    const { summary } = await world.run([world.file('a.csv', csv(HEADER, ['CARD-S1,CONS-S,FRAUD,', ',CONS-S,FRAUD,CONSUMER']))], {}, progress);
    expect(summary.outcomes).toEqual({ SKIPPED_COVERED_BY_CONSUMER: 1, OPTED_OUT: 1 });
    // The progress board's total: both before the consumer goes, nothing left once it has taken its card along.
    expect(toSend).toEqual([2, 0]);
    const ledger = world.ledger();
    try {
      const card = ledger.targets.get('CARD', 'CARD-S1');
      expect(card?.state).toBe('OPTED_OUT');
      expect(card?.lastError).toBe('opted out with consumer CONS-S');
      expect(ledger.targets.countByState()).toEqual({ OPTED_OUT: 2 });
    } finally {
      ledger.close();
    }
    expect(world.sim.state().targets['CARD:CARD-S1']).toMatchObject({ state: 'OPTED_OUT', via: 'CONS-S' });
  });

  it('a card left unfinished by an earlier batch is settled when a later batch opts out its consumer', async () => {
    // The card fails retryably first (its consumer is not known to the job yet), then the consumer's row arrives.
    const world = await makeWorld({
      scenario: { consumers: { 'CONS-L': ['CARD-L1'] }, answers: { 'CARD-L1': { status: 503, body: { errorCode: 'SERVICE_UNAVAILABLE' } } } },
      config: { rate: { maxAttempts: 1 } },
    });
    const first = await world.run([world.file('a.csv', csv(HEADER, ['CARD-L1,CONS-L,FRAUD,']))]);
    expect(first.summary.outcomes).toEqual({ FAILED_RETRYABLE: 1 });
    const second = await world.run([world.file('b.csv', csv(HEADER, [',CONS-L,FRAUD,CONSUMER']))], { carryOver: false });
    expect(second.summary.outcomes).toEqual({ OPTED_OUT: 1 });
    const third = await world.run([]);
    assertReconciles(third.summary);
    const ledger = world.ledger();
    try {
      expect(ledger.targets.get('CARD', 'CARD-L1')?.state).toBe('OPTED_OUT');
    } finally {
      ledger.close();
    }
    expect(world.sim.state().optOutCalls['CARD:CARD-L1']).toBe(1);
  });
});
