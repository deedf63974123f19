/**
 * The open-handle cache and the raw fast path: a cached handle is only ever
 * used for the identity it was opened on, so files replaced, rewritten,
 * removed or swapped for a symlink are caught with the cache warm (watcher
 * and rescan off); descriptors stay under the cap; large ranges cross the
 * read-chunk boundaries byte-exact.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, link, open, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mkdtemp } from 'node:fs/promises';
import { http, json, tempCatalog, standardArchives } from './server-helpers.js';
import { HandleCache } from '../server/catalog/handle-cache.js';
import { FD_CHUNK } from '../server/http/fd-body.js';
import { identityOf } from '../server/catalog/indexer.js';
import { startServer } from '../server/server.js';


const { smallPath, small4kPath, bigPath, small, small4k, big } = await standardArchives();

describe('HandleCache', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cosi-handles-'));
    for (const n of ['a', 'b', 'c']) await writeFile(join(dir, n), `file ${n}`);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  async function openIn(cache: HandleCache, name: string) {
    assert.ok(cache.reserve());
    const fh = await open(join(dir, name), 'r');
    return { fh, h: cache.adopt(name, fh, identityOf(await fh.stat())) };
  }

  test('hands out a handle only for the identity it was opened on; a changed file retires it', async () => {
    const cache = new HandleCache({ max: 4 });
    const { fh, h } = await openIn(cache, 'a');
    cache.release(h);
    const same = cache.acquire('a', h.identity);
    assert.equal(same, h);
    // Another identity (the file was replaced): a miss, and the busy handle closes on its last release.
    assert.equal(cache.acquire('a', { ...h.identity, mtimeMs: h.identity.mtimeMs + 1 }), undefined);
    assert.equal(cache.cached, 0);
    assert.notEqual(fh.fd, -1, 'still open while a transfer holds it');
    cache.release(same!);
    assert.equal(fh.fd, -1, 'closed once released');
    assert.equal(cache.open, 0);
    assert.equal(cache.acquire('a', h.identity), undefined, 'never handed out again');
  });

  test('a new handle for a path retires the old one; forget and retain drop handles', async () => {
    const cache = new HandleCache({ max: 4 });
    const first = await openIn(cache, 'a');
    cache.release(first.h);
    const second = await openIn(cache, 'a');
    assert.equal(first.fh.fd, -1);
    cache.release(second.h);
    assert.equal(cache.open, 1);
    cache.forget('a');
    assert.equal(second.fh.fd, -1);
    const b = await openIn(cache, 'b');
    const c = await openIn(cache, 'c');
    cache.release(b.h);
    cache.release(c.h);
    cache.retain((key) => key === 'c');
    assert.equal(b.fh.fd, -1);
    assert.notEqual(c.fh.fd, -1);
    await cache.closeAll();
    assert.equal(c.fh.fd, -1);
    assert.equal(cache.open, 0);
  });

  test('at the cap, idle handles are closed oldest first; when all are busy, reserve refuses', async () => {
    const cache = new HandleCache({ max: 2 });
    const a = await openIn(cache, 'a');
    const b = await openIn(cache, 'b');
    cache.release(a.h); // idle, oldest
    const c = await openIn(cache, 'c'); // evicts a
    assert.equal(a.fh.fd, -1);
    assert.notEqual(b.fh.fd, -1);
    assert.equal(cache.reserve(), false, 'b and c are busy');
    cache.release(b.h);
    cache.release(c.h);
    cache.sweep(Date.now() + 60_000);
    assert.equal(b.fh.fd, -1);
    assert.equal(c.fh.fd, -1);
    assert.equal(cache.open, 0);
  });
});

/** A GET paused after its first chunk, to hold a transfer (and its handle) open. */
function startPaused(base: string, path: string) {
  const u = new URL(base);
  return new Promise<{ status: number; finish: () => Promise<Buffer>; abort: () => void }>((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      const done = new Promise<Buffer>((r) => res.on('end', () => r(Buffer.concat(chunks))));
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', () => {});
      res.once('data', () => {
        res.pause();
        resolve({
          status: res.statusCode!,
          finish: () => (res.resume(), done),
          abort: () => req.destroy(),
        });
      });
    });
    req.on('error', () => {});
    req.on('error', reject);
    req.end();
  });
}

