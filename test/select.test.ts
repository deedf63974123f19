import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TEST_DATA } from './fixtures.js';
import { selectPartition, describeChoices } from '../shared/format/select.js';
import { listPartitions, primaryGptRegion, allImageFiles, parseMetadata, type CosiMetadata, type PartitionInfo } from '../shared/format/metadata.js';
import { CosiError } from '../shared/errors.js';
import type { Gpt, GptPartition } from '../shared/disk/gpt.js';

// Our own documents: a GRUB image (ESP #1, root #2) and a verity root booted by a systemd-boot UKI.
const load = (name: string): CosiMetadata => parseMetadata(readFileSync(join(TEST_DATA, 'metadata', name)));
const GRUB = load('grub-ext4.json');
const VERITY = load('verity-uki-systemd-boot.json');

const SHA = 'ab'.repeat(48);
const T = {
  esp: 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b',
  root: '4f68bce3-e8cd-4db1-96e7-fbcaf984b709',
  rootVerity: '2c7357ed-ebd2-46d9-aec1-23d437ec2bf5',
  usr: '8484680c-9521-48c6-9c11-b0720656f69e',
  home: '933ac7e1-2eb4-4f13-b844-0e14e2aef915',
  generic: '0fc63daf-8483-4772-8e79-3d69d8477de4',
  swap: '0657fd6d-a4ab-43c4-84e5-0933c84b4f4f',
};

const img = (path: string, size = 1 << 20) => ({ path, compressedSize: size >> 4, uncompressedSize: size, sha384: SHA });
const fs = (path: string, mountPoint: string, partType: string, fsUuid: string) => ({ image: img(path), mountPoint, fsType: 'ext4', fsUuid, partType, verity: null });

/**
 * An A/B image: ESP #1, root-a #2, root-b #3 (both root-typed, both mounted at /), /home on a
 * generic-typed partition #4, a bare swap region #5 and a bare usr region #6 without Filesystem objects.
 */
function abImage(): CosiMetadata {
  return {
    version: '1.2',
    osArch: 'x86_64',
    osRelease: 'ID=test\n',
    images: [
      fs('images/esp.raw.zst', '/boot/efi', T.esp, 'AAAA-BBBB'),
      fs('images/root-a.raw.zst', '/', T.root, 'uuid-a'),
      fs('images/root-b.raw.zst', '/', T.root, 'uuid-b'),
      fs('images/home.raw.zst', '/home', T.generic, 'uuid-home'),
    ],
    disk: {
      size: 1 << 30,
      type: 'gpt',
      lbaSize: 512,
      gptRegions: [
        { image: img('images/gpt.raw.zst', 17408), type: 'primary-gpt' },
        { image: img('images/esp.raw.zst'), type: 'partition', number: 1 },
        { image: img('images/root-a.raw.zst'), type: 'partition', number: 2 },
        { image: img('images/root-b.raw.zst'), type: 'partition', number: 3 },
        { image: img('images/home.raw.zst'), type: 'partition', number: 4 },
        { image: img('images/swap.raw.zst'), type: 'partition', number: 5 },
        { image: img('images/usr.raw.zst'), type: 'partition', number: 6 },
      ],
    },
    osPackages: [],
    bootloader: { type: 'grub' },
    compression: { maxWindowLog: 27 },
  };
}

function gp(number: number, typeGuid: string, sectors: number): GptPartition {
  const firstLba = 2048 * number;
  return { number, typeGuid, partGuid: `00000000-0000-0000-0000-00000000000${number}`, firstLba, lastLba: firstLba + sectors - 1, attributes: 0n, name: '', offset: firstLba * 512, size: sectors * 512 };
}

