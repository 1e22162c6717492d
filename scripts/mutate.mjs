#!/usr/bin/env node
// Mutation audit: does the test suite notice when a line that matters breaks?
//
// Each entry of scripts/mutations.json changes one snippet of one source file. For each, this
// script applies the change to a scratch copy of the repository (the working tree is never
// touched), builds it (CLI tests run dist/), runs the test files the entry names (or the whole
// suite with --full), and reports whether some test failed ("killed") or all passed ("survived").
// A snippet that is not found exactly once stops the script before anything runs: the source
// moved, and the list must be updated rather than a mutation silently skipped.
//
//   npm run mutate                       every mutation, each against its own test files
//   npm run mutate -- --only a,b         only the mutations with these ids
//   npm run mutate -- --full             each mutation against the whole suite (slow)
//   npm run mutate -- --keep             keep the scratch copy (its path is printed)
//
// Exit 0 when every mutation was killed, 1 when one survived or did not build, 2 on a bad list.

import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const LIST = join(ROOT, 'scripts', 'mutations.json');
/** What a scratch copy needs to build and test; node_modules is linked, not copied. */
const COPY = ['src', 'test', 'jobs', 'fixtures', 'package.json', 'tsconfig.json', 'tsconfig.test.json', 'vitest.config.ts'];
const TSC = join('node_modules', 'typescript', 'bin', 'tsc');
const VITEST = join('node_modules', 'vitest', 'vitest.mjs');
/** A mutation that makes the suite hang is killed by the hang; this bounds the wait. */
const TEST_TIMEOUT_MS = 15 * 60_000;

function parseArgs(argv) {
  const opts = { only: null, full: false, keep: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--full') opts.full = true;
    else if (a === '--keep') opts.keep = true;
    else if (a === '--only') opts.only = new Set((argv[++i] ?? '').split(',').filter(Boolean));
    else if (a.startsWith('--only=')) opts.only = new Set(a.slice(7).split(',').filter(Boolean));
    else fail(`unknown argument ${a}; expected --only ID[,ID..], --full or --keep`);
  }
  return opts;
}

function fail(message) {
  process.stderr.write(`mutate: ${message}\n`);
  process.exit(2);
}

function count(haystack, needle) {
  let n = 0;
  for (let i = haystack.indexOf(needle); i >= 0; i = haystack.indexOf(needle, i + 1)) n++;
  return n;
}

/** Every entry is checked against the working tree before anything runs. */
function loadMutations(only) {
  const list = JSON.parse(readFileSync(LIST, 'utf8'));
  const problems = [];
  const ids = new Set();
  list.forEach((m, i) => {
    const label = `mutation ${i + 1} (${m.id ?? 'no id'})`;
    for (const key of ['id', 'description', 'file', 'find']) {
      if (typeof m[key] !== 'string' || m[key] === '') problems.push(`${label}: "${key}" must be a non-empty string`);
    }
    if (typeof m.replace !== 'string' || m.replace === m.find) problems.push(`${label}: "replace" must be a string that differs from "find"`);
    if (!Array.isArray(m.tests) || m.tests.length === 0) problems.push(`${label}: "tests" must list at least one test file`);
    if (ids.has(m.id)) problems.push(`${label}: duplicate id`);
    ids.add(m.id);
    for (const t of m.tests ?? []) if (!existsSync(join(ROOT, t))) problems.push(`${label}: test file ${t} does not exist`);
    const path = join(ROOT, m.file ?? '');
    if (!m.file || !existsSync(path)) return void problems.push(`${label}: file ${m.file} does not exist`);
    const n = count(readFileSync(path, 'utf8'), m.find ?? '');
    if (n === 0) problems.push(`${label}: snippet not found in ${m.file}: ${JSON.stringify(m.find)}`);
    else if (n > 1) problems.push(`${label}: snippet found ${n} times in ${m.file}, must be unique: ${JSON.stringify(m.find)}`);
  });
  if (only) for (const id of only) if (!ids.has(id)) problems.push(`--only: no mutation with id ${id}`);
  if (problems.length > 0) fail(`${LIST} needs updating:\n  ${problems.join('\n  ')}`);
  return list.map((m, i) => ({ ...m, n: i + 1 })).filter((m) => !only || only.has(m.id));
}

function makeScratch() {
  const dir = mkdtempSync(join(tmpdir(), 'd1-optout-mutate-'));
  for (const entry of COPY) {
    if (existsSync(join(ROOT, entry))) cpSync(join(ROOT, entry), join(dir, entry), { recursive: true });
  }
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  return dir;
}

