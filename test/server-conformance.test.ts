/**
 * HTTP conformance found wanting under attack (issue 12): If-Unmodified-Since
 * and If-Match on every byte endpoint and ?decompress=1 (RFC 9110 §13.1.1,
 * §13.1.4, §13.2.2), one Host (RFC 9112 §3.2) and one Authorization per
 * request on the /cosi/ fast path and in the app alike, and HEAD carrying
 * GET's Content-Length on JSON, text and HTML answers (RFC 9110 §9.3.2).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { http, json, rawHttp, standardArchives, tempCatalog } from './server-helpers.js';
import { startServer, type RunningServer } from '../server/server.js';

const { smallPath, small } = await standardArchives();

let srv: RunningServer;
let cleanup: () => Promise<void>;
let lastModified: Date;

before(async () => {
  const cat = await tempCatalog({ 'small.cosi': smallPath });
  cleanup = cat.cleanup;
  // An hour old, so dates before and after it are both in the past.
  lastModified = new Date(Math.floor((Date.now() - 3600_000) / 1000) * 1000);
  await utimes(join(cat.dir, 'small.cosi'), lastModified, lastModified);
  srv = await startServer({ root: cat.dir, port: 0, log: false, rescanSeconds: 0, watch: false });
});

after(async () => {
  await srv?.close(1000);
  await cleanup?.();
});

const before1h = () => new Date(lastModified.getTime() - 3600_000).toUTCString();
const after1h = () => new Date(lastModified.getTime() + 1800_000).toUTCString();

describe('If-Unmodified-Since and If-Match on the byte endpoints', () => {
  let blob: string;
  before(async () => {
    blob = json(await http(srv.url, '/v1/images/small')).partitions[0].blobUrl;
  });
  const endpoints = () => [
    { path: '/cosi/small.cosi', range: 'bytes=0-99' }, // the fast path's small-range case
    { path: '/cosi/small.cosi', range: undefined },
    { path: '/v1/images/small/metadata.json', range: 'bytes=0-9' },
    { path: '/v1/images/small/partitions/root', range: 'bytes=1-2,5-6' },
    { path: blob, range: undefined },
  ];

  test('a date before Last-Modified is 412 on every byte endpoint, GET and HEAD; at or after it, the bytes', async () => {
    for (const { path, range } of endpoints()) {
      const rangeHeader: Record<string, string> = range ? { Range: range } : {};
      for (const method of ['GET', 'HEAD']) {
        const failed = await http(srv.url, path, { method, headers: { ...rangeHeader, 'If-Unmodified-Since': before1h() } });
        assert.equal(failed.status, 412, `${method} ${path} ${range}`);
        assert.ok(failed.headers.etag, 'the current ETag comes with the 412');
        if (method === 'GET') assert.equal(json(failed).error.code, 'PRECONDITION_FAILED');
      }
      const ok = range ? 206 : 200;
      for (const date of [lastModified.toUTCString(), after1h()]) {
        assert.equal((await http(srv.url, path, { headers: { ...rangeHeader, 'If-Unmodified-Since': date } })).status, ok, `${path} since ${date}`);
      }
      // Not an HTTP-date: ignored (§13.1.4).
      assert.equal((await http(srv.url, path, { headers: { ...rangeHeader, 'If-Unmodified-Since': 'yesterday' } })).status, ok);
    }
    const bytes = await http(srv.url, '/cosi/small.cosi', { headers: { Range: 'bytes=0-99', 'If-Unmodified-Since': after1h() } });
    assert.deepEqual(bytes.body, small.subarray(0, 100));
  });

  test('If-Match decides over If-Unmodified-Since; a wrong or weak tag is 412, a matching one or * serves', async () => {
    for (const { path, range } of endpoints()) {
      const rangeHeader: Record<string, string> = range ? { Range: range } : {};
      const etag = String((await http(srv.url, path, { method: 'HEAD' })).headers.etag);
      const ok = range ? 206 : 200;
      const cases: Array<[Record<string, string>, number]> = [
        [{ 'If-Match': etag, 'If-Unmodified-Since': before1h() }, ok], // If-Unmodified-Since is ignored beside If-Match
        [{ 'If-Match': '*' }, ok],
        [{ 'If-Match': `"other", ${etag}` }, ok],
        [{ 'If-Match': `W/${etag}` }, 412], // strong comparison
        [{ 'If-Match': '"other"', 'If-Unmodified-Since': after1h() }, 412],
      ];
      for (const [headers, status] of cases) {
        assert.equal((await http(srv.url, path, { headers: { ...rangeHeader, ...headers } })).status, status, `${path} ${JSON.stringify(headers)}`);
      }
    }
  });

  test('?decompress=1 takes the same preconditions against its own validators', async () => {
    const path = '/v1/images/small/partitions/root?decompress=1';
    const head = await http(srv.url, path, { method: 'HEAD' });
    const etag = String(head.headers.etag);
    assert.match(etag, /^"raw-[0-9a-f]{96}"$/);
    const cases: Array<[Record<string, string>, number]> = [
      [{ 'If-Unmodified-Since': before1h() }, 412],
      [{ 'If-Unmodified-Since': after1h() }, 200],
      [{ 'If-Match': '"nope"' }, 412],
      [{ 'If-Match': etag, 'If-Unmodified-Since': before1h() }, 200],
      [{ 'If-None-Match': etag }, 304],
      [{ 'If-Modified-Since': after1h() }, 304],
    ];
    for (const [headers, status] of cases) {
      const r = await http(srv.url, path, { headers });
      assert.equal(r.status, status, JSON.stringify(headers));
      if (status === 412) assert.equal(json(r).error.code, 'PRECONDITION_FAILED');
      if (status === 200) assert.equal(r.body.length, Number(head.headers['content-length']));
    }
    assert.equal(srv.catalog.openHandles, 0, 'every refused request released its archive');
  });
});

describe('one Host and one Authorization per request', () => {
  const req = (path: string, extra: string) => `GET ${path} HTTP/1.1\r\n${extra}Connection: close\r\n\r\n`;

  test('two Host headers, or an invalid one, are 400 on the fast path and in the app', async () => {
    for (const path of ['/cosi/small.cosi', '/v1/images', '/healthz', '/v1/images/small/partitions/root']) {
      for (const hosts of ['Host: a\r\nHost: b\r\n', 'Host: a\r\nhost: a\r\n', 'Host: a b\r\n', 'Host: a/b\r\n']) {
        const r = await rawHttp(srv.url, req(path, `${hosts}Range: bytes=0-9\r\n`));
        assert.equal(r.status, 400, `${path} with ${JSON.stringify(hosts)}`);
        assert.equal(json(r).error.code, 'BAD_REQUEST');
        assert.equal(r.headers.connection, 'close');
      }
      const one = await rawHttp(srv.url, req(path, 'Host: 127.0.0.1:1\r\n'));
      assert.notEqual(one.status, 400, path);
    }
    const fine = await rawHttp(srv.url, req('/cosi/small.cosi', 'Host: [::1]:8080\r\nRange: bytes=0-9\r\n'));
    assert.equal(fine.status, 206);
    assert.deepEqual(fine.body, small.subarray(0, 10));
  });

  test('two Authorization headers are refused alike everywhere, with or without tokens', async () => {
    const cat = await tempCatalog({ 'small.cosi': smallPath });
    const tokens = join(cat.dir, '.tokens');
    await writeFile(tokens, 'good\n');
    const priv = await startServer({ root: cat.dir, port: 0, log: false, rescanSeconds: 0, watch: false, tokenFile: tokens });
    try {
      for (const server of [priv, srv]) {
        for (const path of ['/cosi/small.cosi', '/v1/images/small/metadata.json', '/v1/images', '/healthz']) {
          for (const auths of ['Authorization: Bearer good\r\nAuthorization: Bearer bad\r\n', 'Authorization: Bearer good\r\nauthorization: Bearer good\r\n']) {
            const r = await rawHttp(server.url, req(path, `Host: x\r\n${auths}Range: bytes=0-9\r\n`));
            assert.equal(r.status, 400, `${server === priv ? 'private' : 'public'} ${path}`);
            assert.match(json(r).error.message, /2 Authorization headers/);
          }
        }
      }
      // One header: the usual answers, the same on both paths.
      assert.equal((await rawHttp(priv.url, req('/cosi/small.cosi', 'Host: x\r\nAuthorization: Bearer good\r\nRange: bytes=0-9\r\n'))).status, 206);
      assert.equal((await rawHttp(priv.url, req('/cosi/small.cosi', 'Host: x\r\nAuthorization: Bearer good, Bearer bad\r\nRange: bytes=0-9\r\n'))).status, 401);
      assert.equal((await rawHttp(priv.url, req('/v1/images', 'Host: x\r\nAuthorization: Bearer good, Bearer bad\r\n'))).status, 401);
    } finally {
      await priv.close(1000);
      await cat.cleanup();
    }
  });
});

describe('HEAD', () => {
  test('the same status, Content-Type and Content-Length as GET on JSON, text and HTML answers', async () => {
    const paths = [
      '/',
      '/v1/images',
      '/v1/images/small',
      '/v1/images/small/plan.txt',
      '/v1/images/small/boot.ipxe', // 404 NOT_CONFIGURED
      '/v1/images/nope',
      '/nothing-here',
      '/openapi.json',
      '/healthz',
      '/v1/images/small/partitions/nonesuch',
    ];
    for (const path of paths) {
      const get = await http(srv.url, path);
      const head = await http(srv.url, path, { method: 'HEAD' });
      assert.equal(head.status, get.status, path);
      assert.equal(head.headers['content-type'], get.headers['content-type'], path);
      assert.equal(get.headers['content-length'], String(get.body.length), `${path}: GET's length is its body's`);
      assert.equal(head.headers['content-length'], get.headers['content-length'], `${path}: HEAD says what GET sends`);
      assert.equal(head.body.length, 0);
    }
  });
});
