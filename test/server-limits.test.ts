/**
 * What the server holds under abuse (issue 12): multipart ranges and
 * ?decompress=1 leave no stream behind on the cached handle; a reader that
 * stops reading pins two small chunks, not two 1 MiB ones; past
 * --max-connections a connection is answered 503 with Retry-After and
 * closed. The soak itself (20,000 requests, RSS) is bench comparison 8.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { EventEmitter } from 'node:events';
import { rm, truncate, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import v8 from 'node:v8';
import vm from 'node:vm';
import { http, parseMultipart, rawHttp, standardArchives, tempCatalog } from './server-helpers.js';
import { FD_CHUNK_MIN, transferBufferBytes } from '../server/http/fd-body.js';
import { defaultMaxConnections } from '../server/http/admission.js';
import { parseConfig } from '../server/config.js';
import { startServer, type RunningServer } from '../server/server.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const { smallPath, bigPath, small, big } = await standardArchives();
const quiet = { port: 0, log: false as const, watch: false, rescanSeconds: 0 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Live Readable streams in this process (ReadStreams and the server's own), after a full collection. */
async function liveStreams(): Promise<number> {
  gc();
  await new Promise((r) => setImmediate(r));
  gc();
  return v8.queryObjects(Readable, { format: 'count' }) as number;
}

/** 'close' listeners on the archive's cached handle (a FileHandle is an EventEmitter at run time). */
async function closeListeners(srv: RunningServer, id: string): Promise<number> {
  const a = (await srv.catalog.open(id))!;
  try {
    return (a.fh as unknown as EventEmitter).listenerCount('close');
  } finally {
    await a.release();
  }
}

describe('no stream outlives its request', () => {
  let srv: RunningServer;
  let cleanup: () => Promise<void>;
  before(async () => {
    const cat = await tempCatalog({ 'small.cosi': smallPath, 'big.cosi': bigPath });
    cleanup = cat.cleanup;
    srv = await startServer({ root: cat.dir, ...quiet, maxRanges: 16 });
  });
  after(async () => {
    await srv?.close(1000);
    await cleanup?.();
  });

  test('300 multipart requests and 30 ?decompress=1: live streams and handle listeners back at the baseline', async () => {
    const sixteen = `bytes=${Array.from({ length: 16 }, (_, k) => `${k * 700}-${k * 700 + 99}`).join(',')}`;
    const big2 = `bytes=100-${100 + 3 * FD_CHUNK_MIN},${big.length - 2 * FD_CHUNK_MIN}-`;
    const round = async (n: number) => {
      for (let i = 0; i < n; i++) {
        // A connection each (agent: false), so no client socket stays around to be counted.
        const r = await http(srv.url, i % 2 ? '/cosi/small.cosi' : '/cosi/big.cosi', { headers: { Range: i % 2 ? sixteen : big2 }, agent: false });
        assert.equal(r.status, 206);
        if (i < 2) {
          const parts = parseMultipart(String(r.headers['content-type']), r.body);
          const src = i % 2 ? small : big;
          for (const p of parts) {
            const [s, e] = /bytes (\d+)-(\d+)/.exec(p.contentRange)!.slice(1).map(Number);
            assert.deepEqual(p.body, src.subarray(s!, e! + 1));
          }
        }
        if (i % 10 === 0) assert.equal((await http(srv.url, '/v1/images/small/partitions/primary-gpt?decompress=1', { agent: false })).status, 200);
      }
      await sleep(100); // the server's side of the last connections closes
    };
    await round(4);
    const base = await liveStreams();
    await round(300);
    const now = await liveStreams();
    // Before the fix every part and every decompression left a ReadStream on the handle: +630 here.
    assert.ok(now <= base + 2, `live streams ${base} -> ${now}`);
    assert.equal(await closeListeners(srv, 'small'), 0);
    assert.equal(await closeListeners(srv, 'big'), 0);
    assert.equal(srv.catalog.openHandles, 0);
  });
});

