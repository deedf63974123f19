/**
 * cosi-server --netboot-dir: the installer's kernel and initramfs served at
 * /netboot/NAME with ranges and a strong ETag, nothing outside the folder,
 * a clear 404 when unconfigured; and boot.ipxe keeping tftp:// URLs as they
 * are. (The VM test, npm run test:netboot, boots from these.)
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { get, type IncomingMessage } from 'node:http';
import { copyFile, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, type RunningServer } from '../server/server.js';
import { packedDisk, SMALL } from './fixtures.js';
import { http, json } from './server-helpers.js';

let dir: string;
let srv: RunningServer;
let bare: RunningServer;
const kernel = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7) & 0xff));

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cosi-netboot-files-'));
  await mkdir(join(dir, 'catalog'));
  await mkdir(join(dir, 'nb'));
  await writeFile(join(dir, 'catalog', 'secret.txt'), 'outside the netboot folder\n');
  await writeFile(join(dir, 'nb', 'vmlinuz'), kernel);
  await writeFile(join(dir, 'nb', '.hidden'), 'x');
  const { cosi } = await packedDisk(SMALL);
  await copyFile(cosi, join(dir, 'catalog', 'small.cosi'));
  const common = { root: join(dir, 'catalog'), port: 0, log: false as const, rescanSeconds: 0, watch: false };
  srv = await startServer({ ...common, netbootDir: join(dir, 'nb'), ipxeKernel: 'tftp://192.0.2.1/vmlinuz', ipxeInitrd: '/netboot/initrd.img' });
  bare = await startServer(common);
});

after(async () => {
  await Promise.all([srv?.close(500), bare?.close(500)]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('--netboot-dir', () => {
  test('serves a file whole, by range and by HEAD, with a strong ETag and Content-Length', async () => {
    const whole = await http(srv.url, '/netboot/vmlinuz');
    assert.equal(whole.status, 200);
    assert.ok(whole.body.equals(kernel));
    assert.equal(whole.headers['content-length'], String(kernel.length));
    assert.match(String(whole.headers['etag']), /^"[^"]+"$/);
    assert.equal(whole.headers['accept-ranges'], 'bytes');
    const part = await http(srv.url, '/netboot/vmlinuz', { headers: { Range: 'bytes=1000-1999' } });
    assert.equal(part.status, 206);
    assert.ok(part.body.equals(kernel.subarray(1000, 2000)));
    const head = await http(srv.url, '/netboot/vmlinuz', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    assert.equal(head.headers['content-length'], String(kernel.length));
  });

  test('a file replaced on disk is served at once, under a new ETag', async () => {
    const before = await http(srv.url, '/netboot/initrd.img');
    assert.equal(before.status, 404);
    await writeFile(join(dir, 'nb', 'initrd.img'), 'first');
    const a = await http(srv.url, '/netboot/initrd.img');
    assert.equal(a.body.toString(), 'first');
    await new Promise((r) => setTimeout(r, 20));
    await writeFile(join(dir, 'nb', 'initrd.img'), 'second build');
    const b = await http(srv.url, '/netboot/initrd.img');
    assert.equal(b.body.toString(), 'second build');
    assert.notEqual(a.headers['etag'], b.headers['etag']);
  });

  test('a rebuild renamed into place mid-download: every part comes from the file the headers named', async () => {
    const big = Buffer.alloc(8 << 20, 0xaa);
    await writeFile(join(dir, 'nb', 'big.img'), big);
    // Two parts: the second is read only after the first has gone out, well after the rename below.
    const half = big.length / 2;
    const res = await new Promise<IncomingMessage>((resolve, reject) =>
      get(`${srv.url}/netboot/big.img`, { headers: { Range: `bytes=0-${half - 1},${half}-${big.length - 1}` } }, resolve).on('error', reject),
    );
    res.pause();
    assert.equal(res.statusCode, 206);
    // The new build replaces the name (as build-initramfs.sh's mv does) while the first part is in flight.
    await writeFile(join(dir, 'nb', '.big.tmp'), Buffer.alloc(8 << 20, 0xbb));
    await rename(join(dir, 'nb', '.big.tmp'), join(dir, 'nb', 'big.img'));
    const got: Buffer[] = [];
    res.on('data', (c: Buffer) => got.push(c));
    res.resume();
    await new Promise((resolve) => res.on('end', resolve));
    const body = Buffer.concat(got);
    const count = (b: number) => body.reduce((n, x) => n + (x === b ? 1 : 0), 0);
    assert.equal(count(0xbb), 0, 'no byte of the new build');
    assert.equal(count(0xaa), big.length, 'every byte of the old one');
    const next = await http(srv.url, '/netboot/big.img', { method: 'HEAD' });
    assert.notEqual(next.headers['etag'], res.headers['etag']);
  });

  test('nothing outside the folder, no hidden files, no subpaths', async () => {
    for (const p of ['/netboot/..%2fcatalog%2fsecret.txt', '/netboot/%2e%2e%2fcatalog%2fsecret.txt', '/netboot/.hidden', '/netboot/nope', '/netboot/a/b']) {
      const r = await http(srv.url, p);
      assert.equal(r.status, 404, p);
      assert.doesNotMatch(r.body.toString(), /outside the netboot folder/, p);
    }
  });

  test('without --netboot-dir, /netboot/ answers 404 NOT_CONFIGURED naming the flag', async () => {
    const r = await http(bare.url, '/netboot/vmlinuz');
    assert.equal(r.status, 404);
    assert.equal(json(r).error.code, 'NOT_CONFIGURED');
    assert.match(json(r).error.message, /--netboot-dir/);
  });

  test('a --netboot-dir that is not a directory stops the start with a usage error', async () => {
    await assert.rejects(startServer({ root: join(dir, 'catalog'), port: 0, log: false, rescanSeconds: 0, watch: false, netbootDir: join(dir, 'nb', 'vmlinuz') }), (e: any) => {
      assert.equal(e.code, 'COSI_ERR_USAGE');
      assert.match(e.message, /--netboot-dir .* is not a directory/);
      return true;
    });
  });

  test('boot.ipxe keeps a tftp:// kernel URL and resolves a path on this server', async () => {
    const text = (await http(srv.url, '/v1/images/small/boot.ipxe', { headers: { Host: 'pxe.lan:8080' } })).body.toString();
    assert.match(text, /^kernel tftp:\/\/192\.0\.2\.1\/vmlinuz initrd=initrd\.img /m);
    assert.match(text, /^initrd --name initrd\.img http:\/\/pxe\.lan:8080\/netboot\/initrd\.img /m);
  });
});
