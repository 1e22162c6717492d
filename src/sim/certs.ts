// Makes a throw-away CA with a server and a client certificate for the mTLS scenario. node:crypto
// cannot issue X.509 certificates, so this shells out to the openssl CLI; it is for tests and the
// demo only, never for anything that talks to the real D1.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface SimCertFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** Writes ca.crt, server.crt/.key (for 127.0.0.1 and localhost) and client.crt/.key into `dir`. */
export async function makeSimCerts(dir: string): Promise<SimCertFiles> {
  await mkdir(dir, { recursive: true });
  const at = (name: string) => join(dir, name);
  await run('openssl', [
    'req', '-x509', ...EC_KEY, '-keyout', at('ca.key'), '-out', at('ca.crt'), '-days', '3650',
    '-subj', '/CN=d1-optout simulator test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  const issue = async (name: string, subject: string, extensions: string): Promise<void> => {
    const ext = at(`${name}.ext`);
    await writeFile(ext, extensions);
    await run('openssl', ['req', ...EC_KEY, '-keyout', at(`${name}.key`), '-out', at(`${name}.csr`), '-subj', subject]);
    await run('openssl', [
      'x509', '-req', '-in', at(`${name}.csr`), '-CA', at('ca.crt'), '-CAkey', at('ca.key'),
      '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '3650', '-out', at(`${name}.crt`), '-extfile', ext,
    ]);
    await chmod(at(`${name}.key`), 0o600);
    await rm(ext);
    await rm(at(`${name}.csr`));
  };
  await issue('server', '/CN=127.0.0.1', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  await issue('client', '/CN=d1-optout test issuer', 'extendedKeyUsage=clientAuth\n');
  await chmod(at('ca.key'), 0o600);
  return {
    caFile: at('ca.crt'),
    certFile: at('server.crt'),
    keyFile: at('server.key'),
    clientCertFile: at('client.crt'),
    clientKeyFile: at('client.key'),
  };
}
