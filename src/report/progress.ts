import cliProgress from 'cli-progress';
import type { Logger } from '../log.js';
import type { ProgressEvent, ProgressListener, ProgressStage, RequestCounters } from '../types.js';
import { formatCount, formatDuration } from './format.js';
import { prefixLines } from '../text.js';

/** Rates and ETAs are taken over the last few seconds: long enough to be steady, short enough to show a 429 pause. */
const WINDOW_MS = 10_000;
/** Rate samples are kept this many milliseconds apart, so memory stays flat however fast events come. */
const SAMPLE_EVERY_MS = 250;

interface Sample {
  at: number;
  requests: number;
  units: number;
}

interface StageClock {
  startedAt: number;
  endedAt: number | null;
  /** Requests counted when the stage began and ended, so that its own rate can be told apart. */
  requestsBefore: number;
  requestsAfter: number;
}

/**
 * Adds up the pipeline's progress events into the figures an operator reads, stage by stage,
 * and words them. Both displays (TTY bars and log lines) read the same board, so they never
 * disagree.
 */
export class ProgressBoard implements ProgressListener {
  batchId: string | null = null;
  stage: ProgressStage | null = null;
  readonly read = { files: 0, filesDone: 0, rows: 0, rejected: 0 };
  readonly send = { total: 0, done: 0 };
  readonly poll = { total: 0, settled: 0, polls: 0 };
  d1: RequestCounters = { requests: 0, http429: 0, throttledMs: 0 };
  /** D1's failing answers in a row, and the last one in words (e.g. "HTTP 503 SERVICE_UNAVAILABLE"). */
  readonly failing = { inRow: 0, last: null as string | null };
  private readonly clocks = new Map<ProgressStage, StageClock>();
  private samples: Sample[] = [];

  constructor(private readonly now: () => number = Date.now) {}

  on(e: ProgressEvent): void {
    switch (e.type) {
      case 'batch':
        this.batchId = e.batchId;
        return;
      case 'files':
        this.enter('read');
        this.read.files += e.files;
        break;
      case 'rows':
        this.enter('read');
        this.read.rows += e.rows;
        this.read.rejected += e.rejected;
        if (e.fileDone) this.read.filesDone++;
        break;
      case 'to-send':
        this.enter('send');
        this.send.total = this.send.done + e.targets;
        break;
      case 'sent':
        this.enter('send');
        this.send.done++;
        this.d1 = e.d1;
        break;
      case 'answer':
        this.failing.inRow = e.failed ? this.failing.inRow + 1 : 0;
        this.failing.last = e.failed ? e.what : null;
        return;
      case 'to-poll':
        this.enter('poll');
        this.poll.total += e.operations;
        break;
      case 'polled':
        this.enter('poll');
        this.poll.polls++;
        if (e.settled) this.poll.settled++;
        this.d1 = e.d1;
        break;
    }
    this.sample();
  }

  /** The run is over: the current stage's clock stops. */
  finish(): void {
    const clock = this.stage ? this.clocks.get(this.stage) : undefined;
    if (clock && clock.endedAt === null) {
      clock.endedAt = this.now();
      clock.requestsAfter = this.d1.requests;
    }
  }

  /** Done and total units of a stage, as its bar shows them. */
  counts(stage: ProgressStage): { value: number; total: number } {
    switch (stage) {
      case 'read':
        return { value: this.read.filesDone, total: this.read.files };
      case 'send':
        return { value: this.send.done, total: Math.max(this.send.total, this.send.done) };
      case 'poll':
        return { value: this.poll.settled, total: this.poll.total };
    }
  }