function abGpt(): Gpt {
  return {
    lbaSize: 512,
    diskGuid: '11111111-2222-3333-4444-555555555555',
    currentLba: 1,
    backupLba: (1 << 21) - 1,
    firstUsableLba: 34,
    lastUsableLba: (1 << 21) - 34,
    entriesLba: 2,
    numEntries: 128,
    entrySize: 128,
    entriesCrc: 0,
    // root-b's partition is twice its image (shrunk); the others are exactly 1 MiB.
    partitions: [gp(1, T.esp, 2048), gp(2, T.root, 2048), gp(3, T.root, 4096), gp(4, T.generic, 2048), gp(5, T.swap, 2048), gp(6, T.usr, 2048)],
    primaryRegionSize: 17408,
    protectiveMbr: true,
  };
}

function assertSelectorError(fn: () => unknown, pattern: RegExp): CosiError {
  let caught: CosiError | undefined;
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CosiError, String(err));
    assert.equal(err.code, 'COSI_ERR_SELECTOR');
    assert.match(err.message, pattern);
    assert.ok(!err.message.includes('\n'));
    caught = err;
    return true;
  });
  return caught!;
}

// ---------------------------------------------------------------------------------------------
// listPartitions and friends

test('listPartitions (1.2): partition regions in disk order, joined with their filesystems, GPT region excluded', () => {
  const parts = listPartitions(GRUB);
  assert.deepEqual(
    parts.map((p) => [p.path, p.number, p.role, p.mountPoint, p.dpsName]),
    [
      ['images/partition-1.raw.zst', 1, 'filesystem', '/boot/efi', 'esp'],
      ['images/partition-2.raw.zst', 2, 'filesystem', '/', 'root'],
    ],
  );
  assert.equal(parts[1]!.fsType, 'ext4');
  assert.equal(parts[1]!.fsUuid, '6d0f4c1a-93b2-4e57-8a1d-c2f9e07b5a34');
  assert.equal(parts[1]!.image.uncompressedSize, 1073741824);
  assert.equal(parts[1]!.gptPartition, undefined);
  assert.equal(parts[1]!.shrunk, undefined);
});

test('listPartitions (1.2): a verity image not placed in gptRegions follows, unnumbered, as root-verity', () => {
  const parts = listPartitions(VERITY);
  assert.deepEqual(
    parts.map((p) => [p.path, p.number, p.role, p.dpsName, p.verityOf]),
    [
      ['images/partition-1.raw.zst', 1, 'filesystem', 'esp', undefined],
      ['images/partition-2.raw.zst', 2, 'filesystem', 'root', undefined],
      ['images/root-verity.raw.zst', undefined, 'verity-hash', 'root-verity', 'images/partition-2.raw.zst'],
    ],
  );
});

test('listPartitions with a GPT: bare regions get their type from the GPT; shrink detection', () => {
  const parts = listPartitions(abImage(), abGpt());
  assert.deepEqual(
    parts.map((p) => [p.number, p.role, p.dpsName, p.shrunk]),
    [
      [1, 'filesystem', 'esp', false],
      [2, 'filesystem', 'root', false],
      [3, 'filesystem', 'root', true],
      [4, 'filesystem', 'linux-generic', false],
      [5, 'partition', 'swap', false],
      [6, 'partition', 'usr', false],
    ],
  );
  const usr = parts[5]!;
  assert.equal(usr.partType, T.usr);
  assert.equal(usr.gptPartition?.firstLba, 2048 * 6);
  assert.equal(usr.mountPoint, undefined);
  // Without the GPT, a bare region's type is unknown.
  const bare = listPartitions(abImage())[5]!;
  assert.equal(bare.partType, undefined);
  assert.equal(bare.dpsName, undefined);
});

