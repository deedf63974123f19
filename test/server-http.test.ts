/**
 * cosi-server over real HTTP on 127.0.0.1, started in-process, serving a
 * catalog of real COSI files (cosi-pack output, a Python tarfile GNU-format re-archive with long names, a
 * 4K-sector disk in a subdirectory) plus a truncated and a non-COSI file.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, truncate, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { foreignArchive, packedDisk, pythonTarOffsets, SMALL, SMALL_4K } from './fixtures.js';
import { http, json, parseMultipart, run, tempCatalog, type Reply } from './server-helpers.js';
import { startServer, type RunningServer } from '../server/server.js';

const sha384 = (b: Buffer) => createHash('sha384').update(b).digest('hex');

let srv: RunningServer;
let cleanup: () => Promise<void>;
let small: Buffer;
let small4k: Buffer;
let foreign: Buffer;
let meta: any;
let offsets: Array<{ name: string; offsetData: number; size: number }>;

function slice(name: string): Buffer {
  const e = offsets.find((o) => o.name === name)!;
  return small.subarray(e.offsetData, e.offsetData + e.size);
}

function assertByteHeaders(r: Reply, expectLength: number): void {
  assert.equal(r.headers['content-length'], String(expectLength));
  assert.equal(r.headers['transfer-encoding'], undefined, 'never chunked');
  assert.equal(r.headers['accept-ranges'], 'bytes');
  assert.match(String(r.headers.etag), /^"[^"]+"$/, 'strong ETag');
  assert.ok(r.headers['last-modified']);
}

before(async () => {
  const a = await packedDisk(SMALL);
  const b = await packedDisk(SMALL_4K);
  const f = await foreignArchive(a, { format: 'python-gnu', subdir: 'nested', longNames: true });
  const cat = await tempCatalog({ 'small.cosi': a.cosi, 'lab/small4k.cosi': b.cosi, 'foreign.cosi': f, 'broken/truncated.cosi': a.cosi });
  cleanup = cat.cleanup;
  small = await readFile(a.cosi);
  small4k = await readFile(b.cosi);
  foreign = await readFile(f);
  await truncate(join(cat.dir, 'broken/truncated.cosi'), Math.floor(small.length / 2) + 100);
  await writeFile(join(cat.dir, 'broken/notes.cosi'), '<html><body>not an archive</body></html>\n');
  await writeFile(join(cat.dir, 'ignored.txt'), 'not listed');
  // An hour old: a Last-Modified in the current second is only a weak validator (If-Range by date needs a strong one).
  const past = new Date(Date.now() - 3600_000);
  await utimes(join(cat.dir, 'small.cosi'), past, past);
  offsets = await pythonTarOffsets(a.cosi);
  meta = JSON.parse(slice('metadata.json').toString('utf8'));
  srv = await startServer({ root: cat.dir, port: 0, log: false, rescanSeconds: 0, maxRanges: 4 });
});

after(async () => {
  await srv?.close(1000);
  await cleanup?.();
});

describe('catalog', () => {
  test('lists every archive, invalid ones with their reason', async () => {
    const r = await http(srv.url, '/v1/images');
    assert.equal(r.status, 200);
    const body = json(r);
    const ids = body.images.map((i: any) => i.id);
    assert.deepEqual(ids, ['broken/notes', 'broken/truncated', 'foreign', 'lab/small4k', 'small']);
    const byId = Object.fromEntries(body.images.map((i: any) => [i.id, i]));
    assert.equal(byId['small'].valid, true);
    assert.equal(byId['lab/small4k'].valid, true);
    assert.equal(byId['foreign'].valid, true);
    assert.equal(byId['small'].prettyName, 'Fixture Linux 1.0');
    assert.equal(byId['small'].size, small.length);
    assert.equal(byId['small'].metadataSha384, sha384(slice('metadata.json')));
    assert.equal(byId['broken/truncated'].valid, false);
    assert.match(byId['broken/truncated'].reason, /trunc|end|short/i);
    assert.equal(byId['broken/notes'].valid, false);
    assert.match(byId['broken/notes'].reason, /not a COSI file \(an HTML page\)/);
  });

  test('one image: summary, partitions and every entry offset', async () => {
    const r = await http(srv.url, '/v1/images/small');
    assert.equal(r.status, 200);
    const img = json(r);
    assert.equal(img.valid, true);
    assert.deepEqual(
      img.entries.map((e: any) => [e.name, e.dataOffset, e.size]),
      offsets.map((o) => [o.name, o.offsetData, o.size]),
    );
    const root = img.partitions.find((p: any) => p.mountPoint === '/');
    assert.equal(root.selector, 'root');
    assert.equal(root.dataOffset, offsets.find((o) => o.name === root.path)!.offsetData);
    // Ids with slashes route too.
    assert.equal(json(await http(srv.url, '/v1/images/lab/small4k')).disk.lbaSize, 4096);
  });

  test('unknown ids and resources are JSON 404s', async () => {
    for (const path of ['/v1/images/nope', '/v1/images/lab', '/v1/images/small/bogus', '/cosi/nope.cosi', '/cosi/small', '/nothing', '/v1/blobs/sha384/' + '0'.repeat(96)]) {
      const r = await http(srv.url, path);
      assert.equal(r.status, 404, path);
      assert.equal(json(r).error.code, 'NOT_FOUND', path);
    }
  });
});

describe('metadata and partitions', () => {
  test('metadata.json is the exact archive bytes, ETag is their SHA-384', async () => {
    const r = await http(srv.url, '/v1/images/small/metadata.json');
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, slice('metadata.json'));
    assert.equal(r.headers.etag, `"${sha384(r.body)}"`);
    assertByteHeaders(r, r.body.length);
    const again = await http(srv.url, '/v1/images/small/metadata.json', { headers: { 'If-None-Match': r.headers.etag! } });
    assert.equal(again.status, 304);
    assert.equal(again.body.length, 0);
  });

  test('partitions by selector: type, number, mount point, path', async () => {
    const byPath = new Map<string, any>(meta.images.map((f: any) => [f.image.path, f.image]));
    const cases: Array<[string, string]> = [
      ['root', '/'],
      ['esp', '/boot/efi'],
      ['3', '/srv'],
      [encodeURIComponent('/srv'), '/srv'],
    ];
    for (const [sel, mount] of cases) {
      const r = await http(srv.url, `/v1/images/small/partitions/${sel}`);
      assert.equal(r.status, 200, sel);
      const fs = meta.images.find((f: any) => f.mountPoint === mount);
      assert.equal(r.headers['x-cosi-path'], fs.image.path);
      assert.equal(r.headers['x-cosi-sha384'], fs.image.sha384);
      assert.equal(sha384(r.body), fs.image.sha384, `${sel}: body hashes to the metadata's sha384`);
      assert.deepEqual(r.body, slice(fs.image.path));
      assert.equal(r.headers['x-cosi-compressed-size'], String(fs.image.compressedSize));
      assert.equal(r.headers['x-cosi-uncompressed-size'], String(fs.image.uncompressedSize));
      assert.equal(r.headers.etag, `"${fs.image.sha384}"`);
      assertByteHeaders(r, fs.image.compressedSize);
    }
    // A full image path with slashes works as a selector too.
    const root = meta.images.find((f: any) => f.mountPoint === '/').image;
    const r = await http(srv.url, `/v1/images/small/partitions/${root.path}`);
    assert.equal(sha384(r.body), byPath.get(root.path).sha384);
    // The foreign archive (GNU long names, images in a subdirectory) serves the same bytes.
    const fr = await http(srv.url, '/v1/images/foreign/partitions/root');
    assert.equal(sha384(fr.body), root.sha384);
  });

  test('an unknown selector is a 404 listing the choices', async () => {
    const r = await http(srv.url, '/v1/images/small/partitions/home');
    assert.equal(r.status, 404);
    const e = json(r).error;
    assert.equal(e.code, 'COSI_ERR_SELECTOR');
    assert.match(e.message, /choices: .*root/);
  });

  test('blobs are addressed by SHA-384 and cacheable for a year', async () => {
    const root = meta.images.find((f: any) => f.mountPoint === '/').image;
    const r = await http(srv.url, `/v1/blobs/sha384/${root.sha384}`);
    assert.equal(r.status, 200);
    assert.equal(sha384(r.body), root.sha384);
    assert.equal(r.headers['cache-control'], 'public, max-age=31536000, immutable');
    assertByteHeaders(r, root.compressedSize);
    const part = await http(srv.url, `/v1/blobs/sha384/${root.sha384.toUpperCase()}`, { headers: { Range: 'bytes=10-19' } });
    assert.equal(part.status, 206);
    assert.deepEqual(part.body, r.body.subarray(10, 20));
  });

  test('decompress=1 streams the decoded partition with an exact Content-Length', async () => {
    const esp = meta.images.find((f: any) => f.mountPoint === '/boot/efi').image;
    const r = await http(srv.url, '/v1/images/small/partitions/esp?decompress=1', { headers: { Range: 'bytes=0-9' } });
    assert.equal(r.status, 200, 'no ranges on decoded output');
    assert.equal(r.headers['content-length'], String(esp.uncompressedSize));
    assert.equal(r.headers['transfer-encoding'], undefined);
    assert.equal(r.body.length, esp.uncompressedSize);
    const viaZstd = await run('bash', ['-c', `tail -c +${offsets.find((o) => o.name === esp.path)!.offsetData + 1} '${srv.root}/small.cosi' | head -c ${esp.compressedSize} | zstd -d -c`]);
    assert.equal(viaZstd.code, 0, viaZstd.stderr);
    assert.ok(r.body.equals(viaZstd.stdout), 'same bytes as the zstd program decodes');
    const head = await http(srv.url, '/v1/images/small/partitions/esp?decompress=1', { method: 'HEAD' });
    assert.equal(head.headers['content-length'], String(esp.uncompressedSize));
    assert.equal(head.body.length, 0);
  });
});

describe('ranges on the raw archive', () => {
  const path = '/cosi/small.cosi';

  test('HEAD and a plain GET', async () => {
    const h = await http(srv.url, path, { method: 'HEAD' });
    assert.equal(h.status, 200);
    assertByteHeaders(h, small.length);
    assert.equal(h.body.length, 0);
    const g = await http(srv.url, path);
    assert.deepEqual(g.body, small);
    assert.equal(g.headers.etag, h.headers.etag);
  });

  test('single, open, suffix and clamped ranges', async () => {
    const size = small.length;
    const cases: Array<[string, number, number]> = [
      ['bytes=0-511', 0, 511],
      ['bytes=1024-', 1024, size - 1],
      ['bytes=-100', size - 100, size - 1],
      [`bytes=${size - 10}-${size + 500}`, size - 10, size - 1],
      [`bytes=-${size * 2}`, 0, size - 1],
    ];
    for (const [range, s, e] of cases) {
      const r = await http(srv.url, path, { headers: { Range: range } });
      assert.equal(r.status, 206, range);
      assert.equal(r.headers['content-range'], `bytes ${s}-${e}/${size}`, range);
      assertByteHeaders(r, e - s + 1);
      assert.deepEqual(r.body, small.subarray(s, e + 1), range);
    }
    const head = await http(srv.url, path, { method: 'HEAD', headers: { Range: 'bytes=0-99' } });
    assert.equal(head.status, 206);
    assert.equal(head.headers['content-length'], '100');
  });

  test('multiple ranges as multipart/byteranges, parsed and checked', async () => {
    const r = await http(srv.url, path, { headers: { Range: 'bytes=0-10, 1024-1535, -16' } });
    assert.equal(r.status, 206);
    assert.match(String(r.headers['content-type']), /^multipart\/byteranges; boundary=/);
    assert.equal(r.headers['content-length'], String(r.body.length));
    assert.equal(r.headers['transfer-encoding'], undefined);
    const parts = parseMultipart(String(r.headers['content-type']), r.body);
    const want = [
      [0, 10],
      [1024, 1535],
      [small.length - 16, small.length - 1],
    ];
    assert.equal(parts.length, 3);
    parts.forEach((p, i) => {
      const [s, e] = want[i]!;
      assert.equal(p.contentRange, `bytes ${s}-${e}/${small.length}`);
      assert.equal(p.contentType, 'application/x-tar');
      assert.deepEqual(p.body, small.subarray(s!, e! + 1));
    });
  });

  test('over the range cap: one 200 with the whole file', async () => {
    const r = await http(srv.url, path, { headers: { Range: 'bytes=0-0,2-2,4-4,6-6,8-8' } });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, small);
  });

  test('unsatisfiable: 416 with bytes */size', async () => {
    const r = await http(srv.url, path, { headers: { Range: `bytes=${small.length}-` } });
    assert.equal(r.status, 416);
    assert.equal(r.headers['content-range'], `bytes */${small.length}`);
    assert.equal(json(r).error.code, 'RANGE_NOT_SATISFIABLE');
  });

  test('malformed Range headers are ignored: 200 with everything', async () => {
    for (const range of ['bytes=abc', 'bytes=5-1', 'items=0-1', 'bytes', 'bytes=--1', 'bytes=1-2-3']) {
      const r = await http(srv.url, path, { headers: { Range: range } });
      assert.equal(r.status, 200, range);
      assert.equal(r.body.length, small.length, range);
    }
  });

  test('If-Range: a matching ETag gets 206, a stale or weak one gets 200', async () => {
    const etag = (await http(srv.url, path, { method: 'HEAD' })).headers.etag!;
    const ok = await http(srv.url, path, { headers: { Range: 'bytes=0-9', 'If-Range': etag } });
    assert.equal(ok.status, 206);
    for (const other of ['"something-else"', `W/${etag}`]) {
      const r = await http(srv.url, path, { headers: { Range: 'bytes=0-9', 'If-Range': other } });
      assert.equal(r.status, 200, other);
      assert.deepEqual(r.body, small);
    }
    const lm = (await http(srv.url, path, { method: 'HEAD' })).headers['last-modified']!;
    assert.equal((await http(srv.url, path, { headers: { Range: 'bytes=0-9', 'If-Range': lm } })).status, 206);
  });

  test('If-None-Match: 304 on a match, 200 otherwise', async () => {
    const etag = (await http(srv.url, path, { method: 'HEAD' })).headers.etag!;
    const r = await http(srv.url, path, { headers: { 'If-None-Match': `"x", ${etag}` } });
    assert.equal(r.status, 304);
    assert.equal(r.headers.etag, etag);
    assert.equal(r.body.length, 0);
    assert.equal((await http(srv.url, path, { headers: { 'If-None-Match': '"x"' } })).status, 200);
  });

  test('methods other than GET and HEAD: 405 with Allow', async () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
      const r = await http(srv.url, path, { method });
      assert.equal(r.status, 405, method);
      assert.equal(r.headers.allow, 'GET, HEAD');
      assert.equal(json(r).error.code, 'METHOD_NOT_ALLOWED');
    }
  });

  test('curl as a foreign client: range, multi-range, If-Range', async () => {
    const url = `${srv.url}${path}`;
    const one = await run('curl', ['-s', '-f', '-r', '0-99', url]);
    assert.equal(one.code, 0);
    assert.deepEqual(one.stdout, small.subarray(0, 100));
    const etag = (await http(srv.url, path, { method: 'HEAD' })).headers.etag!;
    const ir = await run('curl', ['-s', '-f', '-r', '100-199', '-H', `If-Range: ${etag}`, url]);
    assert.deepEqual(ir.stdout, small.subarray(100, 200));
    const stale = await run('curl', ['-s', '-f', '-r', '100-199', '-H', 'If-Range: "old"', url]);
    assert.deepEqual(stale.stdout, small);
    const multi = await run('curl', ['-s', '-f', '-D', '-', '-r', '0-3,512-515', url]);
    const text = multi.stdout.toString('latin1');
    const split = text.indexOf('\r\n\r\n');
    const ct = /content-type: (.*)\r\n/i.exec(text.slice(0, split))![1]!;
    const parts = parseMultipart(ct, multi.stdout.subarray(split + 4));
    assert.deepEqual(parts.map((p) => p.body), [small.subarray(0, 4), small.subarray(512, 516)]);
    // What an installer does: HEAD for Content-Length and Accept-Ranges, then header-by-header reads.
    const hd = await run('curl', ['-s', '-I', url]);
    assert.match(hd.stdout.toString(), /accept-ranges: bytes/i);
  });

  test('the 4K-sector image in a subdirectory serves by its relative path', async () => {
    const r = await http(srv.url, '/cosi/lab/small4k.cosi', { headers: { Range: 'bytes=0-10' } });
    assert.equal(r.status, 206);
    assert.deepEqual(r.body, small4k.subarray(0, 11));
    const f = await http(srv.url, '/cosi/foreign.cosi');
    assert.deepEqual(f.body, foreign);
  });
});

