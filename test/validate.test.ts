import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { needsReference, REFERENCE, TEST_DATA } from './fixtures.js';
import fc from 'fast-check';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { validateCosi, formatIssues, type ValidationResult } from '../shared/format/validate.js';
import { parseMetadata, normalizeArch, MAX_METADATA_BYTES } from '../shared/format/metadata.js';
import { CosiError } from '../shared/errors.js';
import type { TarEntry } from '../shared/format/tar.js';
import type { Gpt, GptPartition } from '../shared/disk/gpt.js';

const readJson = (path: string): unknown => JSON.parse(readFileSync(path, 'utf8'));
// Our own documents (test/data/metadata): a GRUB image, and a verity root booted by a systemd-boot UKI.
const GRUB_PATH = join(TEST_DATA, 'metadata', 'grub-ext4.json');
const VERITY_PATH = join(TEST_DATA, 'metadata', 'verity-uki-systemd-boot.json');
const GRUB = readJson(GRUB_PATH);
const VERITY = readJson(VERITY_PATH);
// The reference material, checked when it is present (CI); see fixtures.ts.
const REF_SAMPLES = ['metadata-samples/valid/grub-simple.json', 'metadata-samples/valid/verity-uki-systemd-boot.json'];
const REF_SCHEMA = 'cosi-metadata-v1.2.schema.json';

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any -- mutation helpers poke anywhere
const clone = <T>(v: T): T => structuredClone(v);
const grub = (): Json => clone(GRUB);
const verity = (): Json => clone(VERITY);

const SHA = 'ab'.repeat(48);
const ESP = 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b';
const ROOT_X64 = '4f68bce3-e8cd-4db1-96e7-fbcaf984b709';

function doc10(): Json {
  return {
    version: '1.0',
    osArch: 'x86_64',
    osRelease: 'ID=test\n',
    images: [
      {
        image: { path: 'images/root.raw.zst', compressedSize: 10, uncompressedSize: 100 },
        mountPoint: '/',
        fsType: 'ext4',
        fsUuid: '88d2fa9b-7a32-450a-a9f8-aa9c3de79298',
        partType: ROOT_X64,
      },
    ],
  };
}

function doc11(): Json {
  return {
    version: '1.1',
    osArch: 'aarch64',
    osRelease: 'ID=test\n',
    images: [
      {
        image: { path: 'images/root.raw.zst', compressedSize: 10, uncompressedSize: 100, sha384: SHA },
        mountPoint: '/',
        fsType: 'ext4',
        fsUuid: '88d2fa9b-7a32-450a-a9f8-aa9c3de79298',
        partType: 'b921b045-1df0-41c3-af44-4c6f280d3fae',
        verity: {
          image: { path: 'images/root-hash.raw.zst', compressedSize: 5, uncompressedSize: 50, sha384: SHA },
          roothash: 'abcd',
        },
      },
    ],
    osPackages: [{ name: 'bash', version: '5', release: '1', arch: 'aarch64' }],
    bootloader: { type: 'grub', systemdBoot: null },
  };
}

function errorsOf(r: ValidationResult): string {
  return formatIssues(r).join('\n');
}

function assertValid(r: ValidationResult): void {
  assert.equal(r.valid, true, `expected valid, got:\n${errorsOf(r)}`);
  assert.deepEqual(r.errors, []);
}

/** The result has an issue with this rule on this field, and its message names the field. */
function assertIssue(r: ValidationResult, rule: string, field: string, kind: 'error' | 'warning' = 'error'): void {
  const list = kind === 'error' ? r.errors : r.warnings;
  const hit = list.find((i) => i.rule === rule && i.field === field);
  assert.ok(hit, `expected ${kind} ${rule} on ${field}, got:\n${errorsOf(r) || '(nothing)'}`);
  assert.ok(hit.message.includes(field), `message should name ${field}: ${hit.message}`);
  assert.ok(!hit.message.includes('\n'), 'one line');
  if (kind === 'error') assert.equal(r.valid, false);
}

// ---------------------------------------------------------------------------------------------

test('our sample documents are valid, without warnings', () => {
  for (const sample of [GRUB, VERITY]) {
    const r = validateCosi({ metadata: sample });
    assertValid(r);
    assert.deepEqual(r.warnings, []);
    assert.equal(r.version, '1.2');
  }
});

test('the reference samples are valid, without warnings', { skip: needsReference(...REF_SAMPLES) }, () => {
  for (const path of REF_SAMPLES) {
    const r = validateCosi({ metadata: readJson(join(REFERENCE, path)) });
    assertValid(r);
    assert.deepEqual(r.warnings, [], path);
    assert.equal(r.version, '1.2');
  }
});

test('a 1.0 document without osPackages, bootloader, sha384, disk or compression is valid', () => {
  assertValid(validateCosi({ metadata: doc10() }));
  // osPackages without release/arch is fine in 1.0; bootloader/disk/compression make the version wrong, not the fields.
  const d = doc10();
  d.osPackages = [{ name: 'bash', version: '5' }];
  assertValid(validateCosi({ metadata: d }));
  d.bootloader = 'whatever';
  d.disk = 42;
  d.compression = { maxWindowLog: 'huge' };
  const later = validateCosi({ metadata: d });
  assertIssue(later, 'version-too-old', 'version');
  assert.equal(later.errors.length, 1, errorsOf(later));
  d.osPackages[0].release = 7;
  assertIssue(validateCosi({ metadata: d }), 'type', 'osPackages[0].release');
});

