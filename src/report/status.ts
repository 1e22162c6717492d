import type { Ledger } from '../ledger/index.js';
import { terminalSafe } from '../text.js';
import { OUTCOMES, type BatchOverview, type Outcome, type WaitingCards } from '../types.js';
import { commandLine } from './command-line.js';
import { formatCount, formatDuration, formatUtc, textTable } from './format.js';
import { durationMs, outcomeCount, rowsOf } from './summary.js';

/** The most recent batches, newest first, as `status` lists them. */
export function batchOverviews(ledger: Ledger, limit: number): BatchOverview[] {
  return ledger.batches.list(limit).map((b) => {
    const { rows, carriedOver } = ledger.items.counts(b.id);
    return { id: b.id, kind: b.kind, parent: b.parentId, startedAt: b.startedAt, endedAt: b.endedAt, durationMs: durationMs(b), status: b.status, rows: rowsOf(ledger.files.inputs(b.id)), outcomes: rows, carriedOver, inDoubt: ledger.items.inDoubt(b.id), resolvedBy: ledger.items.resolvedBy(b.id), prunedAt: ledger.prunes.ofBatch(b.id)?.prunedAt ?? null };
  });
}

/** Column headings of `status`, short enough for the table to fit a terminal. */
const SHORT: Record<Outcome, string> = {
  OPTED_OUT: 'OPTED_OUT',
  PENDING: 'PENDING',
  FAILED_RETRYABLE: 'FAIL_RETRY',
  FAILED_PERMANENT: 'FAIL_PERM',
  NOT_ATTEMPTED: 'NOT_ATT',
  SKIPPED_DUPLICATE: 'SKIP_DUP',
  SKIPPED_ALREADY_OPTED_OUT: 'SKIP_DONE',
  SKIPPED_ALREADY_PENDING: 'SKIP_PEND',
  SKIPPED_COVERED_BY_CONSUMER: 'SKIP_CONS',
  SKIPPED_PREVIOUSLY_FAILED: 'SKIP_FAIL',
  NOT_ENROLLED: 'NOT_ENROL',
  SKIPPED_NOT_ENROLLED: 'SKIP_NOENR',
};

/** The width `status` keeps to unless `--wide` (docs/design.md §5). */
export const STATUS_WIDTH = 120;

/**
 * Outcome groups a folded `status` shows instead of one column per outcome: what an operator
 * acts on (FAILED: to rerun or fix) apart from what needs nothing.
 */
const GROUPS: [string, readonly Outcome[]][] = [
  ['OPTED_OUT', ['OPTED_OUT']],
  ['NOT_ENROL', ['NOT_ENROLLED']],
  ['PENDING', ['PENDING']],
  ['FAILED', ['FAILED_RETRYABLE', 'FAILED_PERMANENT', 'NOT_ATTEMPTED']],
  ['SKIPPED', OUTCOMES.filter((o) => o.startsWith('SKIPPED_'))],
];

/** Which columns stay in a folded table first; the others go to a line under each batch. */
const KEEP_FIRST = ['BATCH', 'STATUS', 'STARTED (UTC)', 'DURATION', 'ROWS', 'FAILED', 'OPTED_OUT', 'PENDING', 'KIND', 'REJECTED', 'IN_DOUBT', 'NOT_ENROL', 'SKIPPED', 'PARENT', 'RESOLVED BY'];

interface Column {
  head: string;
  right: boolean;
  cells: string[];
  /** Left out of a folded line under a batch when it says nothing. */
  empty: (cell: string) => boolean;
}

const width = (cols: readonly Column[]) => {
  const lines = textTable(
    cols.map((c) => c.head),
    cols[0]!.cells.map((_, i) => cols.map((c) => c.cells[i]!)),
    cols.map((c) => c.right),
  );
  return Math.max(...lines.map((l) => l.length));
};

/** `text` in lines of at most `max` characters, broken at spaces (a longer word keeps its own line). */
function wrap(text: string, max: number): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > max) {
      out.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) out.push(line);
  return out;
}

/**
 * `status`: one line per batch, newest first. Outcome columns appear when some listed batch has
 * that outcome; each count adds the batch's input rows and its carried-over targets (all of a
 * rerun's items are carried over). Unless `wide`, the table keeps within STATUS_WIDTH columns:
 * outcomes are first summed into groups, then the columns that still do not fit are folded onto
 * an indented line under each batch (ids stay whole: they are what the operator types next).
 */
