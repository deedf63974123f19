/**
 * Bench workloads: real disks (test/fixtures.ts builds them from real files
 * with mkfs.ext4 -d, mkfs.vfat and sgdisk), packed by our cosi-pack at the
 * reference writer's settings (level 9, window log 27). Everything lives
 * under the cache dir keyed by recipe, so reruns skip the minutes of building.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildDisk, PACK_CLI, type DiskRecipe } from '../test/fixtures.js';
import { checkArchive } from '../shared/format/check.js';
import { FileSource } from '../shared/transport/file-source.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

/** Where one image (a partition or the GPT) sits in the archive and on the disk. */
export interface RegionInfo {
  kind: 'primary-gpt' | 'partition';
  number?: number;
  /** Byte range of the stored image inside the archive (inclusive end, as Range wants). */
  start: number;
  end: number;
  compressedSize: number;
  uncompressedSize: number;
  /** Where the decoded bytes go on the disk. */
  diskOffset: number;
  mountPoint?: string;
}

export interface Workload {
  name: string;
  recipe: DiskRecipe;
  dir: string;
  /** File name of the archive inside dir (served as /<file>). */
  file: string;
  cosi: string;
  archiveSize: number;
  diskSize: number;
  maxWindowLog: number;
  regions: RegionInfo[];
  /** Bytes of the source disk in non-zero 4 KiB blocks: what a sparse writer must allocate. */
  nonZeroBytes: number;
  buildSeconds: number;
}

/**
 * Counts non-zero 4 KiB blocks, visiting only the data extents (SEEK_DATA),
 * so a 16 GiB sparse disk scans in the time its real data takes.
 */
export async function nonZeroBytes(path: string): Promise<number> {
  const py = `
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
end = os.fstat(fd).st_size
off, n, z = 0, 0, bytes(4096)
while off < end:
    try:
        d = os.lseek(fd, off, os.SEEK_DATA)
    except OSError:
        break
    h = os.lseek(fd, d, os.SEEK_HOLE)
    d -= d % 4096
    pos = d
    while pos < h:
        buf = os.pread(fd, min(8 << 20, h - pos), pos)
        if not buf:
            break
        for i in range(0, len(buf), 4096):
            if buf[i:i+4096].count(0) != len(buf[i:i+4096]):
                n += len(buf[i:i+4096])
        pos += len(buf)
    off = h
print(n)
`;
  const { stdout } = await run('python3', ['-c', py, path], { maxBuffer: 1 << 20 });
  return Number(stdout.trim());
}

export async function describe(name: string, recipe: DiskRecipe, dir: string, file: string, nonZero: number, buildSeconds: number): Promise<Workload> {
  const cosi = join(dir, file);
  const src = new FileSource(cosi);
  try {
    const { archive, gpt } = await checkArchive(src);
    const meta = archive.metadata;
    const byPath = new Map(archive.index.entries.map((e) => [e.name, e]));
    const mounts = new Map(meta.images.map((f) => [f.image.path, f.mountPoint]));
    const regions: RegionInfo[] = [];
    for (const r of meta.disk?.gptRegions ?? []) {
      const e = byPath.get(r.image.path);
      if (!e) throw new Error(`${cosi}: no tar entry for ${r.image.path}`);
      const part = r.type === 'partition' ? gpt?.partitions.find((p) => p.number === r.number) : undefined;
      if (r.type === 'partition' && !part) throw new Error(`${cosi}: partition ${r.number} is not in the GPT`);
      regions.push({
        kind: r.type,
        number: r.number,
        start: e.dataOffset,
        end: e.dataOffset + e.size - 1,
        compressedSize: r.image.compressedSize,
        uncompressedSize: r.image.uncompressedSize,
        diskOffset: part ? part.offset : 0,
        mountPoint: mounts.get(r.image.path),
      });
    }
    return {
      name,
      recipe,
      dir,
      file,
      cosi,
      archiveSize: archive.size,
      diskSize: meta.disk?.size ?? 0,
      maxWindowLog: meta.compression?.maxWindowLog ?? 27,
      regions,
      nonZeroBytes: nonZero,
      buildSeconds,
    };
  } finally {
    await src.close();
  }
}

function keyOf(obj: unknown): string {
  return createHash('sha256').update(JSON.stringify(obj)).digest('hex').slice(0, 12);
}

