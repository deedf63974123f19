/**
 * cosi-fetch is as strict as cosi-pack validate: a table of mutations of a
 * real archive (each of the issue's, and more), every one checked with the
 * three real commands. A mutant validate rejects must be refused by fetch
 * and inspect with exit 5 (4 for a missing SHA-384) before any output is
 * opened: fetch writes into a directory that does not exist, so an output
 * opened first would fail with exit 6 instead. What validate accepts, fetch
 * accepts; rules that bind only the writer are warnings for fetch.
 * Also the metadata.json size cap (--max-metadata-size) on the client.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errorLine, listDir, runFetch, runPack, freshDirs } from './client-helpers.js';
import { imageFiles, smallParts, writeParts, type SmallParts, type Member, type Parts, type TarOptions } from './mutants.js';

const work = await mkdtemp(join(tmpdir(), 'cosi-fetch-strict-'));
after(() => rm(work, { recursive: true, force: true }));
const fresh = freshDirs(work);
let small: SmallParts;
before(async () => void (small = await smallParts()));

type Mutate = (p: Parts) => TarOptions | void;

interface Mutant {
  name: string;
  mutate: Mutate;
  /** cosi-pack validate's exit: 5 rejects (default), 0 accepts. */
  validate?: 0 | 5;
  /** fetch's and inspect's exit: 5 by default when validate rejects, 0 when it accepts. */
  fetch?: 0 | 4 | 5;
  /** A warning fetch must print (rules that bind only the writer, members it ignores). */
  warns?: RegExp;
}

const setImage = (p: Parts, path: string, key: string, value: unknown) => {
  for (const img of imageFiles(p.meta, path)) img[key] = value;
};
const region = (p: Parts, n: number) => p.meta.disk.gptRegions.find((r: { number?: number }) => r.number === n);
const member = (p: Parts, path: string): Member => p.images.find((m) => m.name === path)!;

