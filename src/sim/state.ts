// Ground truth: what the simulated D1 saw and what it did to each target. Tests compare the job's
// report with this, so it records what happened on the server side, whatever the client believes.

import { createHash, randomBytes } from 'node:crypto';
import type { Scope } from '../types.js';
import { randomId, type RngStreams } from './random.js';
import type { Scenario } from './scenario.js';
import { ShardedTable } from './table.js';
import { SlidingWindow } from './window.js';

export type SimTargetState = 'OPTED_OUT' | 'PENDING' | 'FAILED';
export type OperationStatus = 'SUCCESSFUL' | 'PENDING' | 'FAILED';

export interface SimTarget {
  state: SimTargetState;
  operationId: string;
  /** The consumer whose opt-out took this card along. */
  via?: string;
  optedOutAt?: string;
}

export interface SimCall {
  /** Milliseconds since the simulator started. */
  at: number;
  method: string;
  path: string;
  key: string | null;
  /** 0 when the connection was reset or the request hung. */
  status: number;
  /** As sent by the client, so a test can match the job's attempt rows to what D1 saw. */
  correlationId: string | null;
  /** With the scenario's `recordRequests`: the request line's URL as sent, and the body. */
  url?: string;
  body?: string;
}

export interface SimState {
  startedAt: string;
  requests: number;
  byStatus: Record<string, number>;
  tokensIssued: number;
  tokenRequests: number;
  optOutCalls: Record<string, number>;
  optOutArrivals: Record<string, number>;
  targets: Record<string, SimTarget>;
  maxOptOutsInAnyWindow: number;
  maxRequestsInAnyWindow: number;
  /** The most API requests (opt-outs and polls) ever open at once: arrived, not yet answered. */
  maxInFlight: number;
  calls: SimCall[];
}

/**
 * What the simulator issued and received that would let anyone act as the issuer. Never in
 * SimState, so never served by GET /__sim/state: only a test in the same process can ask for
 * them, to search what the job wrote for a leak.
 */
export interface SimSecrets {
  tokens: string[];
  assertions: string[];
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('base64url');

export interface SimOperation {
  operationId: string;
  operation: 'CLICK_TO_PAY_OPT_OUT';
  status: OperationStatus;
  startTime: string;
  endTime?: string;
  cardId?: string;
  consumerId?: string;
  errorCode?: string;
  error?: string;
}

interface StoredOperation {
  scope: Scope;
  targetId: string;
  view: SimOperation;
  /** The targets this operation marked (a consumer's cards too), to settle them without a scan. */
  targetKeys: string[];
  /** Epoch ms at which a PENDING operation becomes final, and what it becomes. */
  finalAt?: number;
  finalStatus?: 'SUCCESSFUL' | 'FAILED';
}

export type OptOutOutcome =
  | { kind: 'accepted'; operationId: string; status: 'SUCCESSFUL' | 'PENDING' }
  | { kind: 'conflict'; errorCode: string };

const MAX_CALLS = 200_000;

export const targetKey = (scope: Scope, id: string): string => `${scope}:${id}`;

export class GroundTruth {
  readonly startedAt = new Date().toISOString();
  /**
   * Live tokens by their sha256, so not even the state's own memory is a list of usable tokens.
   * They survive /__sim/reset, so a test can reset between phases without re-authenticating.
   */
  private readonly tokens = new Map<string, { issuerId: string; expiresAt: number }>();
  private readonly issued: SimSecrets = { tokens: [], assertions: [] };

  requests = 0;
  tokensIssued = 0;
  tokenRequests = 0;
  byStatus: Record<string, number> = {};
  /** Per card or consumer: opt-outs answered, opt-outs arrived, what D1 holds now. */
  readonly optOutCalls = new ShardedTable<number>();
  readonly optOutArrivals = new ShardedTable<number>();
  private readonly targets = new ShardedTable<SimTarget>();
  readonly quota = new SlidingWindow();
  readonly optOutWindow = new SlidingWindow();
  readonly apiWindow = new SlidingWindow();
  inFlight = 0;
  maxInFlight = 0;
  private calls: SimCall[] = [];
  private readonly operations = new ShardedTable<StoredOperation>();
  private pending = new Set<StoredOperation>();

  constructor(
    private readonly scenario: Scenario,
    private readonly rng: RngStreams,
  ) {}

  reset(): void {
    this.requests = 0;
    this.tokensIssued = 0;
    this.tokenRequests = 0;
    this.byStatus = {};
    this.optOutCalls.clear();
    this.optOutArrivals.clear();
    this.targets.clear();
    this.quota.clear();
    this.optOutWindow.clear();
    this.apiWindow.clear();
    this.maxInFlight = this.inFlight;
    this.calls = [];
    this.operations.clear();
    this.pending.clear();
  }

  recordAnswer(call: SimCall): void {
    this.requests++;
    this.byStatus[String(call.status)] = (this.byStatus[String(call.status)] ?? 0) + 1;
    this.calls.push(call);
    // Trim in chunks: shifting a 200k array on every request would cost more than the request.
    if (this.calls.length > MAX_CALLS + 10_000) this.calls.splice(0, this.calls.length - MAX_CALLS);
  }

  /** An API request arrived; requestClosed() follows once its answer is sent or its connection is gone. */
  requestOpened(): void {
    this.inFlight++;
    if (this.inFlight > this.maxInFlight) this.maxInFlight = this.inFlight;
  }

  requestClosed(): void {
    this.inFlight--;
  }

  recordAssertion(assertion: string): void {
    this.issued.assertions.push(assertion);
  }