test('a 1.1 document without disk or compression is valid; 1.1 requires what 1.0 did not', () => {
  assertValid(validateCosi({ metadata: doc11() }));
  const d = doc11();
  d.compression = null;
  assertValid(validateCosi({ metadata: d }));
  d.disk = { size: 'x' };
  assertIssue(validateCosi({ metadata: d }), 'version-too-old', 'version');

  const cases: [(d: Json) => void, string][] = [
    [(d) => delete d.osPackages, 'osPackages'],
    [(d) => delete d.bootloader, 'bootloader'],
    [(d) => delete d.images[0].image.sha384, 'images[0].image.sha384'],
    [(d) => delete d.images[0].verity.image.sha384, 'images[0].verity.image.sha384'],
    [(d) => delete d.osPackages[0].release, 'osPackages[0].release'],
    [(d) => delete d.osPackages[0].arch, 'osPackages[0].arch'],
  ];
  for (const [mutate, field] of cases) {
    const m = doc11();
    mutate(m);
    assertIssue(validateCosi({ metadata: m }), 'required', field);
  }
  // ...and 1.2 additionally requires disk and compression.
  for (const field of ['disk', 'compression']) {
    const m = grub();
    delete m[field];
    assertIssue(validateCosi({ metadata: m }), 'required', field);
  }
});

test('unknown fields are accepted everywhere', () => {
  const d = verity();
  const extra = { future: [1, { x: null }], 'weird key': true };
  const addTo = (o: Json): void => Object.assign(o, clone(extra));
  addTo(d);
  for (const fs of d.images) {
    addTo(fs);
    addTo(fs.image);
    if (fs.verity) {
      addTo(fs.verity);
      addTo(fs.verity.image);
    }
  }
  d.osPackages.forEach(addTo);
  addTo(d.bootloader);
  addTo(d.bootloader.systemdBoot);
  d.bootloader.systemdBoot.entries.forEach(addTo);
  addTo(d.disk);
  for (const r of d.disk.gptRegions) {
    addTo(r);
    addTo(r.image);
  }
  addTo(d.compression);
  const r = validateCosi({ metadata: d });
  assertValid(r);
  assert.deepEqual(r.warnings, []);
});

test('accepted spellings: arch aliases in any case, upper-case hashes and UUIDs, an id', () => {
  for (const arch of ['x86_64', 'X86_64', 'amd64', 'AMD64', 'x64', 'arm64', 'ARM64', 'aarch64', 'AArch64']) {
    const d = grub();
    d.osArch = arch;
    assertValid(validateCosi({ metadata: d }));
  }
  const d = grub();
  d.id = '0C4E5F9B-7A32-450A-A9F8-AA9C3DE79298';
  for (const fs of d.images) fs.image.sha384 = fs.image.sha384.toUpperCase();
  for (const r of d.disk.gptRegions) r.image.sha384 = r.image.sha384.toUpperCase();
  d.images[0].partType = ESP.toUpperCase();
  assertValid(validateCosi({ metadata: d }));
});

interface Row {
  name: string;
  base?: () => Json;
  mutate: (d: Json) => void;
  rule: string;
  field: string;
  warning?: boolean;
  /** The official JSON schema rejects this too. */
  schema?: boolean;
}

