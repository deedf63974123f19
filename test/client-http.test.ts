/**
 * cosi-fetch over real HTTP on 127.0.0.1: nginx serving the fixture files,
 * a fault-injecting proxy in front of it, python's http.server (no Range).
 * Request and byte counts are checked, not just results.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { renameSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHash } from 'node:crypto';
import { open } from '../client/index.js';
import { closeSharedAgents } from '../shared/transport/http/agent.js';
import { packedDisk, FILLED, SMALL, type DiskRecipe, type PackedFixture, sameBytes } from './fixtures.js';
import { startNginx, startPlainHttpServer, type RunningServer } from './nginx.js';
import { startFaultProxy } from './fault-proxy.js';
import { errorLine, HEAD_READ, listDir, openReads, runFetch, freshDirs, WALK_READ } from './client-helpers.js';

/** Real binaries in the root filesystem, so its image is far larger than the 64 KiB first read. */

const work = await mkdtemp(join(tmpdir(), 'cosi-fetch-http-'));
const root = join(work, 'www');
let nginx: RunningServer & { accessLog(): Promise<string> };
let fx: PackedFixture;
let small: PackedFixture;
const fresh = freshDirs(work);

before(async () => {
  await mkdir(root);
  fx = await packedDisk(FILLED);
  small = await packedDisk(SMALL);
  await copyFile(fx.cosi, join(root, 'fill.cosi'));
  await copyFile(small.cosi, join(root, 'small.cosi'));
  await writeFile(join(root, 'page.cosi'), '<!doctype html><html><body>Login required</body></html>\n');
  nginx = await startNginx(root, { extraConfig: 'location = /loop.cosi { return 302 /loop.cosi; }' });
});

after(async () => {
  await nginx?.stop();
  await closeSharedAgents();
  await rm(work, { recursive: true, force: true });
});

async function rootInfo(cosi: string) {
  const img = await open(cosi);
  try {
    return { part: img.select('root'), sha: img.metadataSha384 };
  } finally {
    await img.close();
  }
}

/** Requests nginx logged since `mark` (one line each). */
async function logSince(mark: number): Promise<string[]> {
  return (await nginx.accessLog()).split('\n').filter(Boolean).slice(mark);
}
async function logMark(): Promise<number> {
  return (await nginx.accessLog()).split('\n').filter(Boolean).length;
}

test('open costs the head read plus one small read per tar header past it; one partition costs one more, bytes <= compressed + what opening read', async () => {
  const { part } = await rootInfo(fx.cosi);
  assert.ok(part.image.compressedSize > 256 * 1024, `fixture root image is only ${part.image.compressedSize} bytes`);
  const url = `${nginx.url}/fill.cosi`;
  // The head holds the GPT, ESP and root headers; /srv's header (and the end marker) sit past the root image.
  const opening = await openReads(fx.cosi);
  assert.equal(opening, 2);

  const i = await runFetch(['inspect', '--json', url]);
  assert.equal(i.code, 0, i.stderr);
  assert.equal(JSON.parse(i.stdout).requests, opening);

  const dir = await fresh();
  const mark = await logMark();
  const t0 = Date.now();
  const r = await runFetch(['-p', 'root', '-o', join(dir, 'root.img'), '--json', url]);
  const ms = Date.now() - t0;
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.equal(s.requests, opening + 1);
  assert.ok(s.bytesTransferred <= part.image.compressedSize + HEAD_READ + (opening - 1) * WALK_READ, `${s.bytesTransferred} bytes`);
  assert.equal((await logSince(mark)).length, opening + 1);
  assert.ok(await sameBytes(join(dir, 'root.img'), 0, fx.disk, part.gptPartition!.offset, part.gptPartition!.size));
  // Numbers for the report.
  console.log(`# root: ${part.image.compressedSize} compressed -> ${part.image.uncompressedSize}; ${s.requests} requests, ${s.bytesTransferred} bytes, ${ms} ms`);
});

test('--metadata-sha384 mismatch exits 4 after the single opening request', async () => {
  const mark = await logMark();
  const dir = await fresh();
  const r = await runFetch(['-p', 'root', '-o', dir, '--metadata-sha384', '0'.repeat(96), `${nginx.url}/fill.cosi`]);
  assert.equal(r.code, 4);
  assert.match(errorLine(r), /pinned/);
  assert.equal((await logSince(mark)).length, 1);
  assert.deepEqual(await listDir(dir), []);
});

test('the library gives a verified stream over HTTP', async () => {
  const img = await open(`${nginx.url}/fill.cosi`);
  try {
    const part = img.select('/');
    const s = await img.stream(part.image);
    const h = createHash('sha256');
    await pipeline(s.readable, new Writable({ write: (c: Buffer, _e, cb) => void (h.update(c), cb()) }));
    const want = createHash('sha256');
    const { createReadStream } = await import('node:fs');
    await pipeline(createReadStream(fx.disk, { start: part.gptPartition!.offset, end: part.gptPartition!.offset + part.gptPartition!.size - 1 }), want);
    assert.equal(h.digest('hex'), want.digest('hex'));
    assert.deepEqual(img.stats().requests, (await openReads(fx.cosi)) + 1);
  } finally {
    await img.close();
  }
});

