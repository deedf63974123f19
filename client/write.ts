/**
 * Writing images out: one partition to a file or block device, or the whole
 * disk (protective MBR and primary GPT from the image, each partition at its
 * GPT offset, the backup GPT rebuilt for the target's end).
 *
 * Ordering on a whole disk: partitions, then the backup GPT, fsync, and only
 * then the primary region, fsynced again. An interrupted install leaves a
 * disk without a valid primary table rather than one that looks complete.
 * Shrunk filesystems on a device are grown in place after that, once our
 * exclusive handle is closed (e2fsck and resize2fs need the device alone).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { CosiError } from '../shared/errors.js';
import { buildBackupGpt } from '../shared/disk/gpt-build.js';
import type { PartitionInfo } from '../shared/format/metadata.js';
import { growExt, isExt } from './grow.js';
import { pool, type CosiImage } from './image.js';
import { abortTarget, commitTarget, openTarget, rereadPartitions, syncTarget, type Target } from './output.js';
import type { Progress } from './progress.js';
import { RangeWriter, writeFully } from './range-writer.js';
import { refetchOnce } from './refetch.js';
import type { WriteBehind } from './write-behind.js';

const run = promisify(execFile);
const VERIFY_DIGEST = 'sha256';
const COPY_CHUNK = 4 << 20;

export interface WriteOptions {
  progress?: Progress;
  /** Read the output back after writing and compare (catches media that drop writes). */
  verifyAfter?: boolean;
  /** Grow shrunk ext2/3/4 filesystems to fill their partitions. */
  grow?: boolean;
  /** Whole disk: images fetched at once. */
  jobs?: number;
  /**
   * Whole disk: --jobs as the user gave it. Unset, the zstd windows decoded at
   * once stay within one full window plus 64 MiB (see CosiImage.decodeBudget).
   */
  jobsGiven?: number;
  /**
   * Writes that stay on this thread (with verifyAfter, which hashes them here) are blocking
   * calls (faster; blocks the event loop per 128 KiB write). Otherwise the decode worker writes.
   */
  syncWrites?: boolean;
  /** Non-fatal notes for the user (one line each). */
  warn?: (line: string) => void;
}

export interface PartitionResult {
  path: string;
  label: string;
  number?: number;
  mountPoint?: string;
  output: string;
  outputKind: 'file' | 'device';
  /** Where in the output the partition starts (0 for a partition output). */
  offset: number;
  compressedSize: number;
  uncompressedSize: number;
  partitionSize?: number;
  sha384?: string;
  /** False when the image has no SHA-384 (COSI 1.0, written with allowUnverified): only its size and zstd stream were checked. */
  verified: boolean;
  shrunk: boolean;
  grown: boolean;
  /** Bytes skipped as holes (sparse file outputs). */
  holeBytes: number;
  verifiedAfter: boolean;
  seconds: number;
  /** A file was at `output` and was replaced. */
  replaced?: boolean;
  /** Set when the image's seek table let its frames decode in parallel: zstd frames, and lanes decoding them. */
  frames?: number;
  lanes?: number;
  /** --resume: seek-table entries an earlier, interrupted run had already written (0: started from the first). */
  resumedFrom?: number;
}

/** What a result says about the partition itself, the same in partition and disk mode. */
export function describe(p: PartitionInfo, output: string, outputKind: 'file' | 'device', offset: number, partitionSize: number | undefined) {
  return {
    path: p.path,
    label: labelOf(p),
    number: p.number,
    mountPoint: p.mountPoint,
    output,
    outputKind,
    offset,
    compressedSize: p.image.compressedSize,
    uncompressedSize: p.image.uncompressedSize,
    partitionSize,
    sha384: p.image.sha384,
    verified: p.image.sha384 !== undefined,
  };
}

export interface DiskResult {
  output: string;
  /** A file was at `output` and was replaced. */
  replaced?: boolean;
  outputKind: 'file' | 'device';
  diskSize: number;
  targetSize: number;
  lbaSize: number;
  partitions: PartitionResult[];
  /** Partitions whose image is smaller than the partition (shrunk filesystems). */
  shrunk: Array<{ number?: number; path: string; label: string; imageSize: number; partitionSize: number; grown: boolean }>;
  warnings: string[];
}