const MUTANTS: Mutant[] = [
  // From the issue: rejected by validate, fetched with exit 0 before.
  { name: 'a duplicate images/... member of zeros after the real one', mutate: (p) => void p.images.push({ name: small.rootPath, data: Buffer.alloc(member(p, small.rootPath).data.length) }) },
  { name: 'disk.lbaSize 0', mutate: (p) => void (p.meta.disk.lbaSize = 0) },
  { name: 'disk.lbaSize 3', mutate: (p) => void (p.meta.disk.lbaSize = 3) },
  { name: 'disk.lbaSize -512', mutate: (p) => void (p.meta.disk.lbaSize = -512) },
  { name: 'version 9.9', mutate: (p) => void (p.meta.version = '9.9') },
  { name: 'compression.maxWindowLog 64', mutate: (p) => void (p.meta.compression.maxWindowLog = 64) },
  // Item 9: sizes that are not sizes (exit 6 or 4 before).
  ...[1.5, '3150591', null, true, [], {}, -1, 2 ** 53].map((v): Mutant => ({ name: `uncompressedSize ${JSON.stringify(v)}`, mutate: (p) => setImage(p, small.rootPath, 'uncompressedSize', v) })),
  ...[1.5, '2810', null, -1].map((v): Mutant => ({ name: `compressedSize ${JSON.stringify(v)}`, mutate: (p) => setImage(p, small.rootPath, 'compressedSize', v) })),
  // More metadata rules.
  { name: 'compressedSize one more than the tar member', mutate: (p) => setImage(p, small.rootPath, 'compressedSize', member(p, small.rootPath).data.length + 1) },
  { name: 'the region and its filesystem disagree on uncompressedSize', mutate: (p) => void (region(p, 2).image.uncompressedSize -= 4096) },
  { name: 'uncompressedSize larger than the partition', mutate: (p) => setImage(p, small.srvPath, 'uncompressedSize', 64 << 20) },
  { name: 'sha384 not hexadecimal', mutate: (p) => setImage(p, small.rootPath, 'sha384', 'zz'.repeat(48)) },
  { name: 'sha384 missing (required since 1.1)', mutate: (p) => setImage(p, small.rootPath, 'sha384', undefined), fetch: 4 },
  // Damaged bytes stay an integrity failure (exit 4), as for any other image.
  { name: 'a flipped byte in the primary GPT image', mutate: (p) => void (p.images[0]!.data[100] ^= 0x5a), fetch: 4 },
  { name: 'an image path outside images/', mutate: (p) => rename(p, small.rootPath, 'root.raw.zst') },
  { name: "an image path with a '..' segment", mutate: (p) => rename(p, small.rootPath, 'images/../images/root.raw.zst') },
  { name: 'two regions with the same number', mutate: (p) => void (region(p, 3).number = 2) },
  { name: 'a region number the GPT does not have', mutate: (p) => void (region(p, 3).number = 9) },
  { name: "region type 'bogus'", mutate: (p) => void (region(p, 3).type = 'bogus') },
  { name: 'disk.size not a multiple of lbaSize', mutate: (p) => void (p.meta.disk.size += 1) },
  { name: 'disk.size smaller than the backup GPT needs', mutate: (p) => void (p.meta.disk.size = 1 << 20) },
  { name: "disk.type 'mbr'", mutate: (p) => void (p.meta.disk.type = 'mbr') },
  { name: 'no disk.gptRegions', mutate: (p) => void delete p.meta.disk.gptRegions },
  { name: 'no disk', mutate: (p) => void delete p.meta.disk },
  { name: 'no compression', mutate: (p) => void delete p.meta.compression },
  { name: "osArch 'sparc'", mutate: (p) => void (p.meta.osArch = 'sparc') },
  { name: 'id not a UUID', mutate: (p) => void (p.meta.id = 'not-a-uuid') },
  { name: "bootloader.type 'lilo'", mutate: (p) => void (p.meta.bootloader.type = 'lilo') },
  { name: 'systemd-boot without systemdBoot', mutate: (p) => void (p.meta.bootloader = { type: 'systemd-boot' }) },
  { name: 'two filesystems with the same fsUuid', mutate: (p) => void (p.meta.images[1].fsUuid = p.meta.images[0].fsUuid) },
  { name: 'partType not a UUID', mutate: (p) => void (p.meta.images[0].partType = 'esp') },
  { name: 'a package without release', mutate: (p) => void delete p.meta.osPackages[0].release },
  { name: 'no osPackages', mutate: (p) => void delete p.meta.osPackages },
  { name: 'version missing', mutate: (p) => void delete p.meta.version },
  { name: "version '1'", mutate: (p) => void (p.meta.version = '1') },
  { name: 'version 2.0', mutate: (p) => void (p.meta.version = '2.0') },
  { name: 'images not an array', mutate: (p) => void (p.meta.images = {}) },
  { name: 'metadata.json not JSON', mutate: () => ({ metadataBytes: Buffer.from('{"version": "1.2",') }) },
  // Tar rules.
  { name: 'a second metadata.json at the end', mutate: (p) => void p.images.push({ name: 'metadata.json', data: Buffer.from('{}') }) },
  { name: 'images out of disk order in the tar', mutate: (p) => swap(p, small.rootPath, small.srvPath) },
  { name: 'a member between metadata.json and the GPT image', mutate: () => ({ afterMetadata: [{ name: 'NOTES.txt', data: Buffer.from('x\n') }] }) },
  { name: "a member named './x'", mutate: (p) => void p.images.push({ name: './x', data: Buffer.from('x') }) },
  { name: 'an image member that is a directory', mutate: (p) => void (p.images.splice(p.images.indexOf(member(p, small.srvPath)), 1, { name: small.srvPath, data: Buffer.alloc(0), type: 'directory' })) },
  { name: 'an image missing from the tar', mutate: (p) => void p.images.splice(p.images.indexOf(member(p, small.srvPath)), 1) },
  { name: 'one zero block for the end-of-archive marker', mutate: () => ({ endBlocks: 1 }) },
  { name: 'an extension header before cosi-marker', mutate: () => ({ paxMarker: true }) },
  // Writer-only rule: an error for validate, a warning for readers.
  {
    name: 'version 1.1 with disk and compression',
    mutate: (p) => void (p.meta.version = '1.1'),
    fetch: 0,
    warns: /warning: version is "1\.1" but the document has 'disk' \(added in 1\.2\), 'compression' \(added in 1\.2\): it must declare version 1\.2 or later/,
  },
  // What validate accepts, fetch accepts.
  {
    name: 'unknown fields at the root and in an image',
    mutate: (p) => {
      p.meta.future = { x: 1 };
      region(p, 2).image.extra = [1];
    },
    validate: 0,
  },
  { name: 'an unreferenced member after the images', mutate: (p) => void p.images.push({ name: 'NOTES.txt', data: Buffer.from('notes\n') }), validate: 0, warns: /warning: tar\[\d+\] "NOTES\.txt" is not referenced/ },
  { name: 'upper-case hashes and arch alias', mutate: (p) => void ((p.meta.osArch = 'AMD64'), setImage(p, small.rootPath, 'sha384', String(region(p, 2).image.sha384).toUpperCase())), validate: 0 },
];

function rename(p: Parts, from: string, to: string): void {
  setImage(p, from, 'path', to);
  member(p, from).name = to;
}

function swap(p: Parts, a: string, b: string): void {
  const i = p.images.indexOf(member(p, a));
  const j = p.images.indexOf(member(p, b));
  [p.images[i], p.images[j]] = [p.images[j]!, p.images[i]!];
}

