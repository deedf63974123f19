/**
 * Framed (seekable) images from the writer: `cosi-pack --frame-size` and
 * `cosi-pack reframe`, checked by readers that are not ours: the zstd program
 * decodes every entry, Python's tarfile reads the archive, and a Python walker
 * of zstd's seekable format finds every frame from the seek table alone (its
 * magic, its window, and its size decoded on its own by the zstd program).
 * Then corruption: a flipped byte in a frame, tables that lie (sizes, count,
 * truncated) with hashes that vouch for them, and a table on an image that is
 * not framed: clear errors from validate --deep and reframe, nothing left behind.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freshDirs, runPack } from './client-helpers.js';
import { FILLED, packedDisk, pythonTarOffsets, sh, type PackedFixture } from './fixtures.js';
import { imageFiles, readParts, type Parts } from './mutants.js';
import { FRAME, flipInFrame, mutateRoot, rootPath, tableOf } from './framed-helpers.js';
import { readDiskGpt } from '../shared/pack/pack.js';
import { encodeSeekTable } from '../shared/zstd/seek-table.js';

const work = await mkdtemp(join(tmpdir(), 'cosi-framed-pack-'));
after(() => rm(work, { recursive: true, force: true }));
const fresh = freshDirs(work);
let plain: PackedFixture;
let framed: PackedFixture;
before(async () => {
  plain = await packedDisk(FILLED);
  framed = await packedDisk(FILLED, ['--frame-size', '1M']);
});

/**
 * zstd's seekable format read from the end of each entry by Python, and every
 * frame it lists decoded alone by the zstd program. Prints per image: frames
 * (offset, compressed, decompressed, kind, windowLog), and the SHA-256 of the
 * frames' output concatenated and of `zstd -dc` over the whole entry.
 */
const WALKER = String.raw`
import hashlib, json, math, struct, subprocess, sys, tarfile
out = {}
with tarfile.open(sys.argv[1], 'r:') as t, open(sys.argv[1], 'rb') as f:
    for m in t.getmembers():
        if not m.name.startswith('images/'):
            continue
        f.seek(m.offset_data)
        data = f.read(m.size)
        whole = subprocess.run(['zstd', '-dc'], input=data, capture_output=True, check=True).stdout
        rec = {'whole': hashlib.sha256(whole).hexdigest(), 'size': len(whole)}
        count, desc, magic = struct.unpack('<IBI', data[-9:])
        if magic == 0x8F92EAB1:
            esize = 12 if desc & 0x80 else 8
            tsize = 8 + count * esize + 9
            start = len(data) - tsize
            tmagic, fsize = struct.unpack('<II', data[start:start + 8])
            assert tmagic == 0x184D2A5E and fsize == tsize - 8, 'table header'
            frames, pos, cat = [], 0, hashlib.sha256()
            for i in range(count):
                c, d = struct.unpack('<II', data[start + 8 + i * esize:start + 16 + i * esize])
                piece = data[pos:pos + c]
                fm = struct.unpack('<I', piece[:4])[0]
                if fm & 0xFFFFFFF0 == 0x184D2A50:
                    assert 8 + struct.unpack('<I', piece[4:8])[0] == c and d == 0, 'skippable entry'
                    frames.append({'offset': pos, 'c': c, 'd': d, 'kind': 'skippable'})
                else:
                    assert fm == 0xFD2FB528, 'frame magic at %d' % pos
                    fhd = piece[4]
                    single = (fhd >> 5) & 1
                    did = [0, 1, 2, 4][fhd & 3]
                    fcs = [single, 2, 4, 8][fhd >> 6]
                    if single:
                        p = 5 + did
                        win = int.from_bytes(piece[p:p + fcs], 'little') + (256 if fcs == 2 else 0)
                    else:
                        wd = piece[5]
                        base = 1 << (10 + (wd >> 3))
                        win = base + (base // 8) * (wd & 7)
                    dec = subprocess.run(['zstd', '-dc'], input=piece, capture_output=True, check=True).stdout
                    assert len(dec) == d, 'frame %d decodes to %d, table says %d' % (i, len(dec), d)
                    cat.update(dec)
                    frames.append({'offset': pos, 'c': c, 'd': d, 'kind': 'zstd', 'windowLog': max(10, math.ceil(math.log2(max(1, win))))})
                pos += c
            assert pos == start, 'frames end at %d, table starts at %d' % (pos, start)
            rec['frames'] = frames
            rec['framesHash'] = cat.hexdigest()
        out[m.name] = rec
print(json.dumps(out))
`;

interface Walked {
  whole: string;
  size: number;
  framesHash?: string;
  frames?: Array<{ offset: number; c: number; d: number; kind: 'zstd' | 'skippable'; windowLog?: number }>;
}

async function walk(cosi: string): Promise<Record<string, Walked>> {
  return JSON.parse(await sh('python3', ['-c', WALKER, cosi]));
}

