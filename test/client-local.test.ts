/**
 * cosi-fetch against local paths: byte-exact partitions and disks, sparse
 * output, shrunk filesystems and --grow, 4 KiB sectors, archives from other
 * tar writers, and every class of broken input.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, open as fsOpen, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { open } from '../client/index.js';
import { hasNodeZstd } from '../shared/zstd/index.js';
import { extract, foreignArchive, PACK_CLI, packedDisk, sh, SHRINKABLE, SMALL, SMALL_4K, SPARSE_BIG, type DiskRecipe, type ForeignFormat, sameBytes } from './fixtures.js';
import { checkDisk, errorLine, listDir, pyTar, runFetch, freshDirs } from './client-helpers.js';

const work = await mkdtemp(join(tmpdir(), 'cosi-fetch-local-'));
after(() => rm(work, { recursive: true, force: true }));
const fresh = freshDirs(work);

/** Each partition's GPT placement, via the library (checked against sgdisk elsewhere). */
async function layout(cosi: string) {
  const img = await open(cosi);
  try {
    return { parts: img.partitions, disk: img.metadata.disk!, sha: img.metadataSha384 };
  } finally {
    await img.close();
  }
}

test('one partition by selector is byte-exact with the source disk, and no temporary is left', async () => {
  const fx = await packedDisk(SMALL);
  const dir = await fresh();
  const out = join(dir, 'root.img');
  const r = await runFetch(['--partition', 'root', '-o', out, '--json', fx.cosi]);
  assert.equal(r.code, 0, r.stderr);
  const summary = JSON.parse(r.stdout);
  const { parts } = await layout(fx.cosi);
  const root = parts.find((p) => p.mountPoint === '/')!;
  assert.equal(summary.partitions[0].path, root.path);
  assert.equal((await stat(out)).size, root.image.uncompressedSize);
  assert.ok(await sameBytes(out, 0, fx.disk, root.gptPartition!.offset, root.gptPartition!.size));
  assert.deepEqual(await listDir(dir), ['root.img']);
  // Sparse: the mostly-empty ext4 image takes far less space than its size.
  assert.ok((await stat(out)).blocks * 512 < root.image.uncompressedSize / 2);
  await sh('e2fsck', ['-fn', out]);
});

test('several partitions with -o DIR, selected by type, mount point and number', async () => {
  const fx = await packedDisk(SMALL);
  const dir = await fresh();
  const r = await runFetch(['-p', 'esp', '-p', '/srv', '-p', '2', '-o', dir, '--jobs', '3', '--json', fx.cosi]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await listDir(dir), ['esp.img', 'root.img', 'srv.img']);
  const { parts } = await layout(fx.cosi);
  for (const [file, mount] of [['esp.img', '/boot/efi'], ['root.img', '/'], ['srv.img', '/srv']] as const) {
    const p = parts.find((q) => q.mountPoint === mount)!;
    assert.ok(await sameBytes(join(dir, file), 0, fx.disk, p.gptPartition!.offset, p.gptPartition!.size), file);
  }
  assert.equal(JSON.parse(r.stdout).partitions.length, 3);
});

test('a selector that matches nothing lists the choices and exits 2', async () => {
  const fx = await packedDisk(SMALL);
  const r = await runFetch(['-p', 'home', '-o', await fresh(), fx.cosi]);
  assert.equal(r.code, 2);
  assert.match(errorLine(r), /no partition matches 'home'; choices: esp .*root .*srv/);
});

test('--disk to a file: sgdisk -v passes, every region byte-identical, sparse', async () => {
  const fx = await packedDisk(SMALL);
  const out = join(await fresh(), 'disk.img');
  const r = await runFetch(['--disk', '-o', out, '--verify-after', '--json', fx.cosi]);
  assert.equal(r.code, 0, r.stderr);
  await checkDisk(fx, out);
  const s = JSON.parse(r.stdout);
  assert.equal(s.mode, 'disk');
  assert.ok(s.partitions.every((p: { verifiedAfter: boolean }) => p.verifiedAfter));
});

test('--disk with 4 KiB sectors', async () => {
  const fx = await packedDisk(SMALL_4K);
  const out = join(await fresh(), 'disk4k.img');
  const r = await runFetch(['--disk', '-o', out, fx.cosi]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await layout(fx.cosi)).disk.lbaSize, 4096);
  // sgdisk assumes 512-byte sectors on files: compare bytes and let fdisk read the table.
  const { parts, disk } = await layout(fx.cosi);
  assert.ok(await sameBytes(out, 0, fx.disk, 0, 6 * 4096));
  for (const p of parts) assert.ok(await sameBytes(out, p.gptPartition!.offset, fx.disk, p.gptPartition!.offset, p.gptPartition!.size), p.path);
  const tail = 6 * 4096;
  assert.ok(await sameBytes(out, disk.size - tail, fx.disk, disk.size - tail, tail), 'backup GPT');
  const listing = await sh('fdisk', ['-b', '4096', '-l', out]);
  assert.match(listing, /Disklabel type: gpt/);
});