  issueToken(issuerId: string, ttlSec: number): string {
    const token = randomBytes(32).toString('base64url');
    this.tokens.set(sha256(token), { issuerId, expiresAt: Date.now() + ttlSec * 1000 });
    this.issued.tokens.push(token);
    this.tokensIssued++;
    return token;
  }

  /** Every token issued so far stops working, as when D1 rotates its keys or revokes a session. */
  revokeTokens(): void {
    this.tokens.clear();
  }

  /** The issuer a live token belongs to, or null when it is unknown or expired. */
  tokenIssuer(token: string): string | null {
    const entry = this.tokens.get(sha256(token));
    return entry && entry.expiresAt > Date.now() ? entry.issuerId : null;
  }

  optOut(scope: Scope, id: string): OptOutOutcome {
    this.settle();
    const key = targetKey(scope, id);
    const now = Date.now();
    const existing = this.targets.get(key);
    if (existing && existing.state !== 'FAILED') {
      if (this.scenario.repeat !== 'success') return { kind: 'conflict', errorCode: this.scenario.repeat };
      // A repeat leaves the original opt-out alone; only the answer is new.
      const op = this.newOperation(scope, id, 'SUCCESSFUL', now);
      return { kind: 'accepted', operationId: op.view.operationId, status: 'SUCCESSFUL' };
    }

    const { pendingRate, pendingFailRate, pendingDelayMs } = this.scenario;
    const isPending = pendingRate > 0 && this.rng.outcomes() < pendingRate;
    const op = this.newOperation(scope, id, isPending ? 'PENDING' : 'SUCCESSFUL', now);
    if (isPending) {
      op.finalAt = now + pendingDelayMs;
      op.finalStatus = pendingFailRate > 0 && this.rng.outcomes() < pendingFailRate ? 'FAILED' : 'SUCCESSFUL';
      this.pending.add(op);
    }

    const mark = (target: string, via?: string): void => {
      op.targetKeys.push(target);
      this.targets.set(target, {
        state: isPending ? 'PENDING' : 'OPTED_OUT',
        operationId: op.view.operationId,
        ...(via !== undefined ? { via } : {}),
        ...(isPending ? {} : { optedOutAt: new Date(now).toISOString() }),
      });
    };
    mark(key);
    if (scope === 'CONSUMER') {
      // A consumer opt-out removes every card of the consumer; cards already gone keep their own record.
      for (const cardId of this.scenario.consumers[id] ?? []) {
        const cardKey = targetKey('CARD', cardId);
        const card = this.targets.get(cardKey);
        if (!card || card.state === 'FAILED') mark(cardKey, id);
      }
    }
    return { kind: 'accepted', operationId: op.view.operationId, status: isPending ? 'PENDING' : 'SUCCESSFUL' };
  }

  getOperation(scope: Scope, id: string, operationId: string): SimOperation | null {
    this.settle();
    const op = this.operations.get(operationId);
    return op && op.scope === scope && op.targetId === id ? { ...op.view } : null;
  }

  /** Moves PENDING operations whose delay has passed to their final state. Lazy, so no timers outlive close(). */
  settle(now = Date.now()): void {
    for (const op of this.pending) {
      if ((op.finalAt ?? Infinity) > now) continue;
      this.pending.delete(op);
      const final = op.finalStatus ?? 'SUCCESSFUL';
      const endTime = new Date(op.finalAt ?? now).toISOString();
      op.view.status = final;
      op.view.endTime = endTime;
      if (final === 'FAILED') {
        op.view.errorCode = 'OPT_OUT_FAILED';
        op.view.error = 'Opt-out failed at the scheme';
      }
      for (const key of op.targetKeys) {
        const target = this.targets.get(key);
        if (target?.operationId !== op.view.operationId || target.state !== 'PENDING') continue;
        target.state = final === 'FAILED' ? 'FAILED' : 'OPTED_OUT';
        if (final === 'SUCCESSFUL') target.optedOutAt = endTime;
      }
    }
  }

  snapshot(): SimState {
    this.settle();
    const copy = <T>(record: Record<string, T>): Record<string, T> => ({ ...record });
    return {
      startedAt: this.startedAt,
      requests: this.requests,
      byStatus: copy(this.byStatus),
      tokensIssued: this.tokensIssued,
      tokenRequests: this.tokenRequests,
      optOutCalls: this.optOutCalls.toRecord((n) => n),
      optOutArrivals: this.optOutArrivals.toRecord((n) => n),
      targets: this.targets.toRecord((t) => ({ ...t })),
      maxOptOutsInAnyWindow: this.optOutWindow.max,
      maxRequestsInAnyWindow: this.apiWindow.max,
      maxInFlight: this.maxInFlight,
      calls: this.calls.slice(-MAX_CALLS),
    };
  }

  secrets(): SimSecrets {
    return { tokens: [...this.issued.tokens], assertions: [...this.issued.assertions] };
  }

  private newOperation(scope: Scope, id: string, status: OperationStatus, now: number): StoredOperation {
    const operationId = randomId(this.rng.ids, 24);
    const view: SimOperation = {
      operationId,
      operation: 'CLICK_TO_PAY_OPT_OUT',
      status,
      startTime: new Date(now).toISOString(),
      ...(status === 'PENDING' ? {} : { endTime: new Date(now).toISOString() }),
      ...(scope === 'CARD' ? { cardId: id } : { consumerId: id }),
    };
    const op: StoredOperation = { scope, targetId: id, view, targetKeys: [] };
    this.operations.set(operationId, op);
    return op;
  }
}
