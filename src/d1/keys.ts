import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync, statSync, type Stats } from 'node:fs';
import { configKeyName } from '../config.js';
import { UsageError } from '../errors.js';

/**
 * Loads the ES256 private key that signs the client assertion. Like ssh, refuses a key file that
 * group or others can read: whoever reads it can remove cards from Click to Pay.
 */
export function loadPrivateKey(path: string): KeyObject {
  let stat: Stats;
  try {
    stat = statSync(path);
  } catch (err) {
    throw new UsageError(`${configKeyName('d1.privateKeyFile', path)}: ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  if (!stat.isFile()) throw new UsageError(`${configKeyName('d1.privateKeyFile', path)}: ${path} is not a file; expected the path of an EC P-256 PEM key`);
  const mode = stat.mode;
  if ((mode & 0o077) !== 0) {
    throw new UsageError(
      `${configKeyName('d1.privateKeyFile', path)}: ${path} is readable by group or others (mode ${(mode & 0o777).toString(8)}); run chmod 600 on it`,
    );
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: readFileSync(path), passphrase: process.env['D1_PRIVATE_KEY_PASSPHRASE'] });
  } catch {
    throw new UsageError(`${configKeyName('d1.privateKeyFile', path)}: ${path} is not a readable PEM private key (wrong passphrase?)`);
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new UsageError(`${configKeyName('d1.privateKeyFile', path)}: ${path} must be an EC P-256 key (D1 accepts only ES256)`);
  }
  return key;
}
