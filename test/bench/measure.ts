// Preloaded into a child process the bench measures (`node --import file:///.../measure.js ...`):
// when the process exits, its peak resident set size (KiB) is written to the file named by
// D1_BENCH_RSS_FILE, so the figure is the child's own, whatever it prints or however it exits.
import { writeFileSync } from 'node:fs';

const out = process.env['D1_BENCH_RSS_FILE'];
if (out) process.on('exit', () => writeFileSync(out, String(process.resourceUsage().maxRSS)));