test('listPartitions (1.1, no disk): filesystems and verity images in metadata order', () => {
  const meta: CosiMetadata = {
    version: '1.1',
    osArch: 'arm64',
    osRelease: '',
    images: [
      fs('images/esp.raw.zst', '/boot/efi', T.esp, 'E'),
      { ...fs('images/root.raw.zst', '/', 'b921b045-1df0-41c3-af44-4c6f280d3fae', 'R'), verity: { image: img('images/root.hash.zst'), roothash: 'ab' } },
      fs('images/var.raw.zst', '/var', T.generic, 'V'),
    ],
  };
  const parts = listPartitions(meta);
  assert.deepEqual(
    parts.map((p) => [p.path, p.number, p.role, p.dpsName]),
    [
      ['images/esp.raw.zst', undefined, 'filesystem', 'esp'],
      ['images/root.raw.zst', undefined, 'filesystem', 'root'],
      ['images/root.hash.zst', undefined, 'verity-hash', 'root-verity'],
      ['images/var.raw.zst', undefined, 'filesystem', 'linux-generic'],
    ],
  );
  assert.equal(primaryGptRegion(meta), undefined);
  assert.deepEqual(allImageFiles(meta).map((i) => i.path), ['images/esp.raw.zst', 'images/root.raw.zst', 'images/root.hash.zst', 'images/var.raw.zst']);
});

test('primaryGptRegion and allImageFiles (distinct paths, GPT region first)', () => {
  assert.equal(primaryGptRegion(GRUB)?.image.path, 'images/primary-gpt.raw.zst');
  assert.deepEqual(allImageFiles(VERITY).map((i) => i.path), ['images/primary-gpt.raw.zst', 'images/partition-1.raw.zst', 'images/partition-2.raw.zst', 'images/root-verity.raw.zst']);
});

// ---------------------------------------------------------------------------------------------
// selectPartition

test('select by type name: root, esp, efi alias, DPS names, case-insensitive', () => {
  const parts = listPartitions(VERITY);
  assert.equal(selectPartition(parts, 'root').path, 'images/partition-2.raw.zst');
  assert.equal(selectPartition(parts, 'ROOT').path, 'images/partition-2.raw.zst');
  assert.equal(selectPartition(parts, 'esp').path, 'images/partition-1.raw.zst');
  assert.equal(selectPartition(parts, 'efi').path, 'images/partition-1.raw.zst');
  assert.equal(selectPartition(parts, 'root-verity').path, 'images/root-verity.raw.zst');
  const ab = listPartitions(abImage(), abGpt());
  assert.equal(selectPartition(ab, 'usr').number, 6);
  assert.equal(selectPartition(ab, 'swap').number, 5);
  // 'home' by its mount point although the partition is typed generic Linux.
  assert.equal(selectPartition(ab, 'home').number, 4);
  assert.equal(selectPartition(ab, 'linux-generic').number, 4);
});

test('select root/esp by mount point when the type is not DPS', () => {
  const meta = abImage();
  meta.images[0]!.partType = T.generic; // an ESP mislabelled: found by /boot/efi
  meta.images[1]!.partType = T.generic;
  meta.images.splice(2, 1);
  meta.disk!.gptRegions!.splice(3, 1);
  const parts = listPartitions(meta);
  assert.equal(selectPartition(parts, 'esp').number, 1);
  assert.equal(selectPartition(parts, 'root').number, 2);
});

test('select by mount point, GPT number and exact path', () => {
  const parts = listPartitions(GRUB);
  assert.equal(selectPartition(parts, '/').path, 'images/partition-2.raw.zst');
  assert.equal(selectPartition(parts, '/boot/efi').number, 1);
  assert.equal(selectPartition(parts, '/boot/efi/').number, 1);
  assert.equal(selectPartition(parts, '1').path, 'images/partition-1.raw.zst');
  assert.equal(selectPartition(parts, '2').path, 'images/partition-2.raw.zst');
  assert.equal(selectPartition(parts, ' 2 ').path, 'images/partition-2.raw.zst');
  assert.equal(selectPartition(parts, 'images/partition-1.raw.zst').number, 1);
});

test('the first rule that matches decides: an exact path beats a type name', () => {
  // A (silly) image whose path is the word 'swap' while another partition has the swap type.
  const parts: PartitionInfo[] = [
    { path: 'swap', image: { path: 'swap', compressedSize: 1, uncompressedSize: 1 }, role: 'partition', number: 1 },
    { path: 'images/s.zst', image: { path: 'images/s.zst', compressedSize: 1, uncompressedSize: 1 }, role: 'partition', number: 2, dpsName: 'swap' },
  ];
  assert.equal(selectPartition(parts, 'swap').number, 1);
});

