/**
 * Remote catalogs over real HTTP: a real nginx serves fixture .cosi files as
 * the origin; cosi-server lists them next to local files (indexed by range
 * reads of headers only), proxies their bytes with the same range semantics,
 * re-indexes a replaced origin file, and with --redirect sends /cosi/ to the
 * origin, which curl -L and cosi-fetch follow.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseGpt } from '../shared/disk/gpt.js';
import { closeSharedAgents } from '../shared/transport/http/agent.js';
import { parseConfig } from '../server/config.js';
import { parseRemoteList } from '../server/catalog/remote-spec.js';
import { startServer, type RunningServer } from '../server/server.js';
import { packedDisk, pythonTarOffsets, REPO, FILLED, SMALL, SMALL_4K, type DiskRecipe, type PackedFixture } from './fixtures.js';
import { startNginx } from './nginx.js';
import { http, json, parseMultipart, run, fileRange, startCli } from './server-helpers.js';

const FETCH_CLI = join(REPO, 'dist', 'client', 'cli.js');
/** Shared with the client tests' cache: 3 MiB of data in the root filesystem, so the archive is much larger than its head. */
const HEAD_BYTES = 64 * 1024;
const sha384 = (b: Buffer) => createHash('sha384').update(b).digest('hex');

let work: string;
let origin: Awaited<ReturnType<typeof startNginx>>;
let srv: RunningServer;
let small: PackedFixture;
let small4k: PackedFixture;
let filled: PackedFixture;
let smallBytes: Buffer;
let small4kBytes: Buffer;
let logLines: Array<Record<string, unknown>>;

/** The decompressed bytes of partition `n` as they sit on the fixture's source disk. */
async function diskPartition(fx: PackedFixture, n: number, lbaSize: 512 | 4096, length: number): Promise<Buffer> {
  const gpt = parseGpt(await fileRange(fx.disk, 0, 64 * 1024), { lbaSize });
  return fileRange(fx.disk, gpt.partitions.find((p) => p.number === n)!.offset, length);
}

before(async () => {
  small = await packedDisk(SMALL);
  small4k = await packedDisk(SMALL_4K);
  filled = await packedDisk(FILLED);
  smallBytes = await readFile(small.cosi);
  small4kBytes = await readFile(small4k.cosi);
  work = await mkdtemp(join(tmpdir(), 'cosi-remote-test-'));
  const www = join(work, 'www');
  await mkdir(join(www, 'images'), { recursive: true });
  await mkdir(join(www, 'lab'), { recursive: true });
  await copyFile(small.cosi, join(www, 'images', 'small.cosi'));
  await copyFile(small4k.cosi, join(www, 'lab', 'small4k.cosi'));
  await copyFile(small.cosi, join(www, 'lab', 'spare.cosi'));
  await copyFile(filled.cosi, join(www, 'images', 'filled.cosi'));
  const local = join(work, 'local');
  await mkdir(local);
  await copyFile(small.cosi, join(local, 'local.cosi'));
  origin = await startNginx(www);
  await writeFile(join(work, 'remotes.txt'), `# remote catalog\n\nsmall4k=${origin.url}/lab/small4k.cosi\n${origin.url}/missing/broken.cosi\n`);
  logLines = [];
  srv = await startServer({
    root: local,
    remotes: [
      { id: 'images/small', url: `${origin.url}/images/small.cosi` },
      { id: 'images/filled', url: `${origin.url}/images/filled.cosi` },
    ],
    remoteList: join(work, 'remotes.txt'),
    port: 0,
    rescanSeconds: 0,
    watch: false,
    log: (l) => void logLines.push(l),
  });
});

