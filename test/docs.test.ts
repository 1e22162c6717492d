import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers.js';

// The repository must explain itself: every document a file points at is in the repository, and
// every section a reference names exists (docs/design.md §2). A newcomer who follows a comment's
// "see §N" must land somewhere.

/** Generated, installed or run-time folders: not the project's own text. */
const SKIP_DIRS = new Set(['node_modules', 'dist', '.git', 'var', 'coverage']);

interface TextFile {
  path: string;
  text: string;
}

function projectFiles(dir: string): TextFile[] {
  const files: TextFile[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (!SKIP_DIRS.has(entry.name)) files.push(...projectFiles(path));
    } else if (entry.isFile()) {
      const bytes = readFileSync(path);
      // Binary fixtures (gzip, a spreadsheet, a screenshot) hold no references.
      if (!bytes.includes(0)) files.push({ path: relative(ROOT, path), text: bytes.toString('utf8') });
    }
  }
  return files;
}

function lineOf(text: string, index: number): number {
  return text.slice(0, index).split('\n').length;
}

/** The section numbers a document defines, from its headings (`## §3 ...`). */
function sectionsOf(doc: string): number[] {
  return [...readFileSync(join(ROOT, doc), 'utf8').matchAll(/^#{2,3} §(\d+)\b/gm)].map((m) => Number(m[1]));
}

const files = projectFiles(ROOT);

describe('the repository explains itself', () => {
  it('reads the files it checks (the walk reaches src, jobs, test, docs and the README)', () => {
    const paths = files.map((f) => f.path);
    for (const p of ['README.md', 'crontab.example', 'src/config.ts', 'jobs/nightly-optout.ts', 'test/helpers.ts', 'docs/design.md', 'docs/d1-api.md']) {
      expect(paths).toContain(p);
    }
    expect(paths.some((p) => p.startsWith('node_modules') || p.startsWith('dist'))).toBe(false);
  });

  it('refers to no document outside the repository', () => {
    const outside: string[] = [];
    for (const { path, text } of files) {
      for (const m of text.matchAll(/\.\.\/shared\b|\/work\/shared\b/g)) outside.push(`${path}:${lineOf(text, m.index)}: ${m[0]}`);
      // The design and the D1 fact sheet are referred to by their place in the repository, exactly.
      for (const m of text.matchAll(/[\w./-]*(?:design|d1-api)\.md/gi)) {
        if (!/(?:^|\/)docs\/(?:design|d1-api)\.md$/.test(m[0])) outside.push(`${path}:${lineOf(text, m.index)}: ${m[0]}`);
      }
    }
    expect(outside).toEqual([]);
  });

  it('keeps the section numbers of docs/design.md: §1 to §14, in order', () => {
    expect(sectionsOf('docs/design.md')).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
  });

  it('names only sections that exist, in every docs/design.md or docs/d1-api.md reference', () => {
    const defined = new Map(['docs/design.md', 'docs/d1-api.md'].map((doc) => [doc, new Set(sectionsOf(doc))]));
    const dangling: string[] = [];
    let references = 0;
    for (const { path, text } of files) {
      // "docs/design.md §3", "`docs/d1-api.md` §1", "docs/design.md §4, §8", "... §11 and §12"
      for (const m of text.matchAll(/docs\/(design\.md|d1-api\.md)`?\s*(§\s*\d+(?:\s*(?:,|and|or)\s*§\s*\d+)*)/g)) {
        const doc = `docs/${m[1]}`;
        for (const n of m[2]!.matchAll(/§\s*(\d+)/g)) {
          references++;
          if (!defined.get(doc)?.has(Number(n[1]))) dangling.push(`${path}:${lineOf(text, m.index)}: ${doc} §${n[1]}`);
        }
      }
    }
    expect(dangling).toEqual([]);
    // The walk and the pattern found the references the code is full of, not nothing.
    expect(references).toBeGreaterThan(20);
  });
});