test('ambiguity: an A/B image with two roots names both candidates; number and path pick one', () => {
  const parts = listPartitions(abImage(), abGpt());
  const err = assertSelectorError(
    () => selectPartition(parts, 'root'),
    /^'root' is ambiguous: root \(\/, #2, images\/root-a\.raw\.zst\), root \(\/, #3, images\/root-b\.raw\.zst\); pick one by number or path$/,
  );
  assert.deepEqual(err.details?.['candidates'], ['images/root-a.raw.zst', 'images/root-b.raw.zst']);
  assertSelectorError(() => selectPartition(parts, '/'), /^'\/' is ambiguous: root \(\/, #2, /);
  assert.equal(selectPartition(parts, '3').path, 'images/root-b.raw.zst');
  assert.equal(selectPartition(parts, 'images/root-a.raw.zst').number, 2);
  // Without numbers, only the path can disambiguate.
  const unnumbered = parts.map(({ number: _n, ...p }) => p);
  assertSelectorError(() => selectPartition(unnumbered, 'root'), /pick one by path$/);
});

test('no match: the message lists every choice', () => {
  const parts = listPartitions(VERITY);
  const expected =
    "no partition matches 'foo'; choices: esp (/boot/efi, #1, images/partition-1.raw.zst), root (/, #2, images/partition-2.raw.zst), " +
    'root-verity (hash of images/partition-2.raw.zst, images/root-verity.raw.zst)';
  const err = assertSelectorError(() => selectPartition(parts, 'foo'), /^no partition matches 'foo'; choices: /);
  assert.equal(err.message, expected);
  assert.equal(err.exitCode, 2);
  for (const sel of ['9', '0', '/var', 'home', 'images/nope.zst', 'partition-2.raw.zst', '']) {
    assertSelectorError(() => selectPartition(parts, sel), new RegExp(`^no partition matches '${sel.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}'; choices: esp`));
  }
  assertSelectorError(() => selectPartition([], 'root'), /^no partition matches 'root'; choices: \(none: the image has no partitions\)$/);
});

test('describeChoices labels bare partitions and unknown types', () => {
  const parts = listPartitions(abImage()); // no GPT: swap and usr regions have no known type
  assert.equal(
    describeChoices(parts),
    'esp (/boot/efi, #1, images/esp.raw.zst), root (/, #2, images/root-a.raw.zst), root (/, #3, images/root-b.raw.zst), ' +
      'linux-generic (/home, #4, images/home.raw.zst), partition (#5, images/swap.raw.zst), partition (#6, images/usr.raw.zst)',
  );
});

test('listPartitions: a verity hash placed in gptRegions gets its number, and its type from the GPT', () => {
  const meta = structuredClone(VERITY);
  const hash = meta.images[1]!.verity!.image;
  meta.disk!.gptRegions!.push({ image: structuredClone(hash), type: 'partition', number: 3 });
  const hashPart = listPartitions(meta).find((p) => p.role === 'verity-hash')!;
  assert.equal(hashPart.number, 3);
  assert.equal(hashPart.dpsName, 'root-verity'); // inferred from the data partition
  assert.equal(hashPart.partType, undefined);
  const gpt = abGpt();
  // Partitions exactly the size of their images: ESP 64 MiB, root 1 GiB, the hash tree 8260 KiB.
  gpt.partitions = [gp(1, T.esp, 67108864 / 512), gp(2, T.root, 1073741824 / 512), gp(3, T.rootVerity, 8458240 / 512)];
  const joined = listPartitions(meta, gpt).find((p) => p.number === 3)!;
  assert.equal(joined.role, 'verity-hash');
  assert.equal(joined.partType, T.rootVerity);
  assert.equal(joined.verityOf, 'images/partition-2.raw.zst');
  assert.equal(joined.shrunk, false);
  assert.equal(selectPartition(listPartitions(meta, gpt), 'root-verity').number, 3);
  assert.equal(listPartitions(meta, gpt).length, 3);
});