// 1 GiB of zeros decodes in about a second with node:zlib zstd, several times longer with fzstd (Node 20).
const SPARSE: DiskRecipe = hasNodeZstd() ? SPARSE_BIG : { name: 'clientsparse', zeroMiB: 96 };

test('--disk of a mostly-zero disk allocates far less than its size', async () => {
  const fx = await packedDisk(SPARSE);
  const out = join(await fresh(), 'sparse.img');
  const r = await runFetch(['--disk', '-o', out, '--json', fx.cosi]);
  assert.equal(r.code, 0, r.stderr);
  await checkDisk(fx, out);
  const st = await stat(out);
  const { disk } = await layout(fx.cosi);
  assert.equal(st.size, disk.size);
  assert.ok(st.blocks * 512 < disk.size / 8, `allocated ${st.blocks * 512} of ${disk.size}`);
});

test('shrunk root: reported, and --grow gives an e2fsck-clean filesystem filling the partition', async () => {
  const fx = await packedDisk(SHRINKABLE, ['--shrink']);
  const { parts } = await layout(fx.cosi);
  const root = parts.find((p) => p.mountPoint === '/')!;
  assert.equal(root.shrunk, true);
  const dir = await fresh();

  const plain = await runFetch(['-p', 'root', '-o', join(dir, 'plain.img'), fx.cosi]);
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stderr, /smaller than its partition.*--grow/);

  const grown = await runFetch(['-p', 'root', '-o', join(dir, 'grown.img'), '--grow', '--json', fx.cosi]);
  assert.equal(grown.code, 0, grown.stderr);
  assert.equal(JSON.parse(grown.stdout).partitions[0].grown, true);
  assert.equal((await stat(join(dir, 'grown.img'))).size, root.gptPartition!.size);
  await sh('e2fsck', ['-fn', join(dir, 'grown.img')]);
  const info = await sh('dumpe2fs', ['-h', join(dir, 'grown.img')]);
  const blocks = Number(/Block count:\s+(\d+)/.exec(info)![1]);
  const bsize = Number(/Block size:\s+(\d+)/.exec(info)![1]);
  assert.equal(blocks * bsize, root.gptPartition!.size);

  // Disk mode: shrunk partitions listed; --grow grows in place, other regions untouched.
  const disk = join(dir, 'disk.img');
  const d = await runFetch(['--disk', '-o', disk, '--grow', '--json', fx.cosi]);
  assert.equal(d.code, 0, d.stderr);
  const s = JSON.parse(d.stdout);
  const shrunkParts = parts.filter((p) => p.shrunk);
  assert.deepEqual(s.shrunk.map((x: { number: number; grown: boolean }) => [x.number, x.grown]), shrunkParts.map((p) => [p.number, true]));
  await sh('sgdisk', ['-v', disk]);
  const slice = join(dir, 'slice.img');
  await sh('dd', [`if=${disk}`, `of=${slice}`, 'bs=1M', `skip=${root.gptPartition!.offset}`, `count=${root.gptPartition!.size}`, 'iflag=skip_bytes,count_bytes', 'status=none']);
  await sh('e2fsck', ['-fn', slice]);
  for (const p of shrunkParts) {
    const one = join(dir, `slice${p.number}.img`);
    await sh('dd', [`if=${disk}`, `of=${one}`, 'bs=1M', `skip=${p.gptPartition!.offset}`, `count=${p.gptPartition!.size}`, 'iflag=skip_bytes,count_bytes', 'status=none']);
    await sh('e2fsck', ['-fn', one]);
  }
  const info2 = await sh('dumpe2fs', ['-h', slice]);
  assert.equal(Number(/Block count:\s+(\d+)/.exec(info2)![1]) * Number(/Block size:\s+(\d+)/.exec(info2)![1]), root.gptPartition!.size);
  for (const p of parts.filter((q) => !q.shrunk)) {
    assert.ok(await sameBytes(disk, p.gptPartition!.offset, fx.disk, p.gptPartition!.offset, p.gptPartition!.size), p.path);
  }
});

