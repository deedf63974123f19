/**
 * Comparison 10: catalogs on an object store, on the emulated S3 store the
 * tests use (s3rver on 127.0.0.1). 10a: indexing a bucket of 1,000 archives
 * (listing plus head-only range reads of each) against the same indexer on
 * the same files on local disk, with the store's requests and bytes read.
 * 10b: cosi-fetch of the root partition through `cosi-server --redirect`
 * (a 307 to a signed URL per request) against cosi-fetch from the s3:// URL
 * directly, rounds alternating.
 */
import { spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { checkArchive } from '../shared/format/check.js';
import { FileSource } from '../shared/transport/file-source.js';
import { parseRemoteSpec } from '../server/catalog/remote-spec.js';
import { RemoteCatalog } from '../server/catalog/remote.js';
import { eachLimited } from '../server/catalog/scanner.js';
import { startS3, type Emulator } from '../test/store-emulators.js';
import { notAvailable, passIf, type Row } from './report.js';
import { CLIENT_CLI, fmtBytes, SERVER_CLI, summarize, timed, type BenchOptions, type Tools } from './util.js';
import type { IndexWorkload, Workload } from './workload.js';

const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;

async function indexStore(s3: Emulator): Promise<{ s: number; requests: number; bytes: number; images: number; valid: number }> {
  let requests = 0;
  let bytes = 0;
  const cat = new RemoteCatalog({
    specs: [parseRemoteSpec('s3://bench-many/many', 'bench')],
    env: s3.env,
    log: (e) => {
      if (e['event'] === 'indexed') {
        requests += e['requests'] as number;
        bytes += e['bytes'] as number;
      }
      if (e['event'] === 'store-listed') requests += e['requests'] as number;
    },
  });
  const t0 = process.hrtime.bigint();
  await cat.start();
  const s = seconds(t0);
  const recs = cat.records();
  return { s, requests, bytes, images: recs.length, valid: recs.filter((r) => r.valid).length };
}

async function indexLocal(files: string[]): Promise<number> {
  const t0 = process.hrtime.bigint();
  // The same parallelism the remote catalog uses (16), so the ratio is the store's cost alone.
  await eachLimited(files, 16, async (f) => {
    const src = new FileSource(f);
    try {
      await checkArchive(src);
    } finally {
      await src.close();
    }
  });
  return seconds(t0);
}

async function startRedirectServer(s3: Emulator, node: string): Promise<{ url: string; stop(): Promise<void> }> {
  const child = spawn(node, [SERVER_CLI, '--port', '0', '-q', '--rescan', '0', '--redirect', '--remote', 's3://bench-main'], { env: s3.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.includes('"listening"'));
      if (line) resolve(JSON.parse(line).url as string);
    });
    child.once('exit', (code) => reject(new Error(`cosi-server exited ${code}`)));
  });
  return {
    url,
    stop: async () => {
      if (child.exitCode !== null) return;
      const done = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await done;
    },
  };
}

export async function storeComparisons(opts: BenchOptions, tools: Tools, iw: IndexWorkload, main: Workload, outDir: string, log: (s: string) => void): Promise<{ rows: Row[]; extra: Record<string, unknown> }> {
  const rows: Row[] = [];
  const extra: Record<string, unknown> = {};
  let s3: Emulator;
  try {
    s3 = await startS3();
  } catch (err) {
    const why = `s3rver did not start: ${(err as Error).message.split('\n')[0]}`;
    return { rows: [notAvailable('10a', 'index a bucket of 1,000 archives', 'INFO', why), notAvailable('10b', 'fetch through --redirect vs from the store', '<= 1.10', why)], extra };
  }
  try {
    const files = (await readdir(iw.manyDir)).filter((f) => f.endsWith('.cosi')).sort().map((f) => join(iw.manyDir, f));
    const t0 = process.hrtime.bigint();
    await eachLimited(files, 16, (f) => s3.put('bench-many', `many/${f.slice(iw.manyDir.length + 1)}`, f));
    log(`comparison 10: uploaded ${files.length} archives to s3rver in ${seconds(t0).toFixed(1)} s`);
    const rounds = opts.quick ? 1 : 3;
    const store: Awaited<ReturnType<typeof indexStore>>[] = [];
    const local: number[] = [];
    for (let i = 0; i < rounds; i++) {
      local.push(await indexLocal(files));
      store.push(await indexStore(s3));
    }
    const st = summarize(store.map((x) => x.s));
    const lo = summarize(local);
    const last = store[store.length - 1]!;
    rows.push({
      id: '10a',
      what: `index a bucket of ${files.length} archives (${fmtBytes(iw.tiny.archiveSize)} each) on s3rver: one paged listing, then head-only range reads, 16 at a time`,
      measurement: `${st.median.toFixed(2)} s (n=${st.n}); ${last.requests} requests (${(last.requests / files.length).toFixed(1)} per archive), ${fmtBytes(last.bytes)} read (${fmtBytes(last.bytes / files.length)} per archive); ${last.valid}/${last.images} valid`,
      baseline: `same files on local disk, same indexer and parallelism: ${lo.median.toFixed(2)} s`,
      ratio: st.median / lo.median,
      target: 'INFO',
      status: last.valid === files.length ? 'INFO' : 'MISS',
      data: { store, local },
    });
    log(`comparison 10a: store ${st.median.toFixed(2)} s, local ${lo.median.toFixed(2)} s, ${last.requests} requests, ${last.bytes} bytes`);

    const what = `cosi-fetch --partition root of ${main.name} through cosi-server --redirect (307 to a signed URL) vs from s3:// directly`;
    if (!tools.client || !tools.server) rows.push(notAvailable('10b', what, '<= 1.10', 'dist/ missing'));
    else {
      await s3.put('bench-main', 'main.cosi', main.cosi);
      const srv = await startRedirectServer(s3, tools.node20);
      try {
        const viaRedirect: number[] = [];
        const direct: number[] = [];
        const args = (url: string) => [CLIENT_CLI, '--partition', 'root', '-o', join(outDir, 'store-root.img'), url];
        const n = opts.quick ? 2 : opts.rounds;
        for (let i = 0; i < n; i++) {
          const order = i % 2 ? ['direct', 'redirect'] : ['redirect', 'direct'];
          for (const which of order) {
            const url = which === 'direct' ? 's3://bench-main/main.cosi' : `${srv.url}/cosi/main.cosi`;
            const t = await timed(tools.node20, args(url), { env: s3.env });
            (which === 'direct' ? direct : viaRedirect).push(t.seconds);
          }
        }
        const r = summarize(viaRedirect);
        const d = summarize(direct);
        rows.push({
          id: '10b',
          what,
          measurement: `${r.median.toFixed(2)} s (${r.min.toFixed(2)}-${r.max.toFixed(2)}, n=${r.n})`,
          baseline: `s3:// direct: ${d.median.toFixed(2)} s (${d.min.toFixed(2)}-${d.max.toFixed(2)})`,
          ratio: r.median / d.median,
          target: '<= 1.10',
          status: passIf(r.median / d.median <= 1.1),
          data: { redirect: r, direct: d },
        });
        log(`comparison 10b: redirect ${r.median.toFixed(2)} s vs direct ${d.median.toFixed(2)} s`);
      } finally {
        await srv.stop();
      }
    }
  } finally {
    await s3.stop();
  }
  return { rows, extra };
}