describe('safety', () => {
  test('path traversal attempts never reach a file outside the catalog', async () => {
    const attempts = [
      '/cosi/../small.cosi',
      '/cosi/../../../../etc/passwd',
      '/cosi/%2e%2e/%2e%2e/etc/passwd',
      '/cosi/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd',
      '/cosi/lab/..%2fsmall.cosi',
      '/cosi/lab%2fsmall4k.cosi',
      '/cosi//etc/passwd',
      '/cosi/%2Fetc%2Fpasswd',
      '/cosi/small.cosi%00.txt',
      '/cosi/%00',
      '/cosi/broken/..%5c..%5csmall.cosi',
      '/cosi/%252e%252e/small.cosi',
      '/v1/images/..%2f..%2fetc%2fpasswd',
      '/v1/images/%2e%2e/small/metadata.json',
      '/v1/images/lab%2Fsmall4k',
      '/cosi/ignored.txt',
      '/cosi/' + encodeURIComponent(join(srv.root, 'small.cosi')),
    ];
    for (const p of attempts) {
      const r = await http(srv.url, p);
      assert.ok(r.status === 404 || r.status === 400, `${p}: ${r.status}`);
      assert.ok(!r.body.includes(Buffer.from('root:')), p);
      assert.ok(!r.body.includes(Buffer.from('cosi-marker')), `${p} must not serve an archive`);
    }
  });

  test('absolute-form request targets are still only catalog keys', async () => {
    const r = await http(srv.url, 'http://127.0.0.1/cosi/../../etc/passwd');
    assert.notEqual(r.status, 200);
  });
});

