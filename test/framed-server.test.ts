/**
 * Random access into framed images: cosi-server's ?decompress=1 answers Range
 * over the decoded bytes (single ranges, several at once, curl -C - resuming
 * a decoded download), the index lists each image's frame count, and the
 * library's readUncompressed reads any slice; one-frame images keep
 * answering whole (Accept-Ranges: none) and refuse readUncompressed.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCatalogServer } from './client-helpers.js';
import { FILLED, packedDisk, sh, type PackedFixture } from './fixtures.js';
import { FRAME } from './framed-helpers.js';
import { readDiskGpt } from '../shared/pack/pack.js';
import { open } from '../client/index.js';

const work = await mkdtemp(join(tmpdir(), 'cosi-framed-server-'));
let plain: PackedFixture;
let framed: PackedFixture;
let srv: Awaited<ReturnType<typeof startCatalogServer>>;
let root: Buffer;

before(async () => {
  plain = await packedDisk(FILLED);
  framed = await packedDisk(FILLED, ['--frame-size', '1M']);
  srv = await startCatalogServer({ 'framed.cosi': framed.cosi, 'plain.cosi': plain.cosi });
  const { gpt } = await readDiskGpt(framed.disk);
  const p = gpt.partitions.find((q) => q.number === 2)!;
  root = (await readFile(framed.disk)).subarray(p.offset, p.offset + p.size);
});
after(async () => {
  await srv?.stop();
  await rm(work, { recursive: true, force: true });
});

const decoded = (id: string) => `${srv.url}/v1/images/${id}/partitions/root?decompress=1`;

test('the index lists the frames of framed images only', async () => {
  type Listed = { partitions: Array<{ selector: string; uncompressedSize: number; frames?: number }> };
  const f = (await (await fetch(`${srv.url}/v1/images/framed`)).json()) as Listed;
  const rootPart = f.partitions.find((p) => p.selector === 'root')!;
  assert.equal(rootPart.frames, Math.ceil(rootPart.uncompressedSize / FRAME));
  const p = (await (await fetch(`${srv.url}/v1/images/plain`)).json()) as Listed;
  assert.ok(p.partitions.every((q) => q.frames === undefined));
});

test('?decompress=1 with Range on a framed image: 206 with exactly the decoded bytes asked for', async () => {
  const cases: Array<[string, number, number]> = [
    ['inside one frame', 5000, 9000],
    ['across frames', FRAME - 100, 3 * FRAME + 100],
    ['the last bytes', root.length - 777, root.length - 1],
  ];
  for (const [what, start, end] of cases) {
    const res = await fetch(decoded('framed'), { headers: { Range: `bytes=${start}-${end}` } });
    assert.equal(res.status, 206, what);
    assert.equal(res.headers.get('content-range'), `bytes ${start}-${end}/${root.length}`, what);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(root.subarray(start, end + 1)), what);
  }
  const suffix = await fetch(decoded('framed'), { headers: { Range: 'bytes=-1000' } });
  assert.equal(suffix.status, 206);
  assert.ok(Buffer.from(await suffix.arrayBuffer()).equals(root.subarray(root.length - 1000)));
  const past = await fetch(decoded('framed'), { headers: { Range: `bytes=${root.length}-` } });
  assert.equal(past.status, 416);
  await past.arrayBuffer();
  const multi = await fetch(decoded('framed'), { headers: { Range: 'bytes=0-99,2097152-2097251' } });
  assert.equal(multi.status, 206);
  assert.match(multi.headers.get('content-type') ?? '', /^multipart\/byteranges/);
  const body = Buffer.from(await multi.arrayBuffer());
  assert.ok(body.includes(root.subarray(0, 100)) && body.includes(root.subarray(2097152, 2097252)));
});

test('curl -C - continues a decoded download of a framed image to the exact partition', async () => {
  const out = join(work, 'root.img');
  await writeFile(out, root.subarray(0, 3 * FRAME + 12345));
  await sh('curl', ['-fsS', '-C', '-', '-o', out, decoded('framed')]);
  assert.ok((await readFile(out)).equals(root));
});

test('a whole GET of a framed image is still the hash-checked stream, and says it takes ranges', async () => {
  const res = await fetch(decoded('framed'));
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('accept-ranges'), 'bytes');
  assert.ok(Buffer.from(await res.arrayBuffer()).equals(root));
});

test('a one-frame image ignores Range on ?decompress=1, as before', async () => {
  const res = await fetch(decoded('plain'), { headers: { Range: 'bytes=0-99' } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('accept-ranges'), 'none');
  assert.equal(Buffer.from(await res.arrayBuffer()).length, root.length);
});

test('readUncompressed reads any slice of a framed image, and refuses a one-frame image', async () => {
  const img = await open(framed.cosi);
  try {
    const image = img.select('root').image;
    for (const [off, len] of [[0, 1], [FRAME - 5, 10], [123457, 2 * FRAME], [root.length - 1, 1]] as const) {
      assert.ok((await img.readUncompressed(image, off, len)).equals(root.subarray(off, off + len)), `${off}+${len}`);
    }
    await assert.rejects(img.readUncompressed(image, root.length - 1, 2), { code: 'COSI_ERR_USAGE' });
  } finally {
    await img.close();
  }
  const one = await open(plain.cosi);
  try {
    await assert.rejects(one.readUncompressed(one.select('root').image, 0, 10), { code: 'COSI_ERR_UNSUPPORTED', message: /has no seek table/ });
  } finally {
    await one.close();
  }
});
