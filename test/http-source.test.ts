import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFile, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { utimesSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { CosiError } from '../shared/errors.js';
import { FileSource } from '../shared/transport/file-source.js';
import type { HttpSourceEvent, HttpSourceOptions } from '../shared/transport/http/options.js';
import { HttpSource } from '../shared/transport/http/source.js';
import { openSource } from '../shared/transport/open.js';
import { formatContentRange, parseRangeHeader } from '../shared/transport/range.js';
import { isExclusive, releaseChunk } from '../shared/transport/source.js';
import { Agent } from 'undici';
import { startFaultProxy, type Fault, type FaultProxy } from './fault-proxy.js';
import { packedDisk, SMALL } from './fixtures.js';
import { freePort, startNginx, startPlainHttpServer, type RunningServer } from './nginx.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const FAST: HttpSourceOptions = { backoffMs: 5, idleTimeoutMs: 2000 };

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function drain(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

async function rejectsWith(p: Promise<unknown>, code: string, message?: RegExp): Promise<CosiError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof CosiError, `expected CosiError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    assert.ok(!err.message.includes('\n'), 'one line');
    return err;
  }
  assert.fail(`expected ${code}`);
}

let root: string;
let nginx: RunningServer & { accessLog(): Promise<string> };
let plain: RunningServer;
let cosi: Buffer;
let big: Buffer;
let http: (path: string) => string;
const proxies: FaultProxy[] = [];

async function proxy(plan: readonly Fault[] | ((i: number) => Fault), maxConnections = 16): Promise<FaultProxy> {
  const p = await startFaultProxy({ host: '127.0.0.1', port: nginx.port }, plan, { maxConnections });
  proxies.push(p);
  return p;
}

/** Access-log lines for one path since `since` lines: "METHOD /path "range" "if-range" status bytes". */
async function logFor(path: string, since = 0): Promise<string[]> {
  return (await nginx.accessLog()).split('\n').slice(since).filter((l) => l.includes(` ${path} `));
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'cosi-http-source-'));
  await copyFile((await packedDisk(SMALL)).cosi, join(root, 'small.cosi'));
  cosi = await readFile(join(root, 'small.cosi'));
  big = randomBytes(8 * MiB);
  await writeFile(join(root, 'big.bin'), big);
  nginx = await startNginx(root, {
    extraConfig: `
    location = /loop { return 302 /loop; }
    location = /redir.bin { return 302 /big.bin; }
    location = /moved.bin { return 301 http://127.0.0.1:$server_port/big.bin; }
    location = /hop1 { return 307 /hop2; }
    location = /hop2 { return 307 /hop3; }
    location = /hop3 { return 307 /big.bin; }
    location = /busy { return 503; }`,
  });
  plain = await startPlainHttpServer(root);
  http = (p) => `${nginx.url}${p}`;
});

after(async () => {
  await Promise.all(proxies.map((p) => p.stop()));
  await nginx?.stop();
  await plain?.stop();
  await rm(root, { recursive: true, force: true });
});

describe('reads and streams against nginx', () => {
  test('read() is byte-exact, one request per read, stats count requests and bytes', async () => {
    const src = new HttpSource(http('/small.cosi'), FAST);
    const spans: Array<[number, number]> = [[0, 512], [512, 1], [1024, 65536], [cosi.length - 100, 100], [12345, 3 * MiB]];
    let bytes = 0;
    for (const [off, len] of spans) {
      const got = await src.read(off, len);
      const want = cosi.subarray(off, off + len);
      assert.equal(got.length, want.length);
      assert.ok(got.equals(want), `bytes ${off}+${len}`);
      bytes += got.length;
    }
    assert.deepEqual(src.stats, { requests: spans.length, bytes });
    assert.equal(src.rangeSupported, true);
    assert.match(src.validator?.etag ?? '', /^"[0-9a-f]+-[0-9a-f]+"$/, 'nginx strong ETag pinned');
    // The first read's Content-Range told us the size: no HEAD needed.
    assert.equal(await src.size(), cosi.length);
    assert.equal(src.stats.requests, spans.length);
    await src.close();
  });

  test('size() from HEAD; reads past the end are short; at or past the end are empty', async () => {
    const src = new HttpSource(http('/small.cosi'), FAST);
    assert.equal(await src.size(), cosi.length);
    assert.equal(src.stats.requests, 1);
    const tail = await src.read(cosi.length - 10, 100);
    assert.ok(tail.equals(cosi.subarray(cosi.length - 10)));
    assert.equal((await src.read(cosi.length, 10)).length, 0);
    assert.equal(src.stats.requests, 2, 'a read at a known end costs nothing');

    // Size unknown: the 416's Content-Range says where the end is.
    const fresh = new HttpSource(http('/small.cosi'), FAST);
    assert.equal((await fresh.read(cosi.length + 5, 10)).length, 0);
    assert.equal(await fresh.size(), cosi.length);
    assert.equal(fresh.stats.requests, 1);
  });

  test('stream() delivers the exact range in one request', async () => {
    const src = new HttpSource(http('/big.bin'), FAST);
    const whole = await drain(src.stream(0, big.length));
    assert.equal(sha256(whole), sha256(big));
    const mid = await drain(src.stream(3 * MiB + 7, 2 * MiB + 3));
    assert.ok(mid.equals(big.subarray(3 * MiB + 7, 5 * MiB + 10)));
    assert.deepEqual(src.stats, { requests: 2, bytes: big.length + 2 * MiB + 3 });
  });

  test('stream() chunks from our own Agent may be released by their last consumer; read() results and a caller\'s dispatcher\'s never', async () => {
    const canRelease = typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer === 'function';
    const src = new HttpSource(http('/big.bin'), FAST);
    let marked = 0;
    let released = 0;
    let offset = 0;
    for await (const c of src.stream(0, 4 * MiB) as AsyncIterable<Buffer>) {
      // Checked before release: the bytes are right, then given back.
      assert.ok(c.equals(big.subarray(offset, offset + c.length)));
      offset += c.length;
      const len = c.length;
      if (isExclusive(c)) marked++;
      releaseChunk(c);
      if (c.length === 0 && len > 0) released++;
    }
    assert.equal(offset, 4 * MiB);
    // Socket reads are buffers of their own, so on a runtime with transfer() most are marked and given back.
    if (canRelease) assert.ok(marked > 0 && released === marked, `${marked} marked, ${released} released`);
    else assert.deepEqual([marked, released], [0, 0]);
    // read() may hand back a socket read as is (and the head cache keeps it): never marked.
    for (const len of [1000, 2 * MiB]) {
      const r = await src.read(MiB, len);
      assert.equal(isExclusive(r), false);
      releaseChunk(r);
      assert.ok(r.equals(big.subarray(MiB, MiB + len)));
    }
    // A caller's dispatcher may keep what it delivers (a recorder, a cache): nothing is marked.
    const agent = new Agent();
    try {
      const theirs = new HttpSource(http('/big.bin'), { ...FAST, dispatcher: agent });
      for await (const c of theirs.stream(0, 2 * MiB) as AsyncIterable<Buffer>) assert.equal(isExclusive(c), false);
    } finally {
      await agent.close();
    }
    // A slice or an unmarked buffer is left alone.
    const own = Buffer.from(big.subarray(0, 4096));
    releaseChunk(own);
    releaseChunk(own.subarray(0, 10));
    assert.equal(own.length, 4096);
  });

  test('stream() past the end of the file is an error, not a short stream', async () => {
    const src = new HttpSource(http('/small.cosi'), FAST);
    await src.size();
    await rejectsWith(drain(src.stream(cosi.length - 10, 20)), 'COSI_ERR_TRUNCATED', /small\.cosi/);
  });

  test('stream() applies back-pressure: a paused consumer stops the transfer', async () => {
    const src = new HttpSource(http('/big.bin'), FAST);
    const s = src.stream(0, big.length);
    await new Promise<void>((resolve) => s.once('readable', () => resolve()));
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(src.stats.bytes < 3 * MiB, `received ${src.stats.bytes} bytes of ${big.length} with nobody reading`);
    const rest = await drain(s);
    assert.equal(sha256(rest), sha256(big));
  });

  test('a consumer may destroy a stream midway', async () => {
    const src = new HttpSource(http('/big.bin'), FAST);
    const s = src.stream(0, big.length);
    const first = await new Promise<Buffer>((resolve) => s.once('data', resolve));
    assert.ok(first.equals(big.subarray(0, first.length)));
    s.destroy();
    await new Promise((r) => s.once('close', r));
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(src.stats.bytes < 3 * MiB, 'the transfer stopped');
    assert.ok((await src.read(MiB, 10)).equals(big.subarray(MiB, MiB + 10)));
  });

  test('close() aborts in-flight requests at once, even in a stall', async () => {
    const p = await proxy([{ kind: 'stall', afterBytes: 200_000 }]);
    const src = new HttpSource(`${p.url}/big.bin`, { ...FAST, idleTimeoutMs: 10_000 });
    const s = src.stream(0, big.length);
    const failed = drain(s);
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    await src.close();
    await rejectsWith(failed, 'COSI_ERR_NETWORK', /aborted/);
    assert.ok(Date.now() - t0 < 1000, 'did not wait for the idle timeout');
    // The source stays usable after close().
    assert.ok((await src.read(0, 10)).equals(big.subarray(0, 10)));
  });

  test('a short 206 is completed by further requests', async () => {
    // Some CDNs cap each response: answer at most 100 KiB of whatever range is asked.
    const cap = 100 * 1024;
    const server = await listen(
      createHttpServer((req, res) => {
        const parsed = parseRangeHeader(req.headers.range, big.length);
        if (parsed.kind !== 'ranges') return void res.writeHead(500).end();
        const { start } = parsed.ranges[0]!;
        const end = Math.min(parsed.ranges[0]!.end, start + cap - 1);
        res.writeHead(206, { 'content-range': formatContentRange(start, end, big.length), etag: '"capped"', 'content-length': end - start + 1 });
        res.end(big.subarray(start, end + 1));
      }),
    );
    try {
      const src = new HttpSource(`http://127.0.0.1:${server.port}/x`, FAST);
      const got = await src.read(1000, 450 * 1024);
      assert.ok(got.equals(big.subarray(1000, 1000 + 450 * 1024)));
      assert.equal(src.stats.requests, 5);
      const streamed = await drain(src.stream(0, 250 * 1024));
      assert.ok(streamed.equals(big.subarray(0, 250 * 1024)));
    } finally {
      await server.stop();
    }
  });
});

