import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { brotliDecompressSync } from 'node:zlib';
import { ROOT } from './helpers.js';

/**
 * The headless Chromium that the browser tests drive. `npm ci` alone must bring it, since a fresh
 * machine has no Debian chromium and may reach no host but the npm registry: @sparticuz/chromium
 * carries a brotli-packed Linux x64 headless shell inside its npm tarball, which needs only
 * libraries every Debian machine already has (libc, libnss3, libnspr4, libexpat). It is unpacked
 * once per install into node_modules/.cache, next to the SwiftShader libraries its GPU process
 * loads from the same folder. Only where that package has no binary for the machine (another OS
 * or CPU) does a system Chromium serve, if there is one.
 */
const SYSTEM_CHROMIUM = '/usr/bin/chromium';

export function chromiumPath(): string {
  const runsHere = process.platform === 'linux' && process.arch === 'x64';
  const packed = runsHere ? packedChromiumDir() : undefined;
  if (packed) return unpack(packed);
  if (existsSync(SYSTEM_CHROMIUM)) return SYSTEM_CHROMIUM;
  const why = runsHere ? '@sparticuz/chromium is not installed (npm ci installs it)' : `@sparticuz/chromium has no binary for ${process.platform}-${process.arch}`;
  throw new Error(`no Chromium for the browser tests: ${why}, and ${SYSTEM_CHROMIUM} is missing`);
}

/** The package's bin folder, or undefined when npm did not install it. */
function packedChromiumDir(): { bin: string; version: string } | undefined {
  let entry: string;
  try {
    entry = createRequire(import.meta.url).resolve('@sparticuz/chromium');
  } catch {
    return undefined;
  }
  const pkg = join(dirname(entry), '..');
  const { version } = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')) as { version: string };
  return { bin: join(pkg, 'bin'), version };
}

function unpack({ bin, version }: { bin: string; version: string }): string {
  const dir = join(ROOT, 'node_modules', '.cache', 'd1-optout', `chromium-${version}`);
  const exe = join(dir, 'chromium');
  if (existsSync(exe)) return exe;
  // Unpacked aside and renamed into place, so a concurrent run never starts a half-written binary.
  const part = `${dir}.part-${process.pid}`;
  rmSync(part, { recursive: true, force: true });
  mkdirSync(part, { recursive: true });
  try {
    writeFileSync(join(part, 'chromium'), brotliDecompressSync(readFileSync(join(bin, 'chromium.br'))), { mode: 0o755 });
    execFileSync('tar', ['-x', '-C', part], { input: brotliDecompressSync(readFileSync(join(bin, 'swiftshader.tar.br'))) });
    renameSync(part, dir);
  } catch (err) {
    rmSync(part, { recursive: true, force: true });
    if (existsSync(exe)) return exe; // another run finished first
    throw err;
  }
  return exe;
}