async function check(m: Mutant): Promise<void> {
  const dir = await fresh();
  const parts = structuredClone(small.base);
  const opts = m.mutate(parts) ?? {};
  const cosi = join(dir, 'mutant.cosi');
  await writeParts(cosi, parts, opts);
  const validate = m.validate ?? 5;
  const fetchExit = m.fetch ?? (validate === 0 ? 0 : 5);
  const v = await runPack(['validate', cosi]);
  assert.equal(v.code, validate, `${m.name}: cosi-pack validate:\n${v.stdout}${v.stderr}`);
  const inspect = await runFetch(['inspect', cosi]);
  assert.equal(inspect.code, fetchExit, `${m.name}: inspect: ${inspect.stderr}`);
  if (fetchExit === 0) {
    const out = await fresh();
    const r = await runFetch(['-p', 'root', '-o', out, cosi]);
    assert.equal(r.code, 0, `${m.name}: fetch: ${r.stderr}`);
    assert.deepEqual(await listDir(out), ['root.img']);
    if (m.warns) assert.match(r.stderr, m.warns, m.name);
    return;
  }
  // Into a directory that does not exist: had an output been opened first, this would be exit 6.
  const r = await runFetch(['-p', 'root', '-o', join(dir, 'no-such-dir', 'root.img'), cosi]);
  assert.equal(r.code, fetchExit, `${m.name}: fetch: ${r.stderr}`);
  assert.equal(r.stderr.trim().split('\n').length, 1, `${m.name}: one line: ${r.stderr}`);
  assert.match(errorLine(r), /^cosi-fetch: error: /);
  assert.deepEqual(await listDir(dir), ['mutant.cosi'], m.name);
}

test('the unchanged archive: valid, fetched; into a missing directory, exit 6 (so exit 5 below means refused before opening)', async () => {
  const dir = await fresh();
  const cosi = join(dir, 'same.cosi');
  await writeParts(cosi, structuredClone(small.base));
  assert.equal((await runPack(['validate', cosi])).code, 0);
  const r = await runFetch(['-p', 'root', '-o', join(dir, 'no-such-dir', 'root.img'), cosi]);
  assert.equal(r.code, 6, r.stderr);
});

test(`every mutant validate rejects, fetch and inspect refuse before any output exists (${MUTANTS.length} mutants)`, async () => {
  // A few at a time: each is three real processes.
  const queue = [...MUTANTS];
  const failures: string[] = [];
  await Promise.all(
    Array.from({ length: 3 }, async () => {
      for (let m = queue.shift(); m; m = queue.shift()) {
        await check(m).catch((err: Error) => failures.push(err.message));
      }
    }),
  );
  assert.deepEqual(failures, []);
});

test('refusals name the rule: the duplicate member, the lbaSize, the size that is not a size', async () => {
  const cases: Array<[Mutate, RegExp]> = [
    [(p) => void p.images.push({ name: small.rootPath, data: Buffer.alloc(16) }), /tar\[\d+\] name "images\/partition-2\.raw\.zst" is already used by tar\[\d+\]/],
    [(p) => void (p.meta.disk.lbaSize = 3), /disk\.lbaSize must be 512 or 4096, got 3/],
    [(p) => setImage(p, small.rootPath, 'uncompressedSize', '3150591'), /uncompressedSize must be a non-negative integer of at most 2\^53-1, got "3150591"/],
    [(p) => void (p.meta.version = '9.9'), /version "9\.9" is not supported/],
  ];
  for (const [mutate, message] of cases) {
    const dir = await fresh();
    const parts = structuredClone(small.base);
    const cosi = join(dir, 'm.cosi');
    await writeParts(cosi, parts, mutate(parts) ?? {});
    const r = await runFetch(['--json', '-p', 'root', '-o', dir, cosi]);
    assert.equal(r.code, 5, r.stderr);
    assert.match(errorLine(r), message);
    assert.match(errorLine(r), /not a valid COSI archive/);
    assert.equal(r.stdout, '', 'no JSON summary for a refusal');
  }
});

test('metadata.json over the 4 MiB cap: exit 5 naming its size, the cap and the flag; --max-metadata-size raises it', async () => {
  const dir = await fresh();
  const parts = structuredClone(small.base);
  // Valid, only large: an unknown field readers must ignore.
  parts.meta.padding = 'x'.repeat(5 << 20);
  const cosi = join(dir, 'big.cosi');
  await writeParts(cosi, parts);
  for (const args of [['inspect', cosi], ['-p', 'root', '-o', join(dir, 'no-such-dir', 'r.img'), cosi], ['verify', cosi]]) {
    const r = await runFetch(args);
    assert.equal(r.code, 5, r.stderr);
    assert.match(errorLine(r), /metadata\.json is 5\.0 MiB \(\d+ bytes\), over the 4\.0 MiB limit for metadata; if the file is trusted, raise the limit with --max-metadata-size$/);
  }
  const ok = await runFetch(['inspect', '--max-metadata-size', '8M', cosi]);
  assert.equal(ok.code, 0, ok.stderr);
  const tight = await runFetch(['inspect', '--max-metadata-size', '1k', small.fx.cosi]);
  assert.equal(tight.code, 5, tight.stderr);
  assert.match(errorLine(tight), /over the 1\.0 KiB limit/);
  const bad = await runFetch(['inspect', '--max-metadata-size', 'lots', small.fx.cosi]);
  assert.equal(bad.code, 2);
  assert.match(errorLine(bad), /--max-metadata-size must be a size from 1\.0 KiB to 1\.0 GiB/);
  assert.deepEqual(await listDir(dir), ['big.cosi']);
});
