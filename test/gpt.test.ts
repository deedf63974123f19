import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { parseGpt, primaryGptRegionSize } from '../shared/disk/gpt.js';
import { buildBackupGpt, buildGptDisk, type BuiltGptDisk } from '../shared/disk/gpt-build.js';
import { decodeGuid, encodeGuid } from '../shared/disk/gpt-layout.js';
import { crc32, crc32Table } from '../shared/disk/crc32.js';
import { CosiError, isCosiError } from '../shared/errors.js';

const MiB = 1024 * 1024;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cosi-gpt-test-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

let seq = 0;
function tmpFile(name: string): string {
  return path.join(tmp, `${seq++}-${name}`);
}

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function makeImage(size: number): string {
  const p = tmpFile('disk.img');
  fs.writeFileSync(p, '');
  fs.truncateSync(p, size);
  return p;
}

function readAt(file: string, offset: number, length: number): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(length);
    const n = fs.readSync(fd, b, 0, length, offset);
    return b.subarray(0, n);
  } finally {
    fs.closeSync(fd);
  }
}

function writeAt(file: string, offset: number, data: Uint8Array): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, data, 0, data.length, offset);
  } finally {
    fs.closeSync(fd);
  }
}

interface GptCopies {
  primary: Uint8Array;
  entries: Uint8Array;
  entriesOffset: number;
  header: Uint8Array;
  headerOffset: number;
}

/** Lays a primary GPT region and its backup (as buildBackupGpt returns them) onto an image file. */
function writeGpt(file: string, g: GptCopies): void {
  writeAt(file, 0, g.primary);
  writeAt(file, g.entriesOffset, g.entries);
  writeAt(file, g.headerOffset, g.header);
}

/**
 * Checks that buildGptDisk put its backup at the end of the disk (`entrySectors`
 * LBAs of entries, then the header in the last LBA), then writes the whole
 * table onto a fresh image of `diskSize` bytes.
 */
function imageOfBuiltDisk(g: BuiltGptDisk, diskSize: number, lbaSize: number, want: { primaryLength: number; entrySectors: number }): string {
  assert.equal(g.primary.length, want.primaryLength);
  assert.equal(g.backupHeaderOffset, diskSize - lbaSize);
  assert.equal(g.backupEntriesOffset, diskSize - (want.entrySectors + 1) * lbaSize);
  const img = makeImage(diskSize);
  writeGpt(img, { primary: g.primary, entries: g.backupEntries, entriesOffset: g.backupEntriesOffset, header: g.backupHeader, headerOffset: g.backupHeaderOffset });
  return img;
}

/** sgdisk -v exits 0 even when it finds problems, so judge its words. */
function sgdiskVerify(file: string): { ok: boolean; out: string } {
  const r = spawnSync('sgdisk', ['-v', file], { encoding: 'utf8' });
  const out = `${r.stdout}${r.stderr}`;
  return { ok: r.status === 0 && /No problems found/.test(out) && !/Caution|Warning|ERROR|corrupt/i.test(out), out };
}

interface SgdiskPart {
  typeGuid: string;
  partGuid: string;
  first: number;
  last: number;
  attributes: bigint;
  name: string;
}

function sgdiskInfo(file: string, n: number): SgdiskPart {
  const out = sh('sgdisk', ['-i', String(n), file]);
  const m = (re: RegExp): string => {
    const r = re.exec(out);
    assert.ok(r, `sgdisk -i ${n} output lacks ${re}: ${out}`);
    return r[1]!;
  };
  return {
    typeGuid: m(/Partition GUID code: ([0-9A-F-]{36})/).toLowerCase(),
    partGuid: m(/Partition unique GUID: ([0-9A-F-]{36})/).toLowerCase(),
    first: Number(m(/First sector: (\d+)/)),
    last: Number(m(/Last sector: (\d+)/)),
    attributes: BigInt('0x' + m(/Attribute flags: ([0-9A-F]+)/i)),
    name: m(/Partition name: '(.*)'/),
  };
}

function sgdiskDiskGuid(file: string): string {
  const out = sh('sgdisk', ['-p', file]);
  const r = /Disk identifier \(GUID\): ([0-9A-F-]{36})/.exec(out);
  assert.ok(r, out);
  return r[1]!.toLowerCase();
}

let sgdiskMaster: string | undefined;

/**
 * A fresh copy of a 64 MiB disk with three partitions made by sgdisk. sgdisk
 * pauses about a second after each write, so the disk is made once and copied.
 */