/** A short human name: DPS type, else mount point, else number. */
export function labelOf(p: PartitionInfo): string {
  return p.dpsName ?? p.mountPoint ?? (p.number !== undefined ? `partition ${p.number}` : basename(p.path));
}

/** A file name for -o DIR: the type name when unique, else the GPT number, else the image's name. */
export function defaultFileName(p: PartitionInfo, all: PartitionInfo[]): string {
  if (p.dpsName && all.filter((q) => q.dpsName === p.dpsName).length === 1) return `${p.dpsName}.img`;
  if (p.number !== undefined) return `partition-${p.number}.img`;
  return basename(p.path).replace(/\.(raw)?\.?zst$/i, '') + '.img';
}

export function checkFits(p: PartitionInfo): void {
  if (p.gptPartition && p.image.uncompressedSize > p.gptPartition.size) {
    throw new CosiError(
      'COSI_ERR_INVALID',
      `${p.path}: image is ${p.image.uncompressedSize} bytes, larger than its partition #${p.number} (${p.gptPartition.size} bytes)`,
    );
  }
}

/** Read [offset, offset+length) of `path` back and hash it. */
async function hashBack(path: string, offset: number, length: number): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const h = createHash(VERIFY_DIGEST);
    const buf = Buffer.allocUnsafe(Math.min(COPY_CHUNK, Math.max(1, length)));
    let done = 0;
    while (done < length) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, length - done), offset + done);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
      done += bytesRead;
    }
    if (done < length) return `short:${done}`;
    return h.digest('hex');
  } finally {
    await fh.close();
  }
}

async function dropCaches(t: Target): Promise<void> {
  // A device's page cache would answer the read-back from memory, hiding a bad medium.
  if (t.kind === 'device') await run('blockdev', ['--flushbufs', t.path]).catch(() => undefined);
}

async function verifyBack(t: Target, w: RangeWriter, offset: number, label: string): Promise<void> {
  const want = w.hash!.digest('hex');
  const got = await hashBack(t.writePath, offset, w.written);
  if (got !== want) {
    throw new CosiError('COSI_ERR_VERIFY_AFTER', `${label}: reading ${t.path} back at byte ${offset} does not give what was written: the medium dropped or corrupted writes`);
  }
}

/** Sparse copy of a whole file into `dst` at `offset` (a grown partition placed into a disk). */
async function copyInto(srcPath: string, length: number, dst: FileHandle, offset: number, sparse: boolean, label: string): Promise<void> {
  const fh = await open(srcPath, 'r');
  const w = new RangeWriter(dst, offset, { sparse, label });
  try {
    const buf = Buffer.allocUnsafe(COPY_CHUNK);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, length - done), done);
      if (bytesRead === 0) throw new CosiError('COSI_ERR_IO', `${srcPath} ended early while placing ${label}`);
      await new Promise<void>((resolve, reject) => w.write(Buffer.from(buf.subarray(0, bytesRead)), (err) => (err ? reject(err) : resolve())));
      done += bytesRead;
    }
    await new Promise<void>((resolve, reject) => w.end((err?: Error | null) => (err ? reject(err) : resolve())));
  } finally {
    await fh.close();
  }
}

export function progressItem(p: PartitionInfo) {
  return { path: p.path, label: labelOf(p), total: p.image.uncompressedSize, compressedTotal: p.image.compressedSize };
}

/** Where a partition's image goes: the target's handle at `offset`, up to `limit` bytes. */
interface Placement {
  behind?: WriteBehind;
  sparse: boolean;
  limit: number;
}

/** The writer for one partition's image, hashing for --verify-after and reporting progress as `opts` ask. */
function imageWriter(fh: FileHandle, offset: number, p: PartitionInfo, at: Placement, opts: WriteOptions): RangeWriter {
  const progress = opts.progress;
  return new RangeWriter(fh, offset, {
    behind: at.behind,
    sync: opts.syncWrites,
    sparse: at.sparse,
    limit: at.limit,
    digest: opts.verifyAfter ? VERIFY_DIGEST : undefined,
    label: p.path,
    onBytes: progress ? (n) => progress.written(p.path, n) : undefined,
  });
}

