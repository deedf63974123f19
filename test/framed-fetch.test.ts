/**
 * cosi-fetch on framed images over real HTTP (cosi-server on 127.0.0.1): the
 * frames decode in parallel lanes, --threads 1 and 2 write the same bytes as
 * the partition on the source disk, a single-frame image goes the old way,
 * and a flipped byte (exit 4) or a table that lies (exit 5) leaves no file.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freshDirs, runFetch, startCatalogServer } from './client-helpers.js';
import { FILLED, packedDisk, type PackedFixture } from './fixtures.js';
import { FRAME, flipInFrame, mutateRoot, tableOf } from './framed-helpers.js';
import { readDiskGpt } from '../shared/pack/pack.js';
import { encodeSeekTable } from '../shared/zstd/seek-table.js';
import { zstdProgram } from '../shared/zstd/backends.js';
import { canDecodeInWorker } from '../shared/zstd/sink.js';
import { execFileSync } from 'node:child_process';

const work = await mkdtemp(join(tmpdir(), 'cosi-framed-fetch-'));
const fresh = freshDirs(work);
let plain: PackedFixture;
let framed: PackedFixture;
let srv: Awaited<ReturnType<typeof startCatalogServer>>;
let rootSha: string;

before(async () => {
  plain = await packedDisk(FILLED);
  framed = await packedDisk(FILLED, ['--frame-size', '1M']);
  const dir = await fresh();
  const flipped = await mutateRoot(framed.cosi, dir, flipInFrame, false);
  const liar = await mutateRoot(framed.cosi, await fresh(), (d) => {
    const t = tableOf(d);
    t.entries[1]!.decompressedSize -= 4096;
    t.entries[2]!.decompressedSize += 4096;
    return Buffer.concat([t.body, encodeSeekTable(t.entries)]);
  }, true);
  // Frames after the first that declare no content size (the zstd program on a pipe), so only the
  // decoded counts can catch the table (the first declares its size: the image is decoded in lanes).
  const sizeless = zstdProgram() ? await mutateRoot(framed.cosi, await fresh(), (d) => {
    const t = tableOf(d);
    let off = 0;
    const parts: Buffer[] = [];
    const entries = t.entries.map((e, i) => {
      const frame = t.body.subarray(off, off + e.compressedSize);
      off += e.compressedSize;
      if (i < 2) {
        parts.push(frame);
        return e;
      }
      const again = execFileSync('zstd', ['-q', '-c', '--no-content-size', '--zstd=wlog=20'], { input: execFileSync('zstd', ['-d', '-q', '-c'], { input: frame }) });
      parts.push(again);
      return { compressedSize: again.length, decompressedSize: e.decompressedSize + (i === 2 ? -4096 : i === 3 ? 4096 : 0) };
    });
    return Buffer.concat([...parts, encodeSeekTable(entries)]);
  }, true) : undefined;
  srv = await startCatalogServer({ 'framed.cosi': framed.cosi, 'plain.cosi': plain.cosi, 'flipped.cosi': flipped, 'liar.cosi': liar, ...(sizeless ? { 'sizeless.cosi': sizeless } : {}) });
  const { gpt } = await readDiskGpt(framed.disk);
  const root = gpt.partitions.find((p) => p.number === 2)!;
  const disk = await readFile(framed.disk);
  rootSha = createHash('sha256').update(disk.subarray(root.offset, root.offset + root.size)).digest('hex');
});
after(async () => {
  await srv?.stop();
  await rm(work, { recursive: true, force: true });
});

async function sha256(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

for (const threads of [1, 2]) {
  test(`--threads ${threads}: a framed root decodes in ${threads} lane(s) to the partition's bytes`, async () => {
    const dir = await fresh();
    const out = join(dir, 'root.img');
    const r = await runFetch(['--partition', 'root', '-o', out, '--threads', String(threads), '--json', '-q', `${srv.url}/cosi/framed.cosi`]);
    assert.equal(r.code, 0, r.stderr);
    const part = JSON.parse(r.stdout).partitions[0];
    assert.equal(part.lanes, threads);
    assert.equal(part.frames, Math.ceil(part.uncompressedSize / FRAME));
    assert.ok(part.frames >= 3, `enough frames to interleave (${part.frames})`);
    assert.equal(await sha256(out), rootSha);
    assert.deepEqual(await readdir(dir), ['root.img']);
  });
}

test('an image without a seek table decodes as one stream, as before', async () => {
  const dir = await fresh();
  const out = join(dir, 'root.img');
  const r = await runFetch(['--partition', 'root', '-o', out, '--threads', '2', '--json', '-q', `${srv.url}/cosi/plain.cosi`]);
  assert.equal(r.code, 0, r.stderr);
  const part = JSON.parse(r.stdout).partitions[0];
  assert.equal(part.frames, undefined);
  assert.equal(await sha256(out), rootSha);
});

test('--disk with framed partitions writes the same disk as from the one-frame archive', async () => {
  const dir = await fresh();
  const a = await runFetch(['--disk', '-o', join(dir, 'a.img'), '--threads', '2', '-q', `${srv.url}/cosi/framed.cosi`]);
  const b = await runFetch(['--disk', '-o', join(dir, 'b.img'), '-q', `${srv.url}/cosi/plain.cosi`]);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(b.code, 0, b.stderr);
  assert.equal(await sha256(join(dir, 'a.img')), await sha256(join(dir, 'b.img')));
});

test('a flipped byte in one frame: fetched again once, then exit 4 (SHA-384 mismatch), no file left', async () => {
  for (const threads of ['1', '2']) {
    const dir = await fresh();
    const r = await runFetch(['--partition', 'root', '-o', join(dir, 'root.img'), '--threads', threads, `${srv.url}/cosi/flipped.cosi`]);
    assert.equal(r.code, 4, r.stderr);
    // Over HTTP a mismatch may be a cache's splice (see client/refetch.ts): one more fetch, judged the same way.
    assert.equal(r.stderr.match(/fetching it again from its start/g)?.length, 1, r.stderr);
    assert.match(r.stderr, /error: .*SHA-384 mismatch/);
    assert.deepEqual(await readdir(dir), []);
  }
});

test('a seek table that lies, its hash vouching for it: exit 5 naming the table, no file left', async () => {
  const dir = await fresh();
  const r = await runFetch(['--partition', 'root', '-o', join(dir, 'root.img'), '--threads', '2', `${srv.url}/cosi/liar.cosi`]);
  assert.equal(r.code, 5, r.stderr);
  assert.match(r.stderr, /seek table entry 1 .*declaring \d+ bytes where the table lists/);
  assert.deepEqual(await readdir(dir), []);
});

test('frames that declare no size, with a table that moves 4 KiB from one to the next: caught, or every byte still lands right', { skip: zstdProgram() ? false : 'the zstd program is not installed' }, async (t) => {
  for (const threads of ['1', '2']) {
    const dir = await fresh();
    const out = join(dir, 'root.img');
    const r = await runFetch(['--partition', 'root', '-o', out, '--threads', threads, '--json', `${srv.url}/cosi/sizeless.cosi`]);
    t.diagnostic(`--threads ${threads}: exit ${r.code}; ${r.stderr.trim()}`);
    // Worker lanes count each frame's output; a zstd process's output has no frame ends, so
    // one lane (every frame in order) can only place the bytes where the table's offsets say.
    if (r.code === 0 && !canDecodeInWorker('node')) {
      assert.equal(JSON.parse(r.stdout).partitions[0].lanes, Number(threads));
      assert.equal(await sha256(out), rootSha, `--threads ${threads}`);
      continue;
    }
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /seek table entry \d+ lists \d+ decompressed bytes|frames decode to more bytes than the seek table lists/);
    assert.deepEqual(await readdir(dir), []);
  }
});

test('--threads must be a whole number from 1', async () => {
  const r = await runFetch(['--partition', 'root', '-o', join(await fresh(), 'x.img'), '--threads', '0', `${srv.url}/cosi/framed.cosi`]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--threads/);
});
