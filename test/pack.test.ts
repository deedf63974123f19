import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createRequire } from 'node:module';
import { openCosi } from '../shared/format/archive.js';
import { checkArchive, readSmallImage, windowLogOf } from '../shared/format/check.js';
import { FileSource } from '../shared/transport/file-source.js';
import { parseGpt } from '../shared/disk/gpt.js';
import { listPartitions, type CosiMetadata } from '../shared/format/metadata.js';
import { hasNodeZstd } from '../shared/zstd/index.js';
import {
  PACK_CLI, REFERENCE, TEST_DATA, needsReference, SHRINKABLE, PRESHRUNK, SMALL, SMALL_4K, SPARSE_BIG, packedDisk, sameBytes, sh, type PackedFixture,
} from './fixtures.js';

const require = createRequire(import.meta.url);

function runPack(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [PACK_CLI, ...args], (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** Decode one image with the real zstd program (a foreign decoder) into a file. */
async function decodeWithZstd(cosi: string, dataOffset: number, size: number, out: string): Promise<void> {
  await sh('bash', ['-c', `tail -c +${dataOffset + 1} '${cosi}' | head -c ${size} | zstd -q -d -o '${out}'`]);
}

let tmp: string;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'cosi-pack-'));
});
after(async () => rm(tmp, { recursive: true, force: true }));

async function metadataOf(cosi: string): Promise<{ meta: CosiMetadata; bytes: Buffer }> {
  const src = new FileSource(cosi);
  try {
    const a = await openCosi(src);
    return { meta: a.metadata, bytes: a.metadataBytes };
  } finally {
    await src.close();
  }
}

/** Every region decoded (by the zstd program) and compared with the source disk at its GPT offset. */
async function assertRoundTrip(fx: PackedFixture) {
  const src = new FileSource(fx.cosi);
  try {
    const { archive, gpt, result } = await checkArchive(src);
    assert.ok(result.valid, JSON.stringify(result.errors));
    assert.ok(gpt);
    const regions = archive.metadata.disk!.gptRegions!;
    for (const r of regions) {
      const e = archive.index.entries.find((x) => x.name === r.image.path)!;
      const out = join(tmp, 'region.raw');
      await decodeWithZstd(fx.cosi, e.dataOffset, e.size, out);
      const decodedSize = (await readFile(out)).length;
      assert.equal(decodedSize, r.image.uncompressedSize, r.image.path);
      const diskOffset = r.type === 'primary-gpt' ? 0 : gpt.partitions.find((p) => p.number === r.number)!.offset;
      assert.ok(await sameBytes(out, 0, fx.disk, diskOffset, decodedSize), `${r.image.path} differs from the disk at ${diskOffset}`);
      await rm(out);
    }
  } finally {
    await src.close();
  }
}