after(async () => {
  await srv?.close(1000);
  await origin?.stop();
  await closeSharedAgents();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('remote catalog, proxied', () => {
  test('remote archives are listed next to local ones; an unreachable one is listed with its reason', async () => {
    const body = json(await http(srv.url, '/v1/images'));
    assert.deepEqual(
      body.images.map((i: any) => i.id),
      ['local', 'images/filled', 'images/small', 'missing/broken', 'small4k'].sort((a, b) => a.localeCompare(b)),
    );
    const byId = Object.fromEntries(body.images.map((i: any) => [i.id, i]));
    assert.equal(byId['local'].remote, undefined);
    for (const id of ['images/small', 'small4k']) {
      assert.equal(byId[id].remote, true, id);
      assert.equal(byId[id].valid, true, id);
      assert.equal(byId[id].rawUrl, `/cosi/${id}.cosi`);
    }
    assert.equal(byId['images/small'].size, smallBytes.length);
    assert.equal(byId['images/small'].metadataSha384, byId['local'].metadataSha384);
    assert.equal(byId['small4k'].disk.lbaSize, 4096);
    assert.equal(byId['missing/broken'].valid, false);
    assert.match(byId['missing/broken'].reason, /404/);
    assert.notEqual(byId['images/small'].etag, byId['local'].etag);
  });

  test('indexing read only the marker, metadata, tar headers and the GPT image, by range', async () => {
    const size = (await readFile(filled.cosi)).length;
    const offsets = await pythonTarOffsets(filled.cosi);
    const metaEntry = offsets.find((o) => o.name === 'metadata.json')!;
    const meta = JSON.parse((await fileRange(filled.cosi, metaEntry.offsetData, metaEntry.size)).toString('utf8'));
    const gptPath: string = meta.disk.gptRegions.find((r: any) => r.type === 'primary-gpt').image.path;
    // Reads start at the archive head, a tar header, metadata.json or the GPT image, never inside partition data,
    // and each is at most one header-walk chunk: the cost follows the entry count, not the archive size.
    const starts = new Set([0, ...offsets.map((o) => o.offset), metaEntry.offsetData, offsets.find((o) => o.name === gptPath)!.offsetData]);
    assert.ok(offsets.filter((o) => o.name.startsWith('images/')).reduce((n, e) => n + e.size, 0) > 1 << 20, 'the fixture has megabytes of partition data');
    const lines = (await origin.accessLog()).split('\n').filter((l) => l.includes(' /images/filled.cosi '));
    assert.ok(lines.length > 0);
    let gets = 0;
    for (const l of lines) {
      const m = /^(GET|HEAD) \S+ "([^"]*)"/.exec(l)!;
      if (m[1] === 'HEAD') continue;
      gets++;
      const r = /^bytes=(\d+)-(\d+)$/.exec(m[2]!);
      assert.ok(r, `every GET is ranged: ${l}`);
      const [a, b] = [Number(r[1]), Number(r[2])];
      assert.ok(starts.has(a), `read ${a}-${b} starts inside partition data`);
      assert.ok(b - a + 1 <= HEAD_BYTES, `read ${a}-${b} is larger than a header chunk`);
    }
    assert.ok(gets <= offsets.length + 2, `${gets} reads for ${offsets.length} entries`);
    const ev = logLines.find((l) => l['event'] === 'indexed' && l['id'] === 'images/filled')!;
    assert.ok((ev['bytes'] as number) < size / 4, `indexing read ${ev['bytes']} of ${size} bytes`);
  });

  test('partitions, metadata, blobs and the raw archive come through with the origin bytes and full range semantics', async () => {
    const img = json(await http(srv.url, '/v1/images/images/small'));
    const meta = await http(srv.url, '/v1/images/images/small/metadata.json');
    assert.equal(meta.status, 200);
    assert.equal(sha384(meta.body), img.metadataSha384);
    for (const p of img.partitions) {
      const r = await http(srv.url, `/v1/images/images/small/partitions/${encodeURIComponent(p.selector)}`);
      assert.equal(r.status, 200, p.selector);
      assert.deepEqual(r.body, smallBytes.subarray(p.dataOffset, p.dataOffset + p.storedSize), p.selector);
      assert.equal(r.headers['content-length'], String(p.storedSize));
      assert.equal(r.headers['x-cosi-sha384'], p.sha384);
      assert.equal(r.headers['x-cosi-origin'], undefined, 'no origin disclosure without --redirect');
    }
    const root = img.partitions.find((p: any) => p.selector === 'root');
    const whole = smallBytes.subarray(root.dataOffset, root.dataOffset + root.storedSize);
    const path = `/v1/images/images/small/partitions/root`;
    const r1 = await http(srv.url, path, { headers: { Range: 'bytes=10-99' } });
    assert.equal(r1.status, 206);
    assert.equal(r1.headers['content-range'], `bytes 10-99/${whole.length}`);
    assert.deepEqual(r1.body, whole.subarray(10, 100));
    const suffix = await http(srv.url, path, { headers: { Range: 'bytes=-50' } });
    assert.deepEqual(suffix.body, whole.subarray(whole.length - 50));
    const multi = await http(srv.url, path, { headers: { Range: 'bytes=0-9,200-209' } });
    assert.equal(multi.status, 206);
    const parts = parseMultipart(String(multi.headers['content-type']), multi.body);
    assert.deepEqual(parts.map((x) => x.body), [whole.subarray(0, 10), whole.subarray(200, 210)]);
    const etag = r1.headers.etag!;
    assert.equal((await http(srv.url, path, { headers: { 'If-None-Match': etag } })).status, 304);
    const stale = await http(srv.url, path, { headers: { Range: 'bytes=0-9', 'If-Range': '"other"' } });
    assert.equal(stale.status, 200, 'If-Range with another tag: the whole body');
    const bad = await http(srv.url, path, { headers: { Range: `bytes=${whole.length}-` } });
    assert.equal(bad.status, 416);
    assert.equal(bad.headers['content-range'], `bytes */${whole.length}`);
    const head = await http(srv.url, path, { method: 'HEAD' });
    assert.equal(head.headers['content-length'], String(whole.length));
    assert.equal(head.body.length, 0);

    // Decompressed on the server from the proxied bytes: the source disk's partition.
    const dec = await http(srv.url, `/v1/images/images/small/partitions/${root.number}?decompress=1`);
    assert.equal(dec.status, 200);
    assert.ok(dec.complete);
    assert.ok(dec.body.equals(await diskPartition(small, root.number, 512, root.uncompressedSize)));

    // The 4K image lives only on the origin: its blob is served from there.
    const img4k = json(await http(srv.url, '/v1/images/small4k'));
    const esp = img4k.partitions.find((p: any) => p.selector === 'esp');
    const blob = await http(srv.url, `/v1/blobs/sha384/${esp.sha384}`);
    assert.equal(blob.status, 200);
    assert.equal(sha384(blob.body), esp.sha384);
    assert.deepEqual(blob.body, small4kBytes.subarray(esp.dataOffset, esp.dataOffset + esp.storedSize));

    // The raw archive, whole and by range.
    const raw = await http(srv.url, '/cosi/images/small.cosi');
    assert.equal(raw.status, 200);
    assert.ok(raw.body.equals(smallBytes));
    assert.equal(raw.headers['x-cosi-metadata-sha384'], img.metadataSha384);
    const rawRange = await http(srv.url, '/cosi/small4k.cosi', { headers: { Range: 'bytes=512-1535' } });
    assert.equal(rawRange.status, 206);
    assert.deepEqual(rawRange.body, small4kBytes.subarray(512, 1536));
    // The unreachable one has nothing to serve.
    assert.equal((await http(srv.url, '/v1/images/missing/broken/partitions/root')).status, 422);
  });

  test('a replaced origin file is never spliced: the transfer is cut, and the archive is indexed again', async () => {
    const www = join(work, 'www', 'lab');
    const before = json(await http(srv.url, '/v1/images/small4k'));
    // Atomic replacement on the origin, with other content (the 512-byte-sector archive).
    await copyFile(small.cosi, join(www, '.next'));
    // nginx's ETag is mtime (in seconds) and size: a same-size file replaced within the second it was
    // written would keep its ETag, and no client could tell. Give the new file its own second.
    const later = new Date(Date.now() + 5000);
    await utimes(join(www, '.next'), later, later);
    await rename(join(www, '.next'), join(www, 'small4k.cosi'));
    // The headers may not even be out when the origin refuses: a reset before the status line is a cut too.
    const cut = (await http(srv.url, "/cosi/small4k.cosi").catch(() => undefined)) ?? { status: 0, complete: false, body: Buffer.alloc(0) };
    // Either the transfer is cut (the server still had the old record), or a rescan re-indexed the
    // origin first and the new bytes come whole under a new ETag: never old offsets over new bytes.
    const servedWhole = cut.status === 200 && cut.complete;
    if (servedWhole) {
      assert.ok(cut.body.equals(smallBytes), 'a complete answer is exactly the new file');
      assert.notEqual(cut.headers.etag, before.etag, 'new bytes only ever under a new ETag');
    }
    assert.ok(!(cut.status === 200 && cut.complete && cut.body.equals(small4kBytes)), 'the old bytes are gone from the origin');
    // The failed transfer queued a re-index; a rescan would do it too.
    let now = before;
    for (let i = 0; i < 100 && now.metadataSha384 === before.metadataSha384; i++) {
      await sleep(50);
      now = json(await http(srv.url, '/v1/images/small4k'));
    }
    assert.notEqual(now.metadataSha384, before.metadataSha384);
    assert.equal(now.disk.lbaSize, 512);
    assert.notEqual(now.etag, before.etag);
    const raw = await http(srv.url, '/cosi/small4k.cosi');
    assert.ok(raw.complete && raw.body.equals(smallBytes));
    if (!servedWhole) assert.ok(logLines.some((l) => l['event'] === 'remote-changed' && l['id'] === 'small4k'));

    // The list file is re-read on a rescan: entries come and go without a restart.
    await writeFile(join(work, 'remotes.txt'), `spare=${origin.url}/lab/spare.cosi\n`);
    await srv.catalog.rescanAll();
    const ids = json(await http(srv.url, '/v1/images')).images.map((i: any) => i.id);
    assert.deepEqual(ids, ['images/filled', 'images/small', 'local', 'spare']);
  });
});