const ROWS: Row[] = [
  { name: 'metadata is an array', mutate: () => {}, base: () => [], rule: 'metadata-object', field: 'metadata', schema: true },
  { name: 'version missing', mutate: (d) => delete d.version, rule: 'required', field: 'version', schema: true },
  { name: 'version a number', mutate: (d) => (d.version = 1.2), rule: 'version-format', field: 'version', schema: true },
  { name: 'version without minor', mutate: (d) => (d.version = '1'), rule: 'version-format', field: 'version', schema: true },
  { name: 'version with patch', mutate: (d) => (d.version = '1.2.0'), rule: 'version-format', field: 'version', schema: true },
  { name: 'version major 2', mutate: (d) => (d.version = '2.0'), rule: 'version-unsupported', field: 'version', schema: true },
  { name: 'version newer minor', mutate: (d) => (d.version = '1.7'), rule: 'version-newer', field: 'version', warning: true },
  { name: 'osArch missing', mutate: (d) => delete d.osArch, rule: 'required', field: 'osArch', schema: true },
  { name: 'osArch unknown', mutate: (d) => (d.osArch = 'riscv64'), rule: 'os-arch', field: 'osArch', schema: true },
  { name: 'osRelease not a string', mutate: (d) => (d.osRelease = { ID: 'x' }), rule: 'type', field: 'osRelease', schema: true },
  { name: 'osRelease missing', mutate: (d) => delete d.osRelease, rule: 'required', field: 'osRelease', schema: true },
  { name: 'images missing', mutate: (d) => delete d.images, rule: 'required', field: 'images', schema: true },
  { name: 'images not an array', mutate: (d) => (d.images = {}), rule: 'type', field: 'images', schema: true },
  { name: 'filesystem not an object', mutate: (d) => (d.images[1] = 'root'), rule: 'type', field: 'images[1]', schema: true },
  { name: 'filesystem without image', mutate: (d) => delete d.images[0].image, rule: 'required', field: 'images[0].image', schema: true },
  { name: 'filesystem without mountPoint', mutate: (d) => delete d.images[0].mountPoint, rule: 'required', field: 'images[0].mountPoint', schema: true },
  { name: 'filesystem without fsType', mutate: (d) => delete d.images[0].fsType, rule: 'required', field: 'images[0].fsType', schema: true },
  { name: 'empty fsType', mutate: (d) => (d.images[0].fsType = ''), rule: 'non-empty', field: 'images[0].fsType', schema: true },
  { name: 'filesystem without fsUuid', mutate: (d) => delete d.images[1].fsUuid, rule: 'required', field: 'images[1].fsUuid', schema: true },
  { name: 'empty fsUuid', mutate: (d) => (d.images[1].fsUuid = ''), rule: 'non-empty', field: 'images[1].fsUuid', schema: true },
  { name: 'filesystem without partType', mutate: (d) => delete d.images[1].partType, rule: 'required', field: 'images[1].partType', schema: true },
  { name: 'image path without images/', mutate: (d) => (d.images[0].image.path = 'esp.rawzst'), rule: 'image-path', field: 'images[0].image.path', schema: true },
  { name: 'image path with ./', mutate: (d) => (d.images[0].image.path = './images/esp.rawzst'), rule: 'image-path', field: 'images[0].image.path', schema: true },
  { name: 'image path absolute', mutate: (d) => (d.images[0].image.path = '/images/esp.rawzst'), rule: 'image-path', field: 'images[0].image.path', schema: true },
  { name: 'image path is the folder', mutate: (d) => (d.images[0].image.path = 'images/'), rule: 'image-path', field: 'images[0].image.path', schema: true },
  { name: 'image path with ..', mutate: (d) => (d.images[0].image.path = 'images/../esp'), rule: 'image-path', field: 'images[0].image.path' },
  { name: 'image path not a string', mutate: (d) => (d.images[0].image.path = 7), rule: 'type', field: 'images[0].image.path', schema: true },
  { name: 'image without compressedSize', mutate: (d) => delete d.images[1].image.compressedSize, rule: 'required', field: 'images[1].image.compressedSize', schema: true },
  { name: 'negative compressedSize', mutate: (d) => (d.images[1].image.compressedSize = -1), rule: 'size-integer', field: 'images[1].image.compressedSize', schema: true },
  { name: 'fractional uncompressedSize', mutate: (d) => (d.images[1].image.uncompressedSize = 1.5), rule: 'size-integer', field: 'images[1].image.uncompressedSize', schema: true },
  { name: 'string uncompressedSize', mutate: (d) => (d.images[1].image.uncompressedSize = '100'), rule: 'size-integer', field: 'images[1].image.uncompressedSize', schema: true },
  { name: 'unsafe uncompressedSize', mutate: (d) => (d.images[1].image.uncompressedSize = 2 ** 60), rule: 'size-integer', field: 'images[1].image.uncompressedSize' },
  { name: 'sha384 missing', mutate: (d) => delete d.images[0].image.sha384, rule: 'required', field: 'images[0].image.sha384', schema: true },
  { name: 'sha384 too short', mutate: (d) => (d.images[0].image.sha384 = 'abcd'), rule: 'sha384-format', field: 'images[0].image.sha384', schema: true },
  { name: 'sha384 not hex', mutate: (d) => (d.images[0].image.sha384 = 'zz'.repeat(48)), rule: 'sha384-format', field: 'images[0].image.sha384', schema: true },
  { name: 'sha384 a number', mutate: (d) => (d.images[0].image.sha384 = 5), rule: 'sha384-format', field: 'images[0].image.sha384', schema: true },
  { name: 'verity a string', mutate: (d) => (d.images[1].verity = 'yes'), rule: 'verity-type', field: 'images[1].verity', schema: true },
  { name: 'verity without roothash', base: verity, mutate: (d) => delete d.images[1].verity.roothash, rule: 'required', field: 'images[1].verity.roothash', schema: true },
  { name: 'verity without image', base: verity, mutate: (d) => delete d.images[1].verity.image, rule: 'required', field: 'images[1].verity.image', schema: true },
  { name: 'verity image bad sha', base: verity, mutate: (d) => (d.images[1].verity.image.sha384 = 'x'), rule: 'sha384-format', field: 'images[1].verity.image.sha384', schema: true },
  { name: 'duplicate fsUuid', mutate: (d) => (d.images[1].fsUuid = '4f2a-91c3'), rule: 'fs-uuid-unique', field: 'images[1].fsUuid' },
  { name: 'partType not a UUID', mutate: (d) => (d.images[1].partType = 'root'), rule: 'part-type-uuid', field: 'images[1].partType', schema: true },
  { name: 'ESP mounted with another type', mutate: (d) => (d.images[0].partType = ROOT_X64), rule: 'esp-part-type', field: 'images[0].partType', warning: true },
  { name: 'two filesystems share an image', base: verity, mutate: (d) => (d.images[1].verity.image = clone(d.images[1].image)), rule: 'image-path-duplicate', field: 'images[1].verity.image.path', warning: true },
  { name: 'osPackages missing', mutate: (d) => delete d.osPackages, rule: 'required', field: 'osPackages', schema: true },
  { name: 'osPackages not an array', mutate: (d) => (d.osPackages = 'bash'), rule: 'type', field: 'osPackages', schema: true },
  { name: 'package not an object', mutate: (d) => (d.osPackages[1] = 'bash'), rule: 'type', field: 'osPackages[1]', schema: true },
  { name: 'package without name', mutate: (d) => delete d.osPackages[0].name, rule: 'required', field: 'osPackages[0].name', schema: true },
  { name: 'package version a number', mutate: (d) => (d.osPackages[0].version = 5), rule: 'type', field: 'osPackages[0].version', schema: true },
  { name: 'package without release', mutate: (d) => delete d.osPackages[2].release, rule: 'required', field: 'osPackages[2].release', schema: true },
  { name: 'package without arch', mutate: (d) => delete d.osPackages[2].arch, rule: 'required', field: 'osPackages[2].arch', schema: true },
  { name: 'bootloader missing', mutate: (d) => delete d.bootloader, rule: 'required', field: 'bootloader', schema: true },
  { name: 'bootloader not an object', mutate: (d) => (d.bootloader = 'grub'), rule: 'type', field: 'bootloader', schema: true },
  { name: 'bootloader type unknown', mutate: (d) => (d.bootloader.type = 'lilo'), rule: 'bootloader-type', field: 'bootloader.type', schema: true },
  { name: 'bootloader type missing', mutate: (d) => delete d.bootloader.type, rule: 'required', field: 'bootloader.type', schema: true },
  { name: 'systemd-boot without systemdBoot', mutate: (d) => (d.bootloader.type = 'systemd-boot'), rule: 'systemd-boot-required', field: 'bootloader.systemdBoot', schema: true },
  { name: 'systemd-boot with null systemdBoot', base: verity, mutate: (d) => (d.bootloader.systemdBoot = null), rule: 'systemd-boot-required', field: 'bootloader.systemdBoot', schema: true },
  { name: 'grub with systemdBoot', base: verity, mutate: (d) => (d.bootloader.type = 'grub'), rule: 'systemd-boot-forbidden', field: 'bootloader.systemdBoot', schema: true },
  { name: 'systemdBoot without entries', base: verity, mutate: (d) => delete d.bootloader.systemdBoot.entries, rule: 'required', field: 'bootloader.systemdBoot.entries', schema: true },
  { name: 'systemdBoot entries empty', base: verity, mutate: (d) => (d.bootloader.systemdBoot.entries = []), rule: 'systemd-boot-entries-empty', field: 'bootloader.systemdBoot.entries', schema: true },
  { name: 'entry type unknown', base: verity, mutate: (d) => (d.bootloader.systemdBoot.entries[0].type = 'uki'), rule: 'systemd-boot-entry-type', field: 'bootloader.systemdBoot.entries[0].type', schema: true },
  { name: 'entry path missing', base: verity, mutate: (d) => delete d.bootloader.systemdBoot.entries[0].path, rule: 'required', field: 'bootloader.systemdBoot.entries[0].path', schema: true },
  { name: 'entry cmdline a list', base: verity, mutate: (d) => (d.bootloader.systemdBoot.entries[0].cmdline = ['ro']), rule: 'type', field: 'bootloader.systemdBoot.entries[0].cmdline', schema: true },
  { name: 'entry kernel missing', base: verity, mutate: (d) => delete d.bootloader.systemdBoot.entries[0].kernel, rule: 'required', field: 'bootloader.systemdBoot.entries[0].kernel', schema: true },
  { name: 'compression missing', mutate: (d) => delete d.compression, rule: 'required', field: 'compression', schema: true },
  { name: 'maxWindowLog missing', mutate: (d) => delete d.compression.maxWindowLog, rule: 'required', field: 'compression.maxWindowLog', schema: true },
  { name: 'maxWindowLog fractional', mutate: (d) => (d.compression.maxWindowLog = 27.5), rule: 'max-window-log', field: 'compression.maxWindowLog', schema: true },
  { name: 'maxWindowLog too large', mutate: (d) => (d.compression.maxWindowLog = 32), rule: 'max-window-log', field: 'compression.maxWindowLog' },
  { name: 'maxWindowLog too small', mutate: (d) => (d.compression.maxWindowLog = 9), rule: 'max-window-log', field: 'compression.maxWindowLog' },
  { name: 'disk missing', mutate: (d) => delete d.disk, rule: 'required', field: 'disk', schema: true },
  { name: 'disk size missing', mutate: (d) => delete d.disk.size, rule: 'required', field: 'disk.size', schema: true },
  { name: 'disk size negative', mutate: (d) => (d.disk.size = -512), rule: 'disk-size', field: 'disk.size', schema: true },
  { name: 'disk size not LBA-aligned', mutate: (d) => (d.disk.size += 100), rule: 'disk-size-multiple', field: 'disk.size' },
  { name: 'lbaSize 1024', mutate: (d) => (d.disk.lbaSize = 1024), rule: 'lba-size', field: 'disk.lbaSize', schema: true },
  { name: 'lbaSize missing', mutate: (d) => delete d.disk.lbaSize, rule: 'required', field: 'disk.lbaSize', schema: true },
  { name: 'disk type mbr', mutate: (d) => (d.disk.type = 'mbr'), rule: 'disk-type', field: 'disk.type', schema: true },
  { name: 'disk type missing', mutate: (d) => delete d.disk.type, rule: 'required', field: 'disk.type', schema: true },
  { name: 'gptRegions missing', mutate: (d) => delete d.disk.gptRegions, rule: 'gpt-regions-required', field: 'disk.gptRegions', schema: true },
  { name: 'gptRegions not an array', mutate: (d) => (d.disk.gptRegions = {}), rule: 'type', field: 'disk.gptRegions', schema: true },
  { name: 'region not an object', mutate: (d) => (d.disk.gptRegions[2] = 2), rule: 'type', field: 'disk.gptRegions[2]', schema: true },
  { name: 'region type unknown', mutate: (d) => (d.disk.gptRegions[2].type = 'backup-gpt'), rule: 'region-type', field: 'disk.gptRegions[2].type', schema: true },
  { name: 'region type missing', mutate: (d) => delete d.disk.gptRegions[2].type, rule: 'required', field: 'disk.gptRegions[2].type', schema: true },
  { name: 'region image missing', mutate: (d) => delete d.disk.gptRegions[0].image, rule: 'required', field: 'disk.gptRegions[0].image', schema: true },
  { name: 'region image bad sha', mutate: (d) => (d.disk.gptRegions[0].image.sha384 = '00'), rule: 'sha384-format', field: 'disk.gptRegions[0].image.sha384', schema: true },
  { name: 'no primary-gpt', mutate: (d) => d.disk.gptRegions.shift(), rule: 'primary-gpt-count', field: 'disk.gptRegions', schema: true },
  {
    name: 'two primary-gpt',
    mutate: (d) => d.disk.gptRegions.push({ ...clone(d.disk.gptRegions[0]), image: { ...d.disk.gptRegions[0].image, path: 'images/gpt2.zst' } }),
    rule: 'primary-gpt-count',
    field: 'disk.gptRegions',
    schema: true,
  },
  { name: 'primary-gpt not first', mutate: (d) => d.disk.gptRegions.push(d.disk.gptRegions.shift()), rule: 'primary-gpt-first', field: 'disk.gptRegions[2].type', schema: true },
  { name: 'partition without number', mutate: (d) => delete d.disk.gptRegions[1].number, rule: 'region-number', field: 'disk.gptRegions[1].number', schema: true },
  { name: 'partition number 0', mutate: (d) => (d.disk.gptRegions[1].number = 0), rule: 'region-number', field: 'disk.gptRegions[1].number', schema: true },
  { name: 'partition number fractional', mutate: (d) => (d.disk.gptRegions[1].number = 1.5), rule: 'region-number', field: 'disk.gptRegions[1].number', schema: true },
  { name: 'partition number a string', mutate: (d) => (d.disk.gptRegions[1].number = '1'), rule: 'region-number', field: 'disk.gptRegions[1].number', schema: true },
  { name: 'duplicate partition number', mutate: (d) => (d.disk.gptRegions[2].number = 1), rule: 'region-number-unique', field: 'disk.gptRegions[2].number' },
  { name: 'duplicate region path', mutate: (d) => (d.disk.gptRegions[2].image = clone(d.disk.gptRegions[1].image)), rule: 'region-path-unique', field: 'disk.gptRegions[2].image.path' },
  { name: 'filesystem and region disagree on sha384', mutate: (d) => (d.images[1].image.sha384 = 'cd'.repeat(48)), rule: 'image-file-mismatch', field: 'images[1].image.sha384' },
  { name: 'filesystem and region disagree on size', mutate: (d) => (d.disk.gptRegions[1].image.uncompressedSize = 4096), rule: 'image-file-mismatch', field: 'images[0].image.uncompressedSize' },
  { name: 'id not a UUID', mutate: (d) => (d.id = 'my-image'), rule: 'id-uuid', field: 'id', schema: true },
  { name: 'id a number', mutate: (d) => (d.id = 12), rule: 'id-uuid', field: 'id', schema: true },
];

