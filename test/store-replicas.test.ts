/**
 * The production layout in miniature: s3rver as the store, two real
 * cosi-server replicas over it, and the real nginx with
 * deploy/nginx-cache.conf (the file deploy/docker-compose.store.yml mounts)
 * in front, its upstream naming both replicas. One replica is stopped or
 * killed while cosi-fetch is reading a partition through nginx; the fetch
 * completes through the other in the same run, byte-identical, because both
 * give the same ids, offsets and ETags (killed inside a slice, nginx sends a
 * body with bytes missing, and cosi-fetch fetches the image again once). The
 * compose file itself is checked by docker-compose when it is installed.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { open } from '../client/index.js';
import { REPO, packedDisk, sameBytes, type PackedFixture } from './fixtures.js';
import { checkDisk, FETCH_CLI, runFetch, scrapeMetric } from './client-helpers.js';
import { freePort, NGINX, nginxMainConf } from './nginx.js';
import { http, json, run, SERVER_BIG, startCli } from './server-helpers.js';
import { startFaultProxy } from './fault-proxy.js';
import { startS3, type Emulator } from './store-emulators.js';

let work: string;
let s3: Emulator;
let big: PackedFixture;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cosi-store-replicas-'));
  [big, s3] = await Promise.all([packedDisk(SERVER_BIG), startS3()]);
  await s3.put('catalog', 'images/big.cosi', big.cosi);
});

after(async () => {
  await s3?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** deploy/nginx-cache.conf with its upstream on the two replicas (B as the backup, so A is the one serving) and a rate limit, so the transfer lasts. */