  /** One stage in words: live rate and ETA while it runs, totals and time taken once it is over. */
  describe(stage: ProgressStage): string {
    const clock = this.clocks.get(stage);
    if (!clock) return '';
    const over = clock.endedAt !== null;
    const elapsedMs = (clock.endedAt ?? this.now()) - clock.startedAt;
    const live = over ? null : this.rates();
    const perSec = (n: number | null | undefined, unit: string) => (n == null ? `… ${unit}/s` : `${n.toFixed(1)} ${unit}/s`);
    switch (stage) {
      case 'read': {
        const r = this.read;
        const base = `${r.filesDone}/${r.files} file(s), ${formatCount(r.rows)} rows (${formatCount(r.rejected)} rejected)`;
        return over ? `${base} in ${formatDuration(elapsedMs)}` : `${base}, ${perSec(live?.unitsPerSec, 'rows')}`;
      }
      case 'send': {
        const { value, total } = this.counts('send');
        const pct = total > 0 ? ` (${Math.floor((value / total) * 100)}%)` : '';
        const throttled = `${formatCount(this.d1.http429)} × 429, paused ${formatDuration(this.d1.throttledMs)}`;
        if (over) {
          const rps = elapsedMs > 0 ? ((clock.requestsAfter - clock.requestsBefore) / elapsedMs) * 1000 : 0;
          return `${formatCount(value)}/${formatCount(total)} targets in ${formatDuration(elapsedMs)}, ${rps.toFixed(1)} req/s; ${throttled}`;
        }
        const eta = live?.unitsPerSec ? formatDuration(((total - value) / live.unitsPerSec) * 1000) : '…';
        const failing = this.failing.inRow > 0 ? `; D1 failing: ${formatCount(this.failing.inRow)} in a row, last ${this.failing.last ?? '?'}` : '';
        return `${formatCount(value)}/${formatCount(total)} targets${pct}, ${perSec(live?.requestsPerSec, 'req')}, ETA ${eta}; ${throttled}${failing}`;
      }
      case 'poll': {
        const p = this.poll;
        const base = `${formatCount(p.settled)}/${formatCount(p.total)} pending operation(s) settled, ${formatCount(p.polls)} poll(s)`;
        return over ? `${base} in ${formatDuration(elapsedMs)}; ${formatCount(p.total - p.settled)} still pending` : `${base}, ${perSec(live?.requestsPerSec, 'req')}`;
      }
    }
  }

  /** Per-second rates of requests and of the current stage's units over the recent window; null until there is a second to measure. */
  rates(): { requestsPerSec: number; unitsPerSec: number } | null {
    const now = this.now();
    this.prune(now);
    const base = this.samples[0];
    if (!base || now - base.at < 1000) return null;
    const secs = (now - base.at) / 1000;
    return { requestsPerSec: (this.d1.requests - base.requests) / secs, unitsPerSec: (this.units() - base.units) / secs };
  }

  private units(): number {
    switch (this.stage) {
      case 'read':
        return this.read.rows;
      case 'send':
        return this.send.done;
      case 'poll':
        return this.poll.settled;
      case null:
        return 0;
    }
  }

  private enter(stage: ProgressStage): void {
    if (this.stage === stage) return;
    this.finish();
    this.stage = stage;
    const now = this.now();
    if (!this.clocks.has(stage)) this.clocks.set(stage, { startedAt: now, endedAt: null, requestsBefore: this.d1.requests, requestsAfter: this.d1.requests });
    else this.clocks.get(stage)!.endedAt = null;
    this.samples = [{ at: now, requests: this.d1.requests, units: this.units() }];
  }

  /**
   * Samples are exact (time, counts) points at least SAMPLE_EVERY_MS apart, except the newest,
   * which follows the latest event: a stage that stops moving then shows a rate of zero.
   */
  private sample(): void {
    const now = this.now();
    const point = { at: now, requests: this.d1.requests, units: this.units() };
    const n = this.samples.length;
    if (n >= 2 && now - this.samples[n - 2]!.at < SAMPLE_EVERY_MS) this.samples[n - 1] = point;
    else this.samples.push(point);
    this.prune(now);
  }

  /** Keeps one sample at or before the window's start, so a rate always spans the whole window. */
  private prune(now: number): void {
    while (this.samples.length >= 2 && this.samples[1]!.at <= now - WINDOW_MS) this.samples.shift();
  }
}

/** A progress listener the command stops before it prints its summary. */
export interface ProgressDisplay extends ProgressListener {
  stop(): void;
}

const LABELS: Record<ProgressStage, string> = { read: 'Reading', send: 'Sending', poll: 'Polling' };

/**
 * Live bars on a terminal, one per stage, redrawn a few times a second. While they are drawn,
 * every other write to the stream (the logger's warnings, the signal notice) is printed above
 * them instead of through them: a torn bar would hide exactly the line an operator needs.
 */
export class TtyProgress implements ProgressDisplay {
  private readonly board = new ProgressBoard();
  private multibar: cliProgress.MultiBar | null = null;
  private readonly bars = new Map<ProgressStage, cliProgress.SingleBar>();
  private restoreWrite: (() => void) | null = null;
  private readonly onExit = () => this.stop();

  constructor(private readonly stream: NodeJS.WriteStream) {}

