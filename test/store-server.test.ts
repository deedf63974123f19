/**
 * cosi-server over object stores: `--remote s3://BUCKET/PREFIX` against
 * s3rver and `--remote az://CONTAINER/PREFIX` against Azurite, started here on
 * 127.0.0.1. The bucket is listed (paged), each archive indexed by ranged
 * reads of its head only, changes found by ETag on rescan; partitions come
 * through the server (proxy) and the raw archive by a 307 to a signed URL,
 * byte-identical either way; a store that resets mid-transfer is resumed;
 * two replicas over one bucket list the same catalog, as do the workers of
 * --workers 2; bad credentials stop the start with one line and no secret.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open, writePartition } from '../client/index.js';
import { exitCodeOf } from '../shared/errors.js';
import { closeSharedAgents } from '../shared/transport/http/agent.js';
import { parseRemoteSpec } from '../server/catalog/remote-spec.js';
import { startServer, type RunningServer } from '../server/server.js';
import { FILLED, SMALL, packedDisk, sameBytes, type PackedFixture } from './fixtures.js';
import { runFetch } from './client-helpers.js';
import { startFaultProxy } from './fault-proxy.js';
import { http, json, run, startCli } from './server-helpers.js';
import { AZ_ACCOUNT, startAzurite, startS3, type Emulator } from './store-emulators.js';

let work: string;
let s3: Emulator;
let az: Emulator;
let small: PackedFixture;
let filled: PackedFixture;
let srv: RunningServer;
let logLines: Array<Record<string, unknown>>;
let n = 0;
const fresh = async () => {
  const d = join(work, `out-${n++}`);
  await mkdir(d, { recursive: true });
  return d;
};
const sha384 = (b: Buffer) => createHash('sha384').update(b).digest('hex');

async function metadataSha(fx: PackedFixture): Promise<string> {
  const img = await open(fx.cosi);
  try {
    return img.metadataSha384;
  } finally {
    await img.close();
  }
}

async function assertRoot(fx: PackedFixture, file: string): Promise<void> {
  const img = await open(fx.cosi);
  const p = img.select('root');
  await img.close();
  assert.ok(await sameBytes(file, 0, fx.disk, p.gptPartition!.offset, p.gptPartition!.size), 'root partition differs from the source disk');
}

/** /v1/images without the time each server happened to index at. */
function catalogOf(body: { images: Array<Record<string, unknown>> }): unknown {
  return body.images.map(({ indexedAt: _, ...rest }) => rest);
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cosi-store-server-'));
  [small, filled, s3, az] = await Promise.all([packedDisk(SMALL), packedDisk(FILLED), startS3(), startAzurite()]);
  for (const e of [s3, az]) {
    await e.put('catalog', 'images/os/small.cosi', small.cosi);
    await e.put('catalog', 'images/os/filled.cosi', filled.cosi);
    await e.put('catalog', 'images/README.txt', Buffer.from('not an archive, not listed'));
    await e.put('catalog', 'images/broken.cosi', Buffer.from('this is not a tar file at all'));
    await e.put('catalog', 'elsewhere/other.cosi', small.cosi);
  }
  // The in-process server reads store settings from the environment, as the CLI does.
  Object.assign(process.env, s3.env, { AZURE_STORAGE_CONNECTION_STRING: az.env['AZURE_STORAGE_CONNECTION_STRING'] });
  logLines = [];
  srv = await startServer({
    root: '',
    remotes: [parseRemoteSpec('s3://catalog/images', '--remote'), parseRemoteSpec('az=az://catalog/images/', '--remote')],
    port: 0,
    rescanSeconds: 0,
    watch: false,
    log: (l) => void logLines.push(l),
  });
});

after(async () => {
  await srv?.close(1000);
  await closeSharedAgents();
  await Promise.all([s3?.stop(), az?.stop()]);
  if (work) await rm(work, { recursive: true, force: true });
});

