/**
 * Folder shared/pack/: the writer, cosi-pack (its bin is pack/cli.ts). Imports every other folder of shared/;
 * nothing but tests, bench/ and server/catalog/sample.ts imports it.
 *
 * cosi-pack: a raw GPT disk image in, a COSI 1.2 archive out.
 *
 * Every region is compressed to a temporary file first (the tar header needs
 * the compressed size before the data), then the archive is written in one
 * pass to a temporary name and renamed, so a reader never sees half a file.
 */
import { randomUUID } from 'node:crypto';
import { execFile } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, rm, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import tar from 'tar-stream';
import { CosiError } from '../errors.js';
import { FileSource } from '../transport/file-source.js';
import { dpsTypeByGuid } from '../disk/dps.js';
import { coversPartition, detectFilesystem, type FsInfo } from '../disk/fsdetect.js';
import { parseGpt, primaryGptRegionSize, type Gpt, type GptPartition } from '../disk/gpt.js';
import { normalizeArch, type Bootloader, type CosiMetadata, type Filesystem, type GptDiskRegion, type ImageFile, type OsPackage } from '../format/metadata.js';
import { compressFile } from '../zstd/index.js';
import { readExtFile } from './osinfo.js';
import { partialPathFor, renameInto, workDirFor } from './output.js';

const run = promisify(execFile);

export interface PackOptions {
  disk: string;
  output: string;
  osRelease?: string;
  packages?: OsPackage[];
  arch?: string;
  bootloader?: Bootloader;
  /** Mount point overrides by GPT partition number or DPS type name; '' drops the partition from images[]. */
  mounts?: Record<string, string>;
  shrink?: boolean;
  level?: number;
  windowLog?: number;
  /** Real writers put the COSI id in a skippable frame before each image; on by default. */
  skippableId?: boolean;
  /** Independent zstd frames of this many uncompressed bytes per image, with a seek table; one frame when absent. */
  frameSize?: number;
  id?: string;
  /** Called with one line per step, for a CLI's progress output. */
  log?: (line: string) => void;
  /** What the user should hear even with -q (a --shrink that shrank nothing); default: log. */
  warn?: (line: string) => void;
}

export interface PackedRegion {
  path: string;
  kind: 'primary-gpt' | 'partition';
  partition?: GptPartition;
  fs?: FsInfo;
  image: ImageFile;
  windowLog: number;
  shrunkFrom?: number;
}

export interface PackResult {
  output: string;
  metadata: CosiMetadata;
  regions: PackedRegion[];
  size: number;
  /** An existing file at `output` was replaced (the rule: like curl -o, the new file takes its place, atomically). */
  replaced: boolean;
}

const DEFAULT_LEVEL = 9;
const DEFAULT_WINDOW_LOG = 27;
const EXT = new Set(['ext2', 'ext3', 'ext4']);

export async function readDiskGpt(disk: string): Promise<{ gpt: Gpt; size: number; region: Buffer }> {
  const src = new FileSource(disk);
  try {
    const size = await src.size();
    const head = await src.read(0, Math.min(size, 8192 * 2));
    try {
      const regionSize = primaryGptRegionSize(head);
      const region = await src.read(0, regionSize);
      if (region.length < regionSize) throw new CosiError('COSI_ERR_GPT', `${disk}: disk ends inside the primary GPT`);
      return { gpt: parseGpt(region), size, region };
    } catch (err) {
      if (err instanceof CosiError && err.code === 'COSI_ERR_GPT' && !err.message.startsWith(disk)) {
        throw new CosiError('COSI_ERR_GPT', `${disk} is not a disk image with a GPT partition table (${err.message})`, { cause: err });
      }
      throw err;
    }
  } finally {
    await src.close();
  }
}

function archOf(opts: PackOptions, parts: GptPartition[]): string {
  if (opts.arch) {
    const a = normalizeArch(opts.arch);
    if (!a) throw new CosiError('COSI_ERR_USAGE', `--arch ${opts.arch}: expected x86_64 or arm64 (or amd64, x64, aarch64)`);
    return a;
  }
  for (const p of parts) {
    const t = dpsTypeByGuid(p.typeGuid);
    const a = t?.arch && normalizeArch(t.arch);
    if (a) return a;
  }
  return process.arch === 'arm64' ? 'arm64' : 'x86_64';
}

function mountPointFor(p: GptPartition, opts: PackOptions, fs: FsInfo): string | undefined {
  const dps = dpsTypeByGuid(p.typeGuid);
  const override = opts.mounts?.[String(p.number)] ?? (dps ? opts.mounts?.[dps.name] : undefined);
  if (override !== undefined) return override === '' ? undefined : override;
  if (fs.type === 'swap' || dps?.name.endsWith('-verity') || dps?.name.endsWith('-verity-sig')) return undefined;
  return dps?.mountPoint;
}