describe('resume after faults', () => {
  test('connections cut on the first two attempts: exact bytes, If-Range on the retries', async () => {
    const p = await proxy([{ kind: 'cut', afterBytes: 300_000 }, { kind: 'cut', afterBytes: 1_000_000 }]);
    const events: HttpSourceEvent[] = [];
    const since = (await nginx.accessLog()).split('\n').length - 1;
    const src = new HttpSource(`${p.url}/big.bin`, { ...FAST, onEvent: (e) => events.push(e) });
    const got = await drain(src.stream(0, big.length));
    assert.equal(sha256(got), sha256(big));
    assert.equal(p.connections, 3);
    const retries = events.filter((e) => e.type === 'retry');
    assert.equal(retries.length, 2);
    assert.ok(retries.every((e) => e.type === 'retry' && e.offset > 0 && e.offset < big.length));
    const lines = await logFor('/big.bin', since);
    assert.equal(lines.length, 3, lines.join('\n'));
    const etag = src.validator!.etag!;
    assert.match(lines[0]!, /"bytes=0-8388607" "-"/, 'first request has no If-Range');
    for (const [i, e] of retries.entries()) {
      assert.ok(e.type === 'retry');
      assert.ok(lines[i + 1]!.includes(`"bytes=${e.offset}-8388607" "${etag.replace(/"/g, '\\x22')}" 206`), lines[i + 1]);
    }
  });

  test('a connection reset mid-body resumes', async () => {
    const p = await proxy([{ kind: 'reset', afterBytes: 500_000 }]);
    const src = new HttpSource(`${p.url}/big.bin`, FAST);
    const got = await drain(src.stream(100, big.length - 100));
    assert.equal(sha256(got), sha256(big.subarray(100)));
    assert.equal(src.stats.requests, 2);
  });

  test('a stall is ended by the idle timeout and resumed', async () => {
    const p = await proxy([{ kind: 'stall', afterBytes: 400_000 }]);
    const events: HttpSourceEvent[] = [];
    const src = new HttpSource(`${p.url}/big.bin`, { ...FAST, idleTimeoutMs: 300, onEvent: (e) => events.push(e) });
    const got = await drain(src.stream(0, big.length));
    assert.equal(sha256(got), sha256(big));
    const retry = events.find((e) => e.type === 'retry');
    assert.ok(retry?.type === 'retry' && /stalled/.test(retry.error), JSON.stringify(retry));
  });

  test('a trickle is caught by the low-speed guard and resumed', async () => {
    const p = await proxy([{ kind: 'trickle', intervalMs: 20, afterBytes: 2000 }]);
    const src = new HttpSource(`${p.url}/small.cosi`, { ...FAST, minBytesPerSecond: 100_000, lowSpeedWindowMs: 300 });
    const got = await src.read(0, cosi.length);
    assert.equal(sha256(got), sha256(cosi));
    assert.equal(src.stats.requests, 2);
  });

  test('retries exhausted: one clear network error', async () => {
    const p = await proxy(() => ({ kind: 'cut', afterBytes: 5000 }), 10);
    const src = new HttpSource(`${p.url}/big.bin`, { ...FAST, retries: 3 });
    await rejectsWith(drain(src.stream(0, big.length)), 'COSI_ERR_NETWORK', new RegExp(`^GET ${p.url}/big\\.bin: .*gave up after 4 attempts`));
    assert.equal(p.connections, 4);
  });

  test('retries exhausted on stalls: a timeout error', async () => {
    const p = await proxy(() => ({ kind: 'stall', afterBytes: 0 }), 10);
    const src = new HttpSource(`${p.url}/big.bin`, { ...FAST, retries: 2, idleTimeoutMs: 150 });
    await rejectsWith(src.read(0, 1000), 'COSI_ERR_TIMEOUT', /big\.bin: no response within 150 ms .*gave up after 3 attempts/);
  });
});

