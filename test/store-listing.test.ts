/**
 * Store listings are paged: every key under a prefix comes back, in order,
 * across page boundaries, on s3rver and on Azurite (started here), with one
 * request per page; keys outside the prefix never appear.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { backendFor } from '../shared/transport/store/backends.js';
import { eachLimited } from '../server/catalog/scanner.js';
import { startAzurite, startS3, type Emulator } from './store-emulators.js';

const COUNT = 1_050;
let s3: Emulator;
let az: Emulator;
const keys = Array.from({ length: COUNT }, (_, i) => `many/${String(i).padStart(5, '0')}.cosi`);

before(async () => {
  [s3, az] = await Promise.all([startS3(), startAzurite()]);
  for (const e of [s3, az]) {
    await e.put('paged', 'before.cosi', Buffer.from('x'));
    await eachLimited(keys, 16, (k) => e.put('paged', k, Buffer.from(k)));
    await e.put('paged', 'zzz/after.cosi', Buffer.from('x'));
  }
});

after(async () => {
  await Promise.all([s3?.stop(), az?.stop()]);
});

for (const [name, pageSize] of [
  ['s3', 1000],
  ['s3', 100],
  ['azure', 5000],
  ['azure', 100],
] as const) {
  test(`${name}: ${COUNT} keys in pages of ${pageSize}: all of them, once each, one request per page`, async () => {
    const e = name === 's3' ? s3 : az;
    const b = await backendFor(name === 's3' ? { kind: 's3', bucket: 'paged', key: '' } : { kind: 'azure', container: 'paged', key: '' }, e.env);
    const before = b.listRequests;
    const got: string[] = [];
    for await (const o of b.list('many/', pageSize)) {
      got.push(o.key);
      assert.equal(o.size, Buffer.byteLength(o.key));
      assert.match(o.etag, /^".+"$/);
    }
    assert.deepEqual(got, keys);
    assert.equal(b.listRequests - before, Math.ceil(COUNT / pageSize));
  });
}