function sgdiskDisk(): string {
  sgdiskMaster ??= makeSgdiskDisk();
  const img = tmpFile('disk.img');
  fs.copyFileSync(sgdiskMaster, img);
  return img;
}

function makeSgdiskDisk(): string {
  const img = makeImage(64 * MiB);
  sh('sgdisk', [
    '-n', '1:2048:+8M', '-t', '1:ef00', '-c', '1:EFI System',
    '-n', '2:0:+20M', '-t', '2:8304', '-c', '2:root', '-A', '2:set:60', '-A', '2:set:0',
    '-n', '3:0:+4M', '-t', '3:8200', '-c', '3:données swap',
    img,
  ]);
  return img;
}

/** Recompute both CRCs of a primary region after tampering, so only the tampering is wrong. */
function reseal(region: Buffer, lbaSize = 512): void {
  const h = lbaSize;
  const entriesLba = Number(region.readBigUInt64LE(h + 72));
  const n = region.readUInt32LE(h + 80);
  const size = region.readUInt32LE(h + 84);
  const entries = region.subarray(entriesLba * lbaSize, entriesLba * lbaSize + n * size);
  region.writeUInt32LE(crc32(entries), h + 88);
  region.writeUInt32LE(0, h + 16);
  region.writeUInt32LE(crc32(region.subarray(h, h + region.readUInt32LE(h + 12))), h + 16);
}

function expectGptError(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isCosiError(err, 'COSI_ERR_GPT'), `expected COSI_ERR_GPT, got ${String(err)}`);
    assert.match(err.message, re);
    return true;
  });
}

test('crc32: native and table agree, known vector, chaining', () => {
  const v = Buffer.from('123456789');
  assert.equal(crc32(v), 0xcbf43926);
  assert.equal(crc32Table(v), 0xcbf43926);
  assert.equal(crc32(Buffer.alloc(0)), 0);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 300 }), (a, b) => {
      const whole = Buffer.concat([a, b]);
      assert.equal(crc32(whole), crc32Table(whole));
      assert.equal(crc32(b, crc32(a)), crc32(whole));
      assert.equal(crc32Table(b, crc32Table(a)), crc32(whole));
    }),
  );
});

