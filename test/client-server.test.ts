/**
 * cosi-fetch against a real cosi-server (in-process, over a temporary
 * catalog of the fixture files): the raw archive URL /cosi/{id}.cosi is just
 * another Range server to the client, so the same guarantees must hold there
 * (byte-exact output, one request to open, one per partition, resume, change
 * detection). The server's own /metrics is the independent request counter.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, renameSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { closeSharedAgents } from '../shared/transport/http/agent.js';
import { packedDisk, FILLED, SMALL, type DiskRecipe, type PackedFixture, sameBytes } from './fixtures.js';
import { startFaultProxy } from './fault-proxy.js';
import { http, json, run } from './server-helpers.js';
import { checkDisk, errorLine, HEAD_READ, layoutOf, listDir, openReads, runFetch, scrapeMetric, startCatalogServer, freshDirs, WALK_READ } from './client-helpers.js';

/** The same recipe as client-http's: its root image is far larger than the 64 KiB first read. */

const work = await mkdtemp(join(tmpdir(), 'cosi-fetch-server-'));
let srv: Awaited<ReturnType<typeof startCatalogServer>>;
let fx: PackedFixture;
let small: PackedFixture;
const fresh = freshDirs(work);

before(async () => {
  [fx, small] = await Promise.all([packedDisk(FILLED), packedDisk(SMALL)]);
  srv = await startCatalogServer({ 'fill.cosi': fx.cosi, 'small.cosi': small.cosi, 'moving.cosi': fx.cosi, 'sub/dir/small.cosi': small.cosi });
});

after(async () => {
  await srv?.stop();
  await closeSharedAgents();
  await rm(work, { recursive: true, force: true });
});

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(path), h);
  return h.digest('hex');
}

/** Raw-archive requests and bytes the server counted so far. */
async function rawCounters(): Promise<{ requests: number; bytes: number }> {
  const [r206, r200, bytes] = await Promise.all([
    scrapeMetric(srv.url, 'cosi_http_requests_total', { route: 'raw', status: '206' }),
    scrapeMetric(srv.url, 'cosi_http_requests_total', { route: 'raw', status: '200' }),
    scrapeMetric(srv.url, 'cosi_http_bytes_served_total', { route: 'raw' }),
  ]);
  return { requests: r206 + r200, bytes };
}

test('by selector through /cosi/{id}.cosi: byte-exact; open = the head plus the tar walk past it, one partition = 1 more (server /metrics agrees)', async () => {
  const { parts } = await layoutOf(fx.cosi);
  const root = parts.find((p) => p.mountPoint === '/')!;
  assert.ok(root.image.compressedSize > 256 * 1024, `fixture root image is only ${root.image.compressedSize} bytes`);
  const url = `${srv.url}/cosi/fill.cosi`;
  const opening = await openReads(fx.cosi);

  let before = await rawCounters();
  const i = await runFetch(['inspect', '--json', url]);
  assert.equal(i.code, 0, i.stderr);
  assert.equal(JSON.parse(i.stdout).requests, opening);
  let now = await rawCounters();
  assert.equal(now.requests - before.requests, opening, 'inspect: the head and the walk at the server');

  before = now;
  const dir = await fresh();
  const r = await runFetch(['-p', 'root', '-o', join(dir, 'root.img'), '--json', url]);
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  now = await rawCounters();
  assert.equal(s.requests, opening + 1);
  assert.equal(now.requests - before.requests, opening + 1, 'fetch: opening and one request for the partition at the server');
  assert.ok(s.bytesTransferred <= root.image.compressedSize + HEAD_READ + (opening - 1) * WALK_READ, `${s.bytesTransferred} bytes`);
  // What the client counted is what the server sent: no hidden extra transfer.
  assert.equal(now.bytes - before.bytes, s.bytesTransferred);
  assert.ok(await sameBytes(join(dir, 'root.img'), 0, fx.disk, root.gptPartition!.offset, root.gptPartition!.size));
  assert.deepEqual(await listDir(dir), ['root.img']);

  // Several selectors of several kinds, and an id in a subdirectory of the catalog.
  const dir2 = await fresh();
  const r2 = await runFetch(['-p', 'esp', '-p', '/srv', '-p', '2', '-o', dir2, `${srv.url}/cosi/sub/dir/small.cosi`]);
  assert.equal(r2.code, 0, r2.stderr);
  assert.deepEqual(await listDir(dir2), ['esp.img', 'root.img', 'srv.img']);
  const sl = await layoutOf(small.cosi);
  for (const [file, mount] of [['esp.img', '/boot/efi'], ['root.img', '/'], ['srv.img', '/srv']] as const) {
    const p = sl.parts.find((q) => q.mountPoint === mount)!;
    assert.ok(await sameBytes(join(dir2, file), 0, small.disk, p.gptPartition!.offset, p.gptPartition!.size), file);
  }
});

test('--disk through the server: sgdisk -v passes and every region is byte-identical', async () => {
  const out = join(await fresh(), 'disk.img');
  const r = await runFetch(['--disk', '-o', out, '--verify-after', '--json', `${srv.url}/cosi/small.cosi`]);
  assert.equal(r.code, 0, r.stderr);
  await checkDisk(small, out);
  const s = JSON.parse(r.stdout);
  assert.equal(s.mode, 'disk');
  assert.ok(s.partitions.every((p: { verifiedAfter: boolean }) => p.verifiedAfter));
});

