/**
 * Filesystem identification from superblocks, matching what `blkid -p`
 * reports for the formats a COSI image carries. The COSI writer needs the
 * kernel's name for the type and the UUID exactly as blkid prints it, and the
 * size the filesystem claims so it can decide whether the filesystem covers
 * its partition (spec: "Filesystem Shrinking").
 *
 * Only the head of the partition is read (one request, so a remote source
 * costs one range fetch). Parsers never throw on malformed bytes: anything
 * that does not check out is simply "not this format".
 */
import type { ByteSource } from '../transport/source.js';

export interface FsInfo {
  /** Kernel name: ext2 | ext3 | ext4 | vfat | xfs | btrfs | squashfs | erofs | swap | unknown. */
  type: string;
  /** As blkid prints UUID=: lowercase 8-4-4-4-12, or XXXX-XXXX for vfat; '' when the format has none. */
  uuid: string;
  label?: string;
  /** Filesystem block size in bytes, where the format has one. */
  blockSize?: number;
  /** Size the filesystem reports for itself, where known. */
  sizeBytes?: number;
}

const UNKNOWN: FsInfo = Object.freeze({ type: 'unknown', uuid: '' }) as FsInfo;

/** btrfs keeps its primary superblock at 64 KiB; nothing we probe lies beyond it. */
const BTRFS_SB = 0x10000;
const PROBE_BYTES = BTRFS_SB + 0x1000;

export async function detectFilesystem(src: ByteSource, offset: number, length: number): Promise<FsInfo> {
  const want = Math.max(0, Math.min(length, PROBE_BYTES));
  if (want === 0) return { ...UNKNOWN };
  // I/O errors from the source propagate on purpose: "unreadable" is not "unknown".
  const head = await src.read(offset, want);
  const buf = head.length > want ? head.subarray(0, want) : head;
  return probe(buf);
}

/**
 * COSI "Filesystem Shrinking": the filesystem covers the partition when its
 * size equals the partition size or falls short by less than one block (it
 * could not grow into the remainder anyway). A filesystem claiming more than
 * the partition does not cover it: it is truncated, not complete.
 */
export function coversPartition(fs: FsInfo, partitionSize: number): boolean {
  if (fs.sizeBytes === undefined || fs.blockSize === undefined) return false;
  const delta = partitionSize - fs.sizeBytes;
  return delta === 0 || (delta > 0 && delta < fs.blockSize);
}

/**
 * Order matters only where two signatures could coexist: formats with strong
 * magics first, FAT last because its boot-sector heuristics are the weakest
 * (an ext or swap area can keep an old boot sector in front of it).
 */
function probe(buf: Buffer): FsInfo {
  const probers = [probeExt, probeXfs, probeBtrfs, probeSquashfs, probeErofs, probeSwap, probeVfat];
  for (const p of probers) {
    let found: FsInfo | undefined;
    try {
      found = p(buf);
    } catch {
      // A RangeError from a short or odd buffer means "not this format".
      found = undefined;
    }
    if (found) return found;
  }
  return { ...UNKNOWN };
}

// ---------------------------------------------------------------- helpers

function has(buf: Buffer, off: number, len: number): boolean {
  return off >= 0 && off + len <= buf.length;
}

function isZero(b: Buffer): boolean {
  for (const x of b) if (x !== 0) return false;
  return true;
}