test('every metadata rule: a mutation of a valid document is reported with its rule and field', async (t) => {
  for (const row of ROWS) {
    await t.test(row.name, () => {
      const d = (row.base ?? grub)();
      row.mutate(d);
      const r = validateCosi({ metadata: d });
      assertIssue(r, row.rule, row.field, row.warning ? 'warning' : 'error');
      if (row.warning) assert.equal(r.valid, true, `a warning alone keeps the document valid:\n${errorsOf(r)}`);
    });
  }
});

test('formatIssues: one line per issue, errors then warnings, field and rule up front', () => {
  const d = grub();
  d.disk.lbaSize = 1024;
  d.version = '1.9';
  const lines = formatIssues(validateCosi({ metadata: d }));
  assert.deepEqual(lines, [
    'error: disk.lbaSize: lba-size: must be 512 or 4096, got 1024',
    'warning: version: version-newer: "1.9" is newer than 1.2; validated as 1.2',
  ]);
});

test('a newer minor of major 1 is validated with 1.2 rules; another major stops validation', () => {
  const d = grub();
  d.version = '1.3';
  delete d.compression;
  const r = validateCosi({ metadata: d });
  assertIssue(r, 'required', 'compression');
  assert.equal(r.version, '1.3');
  const e = grub();
  e.version = '2.0';
  delete e.images;
  const r2 = validateCosi({ metadata: e });
  assert.deepEqual(r2.errors.map((i) => i.rule), ['version-unsupported']);
});

