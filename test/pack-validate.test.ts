/**
 * cosi-pack validate, the real command: what it checked in its last line
 * (structure only, or --deep: every image hashed, decoded and sized), a
 * corrupt image found only by --deep and classified (SHA-384, zstd, size),
 * the metadata.json size cap and --max-metadata-size, a version older than
 * the fields the document uses, and archives that begin with an extension
 * header read as tar, not as JSON.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freshDirs, runPack } from './client-helpers.js';
import { imageFiles, sha384, smallParts, writeParts, type SmallParts, type Parts } from './mutants.js';

const work = await mkdtemp(join(tmpdir(), 'cosi-pack-validate-'));
after(() => rm(work, { recursive: true, force: true }));
const fresh = freshDirs(work);
let small: SmallParts;
before(async () => void (small = await smallParts()));

async function variant(change: (p: Parts) => void): Promise<string> {
  const p = structuredClone(small.base);
  change(p);
  const out = join(await fresh(), 'v.cosi');
  await writeParts(out, p);
  return out;
}

/** One byte of the image's stored bytes flipped, well inside its zstd frame. */
function flip(p: Parts, path: string): Buffer {
  const m = p.images.find((i) => i.name === path)!;
  m.data[Math.floor(m.data.length / 2)] ^= 0x5a;
  return m.data;
}

test('the last line says which checks ran; --json lists them', async () => {
  const plain = await runPack(['validate', small.fx.cosi]);
  assert.equal(plain.code, 0, plain.stdout);
  assert.equal(plain.stdout, `${small.fx.cosi}: valid COSI 1.2 (checked: tar layout, metadata and GPT rules; images not decoded: add --deep)\n`);
  const deep = await runPack(['validate', '--deep', '-q', small.fx.cosi]);
  assert.equal(deep.code, 0, deep.stdout);
  assert.equal(deep.stdout, `${small.fx.cosi}: valid COSI 1.2 (checked: tar layout, metadata and GPT rules; every image's SHA-384, zstd stream and size)\n`);
  assert.equal(deep.stderr, '');
  const json = JSON.parse((await runPack(['validate', '--deep', '--json', '-q', small.fx.cosi])).stdout);
  assert.deepEqual(json.checks, ['structure', 'images']);
  assert.equal(json.decoded.length, 4);
  assert.deepEqual(JSON.parse((await runPack(['validate', '--json', small.fx.cosi])).stdout).checks, ['structure']);
});

test('--deep finds what the structure cannot: a flipped byte (SHA-384), a bad stream with a matching hash (zstd), a wrong size', async () => {
  const cases: Array<[string, (p: Parts) => void, RegExp]> = [
    ['flipped byte', (p) => void flip(p, small.rootPath), new RegExp(`^error: ${small.rootPath}: image-sha384: SHA-384 mismatch \\(expected [0-9a-f]{96}, got [0-9a-f]{96}\\): the image is corrupt`, 'm')],
    [
      'bad zstd, hash updated to match',
      (p) => {
        const data = flip(p, small.rootPath);
        for (const img of imageFiles(p.meta, small.rootPath)) img.sha384 = sha384(data);
      },
      new RegExp(`^error: ${small.rootPath}: image-zstd: `, 'm'),
    ],
    [
      'uncompressedSize 4 KiB short of the stream',
      (p) => {
        for (const img of imageFiles(p.meta, small.srvPath)) img.uncompressedSize = (img.uncompressedSize as number) - 4096;
      },
      new RegExp(`^error: ${small.srvPath}: image-size: `, 'm'),
    ],
  ];
  for (const [what, change, line] of cases) {
    const cosi = await variant(change);
    const shallow = await runPack(['validate', cosi]);
    assert.equal(shallow.code, 0, `${what}: the structure is fine: ${shallow.stdout}`);
    assert.match(shallow.stdout, /images not decoded: add --deep/);
    const deep = await runPack(['validate', '--deep', '-q', cosi]);
    assert.equal(deep.code, 5, `${what}: ${deep.stdout}${deep.stderr}`);
    assert.match(deep.stdout, line, what);
    assert.match(deep.stdout, /: INVALID \(1 error\(s\); checked: tar layout, metadata and GPT rules; every image's SHA-384, zstd stream and size\)\n$/);
  }
});

test('metadata.json over the 4 MiB cap: refused before it is read, with its size, the cap and the flag; --max-metadata-size raises it', async () => {
  const big = await variant((p) => void (p.meta.padding = 'x'.repeat(5 << 20)));
  const r = await runPack(['validate', big]);
  assert.equal(r.code, 5);
  assert.match(r.stderr, /^cosi-pack: error: .*v\.cosi: metadata\.json is 5\.0 MiB \(\d+ bytes\), over the 4\.0 MiB limit for metadata; if the file is trusted, raise the limit with --max-metadata-size\n$/);
  const raised = await runPack(['validate', '--max-metadata-size', '8MiB', big]);
  assert.equal(raised.code, 0, raised.stdout + raised.stderr);

  // A bare metadata.json: its size is checked before the file is read (a sparse 100 MiB file here).
  const bare = join(await fresh(), 'metadata.json');
  await writeFile(bare, '');
  await truncate(bare, 100 << 20);
  const b = await runPack(['validate', bare]);
  assert.equal(b.code, 5);
  assert.match(b.stderr, /metadata\.json is 100\.0 MiB \(104857600 bytes\), over the 4\.0 MiB limit/);
  const usage = await runPack(['validate', '--max-metadata-size', '0', bare]);
  assert.equal(usage.code, 2);
  const deepBare = await runPack(['validate', '--deep', bare]);
  assert.equal(deepBare.code, 2);
  assert.match(deepBare.stderr, /--deep needs a \.cosi file/);
});

test('a version older than the fields it uses is an error: 1.1 with disk and compression, 1.0 with bootloader', async () => {
  const v11 = await variant((p) => void (p.meta.version = '1.1'));
  const r = await runPack(['validate', v11]);
  assert.equal(r.code, 5, r.stdout);
  assert.match(r.stdout, /^error: version: version-too-old: is "1\.1" but the document has 'disk' \(added in 1\.2\), 'compression' \(added in 1\.2\): it must declare version 1\.2 or later$/m);
  const meta10 = join(await fresh(), 'metadata.json');
  const doc = structuredClone(small.base.meta);
  doc.version = '1.0';
  delete doc.disk;
  delete doc.compression;
  await writeFile(meta10, JSON.stringify(doc));
  const m = await runPack(['validate', meta10]);
  assert.equal(m.code, 5, m.stdout);
  assert.match(m.stdout, /version-too-old: is "1\.0" but the document has 'bootloader' \(added in 1\.1\): it must declare version 1\.1 or later/);
  assert.match(m.stdout, /; checked: metadata\.json rules\)\n$/);
});

test('an archive whose first header is an extension header is validated as a tar (it was read as a JSON document)', async () => {
  const p = structuredClone(small.base);
  const cosi = join(await fresh(), 'pax.cosi');
  await writeParts(cosi, p, { paxMarker: true });
  const r = await runPack(['validate', cosi]);
  assert.equal(r.code, 5);
  assert.match(r.stdout, /^error: tar\[0\]: marker-bytes: /m);
  assert.doesNotMatch(r.stderr, /UTF-8/);
});