describe('change detection', () => {
  test('a file replaced between two reads: COSI_ERR_SOURCE_CHANGED', async () => {
    const path = join(root, 'changing.bin');
    await writeFile(path, big.subarray(0, MiB));
    const src = new HttpSource(http('/changing.bin'), FAST);
    assert.ok((await src.read(0, 1000)).equals(big.subarray(0, 1000)));
    const before = src.validator?.etag;
    await writeFile(path, big.subarray(MiB, 2 * MiB));
    await utimes(path, new Date(), new Date(Date.now() + 10_000)); // nginx's ETag is mtime-size
    await rejectsWith(src.read(5000, 1000), 'COSI_ERR_SOURCE_CHANGED', new RegExp(`changing\\.bin changed on the server during the transfer \\(ETag ${before} -> "[^"]+"\\); refusing to splice two versions`));
  });

  test('a file replaced while a stream resumes: error, and no bytes of the new version', async () => {
    const path = join(root, 'changing2.bin');
    await writeFile(path, big.subarray(0, 4 * MiB));
    const p = await proxy([{ kind: 'cut', afterBytes: 1_000_000 }]);
    const replace = (e: HttpSourceEvent) => {
      if (e.type !== 'retry') return;
      writeFileSync(path, Buffer.alloc(4 * MiB, 0xee));
      utimesSync(path, new Date(), new Date(Date.now() + 20_000));
    };
    const src = new HttpSource(`${p.url}/changing2.bin`, { ...FAST, onEvent: replace });
    const s = src.stream(0, 4 * MiB);
    const seen: Buffer[] = [];
    s.on('data', (c: Buffer) => seen.push(c));
    await rejectsWith(new Promise((resolve, reject) => s.on('end', resolve).on('error', reject)), 'COSI_ERR_SOURCE_CHANGED');
    const delivered = Buffer.concat(seen);
    assert.ok(delivered.length > 0 && delivered.length < 1_000_000);
    assert.ok(delivered.equals(big.subarray(0, delivered.length)), 'only bytes of the first version');
  });
});