/** Build (or reuse) a packed disk; the raw disk is dropped once packed and measured. */
export async function packedWorkload(cacheDir: string, recipe: DiskRecipe, log: (s: string) => void): Promise<Workload> {
  const packArgs = ['--level', '9', '--window-log', '27'];
  const key = `${recipe.name}-${keyOf({ recipe, packArgs, v: 1 })}`;
  const dir = join(cacheDir, key);
  const file = `${recipe.name}.cosi`;
  const infoPath = join(dir, 'info.json');
  if (existsSync(infoPath)) {
    const info = JSON.parse(await readFile(infoPath, 'utf8')) as { nonZeroBytes: number; buildSeconds: number };
    return describe(recipe.name, recipe, dir, file, info.nonZeroBytes, info.buildSeconds);
  }
  log(`building workload ${recipe.name} (cached under ${dir} afterwards)`);
  const t0 = Date.now();
  await mkdir(cacheDir, { recursive: true });
  const work = await mkdtemp(join(cacheDir, `.${key}-`));
  try {
    const disk = await buildDisk(recipe);
    const pkgs = join(work, 'packages.txt');
    await writeFile(pkgs, 'bash 5.2.15 1.bench x86_64\ncoreutils 9.1 2.bench x86_64\nbench-release 1.0 1 noarch\n');
    const osr = join(work, 'os-release');
    await writeFile(osr, disk.osRelease || 'NAME="Bench Linux"\nID=bench\nVERSION_ID="1.0"\n');
    await run(process.execPath, [PACK_CLI, disk.disk, '-o', join(work, file), '-q', '--packages', pkgs, '--os-release', osr, ...packArgs], { maxBuffer: 16 << 20 });
    const nz = await nonZeroBytes(disk.disk);
    const buildSeconds = (Date.now() - t0) / 1000;
    await writeFile(join(work, 'info.json'), JSON.stringify({ nonZeroBytes: nz, buildSeconds, recipe }));
    // The raw disk stays in the fixtures cache (shared with tests); ours keeps only the archive.
    await rename(work, dir).catch(async () => rm(work, { recursive: true, force: true }));
  } catch (err) {
    await rm(work, { recursive: true, force: true });
    throw err;
  }
  const info = JSON.parse(await readFile(infoPath, 'utf8')) as { nonZeroBytes: number; buildSeconds: number };
  return describe(recipe.name, recipe, dir, file, info.nonZeroBytes, info.buildSeconds);
}

/**
 * The main image: ESP, ~1 GiB ext4 root holding real files copied from
 * /usr/lib plus free space, and a mostly-empty /srv. --quick shrinks it.
 */
export function mainRecipe(quick: boolean): DiskRecipe {
  return quick
    ? { name: 'bench-main-quick', espMiB: 34, rootMiB: 192, rootFillMiB: 120, srvMiB: 32 }
    : { name: 'bench-main', espMiB: 64, rootMiB: 1024, rootFillMiB: 720, srvMiB: 256 };
}

/**
 * The low-ratio image (issue 14): an ext4 root filled with the machine's shared libraries only,
 * about 4:1 at level 9 as Image-Customizer images of real roots are, against bench-main's 5.7:1
 * (whose other /usr/lib files compress better). Packed the same way: a skippable frame before each
 * image, level 9, window log 27 (zstd --long=27). It shows the decoders moving and hashing more
 * compressed bytes per output byte.
 */
export function lowRatioRecipe(quick: boolean): DiskRecipe {
  return quick
    ? { name: 'bench-lowratio-quick', espMiB: 34, rootMiB: 128, rootFillMiB: 100, rootFillLibrariesOnly: true, srvMiB: 16 }
    : { name: 'bench-lowratio', espMiB: 34, rootMiB: 288, rootFillMiB: 250, rootFillLibrariesOnly: true, srvMiB: 16 };
}

/**
 * The large sparse disk (16 GiB logical): a 4 GiB ext4 root holding 300 MiB
 * of real files (the rest free, i.e. zeros) and a 12 GiB all-zero data
 * partition. --quick makes it 2 GiB with a 1 GiB root.
 */
export function sparseRecipe(quick: boolean): DiskRecipe {
  return quick
    ? { name: 'bench-sparse-quick', espMiB: 34, rootMiB: 1024, rootFillMiB: 60, srvMiB: 16, zeroMiB: 1024 }
    : { name: 'bench-sparse16', espMiB: 34, rootMiB: 4096, rootFillMiB: 300, srvMiB: 16, zeroMiB: 16384 - 4096 - 34 - 16 - 2 };
}

/** A tiny real COSI (the tests' default disk: 34 MiB ESP, 48 MiB root, 16 MiB /srv). */
export const TINY: DiskRecipe = { name: 'bench-tiny' };

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