test('resume through a proxy that cuts the connection twice: byte-exact', async () => {
  const { part } = await rootInfo(fx.cosi);
  const proxy = await startFaultProxy({ host: '127.0.0.1', port: nginx.port }, [
    { kind: 'cut', afterBytes: 200_000 },
    { kind: 'cut', afterBytes: 150_000 },
  ]);
  try {
    const dir = await fresh();
    const r = await runFetch(['-p', 'root', '-o', join(dir, 'root.img'), '--json', `${proxy.url}/fill.cosi`]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(proxy.applied.filter((k) => k === 'cut').length === 2, proxy.applied.join(','));
    assert.ok(JSON.parse(r.stdout).requests >= 4);
    assert.ok(await sameBytes(join(dir, 'root.img'), 0, fx.disk, part.gptPartition!.offset, part.gptPartition!.size));
  } finally {
    await proxy.stop();
  }
});

test('the file replaced on the server mid-transfer: error, no output', async () => {
  const served = join(root, 'moving.cosi');
  await copyFile(fx.cosi, served);
  const other = join(work, 'other.cosi');
  await copyFile(small.cosi, other);
  const proxy = await startFaultProxy({ host: '127.0.0.1', port: nginx.port }, (i) => {
    // The resume's connection: swap the file before nginx sees the request.
    if (i === 1) {
      copyFileSync(other, `${served}.new`);
      renameSync(`${served}.new`, served);
    }
    return i === 0 ? { kind: 'cut', afterBytes: 200_000 } : { kind: 'pass' };
  });
  try {
    const dir = await fresh();
    const r = await runFetch(['-p', 'root', '-o', join(dir, 'root.img'), `${proxy.url}/moving.cosi`]);
    assert.equal(r.code, 4, r.stderr);
    assert.match(errorLine(r), /changed/i);
    assert.deepEqual(await listDir(dir), []);
  } finally {
    await proxy.stop();
  }
});

test('--mirror: a failing first URL falls over to the mirror', async () => {
  const { part } = await rootInfo(small.cosi);
  const dir = await fresh();
  const r = await runFetch(['-p', 'root', '-o', join(dir, 'root.img'), '--mirror', `${nginx.url}/small.cosi`, '--retries', '1', `${nginx.url}/missing.cosi`]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(await sameBytes(join(dir, 'root.img'), 0, small.disk, part.gptPartition!.offset, part.gptPartition!.size));
});

test('a server without Range: one sequential pass, with a warning', async () => {
  const plain = await startPlainHttpServer(root);
  try {
    const { part } = await rootInfo(fx.cosi);
    const dir = await fresh();
    const r = await runFetch(['-p', 'root', '-o', join(dir, 'root.img'), '--json', `${plain.url}/fill.cosi`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /warning: .*does not support Range.*bandwidth/);
    assert.equal(JSON.parse(r.stdout).sequential, true);
    assert.ok(await sameBytes(join(dir, 'root.img'), 0, fx.disk, part.gptPartition!.offset, part.gptPartition!.size));
    const v = await runFetch(['verify', '--json', `${plain.url}/small.cosi`]);
    assert.equal(v.code, 0, v.stderr);
    const i = await runFetch(['inspect', '--json', `${plain.url}/small.cosi`]);
    assert.equal(i.code, 0, i.stderr);
    assert.equal(JSON.parse(i.stdout).partitions.length, 3);
  } finally {
    await plain.stop();
  }
});

test('verify and inspect --json over HTTP', async () => {
  const v = await runFetch(['verify', '--json', `${nginx.url}/fill.cosi`]);
  assert.equal(v.code, 0, v.stderr);
  const s = JSON.parse(v.stdout);
  assert.equal(s.ok, true);
  assert.equal(s.images.length, 4);
  const i = JSON.parse((await runFetch(['inspect', '--json', `${nginx.url}/small.cosi`])).stdout);
  assert.deepEqual(i.partitions.map((p: { mountPoint: string }) => p.mountPoint), ['/boot/efi', '/', '/srv']);
});

test('HTML page, redirect loop, TLS error, 404: one line and the class exit code', async () => {
  const html = await runFetch(['inspect', `${nginx.url}/page.cosi`]);
  assert.equal(html.code, 5);
  assert.match(errorLine(html), /HTML page/);
  assert.equal(html.stderr.trim().split('\n').length, 1);

  const loop = await runFetch(['inspect', `${nginx.url}/loop.cosi`]);
  assert.equal(loop.code, 3, loop.stderr);
  assert.match(errorLine(loop), /redirect/i);

  const tls = await runFetch(['inspect', '--retries', '0', `https://127.0.0.1:${nginx.port}/small.cosi`]);
  assert.equal(tls.code, 3, tls.stderr);
  assert.match(errorLine(tls), /TLS|SSL|certificate|handshake/i);

  const missing = await runFetch(['inspect', `${nginx.url}/missing.cosi`]);
  assert.equal(missing.code, 3);
  assert.match(errorLine(missing), /404/);
});

test('--progress=json prints one JSON object per line on stderr', async () => {
  const dir = await fresh();
  const r = await runFetch(['-p', 'root', '-o', join(dir, 'r.img'), '--progress=json', `${nginx.url}/small.cosi`]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  assert.equal(lines[0].event, 'start');
  assert.equal(lines.at(-1).event, 'done');
  assert.equal(lines.at(-1).bytes, lines.at(-1).total);
});
