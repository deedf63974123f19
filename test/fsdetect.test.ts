import { test, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, rm, writeFile, mkdir, truncate, open, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { detectFilesystem, coversPartition, type FsInfo } from '../shared/disk/fsdetect.js';
import { FileSource } from '../shared/transport/file-source.js';
import type { ByteSource } from '../shared/transport/source.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

const workDir = await mkdtemp(join(tmpdir(), 'fsdetect-'));
after(() => rm(workDir, { recursive: true, force: true }));

/** Bytes in memory as a ByteSource, for synthetic and fuzzed inputs. */
class BufferSource implements ByteSource {
  readonly name = 'memory';
  reads = 0;
  constructor(private readonly buf: Buffer) {}
  async size(): Promise<number> {
    return this.buf.length;
  }
  async read(offset: number, length: number): Promise<Buffer> {
    this.reads++;
    return Buffer.from(this.buf.subarray(offset, offset + length));
  }
  stream(offset: number, length: number): Readable {
    return Readable.from([this.buf.subarray(offset, offset + length)]);
  }
  async close(): Promise<void> {}
}

async function haveTool(name: string): Promise<boolean> {
  try {
    await run('sh', ['-c', `command -v ${name}`]);
    return true;
  } catch {
    return false;
  }
}

/** blkid's low-level probe of a file, as KEY=VALUE pairs. */
async function blkid(path: string, offset = 0): Promise<Record<string, string>> {
  const args = ['-p', '-o', 'export', ...(offset ? ['-O', String(offset)] : []), path];
  const { stdout } = await run('blkid', args);
  const out: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

async function sparse(name: string, size: number): Promise<string> {
  const path = join(workDir, name);
  await writeFile(path, '');
  await truncate(path, size);
  return path;
}

let treeCount = 0;
/** A small directory tree to populate images with. */
async function tree(): Promise<string> {
  const dir = join(workDir, `tree${treeCount++}`);
  await mkdir(join(dir, 'etc'), { recursive: true });
  await writeFile(join(dir, 'etc', 'os-release'), 'ID=test\n');
  await writeFile(join(dir, 'blob'), randomBytes(200_000));
  return dir;
}

async function detectFile(path: string, offset = 0, length?: number): Promise<FsInfo> {
  const src = new FileSource(path);
  try {
    const len = length ?? (await src.size()) - offset;
    return await detectFilesystem(src, offset, len);
  } finally {
    await src.close();
  }
}

interface Case {
  name: string;
  tool: string;
  /** Creates the image, returns its path. */
  make: () => Promise<string>;
  /** The blkid BLOCK_SIZE equals our blockSize for these (for xfs blkid reports the sector size). */
  blockSizeIsBlkid: boolean;
  /** The filesystem fills the whole file it was made in. */
  fillsFile: boolean;
}

const cases: Case[] = [
  {
    name: 'ext2', tool: 'mkfs.ext2', blockSizeIsBlkid: true, fillsFile: true,
    make: async () => {
      const p = await sparse('ext2.img', 64 * MiB);
      await run('mkfs.ext2', ['-q', '-F', '-L', 'two', p]);
      return p;
    },
  },
  {
    name: 'ext3', tool: 'mkfs.ext3', blockSizeIsBlkid: true, fillsFile: true,
    make: async () => {
      const p = await sparse('ext3.img', 64 * MiB);
      await run('mkfs.ext3', ['-q', '-F', p]);
      return p;
    },
  },
  {
    name: 'ext4', tool: 'mkfs.ext4', blockSizeIsBlkid: true, fillsFile: true,
    make: async () => {
      const p = await sparse('ext4.img', 128 * MiB);
      await run('mkfs.ext4', ['-q', '-F', '-b', '4096', '-L', 'rootfs', '-d', await tree(), p]);
      return p;
    },
  },
  {
    // No journal but ext4-only features: blkid still says ext4, not ext2.
    name: 'ext4 without journal', tool: 'mkfs.ext4', blockSizeIsBlkid: true, fillsFile: true,
    make: async () => {
      const p = await sparse('ext4nj.img', 64 * MiB);
      await run('mkfs.ext4', ['-q', '-F', '-O', '^has_journal', p]);
      return p;
    },
  },
  {
    name: 'vfat FAT12', tool: 'mkfs.vfat', blockSizeIsBlkid: true, fillsFile: true,
    make: async () => {
      const p = await sparse('fat12.img', 8 * MiB);
      await run('mkfs.vfat', ['-F', '12', p]);
      return p;
    },
  },
  {
    name: 'vfat FAT16', tool: 'mkfs.vfat', blockSizeIsBlkid: true, fillsFile: true,
    make: async () => {
      const p = await sparse('fat16.img', 64 * MiB);
      await run('mkfs.vfat', ['-F', '16', '-n', 'ESP16', p]);
      return p;
    },
  },
  {
    name: 'vfat FAT32', tool: 'mkfs.vfat', blockSizeIsBlkid: true, fillsFile: true,
    make: async () => {
      const p = await sparse('fat32.img', 64 * MiB);
      await run('mkfs.vfat', ['-F', '32', '-n', 'ESP', p]);
      return p;
    },
  },
  {
    name: 'xfs', tool: 'mkfs.xfs', blockSizeIsBlkid: false, fillsFile: true,
    make: async () => {
      const p = await sparse('xfs.img', 300 * MiB);
      await run('mkfs.xfs', ['-q', '-f', '-L', 'data', p]);
      return p;
    },
  },
  {
    name: 'btrfs', tool: 'mkfs.btrfs', blockSizeIsBlkid: true, fillsFile: true,
    make: async () => {
      const p = await sparse('btrfs.img', 128 * MiB);
      await run('mkfs.btrfs', ['-q', '-f', '-L', 'pool', p]);
      return p;
    },
  },
  {
    name: 'squashfs', tool: 'mksquashfs', blockSizeIsBlkid: false, fillsFile: false,
    make: async () => {
      const p = join(workDir, 'sq.img');
      await run('mksquashfs', [await tree(), p, '-quiet', '-noappend']);
      return p;
    },
  },
  {
    name: 'erofs', tool: 'mkfs.erofs', blockSizeIsBlkid: true, fillsFile: true,
    make: async () => {
      const p = join(workDir, 'erofs.img');
      await run('mkfs.erofs', ['--quiet', p, await tree()]);
      return p;
    },
  },
  {
    name: 'swap', tool: 'mkswap', blockSizeIsBlkid: false, fillsFile: true,
    make: async () => {
      const p = await sparse('swap.img', 64 * MiB);
      await run('mkswap', ['-q', '-L', 'swp', p]);
      return p;
    },
  },
];

const blkidPresent = await haveTool('blkid');

for (const c of cases) {
  test(`${c.name}: type, uuid and label match blkid -p`, async (t: TestContext) => {
    if (!blkidPresent || !(await haveTool(c.tool))) {
      t.skip(`${c.tool} or blkid not installed`);
      return;
    }
    const path = await c.make();
    const [got, want] = await Promise.all([detectFile(path), blkid(path)]);
    assert.equal(got.type, want.TYPE);
    assert.equal(got.uuid, want.UUID ?? '');
    assert.equal(got.label, want.LABEL);
    if (c.blockSizeIsBlkid) assert.equal(got.blockSize, Number(want.BLOCK_SIZE));
    const fileSize = (await stat(path)).size;
    assert.ok(got.sizeBytes !== undefined && got.sizeBytes > 0, 'filesystem reports its size');
    assert.ok(got.sizeBytes! <= fileSize, `size ${got.sizeBytes} fits in file ${fileSize}`);
    if (c.fillsFile) {
      assert.ok(coversPartition(got, fileSize), `${c.name} made on the whole file covers it`);
    }
  });
}

test('ext3 with ext4 features is ext4, ext4 without them is ext3 (blkid rules)', async (t) => {
  if (!blkidPresent || !(await haveTool('mkfs.ext4'))) return t.skip('mkfs.ext4 not installed');
  // mkfs.ext4 with every post-ext3 feature turned off leaves only a journal.
  const p = await sparse('ext4as3.img', 64 * MiB);
  await run('mkfs.ext4', ['-q', '-F', '-O', '^extent,^64bit,^flex_bg,^huge_file,^dir_nlink,^extra_isize,^metadata_csum,^uninit_bg', '-I', '128', p]);
  const [got, want] = await Promise.all([detectFile(p), blkid(p)]);
  assert.equal(want.TYPE, 'ext3');
  assert.equal(got.type, want.TYPE);
  assert.equal(got.uuid, want.UUID);
});

test('filesystem at a non-zero offset inside a larger file', async (t) => {
  if (!blkidPresent || !(await haveTool('mkfs.ext4'))) return t.skip('mkfs.ext4 not installed');
  const inner = await sparse('inner.img', 64 * MiB);
  await run('mkfs.ext4', ['-q', '-F', inner]);
  const offset = 3 * MiB;
  const outer = await sparse('outer.img', offset + 64 * MiB + 5 * MiB);
  // Garbage in front, so a detector that ignores the offset sees nonsense.
  const fh = await open(outer, 'r+');
  try {
    await fh.write(randomBytes(offset), 0, offset, 0);
    const fs = await readFile(inner);
    await fh.write(fs, 0, fs.length, offset);
  } finally {
    await fh.close();
  }
  const got = await detectFile(outer, offset, 64 * MiB);
  const want = await blkid(inner);
  assert.equal(got.type, 'ext4');
  assert.equal(got.uuid, want.UUID);
  assert.ok(coversPartition(got, 64 * MiB));
  const atZero = await detectFile(outer, 0);
  assert.equal(atZero.type, 'unknown');
});

test('random bytes and zeroes are unknown', async () => {
  for (let i = 0; i < 20; i++) {
    const got = await detectFilesystem(new BufferSource(randomBytes(80 * 1024)), 0, 80 * 1024);
    assert.deepEqual(got, { type: 'unknown', uuid: '' });
  }
  const zeroes = await sparse('zero.img', 16 * MiB);
  assert.deepEqual(await detectFile(zeroes), { type: 'unknown', uuid: '' });
  assert.deepEqual(await detectFilesystem(new BufferSource(Buffer.alloc(0)), 0, 0), { type: 'unknown', uuid: '' });
});

test('reads only the head of the partition, in one request', async (t) => {
  if (!(await haveTool('mkfs.ext4'))) return t.skip('mkfs.ext4 not installed');
  const p = await sparse('small-read.img', 64 * MiB);
  await run('mkfs.ext4', ['-q', '-F', p]);
  let asked = 0;
  const real = new FileSource(p);
  const spy: ByteSource = {
    name: p,
    size: () => real.size(),
    read: (o, l) => {
      asked += l;
      return real.read(o, l);
    },
    stream: (o, l) => real.stream(o, l),
    close: () => real.close(),
  };
  try {
    assert.equal((await detectFilesystem(spy, 0, 64 * MiB)).type, 'ext4');
  } finally {
    await real.close();
  }
  assert.ok(asked <= 72 * 1024, `read ${asked} bytes`);
});

test('I/O errors from the source propagate', async () => {
  const boom = new Error('disk on fire');
  const src: ByteSource = {
    name: 'broken',
    size: async () => 1 * MiB,
    read: async () => {
      throw boom;
    },
    stream: () => Readable.from([]),
    close: async () => {},
  };
  await assert.rejects(detectFilesystem(src, 0, 1 * MiB), (err) => err === boom);
});

test('coversPartition: full ext4 covers, a smaller one in a bigger partition does not', async (t) => {
  if (!(await haveTool('mkfs.ext4'))) return t.skip('mkfs.ext4 not installed');
  const p = await sparse('small-in-big.img', 64 * MiB);
  await run('mkfs.ext4', ['-q', '-F', '-b', '4096', p, '40M']);
  const got = await detectFile(p);
  assert.equal(got.type, 'ext4');
  assert.equal(got.sizeBytes, 40 * MiB);
  assert.equal(got.blockSize, 4096);
  assert.equal(coversPartition(got, 64 * MiB), false);
  assert.equal(coversPartition(got, 40 * MiB), true);
  // A tail shorter than one block cannot be grown into, so it still counts as covered.
  assert.equal(coversPartition(got, 40 * MiB + 4095), true);
  assert.equal(coversPartition(got, 40 * MiB + 4096), false);
  // A filesystem larger than its partition is truncated, not covering.
  assert.equal(coversPartition(got, 40 * MiB - 4096), false);
  assert.equal(coversPartition({ type: 'unknown', uuid: '' }, 40 * MiB), false);
});

test('property: arbitrary bytes never throw and always give a well-formed answer', async () => {
  const wellFormed = (r: FsInfo): void => {
    assert.equal(typeof r.type, 'string');
    assert.equal(typeof r.uuid, 'string');
    if (r.type === 'unknown') assert.equal(r.uuid, '');
  };
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 70 * 1024 }), fc.nat(4096), async (bytes, off) => {
      const buf = Buffer.from(bytes);
      wellFormed(await detectFilesystem(new BufferSource(buf), Math.min(off, buf.length), buf.length));
    }),
    { numRuns: 200 },
  );
});

