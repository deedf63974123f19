/**
 * Comparison 8: what the server holds under abuse (issue 12), in a server
 * process of its own (bench/soak-server.ts) that collects garbage before
 * each probe.
 *
 * 8a, the soak: 20,000 multipart range requests (two-part ones with 192 KiB
 * parts, 16-part ones with 4 KiB parts) and 500 ?decompress=1 requests, then
 * a forced GC: live streams, 'close' listeners on the cached handle and open
 * descriptors back to what they were after the warm-up, and RSS within 20%.
 * 8b, slow readers: 200 connections each reading the whole archive at
 * 1 KiB/s for 5 s (the case); the server's RSS growth per reader.
 * --quick runs a tenth of the soak and a quarter of the readers. Both serve
 * the small (--quick) main workload: the archive's size does not change
 * what is measured here.
 */
import { fork } from 'node:child_process';
import { Agent, request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { passIf, type Row } from './report.js';
import type { Probe } from './soak-server.js';
import { fmtBytes, type BenchOptions } from './util.js';
import type { Workload } from './workload.js';
import { REPO } from '../test/fixtures.js';

export const SOAK_SERVER = join(REPO, 'dist', 'bench', 'soak-server.js');
const KiB = 1024;

interface SoakServer {
  url: URL;
  probe(): Promise<Probe>;
  stop(): Promise<void>;
}

async function forkServer(script: string, node: string, root: string, id: string, flags: Record<string, unknown>): Promise<SoakServer> {
  const child = fork(script, [root, id, JSON.stringify(flags)], { execPath: node, stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => void (stderr.length < 65536 && (stderr += d)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    child.once('message', (m) => resolve((m as { url: string }).url));
    child.once('exit', (code) => reject(new Error(`soak server exited ${code}: ${stderr.trim()}`)));
  });
  return {
    url: new URL(url),
    probe: () =>
      new Promise<Probe>((resolve) => {
        const on = (m: unknown): void => {
          if (typeof m === 'object' && m !== null && 'probe' in m) {
            child.off('message', on);
            resolve((m as { probe: Probe }).probe);
          }
        };
        child.on('message', on);
        child.send('probe');
      }),
    async stop() {
      if (child.exitCode !== null) return;
      child.send('stop');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** One GET through `agent`, body drained; its status. */
function get(agent: Agent, url: URL, path: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: url.hostname, port: url.port, path, headers, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
      res.on('error', () => resolve(0));
    });
    req.on('error', () => resolve(0));
    req.end();
  });
}

/** `count` requests from `jobs` workers; the number that did not get `ok(status)`. */
async function load(count: number, jobs: number, one: (i: number) => Promise<number>, ok: (i: number, status: number) => boolean): Promise<number> {
  let next = 0;
  let bad = 0;
  await Promise.all(
    Array.from({ length: jobs }, async () => {
      while (next < count) {
        const i = next++;
        if (!ok(i, await one(i))) bad++;
      }
    }),
  );
  return bad;
}

/** Non-overlapping parts spread over the file, so none are merged: `n` parts of `len` bytes. */
function rangeHeader(i: number, n: number, len: number, size: number): string {
  const slots = Math.floor(size / len);
  const stride = Math.max(1, Math.floor(slots / n));
  const base = (i * 7919) % stride;
  const parts: string[] = [];
  for (let k = 0; k < n; k++) {
    const at = (base + k * stride) * len;
    parts.push(`${at}-${at + len - 1}`);
  }
  return `bytes=${parts.join(',')}`;
}

/** The mixed load: even requests two-part, odd 16-part, every 40th a ?decompress=1 on top. */
async function mixed(srv: SoakServer, w: Workload, id: string, ranges: number): Promise<{ errors: number; seconds: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  const t0 = process.hrtime.bigint();
  const path = `/cosi/${w.file}`;
  const decompress = `/v1/images/${encodeURIComponent(id)}/partitions/primary-gpt?decompress=1`;
  const decompressions = Math.ceil(ranges / 40);
  try {
    const errors = await load(
      ranges + decompressions,
      8,
      (i) => {
        if (i % 41 === 40) return get(agent, srv.url, decompress);
        const range = i % 2 === 0 ? rangeHeader(i, 2, 192 * KiB, w.archiveSize) : rangeHeader(i, 16, 4 * KiB, w.archiveSize);
        return get(agent, srv.url, path, { Range: range });
      },
      (i, status) => status === (i % 41 === 40 ? 200 : 206),
    );
    return { errors, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
  } finally {
    agent.destroy();
    // The server sees the connections close a moment later.
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** A client that asks for `path` and then takes 1 KiB a second from its socket. */
function slowReader(url: URL, path: string): Socket {
  const s = connect(Number(url.port), url.hostname);
  s.on('error', () => {});
  s.write(`GET ${path} HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`);
  s.pause();
  const t = setInterval(() => s.read(KiB), 1000);
  s.once('close', () => clearInterval(t));
  return s;
}

function fmtProbe(p: Probe): string {
  return `RSS ${fmtBytes(p.rss)} (heap ${fmtBytes(p.heapUsed)}, external ${fmtBytes(p.external)}), ${p.readables} live streams, ${p.closeListeners} close listeners on the handle, ${p.fds} fds`;
}

export async function soakComparisons(
  opts: BenchOptions,
  node: string,
  w: Workload,
  log: (s: string) => void,
  script = SOAK_SERVER,
): Promise<{ rows: Row[]; extra: Record<string, unknown> }> {
  const id = w.file.replace(/\.cosi$/, '');
  const rows: Row[] = [];
  const extra: Record<string, unknown> = {};

  const ranges = opts.quick ? 2000 : 20_000;
  const srv = await forkServer(script, node, w.dir, id, { maxDecompressions: 8 });
  try {
    const warm = await mixed(srv, w, id, Math.round(ranges / 5));
    const base = await srv.probe();
    log(`  8a after warm-up (${warm.errors} errors): ${fmtProbe(base)}`);
    const soak = await mixed(srv, w, id, ranges);
    const after = await srv.probe();
    log(`  8a after ${ranges} ranges in ${soak.seconds.toFixed(1)} s (${soak.errors} errors): ${fmtProbe(after)}`);
    const ratio = after.rss / base.rss;
    const ok = ratio <= 1.2 && after.readables <= base.readables && after.closeListeners === 0 && after.fds <= base.fds && soak.errors === 0;
    rows.push({
      id: '8a',
      what: `soak: ${ranges} multipart range requests (two-part, 16-part) and ${Math.ceil(ranges / 40)} ?decompress=1 on a ${fmtBytes(w.archiveSize)} archive in ${soak.seconds.toFixed(0)} s, then a forced GC`,
      measurement: fmtProbe(after),
      baseline: `after warm-up: ${fmtProbe(base)}`,
      ratio,
      target: '<= 1.2 (RSS); streams, listeners and fds back to the warm-up values',
      status: passIf(ok),
      notes: soak.errors ? `${soak.errors} requests failed` : undefined,
      data: { base, after, soak, warm },
    });
    extra.soak = { base, after, soak, warm };
  } finally {
    await srv.stop();
  }

  const readers = opts.quick ? 50 : 200;
  const seconds = opts.quick ? 3 : 5;
  const slow = await forkServer(script, node, w.dir, id, {});
  try {
    // A light warm-up: memory freed by a heavy one would be reused by the readers and hide their cost.
    await mixed(slow, w, id, 20);
    const base = await slow.probe();
    const clients = Array.from({ length: readers }, () => slowReader(slow.url, `/cosi/${w.file}`));
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const held = await slow.probe();
    for (const c of clients) c.destroy();
    await new Promise((r) => setTimeout(r, 500));
    const released = await slow.probe();
    const per = (held.rss - base.rss) / readers;
    log(`  8b ${readers} slow readers: RSS ${fmtBytes(base.rss)} -> ${fmtBytes(held.rss)} (${fmtBytes(per)} each), transfer buffers ${fmtBytes(held.transferBuffers)}; after they left ${fmtBytes(released.rss)}`);
    const limit = 256 * KiB;
    rows.push({
      id: '8b',
      what: `slow readers: ${readers} connections reading the whole ${fmtBytes(w.archiveSize)} archive at 1 KiB/s for ${seconds} s, server RSS growth per reader`,
      measurement: `${fmtBytes(per)} per reader (RSS ${fmtBytes(base.rss)} -> ${fmtBytes(held.rss)}; transfer buffers ${fmtBytes(held.transferBuffers / readers)} per reader)`,
      baseline: 'limit 256 KiB (two 64 KiB chunks and the connection); 1 MiB chunks had pinned about 2 MiB per reader',
      ratio: per / limit,
      target: '<= 256 KiB',
      status: passIf(per <= limit),
      notes: `RSS ${fmtBytes(released.rss)} once the readers left`,
      data: { base, held, released, readers, seconds },
    });
    extra.slowReaders = { base, held, released, readers, seconds };
  } finally {
    await slow.stop();
  }
  return { rows, extra };
}