/** A USTAR header block (checksum filled in); sizes over 8 GiB go in a PAX record instead. */
function ustar(name: string, size: number, type: string): Buffer {
  const b = Buffer.alloc(512);
  b.write(name, 0, 100, 'utf8');
  b.write(octal(0o400, 8), 100, 'latin1');
  b.write(octal(0, 8), 108, 'latin1');
  b.write(octal(0, 8), 116, 'latin1');
  b.write(octal(size, 12), 124, 'latin1');
  b.write(octal(0, 12), 136, 'latin1');
  b.write('        ', 148, 'latin1');
  b.write(type, 156, 'latin1');
  b.write('ustar\0', 257, 'latin1');
  b.write('00', 263, 'latin1');
  let sum = 0;
  for (const x of b) sum += x;
  b.write(octal(sum, 7) + ' ', 148, 'latin1');
  return b;
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return `${len}${body}`;
}

/**
 * A valid COSI of about `totalBytes`: the tiny archive's entries, then an
 * extra member (the spec allows extra files after the marker and metadata;
 * readers ignore them) whose data is a hole. Headers are real, the file is
 * sparse, so a 20 GiB archive costs a few KiB of disk. Sizes of 8 GiB and
 * more use a PAX size record, as Go's archive/tar writes them.
 */
export async function paddedArchive(base: string, out: string, totalBytes: number): Promise<void> {
  const src = new FileSource(base);
  let endOfEntries: number;
  try {
    const { archive } = await checkArchive(src);
    const last = archive.index.entries[archive.index.entries.length - 1]!;
    endOfEntries = last.dataOffset + Math.ceil(last.size / 512) * 512;
  } finally {
    await src.close();
  }
  const name = 'extra/padding.bin';
  const headerRoom = 3 * 512;
  const dataSize = Math.max(0, Math.floor((totalBytes - endOfEntries - headerRoom - 1024) / 512) * 512);
  const blocks: Buffer[] = [];
  if (dataSize >= 8 * 1024 ** 3) {
    const rec = Buffer.from(paxRecord('size', String(dataSize)), 'utf8');
    blocks.push(ustar('PaxHeaders/padding.bin', rec.length, 'x'), Buffer.concat([rec, Buffer.alloc(512 - (rec.length % 512 || 512))]));
    blocks.push(ustar(name, 0, '0'));
  } else {
    blocks.push(ustar(name, dataSize, '0'));
  }
  const tmp = `${out}.partial`;
  await copyFile(base, tmp);
  const fh = await open(tmp, 'r+');
  try {
    let at = endOfEntries;
    for (const b of blocks) {
      await fh.write(b, 0, b.length, at);
      at += b.length;
    }
    // Data (a hole) and the two zero end blocks: all zeros, so a truncate writes them.
    await fh.truncate(at + dataSize + 1024);
  } finally {
    await fh.close();
  }
  await rename(tmp, out);
}

export interface IndexWorkload {
  small: string;
  big: string;
  bigSize: number;
  smallSize: number;
  manyDir: string;
  manyCount: number;
  tiny: Workload;
}

/** Archives for the indexing comparison: 20 MiB vs 20 GiB (same base), and 1,000 small ones. */
export async function indexWorkload(cacheDir: string, log: (s: string) => void): Promise<IndexWorkload> {
  const tiny = await packedWorkload(cacheDir, TINY, log);
  const dir = join(cacheDir, `index-${keyOf({ tiny: tiny.dir, v: 1 })}`);
  const small = join(dir, 'small-20MiB.cosi');
  const big = join(dir, 'big-20GiB.cosi');
  const manyDir = join(dir, 'many');
  const manyCount = 1000;
  if (!existsSync(join(dir, '.done'))) {
    log(`building indexing archives under ${dir}`);
    await rm(dir, { recursive: true, force: true });
    await mkdir(manyDir, { recursive: true });
    await paddedArchive(tiny.cosi, small, 20 * MiB);
    await paddedArchive(tiny.cosi, big, 20 * 1024 * MiB);
    // Distinct files (not hard links), so a server keyed by inode sees 1,000 archives.
    for (let i = 0; i < manyCount; i++) await copyFile(tiny.cosi, join(manyDir, `img-${String(i).padStart(4, '0')}.cosi`));
    await writeFile(join(dir, '.done'), '');
  }
  return { small, big, bigSize: (await stat(big)).size, smallSize: (await stat(small)).size, manyDir, manyCount, tiny };
}
