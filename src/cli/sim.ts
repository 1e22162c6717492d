import { createPublicKey } from 'node:crypto';
import type { CommandModule } from 'yargs';
import { loadConfig } from '../config.js';
import { loadPrivateKey } from '../d1/keys.js';
import { EXIT, JobError } from '../errors.js';
import { redactText } from '../log.js';
import { loadScenarioFile, makeSimCerts, startSimulator, type SimIssuer } from '../sim/index.js';
import { HELP_EPILOGUE } from './shared.js';
import { say } from '../text.js';

interface Args {
  port: number;
  scenario?: string;
  config?: string;
  'make-certs'?: string;
}

export const simModule: CommandModule<object, Args> = {
  command: 'sim',
  describe: 'run the bundled D1 simulator on 127.0.0.1 (trusts the public key of the configured issuer)',
  builder: (y) =>
    y.options({
      port: { type: 'number', default: 0, describe: 'port to listen on (0: any free port)' },
      scenario: { type: 'string', describe: 'scenario JSON (faults, quota, pending, TLS); see fixtures/sim/' },
      config: { type: 'string', describe: "the job's config: its issuerId, keyId and key become the simulator's trusted issuer" },
      'make-certs': { type: 'string', describe: 'write a throw-away test CA, server and client certificate into this folder (for fixtures/sim/mtls.json: var/sim-certs), then exit' },
    }).example('$0 sim --scenario fixtures/sim/demo.json --config d1-optout.config.json', 'a local D1 for the demo or a test').epilogue(HELP_EPILOGUE) as never,
  handler: async (args) => {
    try {
      if (args['make-certs']) {
        const files = await makeSimCerts(args['make-certs']);
        process.stdout.write(`test-only certificates written:\n${Object.entries(files).map(([k, v]) => `  ${k.padEnd(14)} ${v}`).join('\n')}\n`);
        process.exit(EXIT.OK);
      }
      // Only a config named on the command line: the simulator must not pick up the production
      // config (and load its signing key) from $D1_OPTOUT_CONFIG or the working directory.
      const issuers: SimIssuer[] = [];
      if (args.config) {
        const config = loadConfig(args.config);
        const publicKeyPem = createPublicKey(loadPrivateKey(config.d1.privateKeyFile)).export({ type: 'spki', format: 'pem' }).toString();
        issuers.push({ issuerId: config.d1.issuerId, kid: config.d1.keyId, publicKeyPem });
      }
      const scenario = args.scenario ? await loadScenarioFile(args.scenario) : {};
      const sim = await startSimulator({ port: args.port, scenario, issuers });
      // Before the lines that say it is up: whoever waits for them may stop it at once.
      const shutdown = () => void sim.close().then(() => process.exit(EXIT.OK));
      process.once('SIGINT', shutdown);
      process.once('SIGTERM', shutdown);
      process.stdout.write(
        `D1 simulator listening\n  d1.baseUrl  ${sim.baseUrl}\n  d1.tokenUrl ${sim.tokenUrl}\n  ground truth ${sim.url}/__sim/state\n` +
          (issuers.length ? `  trusts issuer ${issuers[0]!.issuerId} (kid ${issuers[0]!.kid})\n` : '  trusts no issuer: pass --config to accept your job\n'),
      );
    } catch (err) {
      say(`simulator: ${redactText((err as Error).message)}`);
      process.exit(err instanceof JobError ? err.exitCode : EXIT.USAGE);
    }
  },
};