describe('mirrors', () => {
  test('first URL refuses connections: the mirror serves, the switch is reported', async () => {
    const dead = `http://127.0.0.1:${await freePort()}/small.cosi`;
    const events: HttpSourceEvent[] = [];
    const src = new HttpSource(dead, { ...FAST, mirrors: [http('/small.cosi')], onEvent: (e) => events.push(e) });
    assert.ok((await src.read(100, 4000)).equals(cosi.subarray(100, 4100)));
    assert.deepEqual(events.find((e) => e.type === 'mirror'), { type: 'mirror', from: dead, to: http('/small.cosi'), offset: 100 });
    const retry = events.find((e) => e.type === 'retry');
    assert.ok(retry?.type === 'retry' && /connection refused/.test(retry.error));
    // Later reads go straight to the mirror.
    const before = src.stats.requests;
    await src.read(0, 10);
    assert.equal(src.stats.requests, before + 1);
  });

  test('cut mid-stream: continues on the mirror from the same offset', async () => {
    const p = await proxy(() => ({ kind: 'cut', afterBytes: 2_000_000 }), 4);
    const events: HttpSourceEvent[] = [];
    const src = new HttpSource(`${p.url}/big.bin`, { ...FAST, mirrors: [http('/big.bin')], onEvent: (e) => events.push(e) });
    const got = await drain(src.stream(0, big.length));
    assert.equal(sha256(got), sha256(big));
    const sw = events.filter((e) => e.type === 'mirror');
    assert.equal(sw.length, 1);
    assert.ok(sw[0]!.type === 'mirror' && sw[0]!.offset > 1_900_000 && sw[0]!.offset < 2_000_000, JSON.stringify(sw[0]));
    assert.equal(p.connections, 1);
  });

  test('a 404 on one mirror moves on to the next', async () => {
    const src = new HttpSource(http('/nowhere.cosi'), { ...FAST, mirrors: [http('/small.cosi')] });
    assert.ok((await src.read(0, 100)).equals(cosi.subarray(0, 100)));
  });
});