describe('pages and operations', () => {
  test('the catalog page lists images, partitions and copyable commands', async () => {
    const r = await http(srv.url, '/');
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /^text\/html/);
    const page = r.body.toString('utf8');
    assert.match(page, /<!doctype html>/i);
    assert.ok(page.includes('Fixture Linux 1.0'));
    assert.ok(page.includes(`cosi-fetch --partition root -o small-root.img ${srv.url}/cosi/small.cosi`));
    assert.ok(page.includes(`cosi-fetch --partition esp -o small4k-esp.img ${srv.url}/cosi/lab/small4k.cosi`));
    assert.match(page, /class="bar"><span style="width:[\d.]+%"/);
    assert.ok(page.includes('invalid'));
    assert.ok(page.includes('an HTML page'), 'the invalid file shows its reason');
    assert.ok(!page.includes('<html><body>not an archive'), 'file content is never echoed unescaped');
  });

  test('healthz and Prometheus metrics', async () => {
    const h = await http(srv.url, '/healthz');
    assert.equal(h.status, 200);
    assert.equal(json(h).status, 'ok');
    await http(srv.url, '/cosi/small.cosi', { headers: { Range: 'bytes=0-99' } });
    const m = (await http(srv.url, '/metrics')).body.toString();
    assert.match(m, /# TYPE cosi_http_requests_total counter/);
    assert.match(m, /cosi_http_requests_total\{route="raw",status="206"\} \d+/);
    assert.match(m, /cosi_http_bytes_served_total\{route="raw"\} \d+/);
    assert.match(m, /cosi_http_range_requests_total\{kind="single"\} \d+/);
    assert.match(m, /cosi_http_range_requests_total\{kind="multipart"\} \d+/);
    assert.match(m, /cosi_index_errors_total 2/);
    assert.match(m, /cosi_catalog_images\{valid="true"\} 3/);
    assert.match(m, /cosi_catalog_images\{valid="false"\} 2/);
  });

  test('50 concurrent range requests are all byte-exact', async () => {
    const jobs = Array.from({ length: 50 }, (_, i) => {
      const s = (i * 997) % (small.length - 600);
      const e = s + 1 + ((i * 131) % 500);
      const which = i % 3;
      const path = which === 0 ? '/cosi/small.cosi' : which === 1 ? '/cosi/lab/small4k.cosi' : '/cosi/foreign.cosi';
      const src = which === 0 ? small : which === 1 ? small4k : foreign;
      return http(srv.url, path, { headers: { Range: `bytes=${s}-${e}` }, agent: false }).then((r) => {
        assert.equal(r.status, 206);
        assert.deepEqual(r.body, src.subarray(s, e + 1));
      });
    });
    await Promise.all(jobs);
    assert.equal(srv.catalog.openHandles, 0, 'every handle released');
  });
});