/** SHA-256 of each partition's bytes on the source disk, by metadata image path. */
async function partitionHashes(fx: PackedFixture, meta: Parts['meta']): Promise<Map<string, string>> {
  const { gpt } = await readDiskGpt(fx.disk);
  const disk = await readFile(fx.disk);
  const out = new Map<string, string>();
  for (const r of meta.disk.gptRegions) {
    const p = gpt.partitions.find((q) => q.number === r.number);
    const bytes = r.type === 'primary-gpt' ? disk.subarray(0, r.image.uncompressedSize) : disk.subarray(p!.offset, p!.offset + p!.size);
    out.set(r.image.path, createHash('sha256').update(bytes).digest('hex'));
  }
  return out;
}

/** Every conformance check on one framed archive. */
async function assertConformant(cosi: string, source: PackedFixture): Promise<void> {
  const parts = await readParts(cosi);
  const walked = await walk(cosi);
  const want = await partitionHashes(source, parts.meta);
  assert.equal(Object.keys(walked).length, parts.meta.disk.gptRegions.length, 'Python tarfile reads every image member');
  let windowLog = 0;
  for (const r of parts.meta.disk.gptRegions) {
    const w = walked[r.image.path]!;
    assert.equal(w.whole, want.get(r.image.path), `${r.image.path}: zstd -dc of the entry is the partition's bytes`);
    assert.equal(w.size, r.image.uncompressedSize);
    if (r.type === 'primary-gpt') {
      assert.equal(w.frames, undefined, 'the primary GPT stays one frame');
      continue;
    }
    assert.ok(w.frames, `${r.image.path} ends with a seek table`);
    assert.equal(w.framesHash, w.whole, `${r.image.path}: the frames the table lists, decoded one by one, are the image`);
    const zstdFrames = w.frames.filter((f) => f.kind === 'zstd');
    assert.equal(zstdFrames.length, Math.max(1, Math.ceil(r.image.uncompressedSize / FRAME)));
    assert.equal(w.frames[0]!.kind, 'skippable', 'the COSI id comes first, as an entry of 0 bytes');
    assert.ok(zstdFrames.slice(0, -1).every((f) => f.d === FRAME));
    for (const f of zstdFrames) windowLog = Math.max(windowLog, f.windowLog!);
  }
  assert.ok(parts.meta.compression.maxWindowLog >= windowLog, `maxWindowLog ${parts.meta.compression.maxWindowLog} covers every frame's window (${windowLog})`);
  const offsets = await pythonTarOffsets(cosi);
  assert.deepEqual(offsets.slice(0, 2).map((o) => o.name), ['cosi-marker', 'metadata.json']);
  const deep = await runPack(['validate', '--deep', '--json', '-q', cosi]);
  assert.equal(deep.code, 0, deep.stdout + deep.stderr);
  const report = JSON.parse(deep.stdout);
  assert.equal(report.framed.length, parts.meta.disk.gptRegions.length - 1);
}

test('--frame-size: every partition image is independent frames plus a seek table that zstd, tarfile and a seekable reader all accept', async () => {
  await assertConformant(framed.cosi, framed);
  const human = await runPack(['validate', '--deep', '-q', framed.cosi]);
  assert.match(human.stdout, /valid COSI 1\.2 .*framed image\(s\), each seek table held against its frames\)\n$/);
});

test('without --frame-size an image stays one frame with no seek table', async () => {
  const walked = await walk(plain.cosi);
  for (const [path, w] of Object.entries(walked)) assert.equal(w.frames, undefined, path);
});

test('reframe: one frame to framed and back, hashes fresh, bytes the same, nothing left beside the output', async () => {
  const dir = await fresh();
  const out = join(dir, 'framed.cosi');
  const r = await runPack(['reframe', plain.cosi, '-o', out, '--frame-size', '1M', '-q']);
  assert.equal(r.code, 0, r.stderr);
  await assertConformant(out, plain);
  const back = join(dir, 'back.cosi');
  const b = await runPack(['reframe', out, '-o', back, '-q']);
  assert.equal(b.code, 0, b.stderr);
  const walked = await walk(back);
  const want = await partitionHashes(plain, (await readParts(back)).meta);
  for (const [path, w] of Object.entries(walked)) {
    assert.equal(w.frames, undefined, `${path} is one frame again`);
    assert.equal(w.whole, want.get(path));
  }
  const orig = await readParts(plain.cosi);
  const again = await readParts(back);
  assert.equal(again.meta.id, orig.meta.id);
  assert.deepEqual(again.meta.osPackages, orig.meta.osPackages);
  assert.deepEqual((await readdir(dir)).sort(), ['back.cosi', 'framed.cosi']);
});

