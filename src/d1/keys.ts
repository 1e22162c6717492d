import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync, statSync, type Stats } from 'node:fs';
import { configKeyName } from '../config.js';
import { UsageError } from '../errors.js';

/**
 * Refuses a private key file (the assertion's signing key, the mTLS client key) that group or
 * others can read, like ssh does: whoever reads the signing key can remove cards from Click to
 * Pay, and whoever reads the TLS key can speak to D1 as the issuer. `key` is the config key named
 * in the message, e.g. `d1.tls.keyFile`.
 */
export function checkPrivateKeyFile(key: string, path: string, expected: string): void {
  let stat: Stats;
  try {
    stat = statSync(path);
  } catch (err) {
    throw new UsageError(`${configKeyName(key, path)}: ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  if (!stat.isFile()) throw new UsageError(`${configKeyName(key, path)}: ${path} is not a file; expected the path of ${expected}`);
  const mode = stat.mode;
  if ((mode & 0o077) !== 0) {
    throw new UsageError(`${configKeyName(key, path)}: ${path} is readable by group or others (mode ${(mode & 0o777).toString(8)}); run chmod 600 on it`);
  }
}

/** Loads the ES256 private key that signs the client assertion (mode checked first). */
export function loadPrivateKey(path: string): KeyObject {
  checkPrivateKeyFile('d1.privateKeyFile', path, 'an EC P-256 PEM key');
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
