import { describe, expect, it } from 'vitest';
import { assertReconciles, csv, makeWorld, optOutCalls, results, type World, closeWorldsAfterEach } from './helpers.js';

// docs/design.md §3: each valid row's disposition, by the five rules in order. Each rule has its own
// test, and each checks that the other rows of the batch were left alone.
const HEADER = 'card_id,consumer_id,reason,scope';

let world: World | null = null;
closeWorldsAfterEach();

describe('dedupe rules', () => {
  it('rule 1: the same target earlier in this batch → SKIPPED_DUPLICATE, across files too', async () => {
    world = await makeWorld();
    const a = world.file('a.csv', csv(HEADER, ['CARD-D1,,CLOSED,', 'CARD-D2,,CLOSED,', 'CARD-D1,,FRAUD,']));
    const b = world.file('b.csv', csv(HEADER, ['CARD-D2,,FRAUD,', ',CARD-D1,CLOSED,CONSUMER']));
    const { summary } = await world.run([a, b]);
    assertReconciles(summary);
    // The consumer with the same id as a card is another target: scope is part of the key.
    expect(results(summary).map((l) => l.outcome)).toEqual(['OPTED_OUT', 'OPTED_OUT', 'SKIPPED_DUPLICATE', 'SKIPPED_DUPLICATE', 'OPTED_OUT']);
    expect(world.sim.state().optOutCalls).toEqual({ 'CARD:CARD-D1': 1, 'CARD:CARD-D2': 1, 'CONSUMER:CARD-D1': 1 });
  });

  it('rule 2: a target already OPTED_OUT or PENDING is skipped; the pending one is polled, not resubmitted', async () => {
    world = await makeWorld({ scenario: { pendingRate: 1, pendingDelayMs: 60_000 }, config: { pending: { maxWaitMs: 0 } } });
    const first = await world.run([world.file('a.csv', csv(HEADER, ['CARD-P1,,CLOSED,']))]);
    expect(first.summary.outcomes).toEqual({ PENDING: 1 });
    expect(first.exitCode).toBe(0);

    const second = await world.run([world.file('b.csv', csv(HEADER, ['CARD-P1,,FRAUD,', 'CARD-N1,,FRAUD,']))]);
    assertReconciles(second.summary);
    expect(second.summary.outcomes).toEqual({ SKIPPED_ALREADY_PENDING: 1, PENDING: 1 });
    expect(second.summary.carriedOver).toEqual({ PENDING: 1 });
    expect(world.sim.state().optOutCalls).toEqual({ 'CARD:CARD-P1': 1, 'CARD:CARD-N1': 1 });
  });

  it('rule 2: OPTED_OUT', async () => {
    world = await makeWorld();
    await world.run([world.file('a.csv', csv(HEADER, ['CARD-O1,,CLOSED,']))]);
    const { summary } = await world.run([world.file('b.csv', csv(HEADER, ['CARD-O1,,FRAUD,', 'CARD-O2,,FRAUD,']))]);
    expect(results(summary).map((l) => [l.target_id, l.outcome])).toEqual([
      ['CARD-O1', 'SKIPPED_ALREADY_OPTED_OUT'],
      ['CARD-O2', 'OPTED_OUT'],
    ]);
    expect(optOutCalls(world.sim)).toBe(2);
  });

  it('rule 3: a card of a consumer opted out earlier → SKIPPED_COVERED_BY_CONSUMER', async () => {
    world = await makeWorld({ scenario: { consumers: { 'CONS-9': ['CARD-K1'] } } });
    await world.run([world.file('a.csv', csv(HEADER, [',CONS-9,CLOSED,CONSUMER']))]);
    const { summary } = await world.run([world.file('b.csv', csv(HEADER, ['CARD-K1,CONS-9,FRAUD,', 'CARD-K2,CONS-OTHER,FRAUD,']))]);
    expect(results(summary).map((l) => [l.target_id, l.outcome])).toEqual([
      ['CARD-K1', 'SKIPPED_COVERED_BY_CONSUMER'],
      ['CARD-K2', 'OPTED_OUT'],
    ]);
    expect(world.sim.state().optOutCalls['CARD:CARD-K1']).toBeUndefined();
  });

  it('rule 3 within a batch: the consumer goes first even when its row comes last', async () => {
    world = await makeWorld();
    const { summary } = await world.run([world.file('a.csv', csv(HEADER, ['CARD-W1,CONS-W,FRAUD,', 'CARD-W2,CONS-W,FRAUD,', ',CONS-W,FRAUD,CONSUMER']))]);
    expect(summary.outcomes).toEqual({ SKIPPED_COVERED_BY_CONSUMER: 2, OPTED_OUT: 1 });
    expect(world.sim.state().optOutCalls).toEqual({ 'CONSUMER:CONS-W': 1 });
  });

  it('rule 3 within a batch: when the consumer opt-out fails, its cards are still opted out one by one', async () => {
    world = await makeWorld({ scenario: { unknownIds: ['CONS-F'] } });
    const { summary } = await world.run([world.file('a.csv', csv(HEADER, ['CARD-F1,CONS-F,FRAUD,', ',CONS-F,FRAUD,CONSUMER']))]);
    expect(results(summary).map((l) => [l.target_id, l.outcome])).toEqual([
      ['CARD-F1', 'OPTED_OUT'],
      ['CONS-F', 'FAILED_PERMANENT'],
    ]);
  });

  it('rule 4: a target that failed permanently → SKIPPED_PREVIOUSLY_FAILED until ops rerun it', async () => {
    world = await makeWorld({ scenario: { unknownIds: ['CARD-X1'] } });
    const first = await world.run([world.file('a.csv', csv(HEADER, ['CARD-X1,,CLOSED,']))]);
    expect(first.summary.outcomes).toEqual({ FAILED_PERMANENT: 1 });
    const second = await world.run([world.file('b.csv', csv(HEADER, ['CARD-X1,,FRAUD,', 'CARD-X2,,FRAUD,']))]);
    expect(results(second.summary).map((l) => [l.target_id, l.outcome])).toEqual([
      ['CARD-X1', 'SKIPPED_PREVIOUSLY_FAILED'],
      ['CARD-X2', 'OPTED_OUT'],
    ]);
    expect(world.sim.state().optOutCalls['CARD:CARD-X1']).toBe(1);
  });

  it('rule 5: anything else is submitted', async () => {
    world = await makeWorld();
    const { summary } = await world.run([world.file('a.csv', csv(HEADER, ['CARD-S1,,CLOSED,', ',CONS-S,CLOSED,']))]);
    expect(results(summary).map((l) => [l.scope, l.target_id, l.outcome])).toEqual([
      ['CARD', 'CARD-S1', 'OPTED_OUT'],
      ['CONSUMER', 'CONS-S', 'OPTED_OUT'],
    ]);
  });
});