async function mutated(change: (data: Buffer, parts: Parts) => Buffer, rehash: boolean, from = framed): Promise<{ cosi: string }> {
  return { cosi: await mutateRoot(from.cosi, await fresh(), change, rehash) };
}

const LIES: Array<[string, (data: Buffer) => Buffer, RegExp]> = [
  [
    'wrong decompressed size',
    (d) => {
      const t = tableOf(d);
      t.entries[1]!.decompressedSize -= 4096;
      t.entries[2]!.decompressedSize += 4096;
      return Buffer.concat([t.body, encodeSeekTable(t.entries)]);
    },
    /seek table entry 1 .*does not decode to/,
  ],
  [
    'wrong compressed sizes',
    (d) => {
      const t = tableOf(d);
      t.entries[1]!.compressedSize -= 10;
      t.entries[2]!.compressedSize += 10;
      return Buffer.concat([t.body, encodeSeekTable(t.entries)]);
    },
    /seek table entry [12] /,
  ],
  [
    'wrong count',
    (d) => {
      const t = tableOf(d);
      return Buffer.concat([t.body, encodeSeekTable(t.entries.slice(0, -1))]);
    },
    /the seek table lists \d+ frames of \d+ compressed bytes, but the entry holds/,
  ],
  [
    'truncated table',
    (d) => {
      const t = tableOf(d);
      const table = encodeSeekTable(t.entries);
      return Buffer.concat([t.body, table.subarray(12)]);
    },
    /image-zstd|seek table/,
  ],
  [
    'a table inside one frame',
    (d) => {
      const t = tableOf(d);
      const first = t.entries[1]!;
      const half = Math.floor(first.compressedSize / 2);
      const lies = [t.entries[0]!, { compressedSize: half, decompressedSize: FRAME / 2 }, { compressedSize: first.compressedSize - half, decompressedSize: FRAME / 2 }, ...t.entries.slice(2)];
      return Buffer.concat([t.body, encodeSeekTable(lies)]);
    },
    /seek table entry 1 /,
  ],
];

for (const [name, change, message] of LIES) {
  test(`a seek table that lies (${name}), its hash vouching for it: validate --deep and reframe refuse it as a format error`, async () => {
    const bad = await mutated(change, true);
    const v = await runPack(['validate', '--deep', '-q', bad.cosi]);
    assert.equal(v.code, 5, v.stdout + v.stderr);
    assert.match(v.stdout, message);
    assert.match(v.stdout, /INVALID/);
    const dir = await fresh();
    const r = await runPack(['reframe', bad.cosi, '-o', join(dir, 'out.cosi'), '-q']);
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /^cosi-pack: .*(seek table|zstd)/m);
    assert.deepEqual(await readdir(dir), [], 'nothing left behind');
  });
}

test('a seek table appended to an image that is one frame: validate --deep and reframe refuse it as a format error', async () => {
  const bad = await mutated((d, parts) => {
    const size = imageFiles(parts.meta, rootPath(parts.meta))[0]!.uncompressedSize as number;
    const rest = d.length - 24;
    const lies = [{ compressedSize: 24, decompressedSize: 0 }, { compressedSize: rest >> 1, decompressedSize: size >> 1 }, { compressedSize: rest - (rest >> 1), decompressedSize: size - (size >> 1) }];
    return Buffer.concat([d, encodeSeekTable(lies)]);
  }, true, plain);
  const v = await runPack(['validate', '--deep', '-q', bad.cosi]);
  assert.equal(v.code, 5, v.stdout);
  assert.match(v.stdout, /image-seek-table: .*seek table/);
  const dir = await fresh();
  const r = await runPack(['reframe', bad.cosi, '-o', join(dir, 'out.cosi'), '-q']);
  assert.equal(r.code, 5, r.stderr);
  assert.deepEqual(await readdir(dir), []);
});

test('a flipped byte inside one frame: integrity error from validate --deep and reframe, nothing left behind', async () => {
  const bad = await mutated(flipInFrame, false);
  const v = await runPack(['validate', '--deep', '-q', bad.cosi]);
  assert.equal(v.code, 5);
  assert.match(v.stdout, /image-sha384: SHA-384 mismatch/);
  const dir = await fresh();
  const r = await runPack(['reframe', bad.cosi, '-o', join(dir, 'out.cosi'), '-q']);
  assert.equal(r.code, 4, r.stderr);
  assert.match(r.stderr, /SHA-384 mismatch/);
  assert.deepEqual(await readdir(dir), []);
});

test('--frame-size below 64K or not a size is a usage error', async () => {
  const dir = await fresh();
  for (const v of ['1K', 'big']) {
    const r = await runPack([plain.disk, '-o', join(dir, 'x.cosi'), '--frame-size', v, '-q']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--frame-size must be a size from/);
  }
  await writeFile(join(dir, 'keep'), '');
  assert.deepEqual(await readdir(dir), ['keep']);
});
