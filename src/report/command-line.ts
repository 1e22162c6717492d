import { accessSync, constants, realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The CLI's entry point in this build, beside this module's folder. */
const MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url));

/** A word the shell reads as itself: quoted only when it has to be. */
export function shellWord(w: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`;
}

function realpath(p: string): string | null {
  try {
    return realpathSync(p);
  } catch {
    return null;
  }
}

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * How this process would be started again as the CLI: the link it was invoked by when that leads
 * to the CLI and can be run (an installed `d1-optout`), else this very node and this build's
 * main.js (`node dist/src/cli/main.js`, a cron job in jobs/, a test), which runs whatever PATH
 * the operator's shell has.
 */
export function cliExecutable(argv1: string | undefined = process.argv[1], main: string = MAIN): string {
  const invoked = argv1 ? resolve(argv1) : null;
  const target = realpath(main);
  if (invoked && invoked !== target && target !== null && realpath(invoked) === target && executable(invoked)) return shellWord(invoked);
  return `${shellWord(process.execPath)} ${shellWord(main)}`;
}

let configFile: string | null = null;

/** The config this process runs with, so that every command it prints uses the same one. */
export function setCommandConfig(path: string): void {
  configFile = resolve(path);
}

/**
 * A command line an operator can paste on this machine as printed (docs/design.md §13): the same
 * executable and the same config as this process, whatever the working directory or environment.
 */
export function commandLine(...args: string[]): string {
  return [cliExecutable(), ...args.map(shellWord), ...(configFile ? ['--config', shellWord(configFile)] : [])].join(' ');
}