describe('--redirect', () => {
  test('/cosi/ of a remote answers 307 to the origin; curl -L and cosi-fetch get the right bytes', async () => {
    const list = join(work, 'redirect-list.txt');
    await writeFile(list, `${origin.url}/images/small.cosi\n`);
    const cli = await startCli(['--redirect'], { COSI_REMOTE_LIST: list, COSI_CACHE_DIR: join(work, 'cache') });
    try {
      const listing = json(await http(cli.url, '/v1/images'));
      assert.deepEqual(listing.images.map((i: any) => i.id), ['images/small'], 'remote only: no sample catalog');
      const img = json(await http(cli.url, '/v1/images/images/small'));

      for (const method of ['GET', 'HEAD']) {
        const r = await http(cli.url, '/cosi/images/small.cosi', { method, headers: { Range: 'bytes=0-99' } });
        assert.equal(r.status, 307, method);
        assert.equal(r.headers.location, `${origin.url}/images/small.cosi`);
        assert.equal(r.headers['x-cosi-metadata-sha384'], img.metadataSha384);
      }
      const out = join(work, 'curl.cosi');
      const c = await run('curl', ['-fsSL', '-o', out, `${cli.url}/cosi/images/small.cosi`]);
      assert.equal(c.code, 0, c.stderr);
      assert.ok((await readFile(out)).equals(smallBytes));
      const cr = await run('curl', ['-fsSL', '-r', '100-199', `${cli.url}/cosi/images/small.cosi`]);
      assert.deepEqual(cr.stdout, smallBytes.subarray(100, 200), 'a range survives the redirect');

      // Partitions are sub-ranges of the origin file: proxied, and the headers say where they sit.
      const root = img.partitions.find((p: any) => p.selector === 'root');
      const part = await http(cli.url, '/v1/images/images/small/partitions/root');
      assert.equal(part.status, 200);
      assert.deepEqual(part.body, smallBytes.subarray(root.dataOffset, root.dataOffset + root.storedSize));
      assert.equal(part.headers['x-cosi-origin'], `${origin.url}/images/small.cosi`);
      const direct = await run('curl', ['-fsS', '-H', `Range: ${part.headers['x-cosi-origin-range']}`, String(part.headers['x-cosi-origin'])]);
      assert.deepEqual(direct.stdout, part.body, 'X-Cosi-Origin-Range names the same bytes on the origin');

      // The client follows the redirect and reads the origin by range.
      const img2 = join(work, 'root.img');
      const f = await run(process.execPath, [FETCH_CLI, '--partition', 'root', '-o', img2, '--progress', 'none', `${cli.url}/cosi/images/small.cosi`]);
      assert.equal(f.code, 0, f.stderr);
      assert.ok((await readFile(img2)).equals(await diskPartition(small, root.number, 512, root.uncompressedSize)));
      const originGets = (await origin.accessLog()).split('\n').filter((l) => l.startsWith('GET /images/small.cosi') && l.includes('"bytes='));
      assert.ok(originGets.length > 0, 'cosi-fetch read the origin by range');
    } finally {
      await cli.stop();
    }
  });
});