describe('slow readers and the connection cap', () => {
  test('a reader that stops reading pins two 64 KiB chunks, not two 1 MiB ones', async () => {
    // Served raw whatever it holds: 64 MiB (a hole) outlasts what the kernel's socket buffers take.
    const size = 64 << 20;
    const cat = await tempCatalog({});
    await writeFile(join(cat.dir, 'big.cosi'), '');
    await truncate(join(cat.dir, 'big.cosi'), size);
    const srv = await startServer({ root: cat.dir, ...quiet });
    const serverSide: Socket[] = [];
    srv.server.on('connection', (s: Socket) => serverSide.push(s));
    const readers: Socket[] = [];
    try {
      const u = new URL(srv.url);
      for (let i = 0; i < 8; i++) {
        const s = connect(Number(u.port), u.hostname);
        s.on('error', () => {});
        s.pause(); // takes what fills its own buffer, then nothing
        s.write(`GET /cosi/big.cosi HTTP/1.1\r\nHost: x\r\n\r\n`);
        readers.push(s);
      }
      // Until every transfer has stalled: the bytes handed to sockets stop growing.
      let served = -1;
      for (let i = 0; i < 50; i++) {
        await sleep(200);
        const now = srv.metrics.value('cosi_http_bytes_served_total', { route: 'raw' });
        if (now === served) break;
        served = now;
      }
      assert.ok(served < 8 * size, 'the transfers are stalled, not done');
      assert.equal(serverSide.length, 8);
      for (const s of serverSide) {
        // Bytes queued in the socket beyond what the kernel took: the chunks this transfer pins.
        assert.ok(s.writableLength <= 2 * FD_CHUNK_MIN, `${s.writableLength} bytes queued for one slow reader`);
      }
      assert.ok(transferBufferBytes() <= 8 * 2 * FD_CHUNK_MIN, `transfer buffers ${transferBufferBytes()}`);
      assert.match(await (await fetch(`${srv.url}/metrics`)).text(), /^cosi_transfer_buffer_bytes \d+$/m);
    } finally {
      for (const s of readers) s.destroy();
      await srv.close(1000);
      await cat.cleanup();
    }
    assert.equal(transferBufferBytes(), 0, 'given back when the transfers ended');
  });

  test('--max-connections: the N+1th connection gets 503 with Retry-After and Connection: close', async () => {
    const cat = await tempCatalog({ 'small.cosi': smallPath });
    const srv = await startServer({ root: cat.dir, ...quiet, maxConnections: 2 });
    const held: Socket[] = [];
    try {
      const u = new URL(srv.url);
      // Two keep-alive connections, each with an answered request, left open.
      for (let i = 0; i < 2; i++) {
        const s = connect(Number(u.port), u.hostname);
        await new Promise<void>((resolve) => {
          s.once('data', () => resolve());
          s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
        });
        held.push(s);
      }
      const refused = await rawHttp(srv.url, 'GET /cosi/small.cosi HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\n');
      assert.equal(refused.status, 503);
      assert.equal(refused.headers['retry-after'], '1');
      assert.equal(refused.headers.connection, 'close');
      assert.ok(refused.closed, 'the server closed the connection after answering');
      assert.match(JSON.parse(refused.body.toString()).error.message, /too many connections \(limit 2\)/);

      // One of the two leaves: the next connection is served.
      held.shift()!.destroy();
      let status = 0;
      for (let i = 0; i < 20 && status !== 206; i++) {
        await sleep(50);
        status = (await rawHttp(srv.url, 'GET /cosi/small.cosi HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\nConnection: close\r\n\r\n')).status;
      }
      assert.equal(status, 206);
    } finally {
      for (const s of held) s.destroy();
      await srv.close(1000);
      await cat.cleanup();
    }
  });

  test('--max-connections and COSI_MAX_CONNECTIONS; the default fits the open-file limit', async () => {
    const cfg = (args: string[], env: NodeJS.ProcessEnv = {}) => {
      const p = parseConfig(args, env);
      assert.equal(p.help, false);
      return p.help ? undefined : p.config;
    };
    assert.equal(cfg(['--max-connections', '50'])?.maxConnections, 50);
    assert.equal(cfg([], { COSI_MAX_CONNECTIONS: '70' })?.maxConnections, 70);
    assert.equal(cfg([])?.maxConnections, undefined);
    assert.throws(() => parseConfig(['--max-connections', '0'], {}), /--max-connections must be a number from 1/);
    const limits = join(tmpdir(), `cosi-limits-${process.pid}`);
    await writeFile(limits, 'Limit                     Soft Limit           Hard Limit           Units\nMax open files            1000                 1000                 files\n');
    assert.equal(defaultMaxConnections(512, limits), 1000 - 512 - 64 - 64);
    await writeFile(limits, 'Max open files            1048576              1048576              files\n');
    assert.equal(defaultMaxConnections(512, limits), 1024);
    await rm(limits);
    assert.equal(defaultMaxConnections(512, limits), 1024, 'no limits file: the default');
  });
});