async function startCache(dir: string, a: string, b: string): Promise<{ url: string; accessLog(): Promise<string>; errorLog(): Promise<string>; stop(): Promise<void> }> {
  const port = await freePort();
  const site = (await readFile(join(REPO, 'deploy', 'nginx-cache.conf'), 'utf8'))
    .replace('server cosi-server:8080;', `server ${a} max_fails=1 fail_timeout=60s;\n    server ${b} backup;`)
    .replaceAll('/var/cache/nginx/cosi', join(dir, 'cache'))
    .replace(/listen 8080;/, `listen 127.0.0.1:${port};\n    limit_rate 4m;`);
  assert.ok(site.includes(`server ${a}`) && site.includes(`listen 127.0.0.1:${port}`), 'the substitutions found their targets');
  await mkdir(join(dir, 'tmp'), { recursive: true });
  await writeFile(join(dir, 'site.conf'), site);
  const conf = join(dir, 'nginx.conf');
  await writeFile(conf, nginxMainConf(dir, `  include ${dir}/site.conf;`, '$upstream_addr $status $request_uri'));
  const child = spawn(NGINX, ['-p', dir, '-e', join(dir, 'error.log'), '-c', conf], { stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then(
      async (r) => (await r.arrayBuffer(), true),
      () => false,
    );
    if (ok) break;
    await sleep(25);
  }
  return {
    url: `http://127.0.0.1:${port}`,
    accessLog: () => readFile(join(dir, 'access.log'), 'utf8').catch(() => ''),
    errorLog: () => readFile(join(dir, 'error.log'), 'utf8').catch(() => ''),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

test('docker-compose accepts deploy/docker-compose.store.yml: two replicas named cosi-server, the cache in front', async (t) => {
  if (!existsSync('/usr/bin/docker-compose')) return t.skip('docker-compose is not installed (apt-get install docker-compose)');
  const r = await run('docker-compose', ['-f', join(REPO, 'deploy', 'docker-compose.store.yml'), 'config', '-q']);
  const withStore = await new Promise<{ code: number; out: string }>((resolve) => {
    const c = spawn('docker-compose', ['-f', join(REPO, 'deploy', 'docker-compose.store.yml'), 'config'], { env: { ...process.env, COSI_STORE: 's3://bucket/images' } });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('close', (code) => resolve({ code: code ?? 1, out }));
  });
  assert.notEqual(r.code, 0, 'COSI_STORE is required');
  assert.equal(withStore.code, 0, withStore.out);
  assert.match(withStore.out, /cosi-a:[\s\S]*aliases:\s*\n\s*- cosi-server/);
  assert.match(withStore.out, /cosi-b:[\s\S]*- --remote\s*\n\s*- s3:\/\/bucket\/images/);
});

/**
 * Partition root of the big archive, fetched through nginx while replica A gets `signal` once 2 MiB have arrived.
 * `slowStore`: A reads the store at 2 MiB/s (a store far away), so it is still sending a slice when it gets the
 * signal; reading at loopback speed, it has usually handed nginx's socket the whole slice already.
 */
async function fetchWhileStopping(signal: NodeJS.Signals, run: string, slowStore = false, what = ['-p', 'root']): Promise<{ code: number; stderr: string; killedAt: number; out: string; aUrl: string; bUrl: string; cache: Awaited<ReturnType<typeof startCache>>; stop(): Promise<void> }> {
  const env = { ...s3.env, COSI_CACHE_DIR: join(work, 'cache') };
  const store = new URL(s3.env['AWS_ENDPOINT_URL']!);
  const slow = slowStore ? await startFaultProxy({ host: store.hostname, port: Number(store.port) }, () => ({ kind: 'throttle', bytesPerSecond: 2 << 20 }), { maxConnections: 1000 }) : undefined;
  const [a, b] = await Promise.all([
    startCli(['--remote', 's3://catalog/images'], slow ? { ...env, AWS_ENDPOINT_URL: slow.url } : env),
    startCli(['--remote', 's3://catalog/images'], env),
  ]);
  const cache = await startCache(join(work, `nginx-${run}`), new URL(a.url).host, new URL(b.url).host);
  assert.deepEqual(json(await http(b.url, '/v1/images')).images.map((i: any) => i.etag), json(await http(a.url, '/v1/images')).images.map((i: any) => i.etag));
  const out = join(work, `root-${run}.img`);
  const child = spawn(process.execPath, [FETCH_CLI, ...what, '-o', out, '--progress', 'json', `${cache.url}/cosi/big.cosi`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let killedAt = -1;
  const onProgress = (d: Buffer) => {
    stderr += d.toString();
    if (killedAt >= 0) return;
    for (const line of stderr.split('\n')) {
      const bytes = /"compressedBytes":(\d+)/.exec(line)?.[1];
      if (bytes !== undefined && Number(bytes) > 2 * 1024 * 1024) {
        killedAt = Number(bytes);
        a.child.kill(signal);
        break;
      }
    }
  };
  child.stdout.on('data', onProgress);
  child.stderr.on('data', onProgress);
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 1)));
  const errLog = await readFile(join(work, `nginx-${run}`, 'error.log'), 'utf8').catch(() => '');
  return {
    code,
    stderr: `${stderr.split('\n').filter((l) => !l.includes('"progress"')).join('\n')}\nnginx: ${errLog}`,
    killedAt,
    out,
    aUrl: a.url,
    bUrl: b.url,
    cache,
    stop: async () => {
      await cache.stop();
      await Promise.all([a.stop(), b.stop()]);
      await slow?.stop();
    },
  };
}

async function rootPartition() {
  const img = await open(big.cosi);
  const p = img.select('root');
  await img.close();
  return p;
}

async function bServed(bUrl: string): Promise<number> {
  // nginx logs one upstream per client request; the slices B served show in B's own counters.
  return (await scrapeMetric(bUrl, 'cosi_http_requests_total', { route: 'raw', status: '206' })) + (await scrapeMetric(bUrl, 'cosi_http_requests_total', { route: 'raw', status: '200' }));
}

test('nginx in front of two replicas: one stopped mid-transfer (SIGTERM, a rolling restart), cosi-fetch completes through the other', async (t) => {
  if (!existsSync(NGINX)) return t.skip('nginx is not installed (nginx-light)');
  const r = await fetchWhileStopping('SIGTERM', 'term');
  try {
    assert.equal(r.code, 0, r.stderr);
    const p = await rootPartition();
    assert.ok(r.killedAt > 0 && r.killedAt < p.image.compressedSize, `not stopped mid-transfer (at ${r.killedAt})`);
    assert.ok(await sameBytes(r.out, 0, big.disk, p.gptPartition!.offset, p.gptPartition!.size), 'root partition differs from the source disk');
    assert.ok((await r.cache.accessLog()).includes(new URL(r.aUrl).host), 'replica A served nothing');
    assert.ok((await bServed(r.bUrl)) > 0, 'replica B took over nothing');
  } finally {
    await r.stop();
  }
});

test('nginx in front of two replicas: one killed inside a slice (SIGKILL): nginx joins the next slice from the other, cosi-fetch fetches the image again in the same run, byte-identical', async (t) => {
  if (!existsSync(NGINX)) return t.skip('nginx is not installed (nginx-light)');
  const r = await fetchWhileStopping('SIGKILL', 'kill', true);
  try {
    const p = await rootPartition();
    assert.ok(r.killedAt > 0 && r.killedAt < p.image.compressedSize, `not killed mid-transfer (at ${r.killedAt})`);
    // nginx 1.22's slice module: the slice subrequest that lost its upstream ends as if complete, and the
    // response goes on with the next slice from B, bytes missing in between (see docs/store-deployment.md).
    assert.match(await r.cache.errorLog(), /upstream prematurely closed connection while reading upstream/, 'the replica did not die inside a slice');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /SHA-384 mismatch.*fetching it again from its start/, 'the spliced response went unnoticed');
    assert.ok(existsSync(r.out), 'no output');
    assert.ok(await sameBytes(r.out, 0, big.disk, p.gptPartition!.offset, p.gptPartition!.size), 'root partition differs from the source disk');
    assert.ok((await bServed(r.bUrl)) > 0, 'replica B took over nothing');
  } finally {
    await r.stop();
  }
});

test('the same kill during --disk: the spliced partition is written again over its region, holes included, and the disk is byte-identical', async (t) => {
  if (!existsSync(NGINX)) return t.skip('nginx is not installed (nginx-light)');
  if (!existsSync('/usr/sbin/sgdisk') && !existsSync('/usr/bin/sgdisk')) return t.skip('sgdisk is not installed (gdisk)');
  const r = await fetchWhileStopping('SIGKILL', 'kill-disk', true, ['--disk']);
  try {
    assert.match(await r.cache.errorLog(), /upstream prematurely closed connection while reading upstream/, 'the replica did not die inside a slice');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /SHA-384 mismatch.*fetching it again from its start/, 'the spliced response went unnoticed');
    await checkDisk(big, r.out);
  } finally {
    await r.stop();
  }
});