const FOREIGN: Array<{ format: ForeignFormat; subdir?: string; trailing?: number; extraFile?: boolean; longNames?: boolean }> = [
  { format: 'gnu-tar-gnu' },
  { format: 'python-gnu', longNames: true, trailing: 4096 },
];

/**
 * The images under images/sub/ with names over 100 bytes (PAX path records)
 * and an extra member at the end, written by Python's tarfile in PAX format
 * with plain USTAR headers wherever the fields fit, so the file still starts
 * with "cosi-marker".
 */
async function paxLongNames(fx: { cosi: string }): Promise<string> {
  const dir = await fresh();
  const x = join(dir, 'x');
  await extract(fx.cosi, x);
  const meta = JSON.parse(await readFile(join(x, 'metadata.json'), 'utf8'));
  const long = (p: string) => `images/sub/${'l'.repeat(110)}-${p.slice('images/'.length)}`;
  await mkdir(join(x, 'images', 'sub'));
  const order: string[] = meta.disk.gptRegions.map((g: { image: { path: string } }) => g.image.path);
  for (const p of order) await copyFile(join(x, p), join(x, long(p)));
  for (const g of meta.disk.gptRegions) g.image.path = long(g.image.path);
  for (const f of meta.images) f.image.path = long(f.image.path);
  await writeFile(join(x, 'metadata.json'), JSON.stringify(meta));
  await writeFile(join(x, 'EXTRA-NOTES.txt'), 'an extra file a reader must ignore\n');
  const out = join(dir, 'pax.cosi');
  const members = ['cosi-marker', 'metadata.json', ...order.map(long), 'EXTRA-NOTES.txt'];
  await pyTar(out, members.map((m) => ({ name: m, file: join(x, m) })));
  return out;
}

test('archives from other tar writers fetch byte-exact (GNU long names, PAX path records, an extra member, trailing bytes)', async () => {
  const fx = await packedDisk(SMALL);
  const candidates = [...FOREIGN.map((o) => ({ o, cosi: () => foreignArchive(fx, o) })), { o: { format: 'python-pax (USTAR where it fits)' }, cosi: () => paxLongNames(fx) }];
  for (const [i, { o, cosi: make }] of candidates.entries()) {
    const cosi = await make();
    const dir = await fresh();
    const r = await runFetch(['-p', 'srv', '-p', 'esp', '-o', dir, cosi]);
    assert.equal(r.code, 0, `${JSON.stringify(o)}: ${r.stderr}`);
    const { parts } = await layout(cosi);
    for (const [file, mount] of [['srv.img', '/srv'], ['esp.img', '/boot/efi']] as const) {
      const p = parts.find((q) => q.mountPoint === mount)!;
      assert.ok(await sameBytes(join(dir, file), 0, fx.disk, p.gptPartition!.offset, p.gptPartition!.size), `${o.format} ${file}`);
    }
    // Every image hash through the walked index (once: decoding is the slow part on Node 20).
    if (i === 0) {
      const v = await runFetch(['verify', cosi]);
      assert.equal(v.code, 0, `${o.format}: ${v.stderr}`);
    }
    // The extra member is named, as cosi-pack validate names it, and fetched around.
    if (i === candidates.length - 1) assert.match(r.stderr, /warning: tar\[\d+\] "EXTRA-NOTES.txt" is not referenced by the metadata/);
  }
});

test('a PAX header before cosi-marker (GNU tar and Python in PAX format): exit 5 before any output, as cosi-pack validate says', async () => {
  const fx = await packedDisk(SMALL);
  for (const o of [{ format: 'gnu-tar-pax', subdir: 'sub' }, { format: 'python-pax', longNames: true, extraFile: true }] as const) {
    const cosi = await foreignArchive(fx, o);
    const v = await sh(process.execPath, [PACK_CLI, 'validate', cosi]).then(() => 0, () => 5);
    assert.equal(v, 5, `${o.format}: cosi-pack validate rejects it`);
    const dir = await fresh();
    const r = await runFetch(['-p', 'srv', '-o', dir, cosi]);
    assert.equal(r.code, 5, `${o.format}: ${r.stderr}`);
    assert.match(errorLine(r), /the first 11 bytes of the file must be "cosi-marker"/);
    assert.deepEqual(await listDir(dir), []);
  }
});

async function corruptCopy(src: string, at: (img: Awaited<ReturnType<typeof open>>) => Promise<number>): Promise<string> {
  const out = join(await fresh(), 'corrupt.cosi');
  await copyFile(src, out);
  const img = await open(src);
  const pos = await at(img);
  await img.close();
  const fh = await fsOpen(out, 'r+');
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, pos);
  b[0] = b[0]! ^ 0x5a;
  await fh.write(b, 0, 1, pos);
  await fh.close();
  return out;
}