// ---------------------------------------------------------------------------------------------
// Tar index rules

function ent(name: string, size: number, type: TarEntry['type'] = 'file'): TarEntry {
  return { name, type, typeflag: type === 'directory' ? '5' : '0', headerOffset: 0, ustarOffset: 0, dataOffset: 0, size, mode: 0o400, mtime: 0 };
}

/** A well-formed tar index for a document: marker, metadata, regions in disk order, then the rest. */
function tarFor(d: Json): TarEntry[] {
  const out = [ent('cosi-marker', 0), ent('metadata.json', 1234)];
  const seen = new Set<string>();
  const add = (img: Json): void => {
    if (seen.has(img.path)) return;
    seen.add(img.path);
    out.push(ent(img.path, img.compressedSize));
  };
  for (const r of d.disk?.gptRegions ?? []) add(r.image);
  for (const fs of d.images) {
    add(fs.image);
    if (fs.verity) add(fs.verity.image);
  }
  return out;
}

test('tar: well-formed indexes of the samples and of 1.0/1.1 documents are valid', () => {
  for (const d of [grub(), verity(), doc11()]) {
    const r = validateCosi({ metadata: d, entries: tarFor(d) });
    assertValid(r);
    assert.deepEqual(r.warnings, []);
  }
  // Before 1.2 there was no marker: metadata.json first is fine.
  const d = doc10();
  assertValid(validateCosi({ metadata: d, entries: tarFor(d).slice(1) }));
  // Directory entries and images in subdirectories are fine.
  const g = grub();
  g.images[1].image.path = g.disk.gptRegions[2].image.path = 'images/sub/root.raw.zst';
  const entries = tarFor(g);
  entries.splice(3, 0, ent('images/', 0, 'directory'));
  assertValid(validateCosi({ metadata: g, entries }));
});