/** Shrink an ext2/3/4 copy of the partition to its minimum size; returns the new size. */
async function shrinkExt(disk: string, p: GptPartition, tmp: string): Promise<number> {
  await pipeline(createReadStream(disk, { start: p.offset, end: p.offset + p.size - 1, highWaterMark: 1 << 20 }), createWriteStream(tmp));
  try {
    // resize2fs refuses an unchecked filesystem; -p would prompt, -y answers.
    await run('e2fsck', ['-f', '-y', tmp]).catch((err: { code?: number }) => {
      if (typeof err.code !== 'number' || err.code > 1) throw err;
    });
    await run('resize2fs', ['-M', tmp]);
  } catch (err) {
    throw new CosiError('COSI_ERR_IO', `--shrink: resize2fs failed on partition ${p.number}: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  const src = new FileSource(tmp);
  try {
    const fs = await detectFilesystem(src, 0, p.size);
    if (!fs.sizeBytes) throw new CosiError('COSI_ERR_INTERNAL', `--shrink: cannot read the size of the shrunk filesystem on partition ${p.number}`);
    await truncate(tmp, fs.sizeBytes);
    return fs.sizeBytes;
  } finally {
    await src.close();
  }
}

/** A --mount for a partition the disk does not have is a mistake, not a no-op. */
function checkMounts(disk: string, parts: GptPartition[], mounts: Record<string, string> | undefined): void {
  for (const [sel, path] of Object.entries(mounts ?? {})) {
    const hit = /^\d+$/.test(sel) ? parts.some((p) => String(p.number) === sel) : parts.some((p) => dpsTypeByGuid(p.typeGuid)?.name === sel);
    if (hit) continue;
    const have = parts.map((p) => `${p.number}${dpsTypeByGuid(p.typeGuid) ? ` (${dpsTypeByGuid(p.typeGuid)!.name})` : ''}`).join(', ');
    throw new CosiError('COSI_ERR_USAGE', `--mount ${sel}=${path}: ${disk} has no partition ${/^\d+$/.test(sel) ? sel : `of type ${sel}`}; it has ${have || 'none'}`);
  }
}

export async function packDisk(opts: PackOptions): Promise<PackResult> {
  const log = opts.log ?? (() => {});
  const { gpt, size: diskSize } = await readDiskGpt(opts.disk);
  if (diskSize % gpt.lbaSize !== 0) {
    throw new CosiError('COSI_ERR_GPT', `${opts.disk}: size ${diskSize} is not a multiple of the LBA size ${gpt.lbaSize}`);
  }
  const parts = [...gpt.partitions].sort((a, b) => a.firstLba - b.firstLba);
  for (const p of parts) {
    if (p.offset + p.size > diskSize) {
      throw new CosiError('COSI_ERR_GPT', `${opts.disk}: partition ${p.number} ends at ${p.offset + p.size}, past the end of the disk (${diskSize})`);
    }
  }
  checkMounts(opts.disk, parts, opts.mounts);
  const id = opts.id ?? randomUUID();
  const idBytes = Buffer.from(id.replace(/-/g, ''), 'hex');
  const level = opts.level ?? DEFAULT_LEVEL;
  const windowLog = opts.windowLog ?? DEFAULT_WINDOW_LOG;
  const work = await workDirFor(opts.output, 'pack');
  const tmpOut = partialPathFor(opts.output);
  const src = new FileSource(opts.disk);
  try {
    const regions: PackedRegion[] = [];
    // Partition images only: the primary GPT's few KiB gain nothing from frames.
    const compress = async (name: string, input: string | { path: string; offset: number; length: number }, frameSize?: number) => {
      const out = join(work, name.replace(/\//g, '_'));
      const r = await compressFile(input, out, { level, windowLog, skippableId: opts.skippableId === false ? undefined : idBytes, frameSize });
      return { out, r };
    };

    log(`primary GPT: ${gpt.primaryRegionSize} bytes`);
    const g = await compress('images/primary-gpt.raw.zst', { path: opts.disk, offset: 0, length: gpt.primaryRegionSize });
    regions.push({
      path: 'images/primary-gpt.raw.zst',
      kind: 'primary-gpt',
      image: { path: 'images/primary-gpt.raw.zst', compressedSize: g.r.compressedSize, uncompressedSize: g.r.uncompressedSize, sha384: g.r.sha384 },
      windowLog: g.r.windowLog,
    });
    const files = new Map<string, string>([['images/primary-gpt.raw.zst', g.out]]);
    /** Why --shrink left each partition as it was, said when it shrank none. */
    const unshrunk: string[] = [];

    for (const p of parts) {
      const fs = await detectFilesystem(src, p.offset, p.size);
      const path = `images/partition-${p.number}.raw.zst`;
      let input: string | { path: string; offset: number; length: number } = { path: opts.disk, offset: p.offset, length: p.size };
      let shrunkFrom: number | undefined;
      if (opts.shrink && !EXT.has(fs.type)) unshrunk.push(`${p.number} (${fs.type}, not ext2/3/4)`);
      else if (opts.shrink && !coversPartition(fs, p.size)) unshrunk.push(`${p.number} (its ${fs.type} is already smaller than the partition)`);
      else if (opts.shrink) {
        const tmp = join(work, `shrink-${p.number}.raw`);
        const newSize = await shrinkExt(opts.disk, p, tmp);
        if (newSize < p.size) {
          input = tmp;
          shrunkFrom = p.size;
          log(`partition ${p.number}: ${fs.type} shrunk from ${p.size} to ${newSize} bytes`);
        } else unshrunk.push(`${p.number} (${fs.type} already at its minimum size)`);
      }
      log(`partition ${p.number}: ${fs.type}${fs.uuid ? ` ${fs.uuid}` : ''}, ${p.size} bytes`);
      const c = await compress(path, input, opts.frameSize);
      files.set(path, c.out);
      regions.push({
        path,
        kind: 'partition',
        partition: p,
        fs,
        image: { path, compressedSize: c.r.compressedSize, uncompressedSize: c.r.uncompressedSize, sha384: c.r.sha384 },
        windowLog: c.r.windowLog,
        shrunkFrom,
      });
    }

    if (opts.shrink && !regions.some((r) => r.shrunkFrom !== undefined)) {
      (opts.warn ?? log)(`--shrink shrank nothing: partition ${unshrunk.join(', partition ')}`);
    }
    const filesystems: Filesystem[] = [];
    for (const r of regions) {
      if (r.kind !== 'partition' || !r.partition || !r.fs) continue;
      const mountPoint = mountPointFor(r.partition, opts, r.fs);
      if (mountPoint === undefined) continue;
      filesystems.push({
        image: { ...r.image },
        mountPoint,
        fsType: r.fs.type,
        fsUuid: r.fs.uuid,
        partType: r.partition.typeGuid,
        verity: null,
      });
    }

    let osRelease = opts.osRelease;
    if (osRelease === undefined) {
      const root = regions.find((r) => r.partition && EXT.has(r.fs?.type ?? '') && filesystems.some((f) => f.mountPoint === '/' && f.image.path === r.path));
      if (root?.partition) {
        osRelease = await readExtFile(opts.disk, root.partition.offset, '/etc/os-release');
        if (osRelease !== undefined) log('osRelease: read /etc/os-release from the root filesystem');
      }
    }
    if (osRelease === undefined) {
      log('warning: no os-release found (give --os-release FILE); recording an empty osRelease');
      osRelease = '';
    }

    const gptRegions: GptDiskRegion[] = regions.map((r) =>
      r.kind === 'primary-gpt' ? { image: { ...r.image }, type: 'primary-gpt' } : { image: { ...r.image }, type: 'partition', number: r.partition!.number },
    );
    const metadata: CosiMetadata = {
      version: '1.2',
      id,
      osArch: archOf(opts, parts),
      osRelease,
      images: filesystems,
      osPackages: opts.packages ?? [],
      bootloader: opts.bootloader ?? { type: 'grub' },
      disk: { size: diskSize, type: 'gpt', lbaSize: gpt.lbaSize, gptRegions },
      compression: { maxWindowLog: Math.max(...regions.map((r) => r.windowLog)) },
    };
    const metadataBytes = Buffer.from(JSON.stringify(metadata, null, 2) + '\n');

    await writeArchive(tmpOut, metadataBytes, regions.map((r) => ({ name: r.path, file: files.get(r.path)!, size: r.image.compressedSize })));
    const replaced = await renameInto(tmpOut, opts.output);
    const { size } = await stat(opts.output);
    return { output: opts.output, metadata, regions, size, replaced };
  } catch (err) {
    await rm(tmpOut, { force: true });
    throw err;
  } finally {
    await src.close();
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * The spec-exact tar: cosi-marker (so the file's first 11 bytes are
 * "cosi-marker"), metadata.json, then images, then the end-of-archive marker.
 * Modes, owners and times are fixed so the same input packs to the same bytes.
 */
export async function writeArchive(path: string, metadata: Buffer, images: Array<{ name: string; file: string; size: number }>): Promise<void> {
  const pack = tar.pack();
  const header = (name: string, size: number) => ({ name, size, mode: 0o400, uid: 0, gid: 0, mtime: new Date(0), type: 'file' as const });
  const out = createWriteStream(path);
  const done = pipeline(pack, out);
  const add = (name: string, size: number, fill: (w: NodeJS.WritableStream) => Promise<void>) =>
    new Promise<void>((resolve, reject) => {
      const w = pack.entry(header(name, size), (err) => (err ? reject(err) : resolve()));
      fill(w).catch(reject);
    });
  try {
    await add('cosi-marker', 0, async (w) => void w.end());
    await add('metadata.json', metadata.length, async (w) => void w.end(metadata));
    for (const img of images) {
      await add(img.name, img.size, (w) => pipeline(createReadStream(img.file, { highWaterMark: 1 << 20 }), w));
    }
    pack.finalize();
    await done;
  } catch (err) {
    pack.destroy(err as Error);
    await done.catch(() => {});
    throw new CosiError('COSI_ERR_IO', `cannot write ${path}: ${(err as Error).message}`, { cause: err });
  }
  const fh = await open(path, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