test('GUID encoding is mixed-endian and round-trips', () => {
  const b = Buffer.alloc(16);
  encodeGuid('C12A7328-F81F-11D2-BA4B-00A0C93EC93B', b);
  assert.equal(b.toString('hex'), '28732ac11ff8d211ba4b00a0c93ec93b');
  assert.equal(decodeGuid(b), 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b');
  assert.throws(() => encodeGuid('not-a-guid', b), (e: unknown) => isCosiError(e, 'COSI_ERR_GPT'));
});

test('parseGpt matches sgdisk on a 512-byte-LBA disk', () => {
  const img = sgdiskDisk();
  const region = readAt(img, 0, 64 * 1024);
  assert.equal(primaryGptRegionSize(region.subarray(0, 1024)), 2 * 512 + 128 * 128);

  const gpt = parseGpt(region);
  assert.equal(gpt.lbaSize, 512);
  assert.equal(gpt.protectiveMbr, true);
  assert.equal(gpt.diskGuid, sgdiskDiskGuid(img));
  assert.equal(gpt.currentLba, 1);
  assert.equal(gpt.backupLba, 64 * MiB / 512 - 1);
  assert.equal(gpt.firstUsableLba, 34);
  assert.equal(gpt.lastUsableLba, 64 * MiB / 512 - 34);
  assert.equal(gpt.entriesLba, 2);
  assert.equal(gpt.numEntries, 128);
  assert.equal(gpt.entrySize, 128);
  assert.equal(gpt.primaryRegionSize, 17408);
  assert.equal(gpt.partitions.length, 3);
  for (const p of gpt.partitions) {
    const s = sgdiskInfo(img, p.number);
    assert.equal(p.typeGuid, s.typeGuid);
    assert.equal(p.partGuid, s.partGuid);
    assert.equal(p.firstLba, s.first);
    assert.equal(p.lastLba, s.last);
    assert.equal(p.attributes, s.attributes);
    assert.equal(p.name, s.name);
    assert.equal(p.offset, s.first * 512);
    assert.equal(p.size, (s.last - s.first + 1) * 512);
  }
  assert.deepEqual(
    gpt.partitions.map((p) => [p.number, p.name, p.typeGuid]),
    [
      [1, 'EFI System', 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b'],
      [2, 'root', '4f68bce3-e8cd-4db1-96e7-fbcaf984b709'],
      [3, 'données swap', '0657fd6d-a4ab-43c4-84e5-0933c84b4f4f'],
    ],
  );
  assert.equal(gpt.partitions[1]!.attributes, (1n << 60n) | 1n);
  assert.equal(gpt.partitions[0]!.offset, 1 * MiB);
  assert.equal(gpt.partitions[0]!.size, 8 * MiB);
});

test('partitions are reported in entry order, empty entries skipped', () => {
  // sfdisk: like sgdisk, real and independent of our code, but without sgdisk's pause after writing.
  const img = makeImage(32 * MiB);
  const script =
    'label: gpt\n' +
    `${img}5 : start=4096, size=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n` +
    `${img}2 : start=2048, size=2048, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n`;
  const r = spawnSync('sfdisk', ['-q', img], { input: script, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const gpt = parseGpt(readAt(img, 0, 17408));
  assert.deepEqual(gpt.partitions.map((p) => [p.number, p.firstLba]), [[2, 2048], [5, 4096]]);
});

/** fdisk (util-linux) can treat an image file as having 4096-byte sectors; sgdisk cannot. */
function fdisk4k(file: string): { rows: string[][]; stderr: string } {
  const r = spawnSync('fdisk', ['-l', '-b', '4096', '-o', 'Start,End,Type-UUID,UUID,Name', file], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.split('\n');
  const hdr = lines.findIndex((l) => /^\s*Start\s+End/.test(l));
  assert.ok(hdr >= 0, r.stdout);
  const rows = lines
    .slice(hdr + 1)
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const parts = l.trim().split(/\s+/);
      return [...parts.slice(0, 4), parts.slice(4).join(' ')];
    });
  return { rows, stderr: r.stderr };
}

test('parseGpt auto-detects a 4096-byte-LBA disk made by fdisk -b 4096', () => {
  const img = makeImage(64 * MiB);
  const script = 'g\nn\n1\n256\n+8M\nt\n1\nn\n2\n\n+16M\nx\nn\n2\nrootfs\nr\nw\n';
  const r = spawnSync('fdisk', ['-b', '4096', img], { input: script, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);

  const head = readAt(img, 0, 8192);
  assert.equal(primaryGptRegionSize(head), 2 * 4096 + 128 * 128);
  const gpt = parseGpt(readAt(img, 0, 64 * 1024));
  assert.equal(gpt.lbaSize, 4096);
  assert.equal(gpt.backupLba, 64 * MiB / 4096 - 1);
  assert.equal(gpt.primaryRegionSize, 24576);
  const { rows } = fdisk4k(img);
  assert.equal(rows.length, 2);
  assert.deepEqual(
    gpt.partitions.map((p) => [String(p.firstLba), String(p.lastLba), p.typeGuid.toUpperCase(), p.partGuid.toUpperCase(), p.name]),
    rows,
  );
  assert.equal(gpt.partitions[0]!.offset, 256 * 4096);
  assert.equal(gpt.partitions[1]!.name, 'rootfs');
  // Forcing the wrong LBA size is a clear error, not a misparse.
  expectGptError(() => parseGpt(head, { lbaSize: 512 }), /bad GPT signature at offset 512/);
});

test('buildBackupGpt reproduces the original backup GPT byte for byte', () => {
  const img = sgdiskDisk();
  const size = fs.statSync(img).size;
  const tailLen = 33 * 512;
  const originalTail = readAt(img, size - tailLen, tailLen);
  const region = readAt(img, 0, primaryGptRegionSize(readAt(img, 0, 1024)));

  const copy = tmpFile('copy.img');
  fs.copyFileSync(img, copy);
  writeAt(copy, size - tailLen, Buffer.alloc(tailLen));
  assert.equal(sgdiskVerify(copy).ok, false, 'zeroing the tail must break the backup');

  const b = buildBackupGpt(region, size);
  assert.deepEqual(b.primary, region);
  assert.equal(b.headerOffset, size - 512);
  assert.equal(b.entriesOffset, size - 33 * 512);
  assert.equal(b.header.length, 512);
  assert.equal(b.entries.length, 32 * 512);
  writeAt(copy, b.entriesOffset, b.entries);
  writeAt(copy, b.headerOffset, b.header);

  const v = sgdiskVerify(copy);
  assert.ok(v.ok, v.out);
  assert.deepEqual(readAt(copy, size - tailLen, tailLen), originalTail);
});

test('buildBackupGpt on a 4096-byte-LBA disk reproduces the backup', () => {
  const img = makeImage(32 * MiB);
  const r = spawnSync('fdisk', ['-b', '4096', img], { input: 'g\nn\n1\n\n+4M\nw\n', encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const size = 32 * MiB;
  const tailLen = 5 * 4096;
  const originalTail = readAt(img, size - tailLen, tailLen);
  const region = readAt(img, 0, primaryGptRegionSize(readAt(img, 0, 8192)));
  const b = buildBackupGpt(region, size);
  assert.equal(b.entriesOffset, size - tailLen);
  assert.deepEqual(Buffer.concat([b.entries, b.header]), originalTail);
});

test('buildBackupGpt grows onto a larger disk and sgdisk accepts it', () => {
  const img = sgdiskDisk();
  const region = readAt(img, 0, 17408);
  const src = parseGpt(region);
  const big = makeImage(100 * MiB + 512 * 3);
  const size = fs.statSync(big).size;
  const b = buildBackupGpt(region, size);
  const lastLba = size / 512 - 1;

  const grown = parseGpt(b.primary);
  assert.equal(grown.backupLba, lastLba);
  assert.equal(grown.lastUsableLba, lastLba - 33);
  assert.deepEqual(grown.partitions, src.partitions);
  assert.equal(grown.diskGuid, src.diskGuid);
  assert.equal(b.primary.readUInt32LE(446 + 12), lastLba, 'protective MBR covers the new disk');
  assert.deepEqual(b.primary.subarray(2 * 512), region.subarray(2 * 512), 'entries unchanged');

  writeGpt(big, b);
  const v = sgdiskVerify(big);
  assert.ok(v.ok, v.out);
  assert.match(sh('sgdisk', ['-p', big]), new RegExp(`last usable sector is ${lastLba - 33}\\b`));
  for (const p of src.partitions) assert.equal(sgdiskInfo(big, p.number).partGuid, p.partGuid);
});

test('buildBackupGpt caps the protective MBR size for disks over 2 TiB', () => {
  const region = buildGptDisk({
    diskSize: 64 * MiB,
    lbaSize: 512,
    partitions: [{ firstLba: 2048, lastLba: 4095, typeGuid: '0fc63daf-8483-4772-8e79-3d69d8477de4' }],
  }).primary;
  const huge = 3 * 1024 * 1024 * MiB; // 3 TiB
  const b = buildBackupGpt(region, huge);
  assert.equal(b.primary.readUInt32LE(446 + 12), 0xffffffff);
  assert.equal(b.headerOffset, huge - 512);
  assert.equal(parseGpt(b.primary).backupLba, huge / 512 - 1);
});

test('buildBackupGpt shrinks when partitions fit and refuses when they do not', () => {
  const img = sgdiskDisk();
  const region = readAt(img, 0, 17408);
  const gpt = parseGpt(region);
  const end = Math.max(...gpt.partitions.map((p) => p.lastLba));

  const fitSize = (end + 1 + 33) * 512;
  const small = makeImage(fitSize);
  const b = buildBackupGpt(region, fitSize);
  writeGpt(small, b);
  const v = sgdiskVerify(small);
  assert.ok(v.ok, v.out);

  expectGptError(() => buildBackupGpt(region, fitSize - 512), new RegExp(`too small: partitions end at LBA ${end}`));
  expectGptError(() => buildBackupGpt(region, 40 * 512), /too small/);
});

test('buildGptDisk output passes sgdisk -v and parses back identically (512)', () => {
  const diskSize = 48 * MiB;
  const parts = [
    { firstLba: 2048, lastLba: 2048 + 16383, typeGuid: 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b', partGuid: '11111111-2222-3333-4444-555555555555', name: 'esp' },
    { firstLba: 18432, lastLba: 18432 + 40959, typeGuid: '4f68bce3-e8cd-4db1-96e7-fbcaf984b709', name: 'root-ä', attributes: 1n << 63n },
  ];
  const g = buildGptDisk({ diskSize, lbaSize: 512, diskGuid: 'AABBCCDD-EEFF-0011-2233-445566778899', partitions: parts });
  const img = imageOfBuiltDisk(g, diskSize, 512, { primaryLength: 17408, entrySectors: 32 });
  const v = sgdiskVerify(img);
  assert.ok(v.ok, v.out);
  assert.equal(sgdiskDiskGuid(img), 'aabbccdd-eeff-0011-2233-445566778899');

  const gpt = parseGpt(g.primary);
  assert.equal(gpt.protectiveMbr, true);
  assert.equal(gpt.diskGuid, 'aabbccdd-eeff-0011-2233-445566778899');
  assert.equal(gpt.partitions.length, 2);
  gpt.partitions.forEach((p, i) => {
    const want = parts[i]!;
    const s = sgdiskInfo(img, p.number);
    assert.equal(p.firstLba, want.firstLba);
    assert.equal(p.lastLba, want.lastLba);
    assert.equal(p.typeGuid, want.typeGuid);
    assert.equal(p.name, want.name);
    assert.equal(p.attributes, want.attributes ?? 0n);
    assert.equal(s.partGuid, p.partGuid);
    assert.equal(s.name, want.name);
    assert.equal(s.first, want.firstLba);
  });
  assert.equal(gpt.partitions[0]!.partGuid, '11111111-2222-3333-4444-555555555555');
  assert.match(gpt.partitions[1]!.partGuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  // The backup region is what buildBackupGpt derives from the primary.
  const again = buildBackupGpt(g.primary, diskSize);
  assert.deepEqual(again.header, g.backupHeader);
  assert.deepEqual(again.entries, g.backupEntries);
});

test('buildGptDisk with 4096-byte LBAs is read correctly by fdisk -b 4096', () => {
  const diskSize = 32 * MiB;
  const g = buildGptDisk({
    diskSize,
    lbaSize: 4096,
    partitions: [
      { firstLba: 256, lastLba: 2303, typeGuid: 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b', name: 'esp' },
      { firstLba: 2304, lastLba: 6399, typeGuid: 'b921b045-1df0-41c3-af44-4c6f280d3fae', name: 'root' },
    ],
  });
  const img = imageOfBuiltDisk(g, diskSize, 4096, { primaryLength: 24576, entrySectors: 4 });

  const gpt = parseGpt(g.primary);
  assert.equal(gpt.lbaSize, 4096);
  assert.equal(gpt.firstUsableLba, 6);
  assert.equal(gpt.lastUsableLba, diskSize / 4096 - 6);
  const { rows, stderr } = fdisk4k(img);
  assert.doesNotMatch(stderr, /corrupt|mismatch|invalid/i);
  assert.deepEqual(
    gpt.partitions.map((p) => [String(p.firstLba), String(p.lastLba), p.typeGuid.toUpperCase(), p.partGuid.toUpperCase(), p.name]),
    rows,
  );
});

test('buildGptDisk rejects bad layouts', () => {
  const base = { diskSize: 16 * MiB, lbaSize: 512 as const };
  const t = 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b';
  expectGptError(
    () => buildGptDisk({ ...base, partitions: [{ firstLba: 2048, lastLba: 4095, typeGuid: t }, { firstLba: 4000, lastLba: 5000, typeGuid: t }] }),
    /partitions 1 \(LBA 2048\.\.4095\) and 2 \(LBA 4000\.\.5000\) overlap/,
  );
  expectGptError(() => buildGptDisk({ ...base, partitions: [{ firstLba: 10, lastLba: 100, typeGuid: t }] }), /outside the usable area 34\.\./);
  expectGptError(() => buildGptDisk({ ...base, partitions: [{ firstLba: 2048, lastLba: 40000, typeGuid: t }] }), /outside the usable area/);
  expectGptError(() => buildGptDisk({ ...base, partitions: [{ firstLba: 2048, lastLba: 4095, typeGuid: 'zz' }] }), /invalid GUID "zz"/);
  expectGptError(() => buildGptDisk({ ...base, partitions: [{ firstLba: 2048, lastLba: 4095, typeGuid: t, name: 'x'.repeat(37) }] }), /longer than 36/);
  expectGptError(() => buildGptDisk({ diskSize: 8192, lbaSize: 512, partitions: [] }), /too small/);
});

test('corruptions are COSI_ERR_GPT with a precise message', () => {
  const img = sgdiskDisk();
  const good = readAt(img, 0, 17408);
  const mutate = (f: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(good);
    f(b);
    return b;
  };
  /** An edit with the CRCs fixed after it, so only the edit itself is wrong. */
  const resealed = (f: (b: Buffer) => void): Buffer => mutate((b) => {
    f(b);
    reseal(b);
  });

  expectGptError(
    () => parseGpt(mutate((b) => (b[512 + 56] ^= 0xff))),
    /^GPT header CRC32 mismatch: stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}$/,
  );
  expectGptError(
    () => parseGpt(mutate((b) => (b[1024 + 128 + 56] ^= 0x01))),
    /^GPT partition entry array CRC32 mismatch: stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}$/,
  );
  expectGptError(() => parseGpt(mutate((b) => b.write('EFI FART', 512, 'latin1'))), /no "EFI PART" signature at offset 512 or 4096/);
  expectGptError(
    () => parseGpt(mutate((b) => b.write('EFI FART', 512, 'latin1')), { lbaSize: 512 }),
    /bad GPT signature at offset 512: "EFI FART", expected "EFI PART"/,
  );
  // Partition 2 moved to start inside partition 1, CRCs fixed so only the overlap is wrong.
  expectGptError(
    () => parseGpt(resealed((b) => b.writeBigUInt64LE(10000n, 1024 + 128 + 32))),
    /^GPT partitions 1 \(LBA 2048\.\.18431\) and 2 \(LBA 10000\.\.59391\) overlap$/,
  );
  expectGptError(
    () => parseGpt(resealed((b) => b.writeBigUInt64LE(20n, 1024 + 32))),
    /partition 1 \(LBA 20\.\.18431\) is outside the usable area 34\.\.131038/,
  );
  expectGptError(
    () => parseGpt(resealed((b) => b.writeBigUInt64LE(100n, 1024 + 40))),
    /partition 1 starts at LBA 2048 after its end LBA 100/,
  );
  expectGptError(() => parseGpt(resealed((b) => b.writeUInt32LE(0x00020000, 512 + 8))), /unsupported GPT revision 0x00020000/);
  expectGptError(() => parseGpt(resealed((b) => b.writeUInt32LE(600, 512 + 12))), /header size 600 is outside 92\.\.512/);
  expectGptError(() => parseGpt(resealed((b) => b.writeUInt32LE(100, 512 + 84))), /entry size 100 is not a multiple of 128/);
  expectGptError(() => parseGpt(resealed((b) => b.writeBigUInt64LE(2n, 512 + 24))), /MyLBA is 2, expected 1/);
  expectGptError(
    () => parseGpt(resealed((b) => b.writeBigUInt64LE(10n, 512 + 48))),
    /FirstUsableLBA 34 is after LastUsableLBA 10/,
  );
  expectGptError(() => parseGpt(good.subarray(0, 10000)), /shorter than the primary GPT region \(17408 bytes\)/);
  expectGptError(() => parseGpt(good.subarray(0, 600)), /too short/);

  // A missing protective MBR is tolerated and recorded.
  const noMbr = parseGpt(mutate((b) => b.fill(0, 0, 512)));
  assert.equal(noMbr.protectiveMbr, false);
  assert.equal(noMbr.partitions.length, 3);
});

test('property: arbitrary bytes never throw anything but CosiError', () => {
  const check = (bytes: Uint8Array): void => {
    for (const fn of [() => parseGpt(bytes), () => primaryGptRegionSize(bytes), () => buildBackupGpt(bytes, 64 * MiB)]) {
      try {
        fn();
      } catch (err) {
        if (!(err instanceof CosiError)) throw err;
        assert.equal(err.code, 'COSI_ERR_GPT');
      }
    }
  };
  fc.assert(fc.property(fc.uint8Array({ maxLength: 20000 }), check), { numRuns: 200 });

  // Random bytes almost never look like a GPT; flipping bytes of a real one reaches the deeper checks.
  const good = readAt(sgdiskDisk(), 0, 17408);
  const hot = fc.oneof(fc.integer({ min: 0, max: 1023 }), fc.integer({ min: 512, max: 512 + 91 }), fc.integer({ min: 0, max: good.length - 1 }));
  fc.assert(
    fc.property(fc.array(fc.tuple(hot, fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 6 }), fc.boolean(), fc.nat(good.length), (flips, fix, cut) => {
      const b = Buffer.from(good);
      for (const [i, x] of flips) b[i] = b[i]! ^ x;
      if (fix) {
        try {
          reseal(b);
        } catch {
          // Tampered sizes can make the helper itself read out of range; then test the unsealed bytes.
        }
      }
      check(b);
      check(b.subarray(0, cut));
    }),
    { numRuns: 400 },
  );
});