interface TarRow {
  name: string;
  base?: () => Json;
  edit: (e: TarEntry[], d: Json) => TarEntry[] | void;
  rule: string;
  field: string;
  warning?: boolean;
}

const TAR_ROWS: TarRow[] = [
  { name: 'marker missing', edit: (e) => e.slice(1), rule: 'tar-marker-first', field: 'tar[0]' },
  { name: 'marker not first', edit: (e) => void e.splice(0, 2, e[1]!, e[0]!), rule: 'tar-marker-first', field: 'tar[0]' },
  { name: 'marker is a directory', edit: (e) => void (e[0] = ent('cosi-marker', 0, 'directory')), rule: 'tar-marker-first', field: 'tar[0]' },
  { name: 'marker not empty', edit: (e) => void (e[0]!.size = 5), rule: 'tar-marker-size', field: 'tar[0]' },
  { name: 'empty archive', edit: () => [], rule: 'tar-marker-first', field: 'tar[0]' },
  { name: 'metadata missing', edit: (e) => void e.splice(1, 1), rule: 'tar-metadata-missing', field: 'tar' },
  { name: 'metadata not second', edit: (e) => void e.splice(1, 0, ent('README', 3)), rule: 'tar-metadata-second', field: 'tar[2]' },
  { name: 'metadata a directory', edit: (e) => void (e[1] = ent('metadata.json', 0, 'directory')), rule: 'tar-not-file', field: 'tar[1]' },
  { name: 'extra file before metadata (1.1)', base: doc11, edit: (e) => void e.splice(1, 0, ent('README', 3)), rule: 'tar-extra-before-metadata', field: 'tar[1]' },
  { name: 'name with leading ./', edit: (e) => void e.push(ent('./extra', 1)), rule: 'tar-name-leading', field: 'tar[5]' },
  { name: 'name with leading /', edit: (e) => void e.push(ent('/extra', 1)), rule: 'tar-name-leading', field: 'tar[5]' },
  { name: 'duplicate path', edit: (e) => void e.push(ent('images/partition-2.raw.zst', 401726553)), rule: 'tar-path-unique', field: 'tar[5]' },
  { name: 'image missing', edit: (e) => void e.splice(4, 1), rule: 'tar-image-missing', field: 'images[1].image.path' },
  { name: 'verity image missing', base: verity, edit: (e) => void e.pop(), rule: 'tar-image-missing', field: 'images[1].verity.image.path' },
  { name: 'image is a symlink', edit: (e) => void (e[3] = ent('images/partition-1.raw.zst', 0, 'symlink')), rule: 'tar-not-file', field: 'tar[3]' },
  { name: 'image size differs', edit: (e) => void (e[4]!.size = 1), rule: 'tar-image-size', field: 'tar[4]' },
  { name: 'primary GPT not right after metadata', edit: (e) => void e.splice(2, 0, ent('extra', 3)), rule: 'tar-gpt-after-metadata', field: 'tar[2]' },
  { name: 'images out of disk order', edit: (e) => void e.splice(3, 2, e[4]!, e[3]!), rule: 'tar-image-order', field: 'tar[3]' },
  { name: 'GPT image after a partition', edit: (e) => void e.splice(2, 2, e[3]!, e[2]!), rule: 'tar-image-order', field: 'tar[2]' },
  { name: 'unknown extra file', edit: (e) => void e.push(ent('footer.sig', 64)), rule: 'tar-unknown-file', field: 'tar[5]', warning: true },
];

test('every tar rule, on synthetic indexes', async (t) => {
  for (const row of TAR_ROWS) {
    await t.test(row.name, () => {
      const d = (row.base ?? grub)();
      const entries = tarFor(d);
      const edited = row.edit(entries, d) ?? entries;
      const r = validateCosi({ metadata: d, entries: edited });
      assertIssue(r, row.rule, row.field, row.warning ? 'warning' : 'error');
      if (row.warning) assert.equal(r.valid, true, errorsOf(r));
    });
  }
});

// ---------------------------------------------------------------------------------------------
// GPT rules