describe('servers without Range', () => {
  test('python http.server: COSI_ERR_RANGE_UNSUPPORTED, and openFull() streams the whole file', async () => {
    const src = new HttpSource(`${plain.url}/small.cosi`, FAST);
    await rejectsWith(src.read(0, 65536), 'COSI_ERR_RANGE_UNSUPPORTED', /small\.cosi: the server ignores Range/);
    assert.equal(src.rangeSupported, false);
    assert.equal(src.stats.requests, 1, 'not retried');
    const { body, size } = await src.openFull();
    assert.equal(size, cosi.length);
    assert.equal(sha256(await drain(body)), sha256(cosi));
    assert.equal(src.stats.bytes, cosi.length, 'the aborted 200 body was not read');
  });

  test('HEAD pinned Last-Modified first: still reported as no Range, not as a change', async () => {
    const src = new HttpSource(`${plain.url}/small.cosi`, FAST);
    assert.equal(await src.size(), cosi.length);
    assert.ok(src.validator?.lastModified);
    await rejectsWith(src.read(0, 100), 'COSI_ERR_RANGE_UNSUPPORTED');
  });

  test('openFull() against nginx', async () => {
    const src = new HttpSource(http('/big.bin'), FAST);
    const { body, size } = await src.openFull();
    assert.equal(size, big.length);
    assert.equal(sha256(await drain(body)), sha256(big));
  });
});