/** 16 bytes as blkid prints them; an all-zero UUID is "none", as blkid omits it. */
function uuidString(b: Buffer): string {
  if (isZero(b)) return '';
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** A NUL-padded on-disk label; undefined when empty so callers can omit it. */
function cLabel(b: Buffer): string | undefined {
  const end = b.indexOf(0);
  const s = b.subarray(0, end < 0 ? b.length : end).toString('utf8');
  return s.length > 0 ? s : undefined;
}

function u64Number(v: bigint): number | undefined {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : undefined;
}

function isPow2(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

function info(type: string, uuid: string, extra: Omit<FsInfo, 'type' | 'uuid'>): FsInfo {
  const out: FsInfo = { type, uuid };
  if (extra.label !== undefined) out.label = extra.label;
  if (extra.blockSize !== undefined) out.blockSize = extra.blockSize;
  if (extra.sizeBytes !== undefined) out.sizeBytes = extra.sizeBytes;
  return out;
}

// ---------------------------------------------------------------- ext2/3/4

const EXT_SB = 1024;
const EXT_COMPAT_HAS_JOURNAL = 0x0004;
const EXT_INCOMPAT_RECOVER = 0x0004;
const EXT_INCOMPAT_JOURNAL_DEV = 0x0008;
const EXT_INCOMPAT_64BIT = 0x0080;
// Feature sets the old ext2/ext3 drivers understood; anything beyond them is what makes blkid say ext4.
const EXT2_INCOMPAT_SUPP = 0x0002 /* filetype */ | 0x0010; /* meta_bg */
const EXT3_INCOMPAT_SUPP = EXT2_INCOMPAT_SUPP | EXT_INCOMPAT_RECOVER;
const EXT23_RO_COMPAT_SUPP = 0x0001 /* sparse_super */ | 0x0002 /* large_file */ | 0x0004; /* btree_dir */

function probeExt(buf: Buffer): FsInfo | undefined {
  if (!has(buf, EXT_SB, 1024)) return undefined;
  const sb = buf.subarray(EXT_SB, EXT_SB + 1024);
  if (sb.readUInt16LE(0x38) !== 0xef53) return undefined;
  const logBlock = sb.readUInt32LE(0x18);
  if (logBlock > 6) return undefined; // block sizes 1 KiB..64 KiB
  const compat = sb.readUInt32LE(0x5c);
  const incompat = sb.readUInt32LE(0x60);
  const roCompat = sb.readUInt32LE(0x64);
  // An external journal device is not a mountable filesystem (blkid calls it jbd).
  if (incompat & EXT_INCOMPAT_JOURNAL_DEV) return undefined;

  const beyondExt3 = (incompat & ~EXT3_INCOMPAT_SUPP) !== 0 || (roCompat & ~EXT23_RO_COMPAT_SUPP) !== 0;
  let type: string;
  if (beyondExt3) type = 'ext4';
  else if (compat & EXT_COMPAT_HAS_JOURNAL) type = 'ext3';
  else if ((incompat & ~EXT2_INCOMPAT_SUPP) === 0) type = 'ext2';
  else return undefined; // needs_recovery without a journal: blkid matches nothing either

  const blockSize = 1024 << logBlock;
  let blocks = BigInt(sb.readUInt32LE(0x04));
  if (incompat & EXT_INCOMPAT_64BIT) blocks |= BigInt(sb.readUInt32LE(0x150)) << 32n;
  return info(type, uuidString(sb.subarray(0x68, 0x78)), {
    label: cLabel(sb.subarray(0x78, 0x88)),
    blockSize,
    sizeBytes: u64Number(blocks * BigInt(blockSize)),
  });
}

// ---------------------------------------------------------------- xfs

function probeXfs(buf: Buffer): FsInfo | undefined {
  if (!has(buf, 0, 120)) return undefined;
  if (buf.toString('latin1', 0, 4) !== 'XFSB') return undefined;
  const blockSize = buf.readUInt32BE(4);
  const dblocks = buf.readBigUInt64BE(8);
  const sectSize = buf.readUInt16BE(102);
  // The same sanity bounds xfs_repair uses for a primary superblock.
  if (!isPow2(blockSize) || blockSize < 512 || blockSize > 65536) return undefined;
  if (!isPow2(sectSize) || sectSize < 512 || sectSize > 32768) return undefined;
  if (dblocks === 0n) return undefined;
  return info('xfs', uuidString(buf.subarray(32, 48)), {
    label: cLabel(buf.subarray(108, 120)),
    blockSize,
    sizeBytes: u64Number(dblocks * BigInt(blockSize)),
  });
}

// ---------------------------------------------------------------- btrfs

function probeBtrfs(buf: Buffer): FsInfo | undefined {
  if (!has(buf, BTRFS_SB, 0x12b + 256)) return undefined;
  const sb = buf.subarray(BTRFS_SB);
  if (sb.toString('latin1', 0x40, 0x48) !== '_BHRfS_M') return undefined;
  const sectorSize = sb.readUInt32LE(0x90);
  if (!isPow2(sectorSize) || sectorSize < 512 || sectorSize > 65536) return undefined;
  // This device's size (dev_item.total_bytes), not the whole multi-device pool.
  const devBytes = sb.readBigUInt64LE(0xc9 + 8);
  return info('btrfs', uuidString(sb.subarray(0x20, 0x30)), {
    label: cLabel(sb.subarray(0x12b, 0x12b + 256)),
    blockSize: sectorSize,
    sizeBytes: u64Number(devBytes),
  });
}

// ---------------------------------------------------------------- squashfs

function probeSquashfs(buf: Buffer): FsInfo | undefined {
  if (!has(buf, 0, 96)) return undefined;
  if (buf.toString('latin1', 0, 4) !== 'hsqs') return undefined;
  // Only 4.x is mountable by current kernels; blkid names older ones squashfs3.
  if (buf.readUInt16LE(28) !== 4) return undefined;
  const blockSize = buf.readUInt32LE(12);
  if (!isPow2(blockSize) || blockSize < 4096 || blockSize > 1 << 20) return undefined;
  return info('squashfs', '', { blockSize, sizeBytes: u64Number(buf.readBigUInt64LE(40)) });
}

// ---------------------------------------------------------------- erofs

const EROFS_SB = 1024;

function probeErofs(buf: Buffer): FsInfo | undefined {
  if (!has(buf, EROFS_SB, 128)) return undefined;
  const sb = buf.subarray(EROFS_SB, EROFS_SB + 128);
  if (sb.readUInt32LE(0) !== 0xe0f5e1e2) return undefined;
  const bits = sb.readUInt8(12);
  if (bits < 9 || bits > 16) return undefined;
  const blockSize = 1 << bits;
  return info('erofs', uuidString(sb.subarray(48, 64)), {
    label: cLabel(sb.subarray(64, 80)),
    blockSize,
    sizeBytes: sb.readUInt32LE(36) * blockSize,
  });
}

// ---------------------------------------------------------------- swap

const SWAP_PAGE_SIZES = [4096, 8192, 16384, 32768, 65536];

function probeSwap(buf: Buffer): FsInfo | undefined {
  for (const page of SWAP_PAGE_SIZES) {
    if (!has(buf, page - 10, 10)) return undefined;
    const sig = buf.toString('latin1', page - 10, page);
    if (sig !== 'SWAPSPACE2') continue; // v0 "SWAP-SPACE" is long obsolete and has no UUID
    // The header's byte order is the writer's; version 1 tells us which.
    const le = buf.readUInt32LE(1024) === 1;
    if (!le && buf.readUInt32BE(1024) !== 1) return undefined;
    const lastPage = le ? buf.readUInt32LE(1028) : buf.readUInt32BE(1028);
    return info('swap', uuidString(buf.subarray(1036, 1052)), {
      label: cLabel(buf.subarray(1052, 1068)),
      blockSize: page,
      sizeBytes: (lastPage + 1) * page,
    });
  }
  return undefined;
}

// ---------------------------------------------------------------- vfat

function probeVfat(buf: Buffer): FsInfo | undefined {
  if (!has(buf, 0, 512)) return undefined;
  const fat16Magic = buf.toString('latin1', 0x36, 0x3e);
  const fat32Magic = buf.toString('latin1', 0x52, 0x5a);
  const magic =
    fat32Magic === 'FAT32   ' || fat32Magic.startsWith('MSWIN') ||
    ['FAT12   ', 'FAT16   ', 'FAT     '].includes(fat16Magic) || fat16Magic.startsWith('MSDOS');
  const bootJump = (buf[0] === 0xeb && buf[2] === 0x90) || buf[0] === 0xe9;
  const signed = buf[510] === 0x55 && buf[511] === 0xaa;
  if (!magic && !(bootJump && signed)) return undefined;

  // The BPB must be self-consistent, as blkid insists before it believes a FAT.
  const sectorSize = buf.readUInt16LE(0x0b);
  const perCluster = buf[0x0d]!;
  const reserved = buf.readUInt16LE(0x0e);
  const fats = buf[0x10]!;
  const media = buf[0x15]!;
  if (!isPow2(sectorSize) || sectorSize < 512 || sectorSize > 4096) return undefined;
  if (!isPow2(perCluster)) return undefined;
  if (reserved === 0 || fats === 0) return undefined;
  if (media !== 0xf0 && media < 0xf8) return undefined;

  const fat32 = buf.readUInt16LE(0x16) === 0 && buf.readUInt32LE(0x24) !== 0;
  // FAT32 moved the extended BPB (volume id, label) further out.
  const idOff = fat32 ? 0x43 : 0x27;
  const labelOff = fat32 ? 0x47 : 0x2b;
  const id = buf.readUInt32LE(idOff);
  const hex = id.toString(16).toUpperCase().padStart(8, '0');
  const total = buf.readUInt16LE(0x13) || buf.readUInt32LE(0x20);
  const rawLabel = buf.toString('latin1', labelOff, labelOff + 11).replace(/[\0 ]+$/, '');
  return info('vfat', `${hex.slice(0, 4)}-${hex.slice(4)}`, {
    // "NO NAME" is FAT's placeholder for "no label", which blkid does not report.
    label: rawLabel.length > 0 && rawLabel !== 'NO NAME' ? rawLabel : undefined,
    blockSize: sectorSize,
    sizeBytes: total > 0 ? total * sectorSize : undefined,
  });
}