function part(number: number, firstLba: number, sectors: number, typeGuid: string): GptPartition {
  return { number, typeGuid, partGuid: `00000000-0000-0000-0000-${String(number).padStart(12, '0')}`, firstLba, lastLba: firstLba + sectors - 1, attributes: 0n, name: `p${number}`, offset: firstLba * 512, size: sectors * 512 };
}

const ROOT_BYTES = 1073741824;

/** The GPT the grub document describes: 2 GiB disk, ESP #1 (64 MiB), root #2 (exactly its 1 GiB image). */
function gptFor(): Gpt {
  return {
    lbaSize: 512,
    diskGuid: '11111111-2222-3333-4444-555555555555',
    currentLba: 1,
    backupLba: 2147483648 / 512 - 1,
    firstUsableLba: 34,
    lastUsableLba: 2147483648 / 512 - 34,
    entriesLba: 2,
    numEntries: 128,
    entrySize: 128,
    entriesCrc: 0,
    partitions: [part(1, 2048, 131072, ESP), part(2, 133120, ROOT_BYTES / 512, ROOT_X64)],
    primaryRegionSize: 17408,
    protectiveMbr: true,
  };
}

test('gpt: the grub document agrees with its GPT', () => {
  const d = grub();
  const r = validateCosi({ metadata: d, entries: tarFor(d), gpt: gptFor() });
  assertValid(r);
  assert.deepEqual(r.warnings, []);
  // A shrunk image (smaller than its partition) is fine.
  const g = gptFor();
  g.partitions[1] = part(2, 133120, (2 * ROOT_BYTES) / 512, ROOT_X64);
  assertValid(validateCosi({ metadata: d, gpt: g }));
});

interface GptRow {
  name: string;
  edit: (g: Gpt, d: Json) => void;
  rule: string;
  field: string;
  warning?: boolean;
}

const GPT_ROWS: GptRow[] = [
  { name: 'partition number not in the GPT', edit: (g) => void g.partitions.pop(), rule: 'gpt-partition-missing', field: 'disk.gptRegions[2].number' },
  { name: 'regions not in start-LBA order', edit: (g) => void (g.partitions[0] = part(1, 2000000, 131072, ESP)), rule: 'gpt-region-order', field: 'disk.gptRegions[2].number' },
  { name: 'image larger than its partition', edit: (g) => void (g.partitions[1] = part(2, 133120, 1000, ROOT_X64)), rule: 'image-larger-than-partition', field: 'disk.gptRegions[2].image.uncompressedSize' },
  { name: 'primary GPT region size differs', edit: (g) => void (g.primaryRegionSize = 32768), rule: 'gpt-primary-size', field: 'disk.gptRegions[0].image.uncompressedSize' },
  { name: 'disk smaller than the backup GPT', edit: (g) => void (g.backupLba = 4 * 1024 * 1024), rule: 'disk-size-too-small', field: 'disk.size' },
  { name: 'GPT sector size differs', edit: (g) => void (g.lbaSize = 4096), rule: 'gpt-lba-size', field: 'disk.lbaSize' },
  { name: 'partType disagrees with the GPT', edit: (g) => void (g.partitions[1]!.typeGuid = '0fc63daf-8483-4772-8e79-3d69d8477de4'), rule: 'part-type-mismatch', field: 'images[1].partType', warning: true },
];