describe('HTTP errors and redirects', () => {
  test('404: COSI_ERR_HTTP_STATUS, not retried', async () => {
    const src = new HttpSource(http('/missing.cosi'), FAST);
    await rejectsWith(src.read(0, 10), 'COSI_ERR_HTTP_STATUS', new RegExp(`^GET ${nginx.url}/missing\\.cosi: 404 Not Found$`));
    assert.equal(src.stats.requests, 1);
    await rejectsWith(src.size(), 'COSI_ERR_HTTP_STATUS', /^HEAD .*404/);
  });

  test('503: retried, then COSI_ERR_HTTP_STATUS', async () => {
    const src = new HttpSource(http('/busy'), { ...FAST, retries: 2 });
    await rejectsWith(src.read(0, 10), 'COSI_ERR_HTTP_STATUS', /busy: 503 Service (Temporarily )?Unavailable \(gave up after 3 attempts\)/);
    assert.equal(src.stats.requests, 3);
  });

  test('redirect loop: COSI_ERR_REDIRECT', async () => {
    const src = new HttpSource(http('/loop'), FAST);
    await rejectsWith(src.read(0, 10), 'COSI_ERR_REDIRECT', /redirect loop/);
    assert.equal(src.stats.requests, 1);
  });

  test('too many redirects: COSI_ERR_REDIRECT', async () => {
    const src = new HttpSource(http('/hop1'), { ...FAST, maxRedirects: 2 });
    await rejectsWith(src.read(0, 10), 'COSI_ERR_REDIRECT', /more than 2 redirects/);
    const ok = new HttpSource(http('/hop1'), FAST);
    assert.ok((await ok.read(0, 10)).equals(big.subarray(0, 10)));
    assert.equal(ok.stats.requests, 4);
  });

  test('a redirect to the real file works; a permanent one is remembered', async () => {
    const temp = new HttpSource(http('/redir.bin'), FAST);
    assert.ok((await temp.read(10, 1000)).equals(big.subarray(10, 1010)));
    assert.ok((await temp.read(20, 1000)).equals(big.subarray(20, 1020)));
    assert.equal(temp.stats.requests, 4, '302 is followed each time');
    const perm = new HttpSource(http('/moved.bin'), FAST);
    assert.equal(sha256(await drain(perm.stream(0, big.length))), sha256(big));
    assert.ok((await perm.read(20, 1000)).equals(big.subarray(20, 1020)));
    assert.equal(perm.stats.requests, 3, '301 followed once');
  });

  test('self-signed certificate: COSI_ERR_TLS, not retried', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cosi-tls-'));
    try {
      const key = join(dir, 'key.pem');
      const cert = join(dir, 'cert.pem');
      await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-keyout', key, '-out', cert]);
      const server = await listen(createHttpsServer({ key: await readFile(key), cert: await readFile(cert) }, (_req, res) => res.end('never')));
      try {
        const src = new HttpSource(`https://127.0.0.1:${server.port}/small.cosi`, FAST);
        await rejectsWith(src.read(0, 10), 'COSI_ERR_TLS', /^GET https:\/\/127\.0\.0\.1:\d+\/small\.cosi: TLS error: .*self-signed/);
        assert.equal(src.stats.requests, 1);
      } finally {
        await server.stop();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('names and openSource', () => {
  test('credentials and query are kept out of the name', async () => {
    const src = new HttpSource(`http://user:secret@127.0.0.1:${nginx.port}/small.cosi?sig=abc#frag`, FAST);
    assert.equal(src.name, `${nginx.url}/small.cosi?...`);
    assert.ok((await src.read(0, 11)).equals(cosi.subarray(0, 11)));
  });

  test('openSource picks FileSource for paths and file URLs, HttpSource for http(s)', async () => {
    const path = join(root, 'small.cosi');
    assert.ok(openSource(path) instanceof FileSource);
    const viaUrl = openSource(pathToFileURL(path).href);
    assert.ok(viaUrl instanceof FileSource);
    assert.ok((await viaUrl.read(0, 11)).equals(cosi.subarray(0, 11)));
    await viaUrl.close();
    assert.ok(openSource(http('/small.cosi')) instanceof HttpSource);
    assert.throws(() => openSource('ftp://example.com/x.cosi'), (e: unknown) => e instanceof CosiError && e.code === 'COSI_ERR_USAGE');
    assert.throws(() => new HttpSource('http://'), (e: unknown) => e instanceof CosiError && e.code === 'COSI_ERR_USAGE');
  });
});

async function listen(server: Server): Promise<{ port: number; stop(): Promise<void> }> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as { port: number }).port,
    stop: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