test('the partition endpoint through curl | zstd -d equals what cosi-fetch wrote', async () => {
  const dir = await fresh();
  const out = join(dir, 'root.img');
  const r = await runFetch(['-p', 'root', '-o', out, `${srv.url}/cosi/fill.cosi`]);
  assert.equal(r.code, 0, r.stderr);
  const piped = await run('bash', ['-o', 'pipefail', '-c', `curl -sSf '${srv.url}/v1/images/fill/partitions/root' | zstd -dc | sha256sum`]);
  assert.equal(piped.code, 0, piped.stderr);
  assert.equal(piped.stdout.toString().split(' ')[0], await sha256File(out));
});

test('--metadata-sha384 with the ETag of the server\'s metadata.json: a match fetches, another image\'s is refused after one request', async () => {
  const meta = await http(srv.url, '/v1/images/fill/metadata.json', { method: 'HEAD' });
  assert.equal(meta.status, 200);
  const pin = String(meta.headers.etag).replace(/^"|"$/g, '');
  assert.match(pin, /^[0-9a-f]{96}$/);
  assert.equal(pin, (await layoutOf(fx.cosi)).sha);

  const dir = await fresh();
  const ok = await runFetch(['-p', 'srv', '-o', dir, '--metadata-sha384', pin, '--json', `${srv.url}/cosi/fill.cosi`]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(JSON.parse(ok.stdout).metadataSha384, pin);

  const other = String((await http(srv.url, '/v1/images/small/metadata.json', { method: 'HEAD' })).headers.etag).replace(/"/g, '');
  const before = await rawCounters();
  const dir2 = await fresh();
  const bad = await runFetch(['-p', 'root', '-o', dir2, '--metadata-sha384', other, `${srv.url}/cosi/fill.cosi`]);
  assert.equal(bad.code, 4);
  assert.match(errorLine(bad), /pinned/);
  assert.equal((await rawCounters()).requests - before.requests, 1);
  assert.deepEqual(await listDir(dir2), []);
});

test('verify and inspect against the server agree with its catalog', async () => {
  const v = await runFetch(['verify', '--json', `${srv.url}/cosi/fill.cosi`]);
  assert.equal(v.code, 0, v.stderr);
  const s = JSON.parse(v.stdout);
  assert.equal(s.ok, true);
  assert.equal(s.images.length, 4);

  const i = await runFetch(['inspect', '--json', `${srv.url}/cosi/small.cosi`]);
  assert.equal(i.code, 0, i.stderr);
  const view = JSON.parse(i.stdout);
  const served = json(await http(srv.url, '/v1/images/small'));
  assert.equal(view.metadataSha384, served.metadataSha384);
  assert.deepEqual(
    view.partitions.map((p: { path: string; compressedSize: number }) => [p.path, p.compressedSize]),
    served.partitions.map((p: { path: string; compressedSize: number }) => [p.path, p.compressedSize]),
  );
  const table = await runFetch(['inspect', `${srv.url}/cosi/small.cosi`]);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^2\s+root\s+\/\s+ext4\s/m);
});

test('resume through the fault proxy in front of cosi-server: byte-exact', async () => {
  const { parts } = await layoutOf(fx.cosi);
  const root = parts.find((p) => p.mountPoint === '/')!;
  const proxy = await startFaultProxy({ host: '127.0.0.1', port: srv.port }, [
    { kind: 'cut', afterBytes: 200_000 },
    { kind: 'reset', afterBytes: 300_000 },
  ]);
  try {
    const dir = await fresh();
    const r = await runFetch(['-p', 'root', '-o', join(dir, 'root.img'), '--json', `${proxy.url}/cosi/fill.cosi`]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(proxy.applied.slice(0, 2), ['cut', 'reset']);
    const s = JSON.parse(r.stdout);
    assert.ok(s.requests >= 4, `${s.requests} requests`);
    // Resumed, not restarted: nothing fetched twice beyond what was in flight when cut.
    assert.ok(s.bytesTransferred <= root.image.compressedSize + HEAD_READ + ((await openReads(fx.cosi)) - 1) * WALK_READ, `${s.bytesTransferred} bytes`);
    assert.ok(await sameBytes(join(dir, 'root.img'), 0, fx.disk, root.gptPartition!.offset, root.gptPartition!.size));
  } finally {
    await proxy.stop();
  }
});

test('the archive replaced in the catalog (atomic rename) mid-transfer: exit 4, "changed", no output', async () => {
  const served = join(srv.dir, 'moving.cosi');
  const proxy = await startFaultProxy({ host: '127.0.0.1', port: srv.port }, (i) => {
    // The resume's connection: swap the file before the server sees the request.
    if (i === 1) {
      copyFileSync(small.cosi, join(srv.dir, '.moving.tmp'));
      renameSync(join(srv.dir, '.moving.tmp'), served);
    }
    return i === 0 ? { kind: 'cut', afterBytes: 200_000 } : { kind: 'pass' };
  });
  try {
    const dir = await fresh();
    const r = await runFetch(['-p', 'root', '-o', join(dir, 'root.img'), `${proxy.url}/cosi/moving.cosi`]);
    assert.equal(r.code, 4, r.stderr);
    assert.match(errorLine(r), /changed/i);
    // Retries are printed as they happen; the failure itself stays one line.
    assert.equal(r.stderr.trim().split('\n').filter((l) => / error: /.test(l)).length, 1, r.stderr);
    assert.deepEqual(await listDir(dir), []);
  } finally {
    await proxy.stop();
  }
});
