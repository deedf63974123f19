/**
 * boot.ipxe and plan.txt over real HTTP: the iPXE script's kernel line
 * carries what deploy/netboot/install.sh reads, URLs are absolute (from the
 * Host header, or --public-url), and the plan names each region's disk
 * offset from the image's own GPT. (test/deploy.test.ts runs install.sh
 * against this plan end to end.)
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { parseGpt } from '../shared/disk/gpt.js';
import { parseConfig } from '../server/config.js';
import { startServer, type RunningServer } from '../server/server.js';
import { packedDisk, SMALL, SMALL_4K, type PackedFixture } from './fixtures.js';
import { http, json, tempCatalog, fileRange } from './server-helpers.js';

let srv: RunningServer;
let bare: RunningServer;
let fronted: RunningServer;
let cleanup: () => Promise<void>;
let small: PackedFixture;
let small4k: PackedFixture;

before(async () => {
  small = await packedDisk(SMALL);
  small4k = await packedDisk(SMALL_4K);
  const cat = await tempCatalog({ 'os/small.cosi': small.cosi, 'small4k.cosi': small4k.cosi });
  cleanup = cat.cleanup;
  const common = { root: cat.dir, port: 0, log: false as const, rescanSeconds: 0, watch: false };
  srv = await startServer({ ...common, ipxeKernel: '/netboot/vmlinuz', ipxeInitrd: 'http://boot.example/initrd.img', ipxeCmdline: 'console=ttyS0,115200n8 quiet', ipxeDisk: '/dev/nvme0n1' });
  bare = await startServer(common);
  fronted = await startServer({ ...common, publicUrl: 'https://cdn.example/os-images', ipxeKernel: 'https://k.example/vmlinuz', ipxeInitrd: '/nb/initrd.img' });
});

after(async () => {
  await Promise.all([srv?.close(500), bare?.close(500), fronted?.close(500)]);
  await cleanup?.();
});

describe('boot.ipxe', () => {
  test('an iPXE script whose kernel line carries cosi.url, cosi.sha384 and cosi.disk, with URLs from the Host header', async () => {
    const img = json(await http(srv.url, '/v1/images/os/small'));
    const r = await http(srv.url, '/v1/images/os/small/boot.ipxe', { headers: { Host: 'pxe.lan:8080' } });
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /^text\/plain/);
    assert.equal(r.headers['cache-control'], 'no-cache');
    const text = r.body.toString('utf8');
    assert.match(text, /^#!ipxe\n/);
    const kernel = /^kernel (\S+) (.*) \|\| goto failed$/m.exec(text);
    assert.ok(kernel, text);
    assert.equal(kernel[1], 'http://pxe.lan:8080/netboot/vmlinuz', 'a path is resolved on this server');
    assert.deepEqual(kernel[2]!.split(' '), [
      'initrd=initrd.img',
      'console=ttyS0,115200n8',
      'quiet',
      'cosi.url=http://pxe.lan:8080/cosi/os/small.cosi',
      `cosi.sha384=${img.metadataSha384}`,
      'cosi.disk=/dev/nvme0n1',
    ]);
    assert.match(text, /^initrd --name initrd\.img http:\/\/boot\.example\/initrd\.img \|\| goto failed$/m);
    assert.match(text, /^boot \|\| goto failed$/m);
    assert.match(text, /^:failed$/m);
    assert.equal(img.metadataSha384, createHash('sha384').update((await http(srv.url, '/v1/images/os/small/metadata.json')).body).digest('hex'));
    // HEAD works like every GET route.
    const head = await http(srv.url, '/v1/images/os/small/boot.ipxe', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
  });

  test('--public-url wins over Host, and keeps its path prefix', async () => {
    const text = (await http(fronted.url, '/v1/images/small4k/boot.ipxe', { headers: { Host: 'ignored:1' } })).body.toString();
    assert.match(text, /^kernel https:\/\/k\.example\/vmlinuz initrd=initrd\.img cosi\.url=https:\/\/cdn\.example\/os-images\/cosi\/small4k\.cosi cosi\.sha384=[0-9a-f]{96} \|\| goto failed$/m);
    assert.match(text, /^initrd --name initrd\.img https:\/\/cdn\.example\/os-images\/nb\/initrd\.img /m);
    assert.match(text, /No cosi\.disk= is configured/);
    const plan = (await http(fronted.url, '/v1/images/small4k/plan.txt')).body.toString();
    assert.match(plan, /^metadata [0-9a-f]{96} https:\/\/cdn\.example\/os-images\/v1\/images\/small4k\/metadata\.json$/m);
  });

  test('not configured: 404 with a clear JSON error; unknown images and unusable Host headers are refused', async () => {
    const r = await http(bare.url, '/v1/images/os/small/boot.ipxe');
    assert.equal(r.status, 404);
    assert.equal(json(r).error.code, 'NOT_CONFIGURED');
    assert.match(json(r).error.message, /--ipxe-kernel/);
    assert.equal(json(await http(srv.url, '/v1/images/nope/boot.ipxe')).error.code, 'NOT_FOUND');
    // Not a host at all (RFC 9112 §3.2): refused before any route.
    const evil = await http(srv.url, '/v1/images/os/small/boot.ipxe', { headers: { Host: 'x${evil}' } });
    assert.equal(evil.status, 400);
    assert.equal(json(evil).error.code, 'BAD_REQUEST');
    // A valid Host that must not go into an iPXE script.
    const odd = await http(srv.url, '/v1/images/os/small/boot.ipxe', { headers: { Host: 'x$evil' } });
    assert.equal(odd.status, 400);
    assert.match(json(odd).error.message, /--public-url/);
  });

  test('flags are checked: kernel and initrd together, one-word values', () => {
    assert.throws(() => parseConfig(['--ipxe-kernel', '/k'], {}), /go together/);
    assert.throws(() => parseConfig(['--ipxe-kernel', '/k ${x}', '--ipxe-initrd', '/i'], {}), /one word/);
    assert.throws(() => parseConfig(['--public-url', 'http://h/?q=1'], {}), /plain http\(s\) base URL/);
    const p = parseConfig([], { COSI_IPXE_KERNEL: '/k', COSI_IPXE_INITRD: '/i', COSI_IPXE_CMDLINE: ' a=1  b ', COSI_IPXE_DISK: '/dev/sda', COSI_PUBLIC_URL: 'http://h:1/p/' });
    assert.ok(!p.help);
    assert.deepEqual([p.config.ipxeKernel, p.config.ipxeInitrd, p.config.ipxeCmdline, p.config.ipxeDisk, p.config.publicUrl], ['/k', '/i', 'a=1 b', '/dev/sda', 'http://h:1/p']);
  });
});

describe('plan.txt', () => {
  for (const [id, fx] of [['os/small', () => small], ['small4k', () => small4k]] as const) {
    test(`${id}: the install plan in install.sh's format, and every URL in it serves its region's bytes`, async () => {
      const r = await http(srv.url, `/v1/images/${id}/plan.txt`);
      assert.equal(r.status, 200);
      assert.match(String(r.headers['content-type']), /^text\/plain/);
      const lines = r.body.toString('utf8').trimEnd().split('\n');
      const img = json(await http(srv.url, `/v1/images/${id}`));
      const base = srv.url;
      assert.equal(lines[0], 'cosi-plan 1');
      assert.equal(lines[1], `metadata ${img.metadataSha384} ${base}/v1/images/${id}/metadata.json`);
      assert.equal(lines[2], `disk ${img.disk.size} ${img.disk.lbaSize}`);
      const gpt = parseGpt(await fileRange(fx().disk, 0, 64 * 1024), { lbaSize: img.disk.lbaSize });
      const regions = lines.slice(3).map((l) => l.split(' '));
      assert.deepEqual(regions[0]!.slice(0, 3), ['region', 'primary-gpt', '0']);
      assert.equal(regions[0]![5], `${base}/v1/images/${id}/partitions/primary-gpt?decompress=1`);
      assert.equal(regions.length, img.partitions.filter((p: any) => p.number !== undefined).length + 1);
      for (const [word, name, off, bytes, sha, url] of regions) {
        assert.equal(word, 'region');
        if (name !== 'primary-gpt') {
          const gp = gpt.partitions.find((p) => p.number === Number(name))!;
          assert.equal(Number(off), gp.offset, `partition ${name} offset is startLBA × lbaSize`);
          assert.equal(url, `${base}/v1/images/${id}/partitions/${name}?decompress=1`);
          const part = img.partitions.find((p: any) => p.number === Number(name));
          assert.equal(sha, part.sha384);
          assert.equal(Number(bytes), part.uncompressedSize);
        }
        const got = await http(srv.url, new URL(url!).pathname + new URL(url!).search);
        assert.equal(got.status, 200, url);
        assert.equal(got.body.length, Number(bytes));
        assert.ok(got.body.equals(await fileRange(fx().disk, Number(off), Number(bytes))), `${name}: the source disk's bytes`);
      }
    });
  }

  test('unknown images are 404', async () => {
    assert.equal((await http(srv.url, '/v1/images/nope/plan.txt')).status, 404);
  });
});
