// Preloaded into a child process the bench measures (`node --import file:///.../measure.js ...`):
// when the process exits, its peak resident set size (KiB) is written to the file named by
// D1_BENCH_RSS_FILE, so the figure is the child's own, whatever it prints or however it exits.
//
// Linux's VmHWM is the peak of this process image alone. getrusage's maxRSS is not: it survives
// exec, so a child spawned by a parent that once held 250 MiB reports at least that.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

/** Peak RSS in KiB: VmHWM where /proc has it, else getrusage's figure. */
export function peakRssKb(): number {
  const status = '/proc/self/status';
  const m = existsSync(status) ? /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(status, 'utf8')) : null;
  return m ? Number(m[1]) : process.resourceUsage().maxRSS;
}

const out = process.env['D1_BENCH_RSS_FILE'];
if (out) process.on('exit', () => writeFileSync(out, String(peakRssKb())));