  on(e: ProgressEvent): void {
    this.board.on(e);
    const stage = this.board.stage;
    if (!stage) return;
    const { value, total } = this.board.counts(stage);
    const bar = this.bars.get(stage) ?? this.addBar(stage, total);
    bar.setTotal(total);
    bar.update(value);
  }

  stop(): void {
    if (!this.multibar) return;
    this.board.finish();
    this.restoreWrite?.();
    this.restoreWrite = null;
    this.multibar.update();
    this.multibar.stop();
    this.multibar = null;
    process.removeListener('exit', this.onExit);
  }

  private addBar(stage: ProgressStage, total: number): cliProgress.SingleBar {
    const multibar = this.multibar ?? this.start();
    const bar = multibar.create(total, 0, {}, {
      format: (options, params) => `${LABELS[stage].padEnd(8)} ${cliProgress.Format.BarFormat(params.progress, options)} ${this.board.describe(stage)}`,
    });
    this.bars.set(stage, bar);
    return bar;
  }

  private start(): cliProgress.MultiBar {
    const stream = this.stream;
    const write = stream.write.bind(stream) as (chunk: string) => boolean;
    // cli-progress draws through a view of the stream whose write is the real one.
    const view = Object.create(stream) as NodeJS.WriteStream;
    view.write = ((chunk: string) => write(chunk)) as NodeJS.WriteStream['write'];
    const multibar = new cliProgress.MultiBar(
      {
        stream: view,
        fps: 5,
        barsize: 24,
        hideCursor: true,
        // Trimmed to the terminal width by cli-progress itself, without switching the terminal's wrapping off.
        linewrap: true,
        forceRedraw: true,
        // The command's own handler turns a signal into a graceful stop; the bars go on showing it.
        gracefulExit: false,
      },
      cliProgress.Presets.shades_classic,
    );
    const original = stream.write;
    stream.write = ((chunk: string | Uint8Array, encodingOrCb?: unknown, cb?: unknown) => {
      const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
      // Each foreign line clears the bar line it lands on; update() draws the bars again below.
      multibar.log(text.replace(/^(?=.)/gm, '\x1B[2K'));
      multibar.update();
      const done = typeof encodingOrCb === 'function' ? encodingOrCb : cb;
      if (typeof done === 'function') (done as () => void)();
      return true;
    }) as NodeJS.WriteStream['write'];
    this.restoreWrite = () => {
      stream.write = original;
    };
    // A second signal exits at once: the cursor comes back and nothing printed meanwhile is lost.
    process.once('exit', this.onExit);
    this.multibar = multibar;
    return multibar;
  }
}

/**
 * Off a terminal (cron): one line every `everyMs` with the current stage, on the stream for
 * whoever reads the job's output, and in the log with its figures as fields.
 */
export class LogLineProgress implements ProgressDisplay {
  private readonly board = new ProgressBoard();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly log: Logger,
    private readonly stream: NodeJS.WritableStream,
    everyMs: number,
  ) {
    this.timer = setInterval(() => this.tick(), everyMs);
    this.timer.unref();
  }

  on(e: ProgressEvent): void {
    this.board.on(e);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private tick(): void {
    const { stage, batchId } = this.board;
    if (!stage) return;
    const text = `${LABELS[stage].toLowerCase()}: ${this.board.describe(stage)}`;
    const { value, total } = this.board.counts(stage);
    const rates = this.board.rates();
    const fields = { stage, done: value, total, requestsPerSec: rates ? Math.round(rates.requestsPerSec * 10) / 10 : null, ...this.board.d1 };
    (batchId ? this.log.child({ batchId }) : this.log).info(`progress ${text}`, { progress: fields });
    this.stream.write(`${prefixLines(`${new Date().toISOString()} progress${batchId ? ` [${batchId}]` : ''} ${text}`)}\n`);
  }
}

const SILENT: ProgressDisplay = { on: () => undefined, stop: () => undefined };

/**
 * The display a command uses: bars on a terminal, a line every `everySec` off one (none when it
 * is 0), nothing with --quiet.
 */
export function progressDisplay(opts: { quiet: boolean; everySec: number; log: Logger }): ProgressDisplay {
  const stream = process.stderr;
  if (opts.quiet) return SILENT;
  if (stream.isTTY) return new TtyProgress(stream);
  if (opts.everySec <= 0) return SILENT;
  return new LogLineProgress(opts.log, stream, opts.everySec * 1000);
}