test('a flipped byte inside an image: exit 4, and no output file', async () => {
  const fx = await packedDisk(SMALL);
  const cosi = await corruptCopy(fx.cosi, async (img) => {
    const root = img.select('root');
    const s = await img.stream(root.image);
    s.readable.destroy();
    return s.location.dataOffset + Math.floor(root.image.compressedSize / 2);
  });
  const dir = await fresh();
  const r = await runFetch(['-p', 'root', '-o', join(dir, 'root.img'), cosi]);
  assert.equal(r.code, 4, r.stderr);
  assert.match(errorLine(r), /SHA-384 mismatch/);
  assert.deepEqual(await listDir(dir), []);
  const d = await runFetch(['--disk', '-o', join(dir, 'disk.img'), cosi]);
  assert.equal(d.code, 4);
  assert.deepEqual(await listDir(dir), []);
  const v = await runFetch(['verify', cosi]);
  assert.equal(v.code, 4);
});

test('the library stream errors instead of ending on corrupt bytes', async () => {
  const fx = await packedDisk(SMALL);
  const cosi = await corruptCopy(fx.cosi, async (img) => {
    const srv = img.select('srv');
    const s = await img.stream(srv.image);
    s.readable.destroy();
    return s.location.dataOffset + srv.image.compressedSize - 10;
  });
  const img = await open(cosi);
  try {
    const s = await img.stream(img.select('srv').image);
    let bytes = 0;
    await assert.rejects(
      pipeline(s.readable, new Writable({ write: (c: Buffer, _e, cb) => void ((bytes += c.length), cb()) })),
      (err: Error & { code?: string }) => err.code === 'COSI_ERR_ZSTD' || err.code === 'COSI_ERR_HASH_MISMATCH',
    );
    // pump() classifies the same failure by finishing the hash: integrity.
    await assert.rejects(img.pump(img.select('srv').image, new Writable({ write: (_c, _e, cb) => cb() })), { code: 'COSI_ERR_HASH_MISMATCH' });
  } finally {
    await img.close();
  }
});

