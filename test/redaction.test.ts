import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CardFileError } from '../src/errors.js';
import { signAssertion } from '../src/d1/token.js';
import { closeLogger, createLogger } from '../src/log.js';

// The logger's redaction format, through a real winston logger writing a real file: whatever a
// call site hands it (message, metadata at any depth, errors and their stacks), no bearer token,
// JWT, PEM block or card number reaches the file in clear.

const PAN = '4111111111111111';
const PAN_SPACED = '5555 5555 5555 4444';
const PAN_DASHED = '3782-822463-10005';
const PAN_UNDERSCORED = '6011_1111_1111_1117';

let dir: string;
let text: string;
let lines: Record<string, unknown>[];
const secrets: Record<string, string> = {};

/** `pan` as a pattern that also finds it regrouped (spaces, dashes, underscores between digits). */
function panPattern(pan: string): RegExp {
  return new RegExp(pan.replace(/\D/g, '').split('').join('[ _-]?'));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'd1-optout-redaction-'));
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const assertion = await signAssertion(privateKey, { issuerId: 'ISSUER0001', keyId: 'kid-1' }, Math.floor(Date.now() / 1000));
  Object.assign(secrets, {
    assertion,
    signature: assertion.split('.')[2]!,
    pemBody: pem.split('\n').slice(1, -2).join(''),
    opaqueToken: randomBytes(32).toString('base64url'),
    bearerToken: randomBytes(24).toString('base64url'),
    refreshToken: randomBytes(24).toString('hex'),
    password: `pw-${randomBytes(8).toString('hex')}`,
  });
  const pemLines = pem.split('\n').slice(1, -2);

  const file = join(dir, 'log', 'job.log');
  mkdirSync(dirname(file), { mode: 0o700 }); // the log's folder is the install's, not the logger's
  const log = createLogger({ level: 'debug', file, console: false });

  // 1. in messages
  log.info(`calling D1 with Authorization: Bearer ${secrets['bearerToken']} now`);
  log.debug(`assertion ${assertion} sent`);
  log.warn(`key file content:\n${pem}`);
  log.warn(`a cut-off key: ${pem.slice(0, 120)}`);
  log.info(`cards ${PAN}, ${PAN_SPACED}, ${PAN_DASHED} and ${PAN_UNDERSCORED} in one line`);

  // 2. in metadata, nested, in arrays, in key names, behind secret field names
  log.info('metadata', {
    request: { headers: { Authorization: `Bearer ${secrets['bearerToken']}`, 'x-correlation-id': 'c-1' }, body: { assertion } },
    token: secrets['opaqueToken'],
    session: { accessToken: secrets['opaqueToken'], refresh_token: secrets['refreshToken'], password: secrets['password'] },
    rows: [{ raw: `x,${PAN},y` }, [`deep ${PAN_SPACED}`]],
    [`pan ${PAN}`]: 'as a key',
    key: pem,
    tokenUrl: 'https://d1.example/token',
    privateKeyFile: '/etc/d1-optout/es256.pem',
  });
  let deep: Record<string, unknown> = { pan: PAN, jwt: assertion };
  for (let i = 0; i < 20; i++) deep = { level: deep };
  log.info('deeply nested', { deep });
  const cyclic: Record<string, unknown> = { pan: PAN_DASHED };
  cyclic['self'] = cyclic;
  log.info('cyclic', { cyclic });

  // 3. errors: as the message, in metadata, with a cause, with own properties
  const failure = new Error(`card ${PAN} refused with ${assertion}`);
  log.error(failure);
  const withCause = new Error('outer', { cause: new Error(`inner ${PAN_SPACED} Bearer ${secrets['bearerToken']}`) });
  log.error('request failed', { error: withCause });
  const coded = Object.assign(new Error(`socket hang up near ${PAN_UNDERSCORED}`), { code: 'ECONNRESET', body: pem });
  log.error('network', { error: coded });
  log.error('unreadable file', { error: new CardFileError(`/in/${PAN}.csv`, `first line ${PAN_SPACED}`) });

  // 4. a child logger's default metadata
  log.child({ batchId: 'b-1', token: secrets['opaqueToken'] }).info(`child line ${PAN}`);

  for (const [i, line] of pemLines.entries()) secrets[`pemLine${i}`] = line;
  await closeLogger(log);
  text = readFileSync(file, 'utf8');
  lines = text.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('log redaction', () => {
  it('writes every line (nothing was dropped to hide it)', () => {
    expect(lines).toHaveLength(13);
  });

  it('leaves no token, assertion, password or key material in the file', () => {
    for (const [name, secret] of Object.entries(secrets)) {
      expect(text.includes(secret), `${name} leaked`).toBe(false);
    }
  });

  it('leaves no card number in the file, however it is grouped', () => {
    for (const pan of [PAN, PAN_SPACED, PAN_DASHED, PAN_UNDERSCORED]) expect(text).not.toMatch(panPattern(pan));
  });

  it('masks in place, so the lines still say what happened', () => {
    expect(lines[0]!['message']).toBe('calling D1 with Authorization: Bearer [REDACTED] now');
    expect(lines[1]!['message']).toBe('assertion [REDACTED JWT] sent');
    expect(lines[2]!['message']).toBe('key file content:\n[REDACTED PEM]\n');
    expect(lines[3]!['message']).toBe('a cut-off key: [REDACTED PEM]');
    expect(lines[4]!['message']).toBe('cards 411111******1111, 5555 55** **** 4444, 3782-82****-*0005 and 6011_11**_****_1117 in one line');
  });

  it('masks metadata at every depth and replaces secret-named fields whatever their value', () => {
    const meta = lines[5]!;
    expect(meta['request']).toEqual({
      headers: { Authorization: '[REDACTED]', 'x-correlation-id': 'c-1' },
      body: { assertion: '[REDACTED]' },
    });
    expect(meta['token']).toBe('[REDACTED]');
    expect(meta['session']).toEqual({ accessToken: '[REDACTED]', refresh_token: '[REDACTED]', password: '[REDACTED]' });
    expect(meta['rows']).toEqual([{ raw: 'x,411111******1111,y' }, ['deep 5555 55** **** 4444']]);
    expect(meta['pan 411111******1111']).toBe('as a key');
    expect(meta['key']).toBe('[REDACTED PEM]\n');
    // Settings an operator needs are not secrets.
    expect(meta['tokenUrl']).toBe('https://d1.example/token');
    expect(meta['privateKeyFile']).toBe('/etc/d1-optout/es256.pem');
  });

  it('replaces what is too deep or cyclic to walk instead of writing it unredacted', () => {
    expect(JSON.stringify(lines[6])).toContain('[nested too deep]');
    expect(lines[7]!['cyclic']).toEqual({ pan: '3782-82****-*0005', self: '[circular]' });
  });

  it('masks error messages, stacks, causes and own properties', () => {
    const direct = lines[8]!;
    expect(direct['message']).toBe('card 411111******1111 refused with [REDACTED JWT]');
    expect(direct['stack']).toMatch(/^Error: card 411111\*{6}1111 refused with \[REDACTED JWT\]\n\s+at /);

    const caused = lines[9]!['error'] as Record<string, unknown>;
    expect(caused['message']).toBe('outer');
    expect(caused['stack']).toMatch(/^Error: outer\n\s+at /);
    expect(caused['cause']).toMatchObject({ message: 'inner 5555 55** **** 4444 Bearer [REDACTED]' });

    const coded = lines[10]!['error'] as Record<string, unknown>;
    expect(coded).toMatchObject({ code: 'ECONNRESET', body: '[REDACTED PEM]\n', message: 'socket hang up near 6011_11**_****_1117' });

    const cardFile = lines[11]!['error'] as Record<string, unknown>;
    expect(cardFile).toMatchObject({ name: 'CardFileError', file: '/in/411111******1111.csv', exitCode: 2 });
  });

  it('masks a child logger default metadata too', () => {
    expect(lines[12]).toMatchObject({ batchId: 'b-1', token: '[REDACTED]', message: 'child line 411111******1111' });
  });
});