function build(dir) {
  const r = spawnSync(process.execPath, [TSC, '-p', 'tsconfig.json'], { cwd: dir, encoding: 'utf8' });
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}`.trim() };
}

/** Runs vitest on `files` (all when empty); returns the failing test files and test names. */
function runTests(dir, files) {
  const out = join(dir, '.mutate-result.json');
  rmSync(out, { force: true });
  const r = spawnSync(process.execPath, [VITEST, 'run', '--reporter=json', `--outputFile=${out}`, ...files], {
    cwd: dir,
    encoding: 'utf8',
    timeout: TEST_TIMEOUT_MS,
    killSignal: 'SIGKILL',
  });
  if (r.error?.code === 'ETIMEDOUT') return { passed: false, failedFiles: ['(timed out)'], failedTests: [] };
  if (!existsSync(out)) return { passed: false, failedFiles: ['(vitest wrote no result)'], failedTests: [], output: `${r.stdout}${r.stderr}` };
  const result = JSON.parse(readFileSync(out, 'utf8'));
  const failedFiles = [];
  const failedTests = [];
  for (const f of result.testResults ?? []) {
    if (f.status !== 'passed') failedFiles.push(relative(dir, f.name));
    for (const t of f.assertionResults ?? []) if (t.status === 'failed') failedTests.push(t.fullName ?? t.title);
  }
  const passed = r.status === 0 && failedFiles.length === 0 && (result.numFailedTests ?? 0) === 0;
  if (!passed && failedFiles.length === 0) failedFiles.push('(vitest failed outside any test file)');
  return { passed, failedFiles, failedTests, output: `${r.stdout}${r.stderr}` };
}

function table(rows) {
  const head = ['#', 'mutation', 'file', 'result', 'killed by', 'tests run', 's'];
  const body = rows.map((r) => [String(r.n), r.id, r.file, r.result, r.killedBy, r.testsRun, r.seconds]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

const opts = parseArgs(process.argv.slice(2));
const mutations = loadMutations(opts.only);
const scratch = makeScratch();
const cleanUp = () => {
  if (!opts.keep) rmSync(scratch, { recursive: true, force: true });
};
// process.exit() (a failed baseline, the end of the run) skips `finally`; 'exit' handlers still run.
process.on('exit', cleanUp);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    cleanUp();
    process.stderr.write(`\nmutate: stopped by ${signal}; the working tree was never changed\n`);
    process.exit(130);
  });
}

const started = Date.now();
const rows = [];
try {
  process.stderr.write(`mutate: scratch copy ${scratch}\n`);
  // The unmutated code must pass the same tests, or "killed" would mean nothing.
  const allFiles = opts.full ? [] : [...new Set(mutations.flatMap((m) => m.tests))].sort();
  const base = build(scratch);
  if (!base.ok) fail(`the unmutated code does not build:\n${base.output}`);
  process.stderr.write(`mutate: baseline: ${opts.full ? 'the whole suite' : allFiles.join(' ')}\n`);
  const baseline = runTests(scratch, allFiles);
  if (!baseline.passed) {
    fail(`the unmutated code fails its tests (${baseline.failedFiles.join(', ')}): ${baseline.failedTests.join('; ')}\n${baseline.output ?? ''}`);
  }

  for (const [i, m] of mutations.entries()) {
    const t0 = Date.now();
    const path = join(scratch, m.file);
    const original = readFileSync(path, 'utf8');
    const files = opts.full ? [] : m.tests;
    process.stderr.write(`mutate: ${i + 1}/${mutations.length}: mutation ${m.n} ${m.id} (${m.description})\n`);
    let row;
    try {
      writeFileSync(path, original.replace(m.find, () => m.replace));
      const b = build(scratch);
      if (!b.ok) {
        // A mutation the compiler rejects says nothing about the tests: the list needs fixing.
        row = { result: 'BUILD ERROR', killedBy: b.output.split('\n')[0] ?? '' };
      } else {
        const r = runTests(scratch, files);
        row = r.passed ? { result: 'SURVIVED', killedBy: '' } : { result: 'killed', killedBy: r.failedFiles.join(' ') };
      }
    } finally {
      writeFileSync(path, original);
    }
    rows.push({ ...m, ...row, testsRun: opts.full ? '(all)' : files.map((f) => f.replace(/^test\//, '')).join(' '), seconds: ((Date.now() - t0) / 1000).toFixed(0) });
  }
} finally {
  cleanUp();
}

const bad = rows.filter((r) => r.result !== 'killed');
process.stdout.write(`\n${table(rows)}\n\n`);
process.stdout.write(`${rows.length - bad.length} of ${rows.length} mutations killed${bad.length ? `; not killed: ${bad.map((r) => r.id).join(', ')}` : ''} (${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
process.exit(bad.length ? 1 : 0);