test('truncated archive: exit 4 with one line, nothing written', async () => {
  const fx = await packedDisk(SMALL);
  const cut = join(await fresh(), 'cut.cosi');
  await copyFile(fx.cosi, cut);
  const size = (await stat(cut)).size;
  await truncate(cut, size - 2048);
  const dir = await fresh();
  const r = await runFetch(['-p', 'srv', '-o', join(dir, 'srv.img'), cut]);
  assert.equal(r.code, 4, r.stderr);
  assert.match(errorLine(r), /truncated|ends/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.deepEqual(await listDir(dir), []);
});

test('an HTML page, a missing marker, metadata that is not JSON or over the 4 MiB cap: exit 5', async () => {
  const dir = await fresh();
  const html = join(dir, 'page.cosi');
  await writeFile(html, '<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n');
  let r = await runFetch(['inspect', html]);
  assert.equal(r.code, 5);
  assert.match(errorLine(r), /HTML page/);

  const junk = join(dir, 'junk.txt');
  await writeFile(junk, 'not json {');
  const empty = join(dir, 'empty');
  await writeFile(empty, '');
  const noMarker = join(dir, 'nomarker.cosi');
  await pyTar(noMarker, [{ name: 'metadata.json', file: junk }]);
  r = await runFetch(['inspect', noMarker]);
  assert.equal(r.code, 5);
  assert.match(errorLine(r), /cosi-marker/);

  const notJson = join(dir, 'notjson.cosi');
  await pyTar(notJson, [{ name: 'cosi-marker', file: empty }, { name: 'metadata.json', file: junk }]);
  r = await runFetch(['-p', 'root', '-o', dir, notJson]);
  assert.equal(r.code, 5);
  assert.match(errorLine(r), /metadata\.json is not valid JSON/);

  // A header claiming 5 MiB of metadata, in a sparse file of that size.
  const big = join(dir, 'bigmeta.json');
  await writeFile(big, '');
  await truncate(big, 5 * 1024 * 1024);
  const huge = join(dir, 'huge.cosi');
  await pyTar(huge, [{ name: 'cosi-marker', file: empty }, { name: 'metadata.json', file: big }]);
  r = await runFetch(['inspect', huge]);
  assert.equal(r.code, 5);
  assert.match(errorLine(r), /metadata\.json is 5\.0 MiB \(5242880 bytes\), over the 4\.0 MiB limit for metadata; .* --max-metadata-size$/);
});

test('an image larger than its partition is refused with exit 5', async () => {
  const fx = await packedDisk(SMALL);
  const dir = await fresh();
  const x = join(dir, 'x');
  await extract(fx.cosi, x);
  const meta = JSON.parse(await readFile(join(x, 'metadata.json'), 'utf8'));
  const region = meta.disk.gptRegions.find((g: { number?: number }) => g.number === 3);
  region.image.uncompressedSize += 1024 * 1024;
  for (const f of meta.images) if (f.image.path === region.image.path) f.image.uncompressedSize = region.image.uncompressedSize;
  await writeFile(join(x, 'metadata.json'), JSON.stringify(meta));
  const members = ['cosi-marker', 'metadata.json', ...meta.disk.gptRegions.map((g: { image: { path: string } }) => g.image.path)];
  const out = join(dir, 'bad.cosi');
  await pyTar(out, members.map((m: string) => ({ name: m, file: join(x, m) })));
  const r = await runFetch(['-p', '3', '-o', join(dir, 'p3.img'), out]);
  assert.equal(r.code, 5, r.stderr);
  assert.match(errorLine(r), /uncompressedSize is 17825792 but partition 3 is only 16777216 bytes/);
  assert.ok(!(await listDir(dir)).includes('p3.img'));
});

test('--metadata-sha384: a match fetches, a mismatch exits 4 before anything is written', async () => {
  const fx = await packedDisk(SMALL);
  const { sha } = await layout(fx.cosi);
  const dir = await fresh();
  const ok = await runFetch(['-p', 'srv', '-o', join(dir, 'srv.img'), '--metadata-sha384', sha.toUpperCase(), fx.cosi]);
  assert.equal(ok.code, 0, ok.stderr);
  const bad = await runFetch(['-p', 'root', '-o', join(dir, 'root.img'), '--metadata-sha384', 'ab'.repeat(48), fx.cosi]);
  assert.equal(bad.code, 4);
  assert.match(errorLine(bad), /pinned/);
  assert.deepEqual(await listDir(dir), ['srv.img']);
  const usage = await runFetch(['-p', 'root', '--metadata-sha384', 'xyz', fx.cosi]);
  assert.equal(usage.code, 2);
});

test('inspect (table and --json) and verify --json', async () => {
  const fx = await packedDisk(SHRINKABLE, ['--shrink']);
  const t = await runFetch(['inspect', fx.cosi]);
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stdout, /TYPE\s+MOUNT\s+FS\s+PARTITION\s+IMAGE\s+COMPRESSED\s+RATIO/);
  assert.match(t.stdout, /root\s+\/\s+ext4 .*\(shrunk\)/);
  const j = JSON.parse((await runFetch(['inspect', '--json', fx.cosi])).stdout);
  assert.equal(j.version, '1.2');
  assert.equal(j.partitions.length, 3);
  assert.deepEqual(j.partitions.map((p: { type: string }) => p.type), ['esp', 'root', 'srv']);
  assert.equal(j.partitions[1].shrunk, true);
  assert.equal(j.requests, 1);
  const v = await runFetch(['verify', '--json', fx.cosi]);
  assert.equal(v.code, 0, v.stderr);
  const vj = JSON.parse(v.stdout);
  assert.equal(vj.ok, true);
  assert.equal(vj.images.length, 4);
});

test('pump lends its buffers only to sinks that say they are done with a chunk when put() settles', async () => {
  const fx = await packedDisk(SMALL);
  const img = await open(fx.cosi);
  try {
    const root = img.select('root');
    const want = (await readFile(fx.disk)).subarray(root.gptPartition!.offset, root.gptPartition!.offset + root.image.uncompressedSize);
    // A Writable with an unrelated put(): written to, never lent anything.
    const kept: Buffer[] = [];
    const writable = Object.assign(new Writable({ write: (c: Buffer, _e, cb) => void (kept.push(c), cb()) }), {
      put: () => assert.fail('put() of a Writable that did not opt in was called'),
    });
    await img.pump(root.image, writable);
    assert.ok(Buffer.concat(kept).equals(want));
    // A plain object with put() is a ChunkSink: it must copy what it keeps.
    const copied: Buffer[] = [];
    await img.pump(root.image, { put: (c: Buffer) => void copied.push(Buffer.from(c)) });
    assert.ok(Buffer.concat(copied).equals(want));
  } finally {
    await img.close();
  }
});