test('property: corrupted real superblocks never throw', async (t) => {
  const makers: Array<[string, (p: string) => Promise<unknown>, number]> = [
    ['mkfs.ext4', (p) => run('mkfs.ext4', ['-q', '-F', p]), 64 * MiB],
    ['mkfs.vfat', (p) => run('mkfs.vfat', ['-F', '32', p]), 64 * MiB],
    ['mkfs.btrfs', (p) => run('mkfs.btrfs', ['-q', '-f', p]), 128 * MiB],
    ['mkswap', (p) => run('mkswap', ['-q', p]), 16 * MiB],
  ];
  const heads: Buffer[] = [];
  for (const [tool, make, size] of makers) {
    if (!(await haveTool(tool))) continue;
    const p = await sparse(`fuzz-${tool}.img`, size);
    await make(p);
    const fh = await open(p, 'r');
    try {
      const head = Buffer.alloc(72 * 1024);
      await fh.read(head, 0, head.length, 0);
      heads.push(head);
    } finally {
      await fh.close();
    }
  }
  if (heads.length === 0) return t.skip('no mkfs tools installed');
  // Flip bytes inside the superblock regions so parsers see a valid magic with junk fields.
  const hot = [0, 0x20, 0x36, 0x52, 1024, 1024 + 0x38, 1024 + 0x60, 4086, 0x10000, 0x10040, 0x10090];
  await fc.assert(
    fc.asyncProperty(
      fc.nat(heads.length - 1),
      fc.array(fc.tuple(fc.constantFrom(...hot), fc.nat(255), fc.nat(255)), { minLength: 1, maxLength: 30 }),
      fc.nat(72 * 1024),
      async (which, edits, cut) => {
        const buf = Buffer.from(heads[which]!);
        for (const [base, delta, value] of edits) if (base + delta < buf.length) buf[base + delta] = value;
        const r = await detectFilesystem(new BufferSource(buf.subarray(0, cut)), 0, cut);
        assert.equal(typeof r.type, 'string');
        assert.equal(typeof r.uuid, 'string');
      },
    ),
    { numRuns: 300 },
  );
});
