import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Child-process and HTTP tests compete for 2 cores; two files at a time keeps timings sane.
    maxWorkers: 2,
  },
});