export function formatStatus(batches: readonly BatchOverview[], targets: Record<string, number>, waiting: readonly WaitingCards[] = [], opts: { wide?: boolean } = {}): string {
  const lines: string[] = [];
  if (batches.length === 0) lines.push('No batches yet.');
  else {
    // In-doubt targets are counted FAILED_RETRYABLE in the reports, but they are not known to
    // have failed: they get their own column here.
    const count = (b: BatchOverview, o: Outcome) => outcomeCount(b, o) - (o === 'FAILED_RETRYABLE' ? b.inDoubt : 0);
    const doubt = batches.some((b) => b.inDoubt > 0);
    const resolved = batches.some((b) => b.resolvedBy !== null);
    const column = (head: string, right: boolean, cell: (b: BatchOverview) => string, empty: (c: string) => boolean = () => false): Column => ({ head, right, cells: batches.map(cell), empty });
    const zero = (c: string) => c === '0';
    const outcomeColumns = (groups: readonly [string, readonly Outcome[]][]) =>
      groups
        .filter(([, os]) => batches.some((b) => os.some((o) => count(b, o) > 0)))
        .map(([head, os]) => column(head, true, (b) => formatCount(os.reduce((n, o) => n + count(b, o), 0)), zero));
    const table = (groups: readonly [string, readonly Outcome[]][]): Column[] => [
      column('BATCH', false, (b) => b.id),
      column('KIND', false, (b) => b.kind),
      column('PARENT', false, (b) => b.parent ?? '-', (c) => c === '-'),
      column('STARTED (UTC)', false, (b) => formatUtc(b.startedAt)),
      column('DURATION', true, (b) => (b.durationMs === null ? '-' : formatDuration(b.durationMs))),
      column('STATUS', false, (b) => (b.prunedAt ? `${b.status}*` : b.status)),
      column('ROWS', true, (b) => formatCount(b.rows.total)),
      column('REJECTED', true, (b) => formatCount(b.rows.rejected), zero),
      ...outcomeColumns(groups),
      ...(doubt ? [column('IN_DOUBT', true, (b) => formatCount(b.inDoubt), zero)] : []),
      ...(resolved ? [column('RESOLVED BY', false, (b) => b.resolvedBy ?? '', (c) => c === '')] : []),
    ];
    const full = table(OUTCOMES.map((o) => [SHORT[o], [o]] as const));
    let cols = full;
    let folded: Column[] = [];
    if (!opts.wide && width(full) > STATUS_WIDTH) {
      cols = table(GROUPS);
      const kept = new Set<string>();
      for (const head of KEEP_FIRST) {
        if (!cols.some((c) => c.head === head)) continue;
        kept.add(head);
        if (width(cols.filter((c) => kept.has(c.head))) > STATUS_WIDTH) kept.delete(head);
      }
      folded = cols.filter((c) => !kept.has(c.head));
      cols = cols.filter((c) => kept.has(c.head));
    }
    const rows = textTable(
      cols.map((c) => c.head),
      batches.map((_, i) => cols.map((c) => c.cells[i]!)),
      cols.map((c) => c.right),
    );
    lines.push(rows[0]!);
    batches.forEach((_, i) => {
      lines.push(rows[i + 1]!);
      const more = folded.filter((c) => !c.empty(c.cells[i]!)).map((c) => `${c.head} ${c.cells[i]}`);
      if (more.length) lines.push(`    ${more.join(', ')}`);
    });
    const shownOutcomes = OUTCOMES.filter((o) => cols.some((c) => c.head === SHORT[o]) || folded.some((c) => c.head === SHORT[o]));
    const legend = shownOutcomes.filter((o) => SHORT[o] !== o).map((o) => `${SHORT[o]}=${o}`);
    const groupsShown = [...cols, ...folded].filter((c) => GROUPS.some(([h, os]) => h === c.head && (os.length > 1 || os[0] !== h)));
    if (groupsShown.length) {
      legend.push(...groupsShown.map((c) => `${c.head}=${c.head === 'SKIPPED' ? 'every SKIPPED_* outcome' : GROUPS.find(([h]) => h === c.head)![1].join('+')}`));
    }
    if (resolved) legend.push('RESOLVED BY=the later batch that finished what this one left undone');
    if (doubt) legend.push('IN_DOUBT=stopped while its request was in flight (D1 may have it; the next run sends it again)');
    const prose = (text: string) => lines.push(...(opts.wide ? [text] : wrap(text, STATUS_WIDTH)));
    if (legend.length) {
      lines.push('');
      prose(`Columns: ${legend.join(', ')}; counts include carried-over targets.`);
    }
    if (cols !== full) {
      prose(`Folded to fit ${STATUS_WIDTH} columns${folded.length ? ` (${folded.map((c) => c.head).join(', ')} under each batch)` : ''}; --wide shows every outcome in its own column.`);
    }
    if (batches.some((b) => b.prunedAt)) lines.push('* history pruned (d1-optout prune): its rows and D1 requests, and so its outcome counts, are gone; targets keep their states.');
  }
  const states = Object.entries(targets)
    .map(([k, v]) => `${k}=${formatCount(v)}${k === 'SUBMITTING' ? ' (in doubt)' : ''}`)
    .join(' ');
  lines.push(`Targets in the ledger: ${states || 'none'}`);
  for (const w of waiting) lines.push(`  ${formatCount(w.cards)} card(s) QUEUED, waiting for consumer ${w.consumerId} (its opt-out is PENDING at D1)`);
  if (batches[0]) lines.push(`Details: ${commandLine('status', '--batch', batches[0].id)}`);
  return terminalSafe(lines.join('\n'));
}
