import assert from 'node:assert/strict';
import { appendFile, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { checkArchive } from '../shared/format/check.js';
import { CosiError } from '../shared/errors.js';
import { FileSource } from '../shared/transport/file-source.js';
import type { ByteSource } from '../shared/transport/source.js';
import { readTarIndex, type TarIndex } from '../shared/format/tar.js';
import { foreignArchive, packedDisk, pythonTarOffsets, sh, SMALL, type PackedFixture } from './fixtures.js';

class BufferSource implements ByteSource {
  readonly name = 'buffer';
  reads = 0;
  constructor(private readonly buf: Buffer) {}
  async size() { return this.buf.length; }
  async read(offset: number, length: number) { this.reads++; return this.buf.subarray(offset, offset + length); }
  stream(): never { throw new Error('unused'); }
  async close() {}
}

async function indexOf(path: string): Promise<TarIndex> {
  const src = new FileSource(path);
  try {
    return await readTarIndex(src);
  } finally {
    await src.close();
  }
}

async function assertMatchesPython(path: string) {
  const ours = (await indexOf(path)).entries.filter((e) => e.type === 'file');
  const theirs = (await pythonTarOffsets(path)).filter((m) => !m.name.endsWith('/'));
  assert.deepEqual(
    ours.map((e) => ({ name: e.name, offset: e.headerOffset, offsetData: e.dataOffset, size: e.size })),
    theirs,
  );
}

let tmp: string;
let fx: PackedFixture;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'cosi-tar-'));
  fx = await packedDisk(SMALL);
});
after(async () => rm(tmp, { recursive: true, force: true }));

describe('tar walker', () => {
  test('our own archives: offsets equal Python tarfile', async () => {
    await assertMatchesPython(fx.cosi);
    const idx = await indexOf(fx.cosi);
    assert.equal(idx.entries[0]!.name, 'cosi-marker');
    assert.equal(idx.entries[0]!.size, 0);
    assert.equal(idx.entries[1]!.name, 'metadata.json');
    assert.equal(idx.entries[1]!.dataOffset, 1024);
    assert.ok(idx.endMarkerComplete);
    assert.equal(idx.trailingBytes, 0);
  });

  for (const format of ['gnu-tar-gnu', 'gnu-tar-pax', 'python-pax', 'python-gnu'] as const) {
    test(`${format}, long names, subdirectory, extra file, trailing bytes: offsets equal Python tarfile`, async () => {
      const path = await foreignArchive(fx, { format, longNames: true, subdir: 'sub', extraFile: true, trailing: 3000 });
      await assertMatchesPython(path);
      const idx = await indexOf(path);
      const names = idx.entries.map((e) => e.name);
      assert.ok(names.some((n) => n.startsWith('images/sub/' + 'l'.repeat(110))), names.join(','));
      assert.ok(names.includes('EXTRA-NOTES.txt'));
      assert.ok(idx.trailingBytes >= 3000);
    });
  }

  test('foreign archives validate; a PAX header before the marker is flagged (first 11 bytes)', async () => {
    for (const format of ['gnu-tar-gnu', 'gnu-tar-pax', 'python-pax', 'python-gnu'] as const) {
      const path = await foreignArchive(fx, { format, subdir: 'sub', extraFile: true, trailing: 700 });
      const src = new FileSource(path);
      try {
        const { result } = await checkArchive(src);
        const errors = result.errors.map((e) => e.rule);
        const head = (await readFile(path)).subarray(0, 11).toString('latin1');
        if (head === 'cosi-marker') assert.deepEqual(errors, [], `${format}: ${JSON.stringify(result.errors)}`);
        else assert.deepEqual(errors, ['marker-bytes'], format);
        assert.ok(result.warnings.some((w) => w.rule === 'tar-unknown-file'), `${format} warns about the extra file`);
      } finally {
        await src.close();
      }
    }
  });

  test('GNU base-256 and PAX sizes for members over 8 GiB (sparse file, Python-written headers)', async () => {
    for (const fmt of ['GNU_FORMAT', 'PAX_FORMAT']) {
      const path = join(tmp, `big-${fmt}.tar`);
      const size = 9 * 1024 ** 3 + 5;
      const py = `import sys, tarfile\nti = tarfile.TarInfo('images/huge.raw.zst'); ti.size = ${size}\nopen(sys.argv[1], 'wb').write(tarfile.TarInfo('cosi-marker').tobuf(tarfile.${fmt}) + ti.tobuf(tarfile.${fmt}))\n`;
      await sh('python3', ['-c', py, path]);
      const headerBytes = (await readFile(path)).length;
      const dataEnd = headerBytes + Math.ceil(size / 512) * 512;
      await truncate(path, dataEnd);
      await appendFile(path, Buffer.alloc(1024));
      const idx = await indexOf(path);
      const huge = idx.entries[1]!;
      assert.equal(huge.name, 'images/huge.raw.zst');
      assert.equal(huge.size, size);
      assert.equal(huge.dataOffset, headerBytes);
      assert.equal(idx.endOffset, dataEnd);
      if (fmt === 'PAX_FORMAT') assert.ok(huge.headerOffset < huge.ustarOffset, 'PAX header belongs to the entry');
    }
  });

  test('truncated archive: clear error, class integrity', async () => {
    const buf = await readFile(fx.cosi);
    const path = join(tmp, 'cut.cosi');
    await writeFile(path, buf.subarray(0, buf.length - 5000));
    await assert.rejects(indexOf(path), (err: CosiError) => {
      assert.equal(err.code, 'COSI_ERR_TRUNCATED');
      assert.match(err.message, /truncated|without a tar end-of-archive marker/);
      return true;
    });
  });

  test('corrupt header checksum names the offset', async () => {
    const buf = Buffer.from(await readFile(fx.cosi));
    buf[512 + 10] ^= 0xff; // inside metadata.json's header name
    await assert.rejects(readTarIndex(new BufferSource(buf)), /tar header at 512: bad checksum/);
  });

  test('reads ahead: a walk over a whole archive costs few reads', async () => {
    const src = new BufferSource(await readFile(fx.cosi));
    const stats = { reads: 0 };
    const idx = await readTarIndex(src, { stats, window: 1 << 20 });
    assert.ok(idx.entries.length >= 5);
    assert.ok(stats.reads <= idx.entries.length, `reads ${stats.reads}`);
  });

  test('property: arbitrary bytes give an index or a CosiError, never a crash', async () => {
    const valid = await readFile(fx.cosi);
    const head = valid.subarray(0, 4096);
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 4096 }),
          fc.tuple(fc.nat(head.length - 1), fc.integer({ min: 0, max: 255 }), fc.nat(8)).map(([pos, val, cut]) => {
            const b = Buffer.from(head);
            b[pos] = val;
            return b.subarray(0, b.length - cut * 512);
          }),
        ),
        async (bytes) => {
          try {
            await readTarIndex(new BufferSource(Buffer.from(bytes)));
          } catch (err) {
            assert.ok(err instanceof CosiError, `unexpected ${String(err)}`);
          }
        },
      ),
      { numRuns: 400 },
    );
  });
});