describe('serving through cached handles (no watcher, no rescan)', () => {
  const quiet = { port: 0, log: false as const, watch: false, rescanSeconds: 0 };

  test('replaced, rewritten in place, swapped for a symlink, removed: each caught with the cache warm', async () => {
    const cat = await tempCatalog({ 'img.cosi': smallPath });
    const srv = await startServer({ root: cat.dir, ...quiet });
    const file = join(cat.dir, 'img.cosi');
    try {
      const first = await http(srv.url, '/cosi/img.cosi', { headers: { Range: 'bytes=0-99' } });
      assert.equal(first.status, 206);
      assert.equal(srv.catalog.openDescriptors, 1, 'handle kept for the next request');
      assert.deepEqual((await http(srv.url, '/cosi/img.cosi', { headers: { Range: 'bytes=100-199' } })).body, small.subarray(100, 200));
      assert.equal(srv.catalog.openDescriptors, 1, 'and reused');

      // Atomic rename: new inode.
      await copyFile(small4kPath, join(cat.dir, '.next'));
      await rename(join(cat.dir, '.next'), file);
      const swapped = await http(srv.url, '/cosi/img.cosi', { headers: { Range: 'bytes=1000-1999', 'If-Range': String(first.headers.etag) } });
      assert.equal(swapped.status, 200);
      assert.notEqual(swapped.headers.etag, first.headers.etag);
      assert.ok(swapped.body.equals(small4k));
      assert.equal(srv.catalog.openDescriptors, 1, "the replaced file's handle is closed");

      // Rewritten in place (same inode, other size and bytes).
      const before4k = String(swapped.headers.etag);
      const fh = await open(file, 'r+');
      await fh.truncate(0);
      await fh.write(small, 0, small.length, 0);
      await fh.close();
      const rewritten = await http(srv.url, '/cosi/img.cosi');
      assert.notEqual(rewritten.headers.etag, before4k);
      assert.ok(rewritten.body.equals(small));

      // A symlink out of the root put where the file was: refused, the cached handle notwithstanding.
      await rm(file);
      await symlink(small4kPath, file);
      const escaped = await http(srv.url, '/cosi/img.cosi');
      assert.equal(escaped.status, 404);
      assert.ok(!escaped.body.includes(Buffer.from('cosi-marker')));
      assert.equal(srv.catalog.openDescriptors, 0);

      // Removed.
      await rm(file);
      await copyFile(smallPath, file);
      assert.equal((await http(srv.url, '/cosi/img.cosi', { headers: { Range: 'bytes=0-9' } })).status, 206);
      await rm(file);
      const gone = await http(srv.url, '/cosi/img.cosi');
      assert.equal(gone.status, 404);
      assert.equal(json(gone).error.code, 'NOT_FOUND');
      assert.equal(srv.catalog.openDescriptors, 0, 'a removed file is not kept open');
      assert.equal(srv.catalog.openHandles, 0);
    } finally {
      await srv.close(1000);
      await cat.cleanup();
    }
  });

  test('the small-range fast path: a plain Range right after an atomic replace gets the new bytes and ETag', async () => {
    const cat = await tempCatalog({ 'img.cosi': smallPath });
    const srv = await startServer({ root: cat.dir, ...quiet });
    const file = join(cat.dir, 'img.cosi');
    try {
      const first = await http(srv.url, '/cosi/img.cosi', { headers: { Range: 'bytes=512-4607' } });
      assert.equal(first.status, 206);
      assert.deepEqual(first.body, small.subarray(512, 4608));
      await copyFile(small4kPath, join(cat.dir, '.next'));
      await rename(join(cat.dir, '.next'), file);
      const after = await http(srv.url, '/cosi/img.cosi', { headers: { Range: 'bytes=512-4607' } });
      assert.equal(after.status, 206);
      assert.notEqual(after.headers.etag, first.headers.etag);
      assert.deepEqual(after.body, small4k.subarray(512, 4608));
      assert.equal(after.headers['content-range'], `bytes 512-4607/${small4k.length}`);
    } finally {
      await srv.close(1000);
      await cat.cleanup();
    }
  });

  test('a rescan closes the handles of files it no longer sees', async () => {
    const cat = await tempCatalog({ 'a.cosi': smallPath, 'b.cosi': small4kPath });
    const srv = await startServer({ root: cat.dir, ...quiet });
    try {
      await http(srv.url, '/cosi/a.cosi', { headers: { Range: 'bytes=0-9' } });
      await http(srv.url, '/cosi/b.cosi', { headers: { Range: 'bytes=0-9' } });
      assert.equal(srv.catalog.openDescriptors, 2);
      await rm(join(cat.dir, 'a.cosi'));
      await srv.catalog.rescan();
      assert.equal(srv.catalog.openDescriptors, 1);
    } finally {
      await srv.close(1000);
      await cat.cleanup();
    }
  });

  test('a symlink and a hard link beside their file share its one index record and are listed as aliases', async () => {
    const cat = await tempCatalog({ 'ic.cosi': smallPath });
    await symlink('ic.cosi', join(cat.dir, 'link.cosi'));
    await link(join(cat.dir, 'ic.cosi'), join(cat.dir, 'z-hard.cosi'));
    const srv = await startServer({ root: cat.dir, ...quiet });
    try {
      const runs = () => srv.metrics.value('cosi_index_runs_total');
      const atStart = runs();
      assert.ok(atStart <= 1, `the scan indexed the file once (${atStart} runs)`);
      const paths = ['/cosi/link.cosi', '/cosi/ic.cosi', '/v1/images/link', '/v1/images/ic/partitions/root', '/cosi/z-hard.cosi'];
      for (let i = 0; i < 200; i++) {
        const path = i % 25 === 24 ? '/v1/images' : paths[i % paths.length]!;
        const r = await http(srv.url, path, { headers: path.startsWith('/cosi/') ? { Range: `bytes=${i}-${i + 99}` } : {} });
        assert.ok(r.status === 200 || r.status === 206, `${path}: ${r.status}`);
        if (path.startsWith('/cosi/')) assert.deepEqual(r.body, small.subarray(i, i + 100));
      }
      // Before, each id evicted the other's record: about 300 index runs for these 200 requests.
      assert.ok(runs() <= 2, `${runs()} index runs`);
      const list = json(await http(srv.url, '/v1/images')).images;
      assert.deepEqual(
        list.map((i: { id: string; aliasOf?: string; rawUrl: string }) => [i.id, i.aliasOf, i.rawUrl]),
        [
          ['ic', undefined, '/cosi/ic.cosi'],
          ['link', 'ic', '/cosi/link.cosi'],
          ['z-hard', 'ic', '/cosi/z-hard.cosi'],
        ],
      );
      const one = json(await http(srv.url, '/v1/images/link'));
      assert.equal(one.id, 'link');
      assert.equal(one.aliasOf, 'ic');
      assert.equal(one.metadataSha384, list[0].metadataSha384);
      assert.match((await http(srv.url, '/')).body.toString(), /alias of ic/);
      assert.equal(srv.catalog.openDescriptors, 2, "the symlink shares its target's descriptor; the hard link, a path of its own, has one");
    } finally {
      await srv.close(1000);
      await cat.cleanup();
    }
  });

  test('--max-open-files caps descriptors: idle ones make room, busy ones give 503', async () => {
    const cat = await tempCatalog({ 'big.cosi': bigPath, 'small.cosi': smallPath });
    const srv = await startServer({ root: cat.dir, ...quiet, maxOpenFiles: 1 });
    try {
      const held = await startPaused(srv.url, '/cosi/big.cosi');
      assert.equal(held.status, 200);
      const busy = await http(srv.url, '/cosi/small.cosi');
      assert.equal(busy.status, 503);
      assert.equal(json(busy).error.code, 'BUSY');
      assert.equal(busy.headers['retry-after'], '1');
      // The same file shares the busy descriptor.
      assert.deepEqual((await http(srv.url, '/cosi/big.cosi', { headers: { Range: 'bytes=5-25' } })).body, big.subarray(5, 26));
      assert.ok((await held.finish()).equals(big));
      // Now idle: closed to make room for another file.
      assert.ok((await http(srv.url, '/cosi/small.cosi')).body.equals(small));
      assert.equal(srv.catalog.openDescriptors, 1);
    } finally {
      await srv.close(1000);
      await cat.cleanup();
    }
  });

  test('large ranges across read chunks are byte-exact; a client gone mid-way releases the handle', async () => {
    assert.ok(big.length > 3 * FD_CHUNK, `fixture must span several chunks (${big.length} bytes)`);
    const lines: Array<Record<string, unknown>> = [];
    const cat = await tempCatalog({ 'big.cosi': bigPath });
    const srv = await startServer({ root: cat.dir, ...quiet, log: (l) => void lines.push(l) });
    try {
      const whole = await http(srv.url, '/cosi/big.cosi');
      assert.equal(whole.status, 200);
      assert.ok(whole.body.equals(big));
      const s = FD_CHUNK - 3;
      const e = 3 * FD_CHUNK + 11;
      const mid = await http(srv.url, '/cosi/big.cosi', { headers: { Range: `bytes=${s}-${e}` } });
      assert.equal(mid.status, 206);
      assert.equal(mid.headers['content-range'], `bytes ${s}-${e}/${big.length}`);
      assert.ok(mid.body.equals(big.subarray(s, e + 1)));
      const tail = await http(srv.url, '/cosi/big.cosi', { headers: { Range: 'bytes=-70000' } });
      assert.ok(tail.body.equals(big.subarray(big.length - 70000)));

      const cut = await startPaused(srv.url, '/cosi/big.cosi');
      cut.abort();
      for (let i = 0; i < 100 && srv.catalog.openHandles > 0; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(srv.catalog.openHandles, 0);

      // The fast path logs like the app does.
      const ranged = lines.find((l) => l.route === 'raw' && l.status === 206);
      assert.ok(ranged, JSON.stringify(lines));
      assert.equal(ranged.id, 'big');
      assert.equal(ranged.bytes, e - s + 1);
      assert.equal(ranged.complete, true);
      for (let i = 0; i < 50 && !lines.some((l) => l.status === 200 && l.complete === false); i++) await new Promise((r) => setTimeout(r, 20));
      const cutLine = lines.find((l) => l.status === 200 && l.complete === false);
      assert.ok(cutLine, JSON.stringify(lines));
      assert.match(String(cutLine.aborted), /^(client-gone|connection-closed)$/, 'the cut transfer is logged as such');
      assert.match(await (await fetch(`${srv.url}/metrics`)).text(), /cosi_http_requests_total\{route="raw",status="206"\} 2/);
    } finally {
      await srv.close(1000);
      await cat.cleanup();
    }
  });
});
