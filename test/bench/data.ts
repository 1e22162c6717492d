import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { mulberry32 } from '../../src/sim/index.js';

/** A card file of `rows` rows with distinct random 24-character card ids, written as a stream. */
export async function writeCardFile(path: string, rows: number, seed = 1): Promise<void> {
  const rand = mulberry32(seed);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  const id = (prefix: string) => {
    let out = prefix;
    while (out.length < 24) out += alphabet[Math.floor(rand() * alphabet.length)];
    return out;
  };
  const reasons = ['CLOSED', 'FRAUD', 'LOST_STOLEN', 'REGULATORY', 'CUSTOMER_REQUEST'];
  const out = createWriteStream(path);
  out.write('card_id,consumer_id,reason,scope,event_time,reference\n');
  let chunk = '';
  for (let i = 0; i < rows; i++) {
    chunk += `${id('CARD-')},${id('CONS-')},${reasons[i % reasons.length]},CARD,2026-11-28T01:00:00Z,bench row ${i}\n`;
    if (chunk.length > 1 << 16) {
      if (!out.write(chunk)) await once(out, 'drain');
      chunk = '';
    }
  }
  out.end(chunk);
  await once(out, 'finish');
}