describe('a catalog on a bucket', () => {
  test('every .cosi under the prefix is listed, ids relative to it; a broken one with its reason', async () => {
    const body = json(await http(srv.url, '/v1/images'));
    const ids = body.images.map((i: any) => i.id);
    assert.deepEqual(ids, ['az/broken', 'az/os/filled', 'az/os/small', 'broken', 'os/filled', 'os/small']);
    const byId = Object.fromEntries(body.images.map((i: any) => [i.id, i]));
    for (const id of ['os/small', 'az/os/small']) {
      assert.equal(byId[id].valid, true, id);
      assert.equal(byId[id].remote, true);
      assert.equal(byId[id].metadataSha384, await metadataSha(small));
      assert.equal(byId[id].size, (await readFile(small.cosi)).length);
    }
    assert.equal(byId['os/filled'].metadataSha384, await metadataSha(filled));
    assert.equal(byId['broken'].valid, false);
    assert.match(byId['broken'].reason, /not a COSI|tar/i);
  });

  test('indexing read heads only: a few small ranged reads per archive, found by one listing', async () => {
    const filledSize = (await readFile(filled.cosi)).length;
    for (const id of ['os/filled', 'az/os/filled']) {
      const ev = logLines.find((l) => l['event'] === 'indexed' && l['id'] === id)!;
      assert.ok(ev, `no indexed event for ${id}`);
      assert.ok((ev['bytes'] as number) < 200 * 1024, `${id}: read ${ev['bytes']} bytes`);
      assert.ok((ev['bytes'] as number) < filledSize / 10);
      assert.ok((ev['requests'] as number) <= 6, `${id}: ${ev['requests']} requests`);
    }
    const listed = logLines.filter((l) => l['event'] === 'store-listed');
    assert.deepEqual(listed.map((l) => [l['prefix'], l['objects'], l['requests']]).sort(), [
      ['az://catalog/images/', 3, 1],
      ['s3://catalog/images/', 3, 1],
    ]);
  });

  test('partitions through the server (proxy) are byte-identical, with our ETag', async () => {
    for (const id of ['os/filled', 'az/os/filled']) {
      const dir = await fresh();
      const r = await runFetch(['-p', 'root', '-o', join(dir, 'root.img'), `${srv.url}/cosi/${id}.cosi`]);
      assert.equal(r.code, 0, r.stderr);
      await assertRoot(filled, join(dir, 'root.img'));
      const part = await http(srv.url, `/v1/images/${id}/partitions/root`);
      assert.equal(part.status, 200);
      assert.match(String(part.headers['etag']), /^"/);
      const img = await open(filled.cosi);
      assert.equal(sha384(part.body), img.select('root').image.sha384!.toLowerCase());
      await img.close();
    }
  });

  test('a rescan re-indexes exactly the objects whose ETag changed', async () => {
    const before = json(await http(srv.url, '/v1/images'));
    const etagOf = (b: any, id: string) => b.images.find((i: any) => i.id === id).etag;
    const runs = (id: string) => logLines.filter((l) => l['event'] === 'indexed' && l['id'] === id).length;
    const filledRuns = runs('os/filled');
    await s3.put('catalog', 'images/os/small.cosi', filled.cosi);
    await srv.catalog.rescanAll();
    const after = json(await http(srv.url, '/v1/images'));
    assert.notEqual(etagOf(after, 'os/small'), etagOf(before, 'os/small'));
    assert.equal(after.images.find((i: any) => i.id === 'os/small').metadataSha384, await metadataSha(filled));
    assert.equal(etagOf(after, 'os/filled'), etagOf(before, 'os/filled'));
    assert.equal(runs('os/filled'), filledRuns, 'an unchanged object was indexed again');
    await s3.put('catalog', 'images/os/small.cosi', small.cosi);
    await srv.catalog.rescanAll();
    assert.equal(json(await http(srv.url, '/v1/images')).images.find((i: any) => i.id === 'os/small').metadataSha384, await metadataSha(small));
  });
});

describe('an object replaced under the server', () => {
  test('a proxied transfer of a replaced object stops (exit 4, nothing written), and the archive is re-indexed', async () => {
    await s3.put('catalog', 'images/moving.cosi', filled.cosi);
    await srv.catalog.rescanAll();
    const before = json(await http(srv.url, '/v1/images/moving'));
    assert.equal(before.metadataSha384, await metadataSha(filled));
    // Opened (metadata read through the server) before the object changes, fetched after.
    const img = await open(`${srv.url}/cosi/moving.cosi`);
    const dir = await fresh();
    try {
      await s3.put('catalog', 'images/moving.cosi', small.cosi);
      const err = await writePartition(img, img.select('root'), join(dir, 'root.img')).then(
        () => undefined,
        (x: unknown) => x,
      );
      assert.ok(err, 'a partition of the replaced object was written');
      assert.equal((err as { code?: string }).code, 'COSI_ERR_SOURCE_CHANGED', String(err));
      assert.equal(exitCodeOf(err), 4);
      assert.deepEqual(await readdir(dir), []);
    } finally {
      await img.close();
    }
    // The failed transfer queued a re-index; a rescan would do it too.
    await srv.catalog.rescanAll();
    const after = json(await http(srv.url, '/v1/images/moving'));
    assert.equal(after.metadataSha384, await metadataSha(small));
    assert.notEqual(after.etag, before.etag);
  });
});

describe('replicas, redirects and faults (the real CLI)', () => {
  const args = ['--remote', 's3://catalog/images', '--remote', 'az=az://catalog/images'];
  const env = () => ({ ...s3.env, AZURE_STORAGE_CONNECTION_STRING: az.env['AZURE_STORAGE_CONNECTION_STRING'], COSI_CACHE_DIR: join(work, 'cache') });

  test('two replicas over one bucket list the same ids, ETags and offsets', async () => {
    const [a, b] = await Promise.all([startCli(args, env()), startCli(args, env())]);
    try {
      const la = json(await http(a.url, '/v1/images'));
      const lb = json(await http(b.url, '/v1/images'));
      assert.ok(la.images.length >= 6, `only ${la.images.length} images`);
      assert.deepEqual(catalogOf(lb), catalogOf(la));
      const da = await http(a.url, '/v1/images/os/filled');
      const db = await http(b.url, '/v1/images/os/filled');
      assert.deepEqual(json(db).entries, json(da).entries);
      assert.equal(db.headers['etag'], da.headers['etag']);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  test('--redirect: /cosi/ answers 307 to a short-lived signed URL; cosi-fetch and curl -L read the same bytes', async () => {
    const cli = await startCli([...args, '--redirect'], env());
    try {
      for (const [id, sig] of [
        ['os/filled', /X-Amz-Signature=/],
        ['az/os/filled', /[?&]sig=/],
      ] as const) {
        const r = await http(cli.url, `/cosi/${id}.cosi`);
        assert.equal(r.status, 307);
        assert.equal(r.headers['cache-control'], 'no-cache');
        const loc = String(r.headers['location']);
        assert.match(loc, sig);
        assert.ok(loc.startsWith(id.startsWith('az') ? az.endpoint : s3.endpoint), loc);
        const dir = await fresh();
        const f = await runFetch(['-p', 'root', '-o', join(dir, 'root.img'), `${cli.url}/cosi/${id}.cosi`]);
        assert.equal(f.code, 0, f.stderr);
        await assertRoot(filled, join(dir, 'root.img'));
        const c = await run('curl', ['-fsSL', '-o', join(dir, 'whole.cosi'), `${cli.url}/cosi/${id}.cosi`]);
        assert.equal(c.code, 0, c.stderr);
        assert.ok((await readFile(join(dir, 'whole.cosi'))).equals(await readFile(filled.cosi)));
      }
      // Metadata stays ours, with our ETag.
      const m = await http(cli.url, '/v1/images/os/filled/metadata.json');
      assert.equal(m.status, 200);
    } finally {
      await cli.stop();
    }
  });

  test('--workers 2 over s3://: each worker indexes the bucket itself and serves the same catalog and bytes', async () => {
    const cli = await startCli(['--workers', '2', '--remote', 's3://catalog/images'], env());
    try {
      const listening = JSON.parse(cli.output().split('\n').find((l) => l.includes('"listening"'))!);
      assert.equal(listening.workers, 2);
      // A connection per request, so the primary spreads them over both workers: every answer is the same catalog.
      const lists = [];
      for (let i = 0; i < 6; i++) lists.push(json(await http(cli.url, '/v1/images', { agent: false })));
      const ids = lists[0].images.map((i: any) => i.id);
      assert.ok(ids.includes('os/filled') && ids.includes('os/small'), ids.join(' '));
      for (const l of lists) assert.deepEqual(catalogOf(l), catalogOf(lists[0]));
      // /metrics sums the workers: both indexed every archive of the listing.
      const metrics = (await http(cli.url, '/metrics', { agent: false })).body.toString();
      assert.match(metrics, /^cosi_workers 2$/m);
      assert.equal(Number(/^cosi_index_runs_total (\d+)$/m.exec(metrics)?.[1]), 2 * ids.length, metrics);
      const dir = await fresh();
      const r = await runFetch(['-p', 'root', '-o', join(dir, 'root.img'), `${cli.url}/cosi/os/filled.cosi`]);
      assert.equal(r.code, 0, r.stderr);
      await assertRoot(filled, join(dir, 'root.img'));
    } finally {
      await cli.stop();
    }
  });

  test('a store that resets mid-transfer: the proxied partition is resumed, byte-identical', async () => {
    const proxy = await startFaultProxy({ host: '127.0.0.1', port: s3.port }, () => ({ kind: 'reset', afterBytes: 1_500_000 }), { maxConnections: 200 });
    const cli = await startCli(['--remote', 's3://catalog/images'], { ...env(), AWS_ENDPOINT_URL: proxy.url });
    try {
      const dir = await fresh();
      const r = await runFetch(['-p', 'root', '-o', join(dir, 'root.img'), `${cli.url}/cosi/os/filled.cosi`]);
      assert.equal(r.code, 0, r.stderr);
      await assertRoot(filled, join(dir, 'root.img'));
      assert.ok(proxy.connections >= 3, `only ${proxy.connections} connections: no reset happened`);
    } finally {
      await cli.stop();
      await proxy.stop();
    }
  });

  test('credentials the store refuses stop the start: one line, exit 3, no secret in output', async () => {
    const secret = 'TopSecretValueThatMustNotAppear42';
    const cli = startCli(['--remote', 's3://catalog/images'], { ...env(), AWS_ACCESS_KEY_ID: 'NOSUCHKEY', AWS_SECRET_ACCESS_KEY: secret });
    const err = await cli.then(
      (c) => (void c.stop(), undefined),
      (e: Error) => e.message,
    );
    assert.ok(err, 'the server started with refused credentials');
    assert.match(err!, /exited 3/);
    assert.match(err!, /s3:\/\/catalog\/images\/: listing failed: access denied \(HTTP 403 InvalidAccessKeyId\): check AWS_ACCESS_KEY_ID/);
    assert.ok(!err!.includes(secret));
    assert.ok(!err!.includes(AZ_ACCOUNT + ';AccountKey'));
  });
});
