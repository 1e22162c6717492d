import type { CommandModule } from 'yargs';
import { configPath } from '../config.js';
import { EXIT } from '../errors.js';
import { redactText } from '../log.js';
import { checkConfig, formatCheck, liveCheck, localChecks } from '../preflight.js';
import type { CheckLine } from '../types.js';
import { configOption, type CommonArgs } from './shared.js';

interface Args extends CommonArgs {
  live: boolean;
}

export const checkModule: CommandModule<object, Args> = {
  command: 'check',
  describe: 'preflight, changing nothing: config, key and TLS files, ledger, folders, free space (--live: also one D1 token)',
  builder: (y) =>
    y.options({
      ...configOption,
      live: { type: 'boolean', default: false, describe: 'also get one token from D1 (mTLS + client assertion); nothing else is sent' },
    }) as never,
  // Not runCommand: a bad config is one FAIL line among the others, and check writes no log.
  handler: async (args) => {
    const print = (c: CheckLine) => process.stdout.write(redactText(formatCheck(c)) + '\n');
    const { line, config } = checkConfig(configPath(args.config));
    const lines = [line];
    print(line);
    if (config) {
      for (const c of localChecks(config)) {
        lines.push(c);
        print(c);
      }
      if (args.live) {
        const c = await liveCheck(config);
        lines.push(c);
        print(c);
      }
    }
    const failed = lines.filter((c) => !c.ok).length;
    process.stdout.write(failed === 0 ? 'All checks passed.\n' : `${failed} check(s) failed.\n`);
    process.exit(failed === 0 ? EXIT.OK : EXIT.USAGE);
  },
};