/** Whether --grow applies to `p`; a shrunk filesystem it cannot grow gets a warning instead. */
function growsHere(p: PartitionInfo, opts: WriteOptions, warn: ((line: string) => void) | undefined): boolean {
  const growHere = opts.grow === true && p.shrunk === true && isExt(p.fsType);
  if (opts.grow && p.shrunk && !growHere) warn?.(`${labelOf(p)}: --grow only handles ext2/3/4, this is ${p.fsType ?? 'an unknown filesystem'}; left as is`);
  return growHere;
}

/** One partition to a regular file (temp name, renamed when good) or a block device (in place). */
export async function writePartition(img: CosiImage, p: PartitionInfo, outPath: string, opts: WriteOptions = {}): Promise<PartitionResult> {
  checkFits(p);
  img.refuseUnverified([p.image]);
  const started = Date.now();
  const progress = opts.progress;
  progress?.begin(progressItem(p));
  let ok = false;
  try {
    // Each attempt has a target of its own, aborted when it fails: the second starts from nothing.
    const result = await refetchOnce(img, p, opts.warn, async (again) => {
      if (again) progress?.begin(progressItem(p));
      return writePartitionOnce(img, p, outPath, opts, started);
    });
    ok = true;
    return result;
  } finally {
    progress?.end(p.path, ok);
  }
}

async function writePartitionOnce(img: CosiImage, p: PartitionInfo, outPath: string, opts: WriteOptions, started: number): Promise<PartitionResult> {
  const t = await openTarget(outPath, { size: p.image.uncompressedSize });
  const progress = opts.progress;
  try {
    const w = imageWriter(t.fh, 0, p, { behind: t.behind, sparse: t.kind === 'file', limit: p.image.uncompressedSize }, opts);
    const decode = await img.pump(p.image, w, { progress });
    let verified = false;
    if (opts.verifyAfter) {
      await syncTarget(t);
      await dropCaches(t);
      await verifyBack(t, w, 0, p.path);
      verified = true;
    }
    const shrunk = p.shrunk === true;
    let grown = false;
    const growHere = growsHere(p, opts, opts.warn);
    if (growHere && t.kind === 'file') {
      // Extended to the partition's size, grown under its temporary name, renamed only when done.
      await t.fh.truncate(p.gptPartition!.size);
      await syncTarget(t);
      await growExt(t.writePath);
      grown = true;
    }
    await commitTarget(t);
    if (growHere && t.kind === 'device') {
      // To the device's own size, once our exclusive handle is closed (e2fsck and resize2fs need it alone).
      await growExt(t.path);
      grown = true;
    }
    return {
      ...describe(p, outPath, t.kind, 0, p.gptPartition?.size),
      shrunk,
      grown,
      holeBytes: w.holes,
      verifiedAfter: verified,
      seconds: (Date.now() - started) / 1000,
      replaced: t.replaces === true,
      ...decode,
    };
  } catch (err) {
    await abortTarget(t);
    throw err;
  }
}