describe('cosi-pack', () => {
  test('512-byte LBA disk: spec-exact layout, every region round-trips byte for byte', async () => {
    const fx = await packedDisk(SMALL);
    const head = (await readFile(fx.cosi)).subarray(0, 11).toString('latin1');
    assert.equal(head, 'cosi-marker');
    const listing = (await sh('tar', ['-tf', fx.cosi])).trim().split('\n');
    assert.deepEqual(listing.slice(0, 3), ['cosi-marker', 'metadata.json', 'images/primary-gpt.raw.zst']);
    await assertRoundTrip(fx);
    const { meta } = await metadataOf(fx.cosi);
    assert.equal(meta.disk!.lbaSize, 512);
    const byMount = Object.fromEntries(meta.images.map((f) => [f.mountPoint, f]));
    assert.equal(byMount['/']!.fsType, 'ext4');
    assert.equal(byMount['/boot/efi']!.fsType, 'vfat');
    assert.equal(byMount['/srv']!.fsType, 'ext4');
    // UUIDs as blkid reports them from the source disk's partitions.
    const blk = await sh('blkid', ['-p', '-o', 'value', '-s', 'UUID', '--offset', String(35 * 1024 * 1024), fx.disk]);
    assert.equal(byMount['/']!.fsUuid, blk.trim());
    assert.equal(meta.osRelease, fx.osRelease, 'os-release read from the ext4 root with debugfs (through its symlink)');
    assert.equal(meta.osPackages?.length, 3);
    assert.equal(meta.osArch, 'x86_64');
  });

  test('4096-byte LBA disk round-trips', async () => {
    const fx = await packedDisk(SMALL_4K);
    const { meta } = await metadataOf(fx.cosi);
    assert.equal(meta.disk!.lbaSize, 4096);
    await assertRoundTrip(fx);
  });

  test('metadata validates against the official JSON schema (ajv)', { skip: needsReference('cosi-metadata-v1.2.schema.json') }, async () => {
    const Ajv2020 = require('ajv/dist/2020.js');
    const ajv = new Ajv2020({ strict: false });
    const schema = JSON.parse(await readFile(join(REFERENCE, 'cosi-metadata-v1.2.schema.json'), 'utf8'));
    const validate = ajv.compile(schema);
    for (const r of [SMALL, SMALL_4K]) {
      const { meta } = await metadataOf((await packedDisk(r)).cosi);
      assert.ok(validate(meta), JSON.stringify(validate.errors));
    }
  });

  test('every image starts with the 24-byte skippable frame carrying the COSI id', async () => {
    const fx = await packedDisk(SMALL);
    const src = new FileSource(fx.cosi);
    try {
      const a = await openCosi(src, { full: true });
      const idHex = a.metadata.id!.replace(/-/g, '');
      for (const e of a.index.entries.slice(2)) {
        const b = await src.read(e.dataOffset, 24);
        assert.equal(b.readUInt32LE(0), 0x184d2a50);
        assert.equal(b.readUInt32LE(4), 16);
        assert.equal(b.subarray(8).toString('hex'), idHex);
      }
    } finally {
      await src.close();
    }
  });

  test('--shrink shrinks an ext4 that covers its partition; the image is a clean, smaller ext4', async () => {
    const fx = await packedDisk(SHRINKABLE, ['--shrink']);
    const src = new FileSource(fx.cosi);
    try {
      const { archive, gpt, result } = await checkArchive(src);
      assert.ok(result.valid, JSON.stringify(result.errors));
      const root = listPartitions(archive.metadata, gpt).find((p) => p.mountPoint === '/')!;
      assert.ok(root.shrunk, 'uncompressedSize < partition size');
      assert.ok(root.image.uncompressedSize < root.gptPartition!.size / 2, `${root.image.uncompressedSize}`);
      const e = archive.index.entries.find((x) => x.name === root.path)!;
      const out = join(tmp, 'shrunk.img');
      await decodeWithZstd(fx.cosi, e.dataOffset, e.size, out);
      await sh('e2fsck', ['-f', '-n', out]);
      assert.equal(await sh('debugfs', ['-R', 'cat /etc/hostname', out]), 'fixture\n');
      // Unshrunk partitions stay whole.
      const srv = listPartitions(archive.metadata, gpt).find((p) => p.mountPoint === '/srv')!;
      assert.equal(srv.shrunk, true, 'srv is ext4 covering its partition too, so it is shrunk as well');
      const esp = listPartitions(archive.metadata, gpt).find((p) => p.mountPoint === '/boot/efi')!;
      assert.equal(esp.shrunk, false, 'vfat is never shrunk');
      await rm(out);
    } finally {
      await src.close();
    }
  });

  test('--shrink leaves a filesystem that does not cover its partition alone', async () => {
    const fx = await packedDisk(PRESHRUNK, ['--shrink']);
    const { meta } = await metadataOf(fx.cosi);
    const root = meta.images.find((f) => f.mountPoint === '/')!;
    assert.equal(root.image.uncompressedSize, 64 * 1024 * 1024);
  });

  test('a GiB-scale mostly-zero partition packs to a tiny image', async () => {
    const fx = await packedDisk(SPARSE_BIG);
    const { meta } = await metadataOf(fx.cosi);
    const data = meta.disk!.gptRegions!.find((r) => r.number === 4)!;
    assert.equal(data.image.uncompressedSize, 1024 * 1024 * 1024);
    assert.ok(data.image.compressedSize < 256 * 1024, `${data.image.compressedSize}`);
    assert.ok(!meta.images.some((f) => f.image.path === data.image.path), 'a generic-linux partition without mount point is a bare region');
  });

  test('validate: a valid archive and our metadata documents exit 0', async () => {
    const ok = await runPack(['validate', (await packedDisk(SMALL)).cosi]);
    assert.equal(ok.code, 0, ok.stderr + ok.stdout);
    assert.match(ok.stdout, /valid COSI 1\.2/);
    for (const f of ['grub-ext4.json', 'verity-uki-systemd-boot.json']) {
      const r = await runPack(['validate', join(TEST_DATA, 'metadata', f)]);
      assert.equal(r.code, 0, r.stdout);
      assert.match(r.stdout, /valid COSI 1\.2/);
    }
  });

  const REF_SAMPLES = ['grub-simple.json', 'verity-uki-systemd-boot.json'].map((f) => join('metadata-samples', 'valid', f));
  test('validate: both reference samples exit 0', { skip: needsReference(...REF_SAMPLES) }, async () => {
    for (const f of REF_SAMPLES) {
      const r = await runPack(['validate', join(REFERENCE, f)]);
      assert.equal(r.code, 0, r.stdout);
      assert.match(r.stdout, /valid COSI 1\.2/);
    }
  });

  test('validate: every violated rule is printed, exit 5', async () => {
    const { meta } = await metadataOf((await packedDisk(SMALL)).cosi);
    const bad = structuredClone(meta) as unknown as Record<string, any>;
    bad.disk.lbaSize = 1024;
    bad.images[0].image.sha384 = 'xyz';
    bad.osArch = 'sparc';
    const path = join(tmp, 'bad.json');
    await writeFile(path, JSON.stringify(bad));
    const r = await runPack(['validate', path]);
    assert.equal(r.code, 5);
    assert.match(r.stdout, /disk\.lbaSize/);
    assert.match(r.stdout, /sha384/);
    assert.match(r.stdout, /osArch/);
    assert.match(r.stdout, /INVALID/);
  });

  test('validate: a truncated .cosi and a non-COSI file give one clear line and distinct exit codes', async () => {
    const fx = await packedDisk(SMALL);
    const buf = await readFile(fx.cosi);
    const cut = join(tmp, 'cut.cosi');
    await writeFile(cut, buf.subarray(0, buf.length - 3000));
    const r1 = await runPack(['validate', cut]);
    assert.equal(r1.code, 4, r1.stderr);
    assert.match(r1.stderr, /^cosi-pack: error: .*truncated.*\n$/);
    const html = join(tmp, 'page.json');
    await writeFile(html, '<!DOCTYPE html><html><body>Not found</body></html>');
    const r2 = await runPack(['validate', html]);
    assert.equal(r2.code, 5);
    assert.match(r2.stderr, /^cosi-pack: error: .*page\.json is not a COSI archive nor a valid COSI metadata\.json \(an HTML page\): give a \.cosi file or the metadata\.json of one\n$/);
  });

  test('bad input: not a GPT disk, missing disk, bad flags; no output left behind', async () => {
    const junk = join(tmp, 'junk.raw');
    await writeFile(junk, Buffer.alloc(1024 * 1024, 7));
    const out = join(tmp, 'never.cosi');
    const r1 = await runPack([junk, '-o', out]);
    assert.equal(r1.code, 5, r1.stderr);
    assert.match(r1.stderr, /^cosi-pack: error: .*(GPT|EFI PART).*\n$/);
    assert.equal(existsSync(out), false);
    assert.deepEqual((await readdir(tmp)).filter((f) => f.includes('never')), [], 'no temporary files left');
    const r2 = await runPack([join(tmp, 'missing.raw'), '-o', out]);
    assert.equal(r2.code, 6);
    assert.match(r2.stderr, /cannot open .*missing\.raw/);
    const r3 = await runPack([junk, '-o', out, '--level', '99']);
    assert.equal(r3.code, 2);
    assert.match(r3.stderr, /--level must be a whole number from 1 to 22/);
    const r4 = await runPack([junk]);
    assert.equal(r4.code, 2);
    assert.match(r4.stderr, /missing -o/);
  });

  test('no zstd encoder (Node 20 without the zstd program): one clear line, exit 7, no output', { skip: hasNodeZstd() ? 'node:zlib has zstd here' : false }, async () => {
    const fx = await packedDisk(SMALL);
    const out = join(tmp, 'noenc.cosi');
    const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(process.execPath, [PACK_CLI, fx.disk, '-o', out, '--os-release', '/dev/null', '-q'], { env: { PATH: '/nonexistent' } }, (err, _o, stderr) =>
        resolve({ code: err ? (err.code as number) : 0, stderr }),
      );
    });
    assert.equal(r.code, 7, r.stderr);
    assert.match(r.stderr, /^cosi-pack: error: no zstd encoder: .*\n$/);
    assert.equal(existsSync(out), false);
  });

  test('the GPT image in the archive parses to the source disk\'s table', async () => {
    const fx = await packedDisk(SMALL);
    const src = new FileSource(fx.cosi);
    try {
      const a = await openCosi(src, { full: true });
      const region = a.metadata.disk!.gptRegions![0]!;
      const e = a.index.entries.find((x) => x.name === region.image.path)!;
      const bytes = await readSmallImage(src, e, region.image, windowLogOf(a.metadata));
      const diskHead = (await readFile(fx.disk)).subarray(0, bytes.length);
      assert.ok(bytes.equals(diskHead));
      const gpt = parseGpt(bytes);
      const sg = await sh('sgdisk', ['-p', fx.disk]);
      for (const p of gpt.partitions) assert.match(sg, new RegExp(`^\\s+${p.number}\\s+${p.firstLba}\\s+${p.lastLba}\\s`, 'm'));
    } finally {
      await src.close();
    }
  });
});
