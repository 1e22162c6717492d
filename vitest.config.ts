import { defineConfig } from 'vitest/config';
import type { Reporter } from 'vitest/node';

/**
 * Ends the run with one plain "N passed, N failed, N skipped" line, which CI reads whatever the
 * runner. Skipped tests are counted so that one can never hide.
 */
const plainTotals: Reporter = {
  onTestRunEnd(modules, unhandledErrors) {
    const n = { passed: 0, failed: 0, skipped: 0 };
    for (const m of modules) {
      for (const t of m.children.allTests()) {
        const state = t.result().state;
        if (state === 'passed') n.passed++;
        else if (state === 'failed') n.failed++;
        else n.skipped++;
      }
      if (m.state() === 'failed' && m.children.size === 0) n.failed++; // a file that failed to load
    }
    n.failed += unhandledErrors.length;
    process.stdout.write(`\n${n.passed} passed, ${n.failed} failed, ${n.skipped} skipped\n`);
  },
};

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Child-process and HTTP tests compete for 2 cores; two files at a time keeps timings sane.
    maxWorkers: 2,
    reporters: ['default', plainTotals],
  },
});