describe('configuration', () => {
  test('--remote, NAME=URL, COSI_REMOTE, --remote-list and their errors', () => {
    const p = parseConfig(['--remote', 'http://cdn.example/os/a%20b/v1.cosi', '--remote', 'stable=https://cdn.example/x?sig=a=b', '--redirect'], {});
    assert.ok(!p.help);
    assert.deepEqual(p.config.remotes, [
      { id: 'os/a b/v1', url: 'http://cdn.example/os/a%20b/v1.cosi' },
      { id: 'stable', url: 'https://cdn.example/x?sig=a=b' },
    ]);
    assert.equal(p.config.redirect, true);
    const e = parseConfig([], { COSI_REMOTE: 'http://h/a.cosi  b=http://h/c', COSI_REMOTE_LIST: '/etc/list', COSI_REDIRECT: '1' });
    assert.ok(!e.help);
    assert.deepEqual(e.config.remotes.map((r) => r.id), ['a', 'b']);
    assert.equal(e.config.remoteList, '/etc/list');
    assert.equal(e.config.redirect, true);
    for (const [args, msg] of [
      [['--remote', 'http://h/a.tar'], /does not end in \.cosi/],
      [['--remote', 'ftp://h/a.cosi'], /http\(s\)/],
      [['--remote', 'http://h/a.cosi', '--remote', 'http://other/a.cosi'], /two remotes are named "a"/],
      [['--remote', '../x=http://h/a.cosi'], /not a usable image id/],
    ] as const) {
      assert.throws(() => parseConfig([...args], {}), (err: any) => err.code === 'COSI_ERR_USAGE' && msg.test(err.message), args.join(' '));
    }
    assert.deepEqual(parseRemoteList('# c\n\n  http://h/x/y.cosi \r\nn=http://h/z\n', 'l'), [
      { id: 'x/y', url: 'http://h/x/y.cosi' },
      { id: 'n', url: 'http://h/z' },
    ]);
    assert.throws(() => parseRemoteList('http://h/a.cosi\nhttp://g/a.cosi\n', 'list.txt'), /list\.txt:2: the id "a" is already used on line 1/);
  });
});