test('every GPT rule, on a synthetic GPT', async (t) => {
  for (const row of GPT_ROWS) {
    await t.test(row.name, () => {
      const d = grub();
      const g = gptFor();
      row.edit(g, d);
      const r = validateCosi({ metadata: d, gpt: g });
      assertIssue(r, row.rule, row.field, row.warning ? 'warning' : 'error');
      if (row.warning) assert.equal(r.valid, true, errorsOf(r));
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Never throws

/** Every JSON path in a value, so mutations can hit any depth. */
function paths(v: unknown, prefix: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  if (prefix.length > 0) out.push(prefix);
  if (Array.isArray(v)) v.forEach((x, i) => paths(x, [...prefix, i], out));
  else if (v && typeof v === 'object') for (const k of Object.keys(v)) paths((v as Json)[k], [...prefix, k], out);
  return out;
}

function mutateAt(doc: Json, path: (string | number)[], value: unknown, remove: boolean): void {
  let o = doc;
  for (const k of path.slice(0, -1)) o = o[k];
  const last = path[path.length - 1]!;
  if (remove) {
    if (Array.isArray(o) && typeof last === 'number') o.splice(last, 1);
    else delete o[last];
  } else o[last] = value;
}

function assertNoInternal(r: ValidationResult): void {
  assert.ok(Array.isArray(r.errors) && Array.isArray(r.warnings));
  assert.ok(!r.errors.some((i) => i.rule === 'internal'), errorsOf(r));
  assert.equal(r.valid, r.errors.length === 0);
  for (const i of [...r.errors, ...r.warnings]) assert.ok(i.message.startsWith(i.field), i.message);
  assert.equal(formatIssues(r).length, r.errors.length + r.warnings.length);
}

test('property: validateCosi never throws on arbitrary values', () => {
  fc.assert(
    fc.property(fc.oneof(fc.anything(), fc.jsonValue()), (v) => {
      assertNoInternal(validateCosi({ metadata: v }));
      assertNoInternal(validateCosi({ metadata: v, entries: [], gpt: gptFor() }));
    }),
    { numRuns: 300 },
  );
});

test('property: validateCosi never throws on random mutations of a valid document', () => {
  const bases = [GRUB, VERITY, doc10(), doc11()];
  fc.assert(
    fc.property(
      fc.nat(bases.length - 1),
      fc.array(fc.tuple(fc.nat(), fc.oneof(fc.jsonValue(), fc.constant(undefined)), fc.boolean()), { minLength: 1, maxLength: 4 }),
      (b, edits) => {
        const d = clone(bases[b]) as Json;
        const entries = tarFor(d);
        for (const [pick, value, remove] of edits) {
          const all = paths(d);
          if (all.length === 0) break;
          mutateAt(d, all[pick % all.length]!, value, remove);
        }
        assertNoInternal(validateCosi({ metadata: d }));
        assertNoInternal(validateCosi({ metadata: d, entries, gpt: gptFor() }));
      },
    ),
    { numRuns: 500 },
  );
});

// ---------------------------------------------------------------------------------------------
// The official JSON schema

test('the official v1.2 JSON schema accepts our documents and the reference samples, and agrees with us on the rejections it can express', { skip: needsReference(REF_SCHEMA, ...REF_SAMPLES) }, async (t) => {
  const schema = readJson(join(REFERENCE, REF_SCHEMA)) as Record<string, unknown>;
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  const check = ajv.compile(schema);
  for (const sample of [GRUB, VERITY, ...REF_SAMPLES.map((p) => readJson(join(REFERENCE, p)))]) assert.equal(check(sample), true, ajv.errorsText(check.errors));
  for (const row of ROWS.filter((r) => r.schema)) {
    await t.test(row.name, () => {
      const d = (row.base ?? grub)();
      row.mutate(d);
      assert.equal(check(d), false, `the schema accepts "${row.name}"`);
      assert.equal(validateCosi({ metadata: d }).valid, false);
    });
  }
  // What the schema accepts, we accept (up to the rules the schema cannot express).
  const d = verity();
  d.osArch = 'AArch64';
  d.id = '0c4e5f9b-7a32-450a-a9f8-aa9c3de79298';
  d.extra = { anything: true };
  assert.equal(check(d), true, ajv.errorsText(check.errors));
  assertValid(validateCosi({ metadata: d }));
});

// ---------------------------------------------------------------------------------------------
// parseMetadata and normalizeArch

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

function assertMetadataError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CosiError);
    assert.equal(err.code, 'COSI_ERR_METADATA');
    assert.match(err.message, pattern);
    assert.ok(!err.message.includes('\n'));
    return true;
  });
}

test('parseMetadata: reads valid documents, including unknown fields and a BOM', () => {
  const bytes = readFileSync(VERITY_PATH);
  const m = parseMetadata(bytes);
  assert.equal(m.version, '1.2');
  assert.equal(m.images[1]!.verity!.image.path, 'images/root-verity.raw.zst');
  assert.equal(m.disk!.gptRegions![0]!.type, 'primary-gpt');
  const withBom = parseMetadata(enc(`\ufeff${JSON.stringify({ ...doc10(), x: 1 })}`));
  assert.equal(withBom.version, '1.0');
});

test('parseMetadata: rejects what cannot be typed, with one clear line', () => {
  assertMetadataError(() => parseMetadata(enc('<html>')), /^metadata\.json is not valid JSON: /);
  assertMetadataError(() => parseMetadata(enc('')), /^metadata\.json is not valid JSON: /);
  assertMetadataError(() => parseMetadata(new Uint8Array([0x7b, 0xff, 0x7d])), /not valid UTF-8/);
  assertMetadataError(() => parseMetadata(enc('[1]')), /must contain a JSON object, got an array/);
  assertMetadataError(() => parseMetadata(enc('null')), /got null/);
  assertMetadataError(() => parseMetadata(enc('{"images":[]}')), /version must be a string/);
  assertMetadataError(() => parseMetadata(enc('{"version":"1.2","images":{}}')), /images must be an array/);
  assertMetadataError(() => parseMetadata(enc('{"version":"1.2","images":[{"image":{"path":3}}]}')), /images\[0\]\.image\.path must be a string/);
  assertMetadataError(() => parseMetadata(enc('{"version":"1.2","images":[{"image":{"path":"images/a"},"verity":7}]}')), /images\[0\]\.verity/);
  assertMetadataError(() => parseMetadata(enc('{"version":"1.2","images":[],"disk":{"gptRegions":[5]}}')), /disk\.gptRegions\[0\] must be an object/);
  assertMetadataError(() => parseMetadata(enc('{"version":"1.2","images":[],"disk":[]}')), /disk must be an object/);
  assertMetadataError(() => parseMetadata(enc('{"version":"1.2","images":[],"bootloader":{"systemdBoot":{"entries":{}}}}')), /entries must be an array/);
  assertMetadataError(() => parseMetadata(new Uint8Array(MAX_METADATA_BYTES + 1)), /over the 4\.0 MiB limit for metadata; .* --max-metadata-size/);
});

test('normalizeArch: case-insensitive with aliases', () => {
  assert.equal(normalizeArch('x86_64'), 'x86_64');
  assert.equal(normalizeArch('AMD64'), 'x86_64');
  assert.equal(normalizeArch('x64'), 'x86_64');
  assert.equal(normalizeArch('Arm64'), 'arm64');
  assert.equal(normalizeArch('AARCH64'), 'arm64');
  assert.equal(normalizeArch('riscv64'), undefined);
  assert.equal(normalizeArch('toString'), undefined);
  assert.equal(normalizeArch(''), undefined);
});