/** The whole disk, as described by disk.gptRegions and the primary GPT. */
export async function writeDisk(img: CosiImage, outPath: string, opts: WriteOptions = {}): Promise<DiskResult> {
  const disk = img.metadata.disk;
  if (!disk || !img.gpt || !img.primaryImage) {
    throw new CosiError('COSI_ERR_UNSUPPORTED', `${img.name} is COSI ${img.metadata.version} without a disk layout (disk.gptRegions): it can only be fetched by partition`);
  }
  const placed = img.partitions.filter((p) => p.number !== undefined);
  for (const p of placed) {
    if (!p.gptPartition) throw new CosiError('COSI_ERR_INVALID', `${p.path}: region #${p.number} has no entry in the primary GPT`);
    checkFits(p);
  }
  img.refuseUnverified(placed.map((p) => p.image));
  const warnings: string[] = [];
  const warn = (s: string): void => {
    warnings.push(s);
    opts.warn?.(s);
  };
  const t = await openTarget(outPath, { size: disk.size, lbaSize: disk.lbaSize });
  const targetSize = t.kind === 'file' ? disk.size : t.size;
  const progress = opts.progress;
  try {
    // The table for this target: the same as the image's when sizes agree, else moved to the target's end.
    const backup = buildBackupGpt(img.primaryImage, targetSize);
    const sparse = t.kind === 'file';
    // Device partitions to grow once the device is closed (see below).
    const growLater: PartitionInfo[] = [];
    const results = await pool(placed, opts.jobs ?? 2, async (p) => {
      const gp = p.gptPartition!;
      const started = Date.now();
      const growHere = growsHere(p, opts, warn);
      progress?.begin(progressItem(p));
      let ok = false;
      // A second attempt writes over the first one's region, holes included: its bytes are not to be trusted.
      const attempt = async (again: boolean): Promise<PartitionResult> => {
        if (again) progress?.begin(progressItem(p));
        let holes = 0;
        let verified = false;
        const decode: { frames?: number; lanes?: number } = {};
        if (growHere && t.kind === 'file') {
          // resize2fs cannot work on a slice of a file (it truncates the file), so grow in a side file.
          const side = await openTarget(join(dirname(outPath), `.${basename(outPath)}.part${p.number}`), { size: p.image.uncompressedSize, scratch: true });
          try {
            // A scratch file, deleted after the copy below: nothing to write behind.
            const w = imageWriter(side.fh, 0, p, { sparse: true, limit: p.image.uncompressedSize }, opts);
            await img.pump(p.image, w, { progress });
            if (opts.verifyAfter) {
              await syncTarget(side);
              await verifyBack(side, w, 0, p.path);
              verified = true;
            }
            await side.fh.truncate(gp.size);
            await side.fh.close();
            await growExt(side.writePath);
            await copyInto(side.writePath, gp.size, t.fh, gp.offset, true, p.path);
            holes = w.holes;
          } finally {
            await abortTarget(side);
          }
        } else {
          const w = imageWriter(t.fh, gp.offset, p, { behind: t.behind, sparse: sparse && !again, limit: gp.size }, opts);
          Object.assign(decode, await img.pump(p.image, w, { progress }));
          holes = w.holes;
          if (opts.verifyAfter) {
            await syncTarget(t);
            await dropCaches(t);
            await verifyBack(t, w, gp.offset, p.path);
            verified = true;
          }
          // e2fsck and resize2fs open the device exclusively, which our own O_EXCL handle forbids.
          if (growHere) growLater.push(p);
        }
        return {
          ...describe(p, outPath, t.kind, gp.offset, gp.size),
          shrunk: p.shrunk === true,
          grown: growHere,
          holeBytes: holes,
          verifiedAfter: verified,
          seconds: (Date.now() - started) / 1000,
          ...decode,
        };
      };
      try {
        const result = await refetchOnce(img, p, warn, attempt);
        ok = true;
        return result;
      } finally {
        progress?.end(p.path, ok);
      }
    }, img.decodeBudget(opts.jobsGiven));

    await writeAt(t, backup.entries, backup.entriesOffset);
    await writeAt(t, backup.header, backup.headerOffset);
    await syncTarget(t);
    // Last: the decoded primary image (it may extend past the table), with the table for this target.
    const first = Buffer.from(img.primaryImage);
    backup.primary.copy(first, 0);
    await writeAt(t, first, 0);
    if (opts.verifyAfter) {
      await syncTarget(t);
      await dropCaches(t);
      const want = createHash(VERIFY_DIGEST).update(first).digest('hex');
      if ((await hashBack(t.writePath, 0, first.length)) !== want) {
        throw new CosiError('COSI_ERR_VERIFY_AFTER', `reading ${t.path} back: the partition table region does not match what was written`);
      }
    }
    await commitTarget(t);
    // In place on the device, now released; the table is already complete, and so is each
    // filesystem (only smaller than its partition) should this be interrupted.
    for (const p of growLater) await growExt(`${t.path}?offset=${p.gptPartition!.offset}`, p.gptPartition!.size);
    if (t.kind === 'device') {
      const w = await rereadPartitions(t.path);
      if (w) warn(w);
    }
    const shrunk = results
      .filter((r) => r.shrunk)
      .map((r) => ({ number: r.number, path: r.path, label: r.label, imageSize: r.uncompressedSize, partitionSize: r.partitionSize!, grown: r.grown }));
    return { output: outPath, outputKind: t.kind, replaced: t.replaces === true, diskSize: disk.size, targetSize, lbaSize: disk.lbaSize, partitions: results, shrunk, warnings };
  } catch (err) {
    await abortTarget(t);
    throw err;
  }
}

function writeAt(t: Target, buf: Buffer, pos: number): Promise<void> {
  return writeFully(t.fh, buf, pos, t.path);
}
