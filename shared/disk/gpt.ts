/**
 * GUID Partition Table (UEFI 2.10 chapter 5): parse and validate the primary
 * region a COSI file carries, rebuild the backup GPT for a target disk, and
 * create fresh tables for synthetic disks.
 *
 * LBAs are JS numbers: anything past 2^53 is rejected as corrupt rather than
 * silently rounded, since no real disk is that large.
 */

import { randomUUID } from 'node:crypto';
import { CosiError } from '../errors.js';
import { crc32 } from './crc32.js';

export interface GptPartition {
  /** 1-based entry index. */
  number: number;
  typeGuid: string;
  partGuid: string;
  firstLba: number;
  lastLba: number;
  attributes: bigint;
  /** UTF-16LE, cut at the first NUL. */
  name: string;
  /** Bytes from disk offset 0. */
  offset: number;
  /** Bytes. */
  size: number;
}

export interface Gpt {
  lbaSize: 512 | 4096;
  diskGuid: string;
  currentLba: number;
  backupLba: number;
  firstUsableLba: number;
  lastUsableLba: number;
  entriesLba: number;
  numEntries: number;
  entrySize: number;
  entriesCrc: number;
  /** Non-empty entries, in entry order. */
  partitions: GptPartition[];
  /** Bytes from disk offset 0 to the end of the entries array. */
  primaryRegionSize: number;
  /** LBA 0 has the 0x55AA signature and a type 0xEE record. Absence is tolerated, not fatal. */
  protectiveMbr: boolean;
}

export type LbaSize = 512 | 4096;

const SIGNATURE = Buffer.from('EFI PART', 'latin1');
const REVISION_1_0 = 0x00010000;
const HEADER_SIZE = 92;
const STD_ENTRIES = 128;
const STD_ENTRY_SIZE = 128;
/** Far beyond any real table (the default is 16 KiB); bounds what a corrupt header can make us read. */
const MAX_ENTRIES_BYTES = 32 * 1024 * 1024;
const MBR_SIZE_MAX = 0xffffffff;

// Header field offsets.
const H_SIG = 0;
const H_REV = 8;
const H_SIZE = 12;
const H_CRC = 16;
const H_RESERVED = 20;
const H_MY_LBA = 24;
const H_ALT_LBA = 32;
const H_FIRST_USABLE = 40;
const H_LAST_USABLE = 48;
const H_DISK_GUID = 56;
const H_ENTRIES_LBA = 72;
const H_NUM_ENTRIES = 80;
const H_ENTRY_SIZE = 84;
const H_ENTRIES_CRC = 88;

// Entry field offsets.
const E_TYPE = 0;
const E_GUID = 16;
const E_FIRST = 32;
const E_LAST = 40;
const E_ATTR = 48;
const E_NAME = 56;
const E_NAME_LEN = 72;

// Protective MBR.
const MBR_PART_TABLE = 446;
const MBR_SIG = 510;
const MBR_TYPE_GPT = 0xee;

function fail(message: string, details?: Record<string, unknown>): never {
  throw new CosiError('COSI_ERR_GPT', message, details === undefined ? undefined : { details });
}

function asBuffer(buf: Uint8Array): Buffer {
  return Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
}

// ---------------------------------------------------------------------------
// GUIDs: the first three fields are stored little-endian, the last two as bytes.

export function decodeGuid(b: Uint8Array, off = 0): string {
  const h = (i: number): string => b[off + i]!.toString(16).padStart(2, '0');
  const r = (...idx: number[]): string => idx.map(h).join('');
  return `${r(3, 2, 1, 0)}-${r(5, 4)}-${r(7, 6)}-${r(8, 9)}-${r(10, 11, 12, 13, 14, 15)}`;
}

const GUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function encodeGuid(guid: string, out: Uint8Array, off = 0): void {
  if (!GUID_RE.test(guid)) fail(`invalid GUID "${guid}"`);
  const hex = guid.replace(/-/g, '');
  const byte = (i: number): number => parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  const order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
  order.forEach((src, dst) => {
    out[off + dst] = byte(src);
  });
}

function isZero(b: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (b[i] !== 0) return false;
  return true;
}

function readLba(b: Buffer, off: number, what: string): number {
  const v = b.readBigUInt64LE(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`GPT ${what} ${v} is out of range`);
  return Number(v);
}

// ---------------------------------------------------------------------------
// Header

interface Header {
  lbaSize: LbaSize;
  headerSize: number;
  currentLba: number;
  backupLba: number;
  firstUsableLba: number;
  lastUsableLba: number;
  diskGuid: string;
  entriesLba: number;
  numEntries: number;
  entrySize: number;
  entriesCrc: number;
  /** entriesLba * lbaSize + numEntries * entrySize */
  primaryRegionSize: number;
}

function hasSignatureAt(b: Buffer, off: number): boolean {
  return b.length >= off + SIGNATURE.length && b.compare(SIGNATURE, 0, SIGNATURE.length, off, off + SIGNATURE.length) === 0;
}

function detectLbaSize(b: Buffer, forced: LbaSize | undefined): LbaSize {
  if (forced !== undefined) {
    if (forced !== 512 && forced !== 4096) fail(`unsupported LBA size ${String(forced)} (expected 512 or 4096)`);
    return forced;
  }
  if (hasSignatureAt(b, 512)) return 512;
  if (hasSignatureAt(b, 4096)) return 4096;
  if (b.length < 1024) fail(`buffer of ${b.length} bytes is too short to hold a GPT header`);
  fail('no "EFI PART" signature at offset 512 or 4096');
}

/** Validates everything that LBA 1 alone can tell. */
function parseHeader(b: Buffer, lbaSize: LbaSize): Header {
  const base = lbaSize;
  if (b.length < base + HEADER_SIZE) fail(`buffer of ${b.length} bytes is too short for a GPT header at offset ${base}`);
  if (!hasSignatureAt(b, base + H_SIG)) {
    fail(`bad GPT signature at offset ${base}: ${JSON.stringify(b.toString('latin1', base, base + 8))}, expected "EFI PART"`);
  }
  const rev = b.readUInt32LE(base + H_REV);
  // Only major revision 1 exists; a later 1.x would stay layout compatible.
  if (rev >>> 16 !== 1) fail(`unsupported GPT revision 0x${rev.toString(16).padStart(8, '0')}, expected 0x00010000`);
  const headerSize = b.readUInt32LE(base + H_SIZE);
  if (headerSize < HEADER_SIZE || headerSize > lbaSize) fail(`GPT header size ${headerSize} is outside ${HEADER_SIZE}..${lbaSize}`);
  if (b.length < base + headerSize) fail(`buffer of ${b.length} bytes is too short for a ${headerSize}-byte GPT header`);

  const stored = b.readUInt32LE(base + H_CRC);
  const hdr = Buffer.from(b.subarray(base, base + headerSize));
  hdr.writeUInt32LE(0, H_CRC);
  const computed = crc32(hdr);
  if (stored !== computed) fail(`GPT header CRC32 mismatch: stored 0x${hex32(stored)}, computed 0x${hex32(computed)}`);
  if (b.readUInt32LE(base + H_RESERVED) !== 0) fail('GPT header reserved field at offset 20 is not zero');

  const currentLba = readLba(b, base + H_MY_LBA, 'MyLBA');
  if (currentLba !== 1) fail(`primary GPT header MyLBA is ${currentLba}, expected 1`);
  const backupLba = readLba(b, base + H_ALT_LBA, 'AlternateLBA');
  const firstUsableLba = readLba(b, base + H_FIRST_USABLE, 'FirstUsableLBA');
  const lastUsableLba = readLba(b, base + H_LAST_USABLE, 'LastUsableLBA');
  const entriesLba = readLba(b, base + H_ENTRIES_LBA, 'PartitionEntryLBA');
  const numEntries = b.readUInt32LE(base + H_NUM_ENTRIES);
  const entrySize = b.readUInt32LE(base + H_ENTRY_SIZE);
  const entriesCrc = b.readUInt32LE(base + H_ENTRIES_CRC);

  if (entrySize < 128 || entrySize % 128 !== 0) fail(`GPT entry size ${entrySize} is not a multiple of 128 (minimum 128)`);
  const entriesBytes = numEntries * entrySize;
  if (entriesBytes > MAX_ENTRIES_BYTES) fail(`GPT entry array of ${numEntries} x ${entrySize} bytes is implausibly large`);
  if (firstUsableLba > lastUsableLba) fail(`GPT FirstUsableLBA ${firstUsableLba} is after LastUsableLBA ${lastUsableLba}`);
  if (entriesLba < 2) fail(`GPT PartitionEntryLBA ${entriesLba} overlaps the MBR or header (must be >= 2)`);
  const entriesEndLba = entriesLba + Math.ceil(entriesBytes / lbaSize); // exclusive
  if (entriesEndLba > firstUsableLba) {
    fail(`GPT entry array (LBA ${entriesLba}..${entriesEndLba - 1}) runs into the usable area starting at LBA ${firstUsableLba}`);
  }
  if (backupLba <= lastUsableLba) fail(`GPT AlternateLBA ${backupLba} is not after LastUsableLBA ${lastUsableLba}`);
  const primaryRegionSize = entriesLba * lbaSize + entriesBytes;
  if (!Number.isSafeInteger(primaryRegionSize)) fail(`GPT PartitionEntryLBA ${entriesLba} is out of range`);

  return {
    lbaSize,
    headerSize,
    currentLba,
    backupLba,
    firstUsableLba,
    lastUsableLba,
    diskGuid: decodeGuid(b, base + H_DISK_GUID),
    entriesLba,
    numEntries,
    entrySize,
    entriesCrc,
    primaryRegionSize,
  };
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function hasProtectiveMbr(b: Buffer): boolean {
  if (b.length < 512 || b[MBR_SIG] !== 0x55 || b[MBR_SIG + 1] !== 0xaa) return false;
  for (let i = 0; i < 4; i++) if (b[MBR_PART_TABLE + i * 16 + 4] === MBR_TYPE_GPT) return true;
  return false;
}

/**
 * Size of the primary region (MBR + header + entries) from LBA 0 and LBA 1
 * alone, so a caller knows how many bytes to read before calling parseGpt.
 * Pass at least 8 KiB when the LBA size is unknown, so 4096-byte disks are found.
 */
export function primaryGptRegionSize(buf: Uint8Array, opts?: { lbaSize?: LbaSize }): number {
  const b = asBuffer(buf);
  return parseHeader(b, detectLbaSize(b, opts?.lbaSize)).primaryRegionSize;
}

export function parseGpt(buf: Uint8Array, opts?: { lbaSize?: LbaSize }): Gpt {
  const b = asBuffer(buf);
  const h = parseHeader(b, detectLbaSize(b, opts?.lbaSize));
  if (b.length < h.primaryRegionSize) {
    fail(`buffer of ${b.length} bytes is shorter than the primary GPT region (${h.primaryRegionSize} bytes)`);
  }
  const entriesOff = h.entriesLba * h.lbaSize;
  const entries = b.subarray(entriesOff, h.primaryRegionSize);
  const computed = crc32(entries);
  if (computed !== h.entriesCrc) {
    fail(`GPT partition entry array CRC32 mismatch: stored 0x${hex32(h.entriesCrc)}, computed 0x${hex32(computed)}`);
  }

  const partitions: GptPartition[] = [];
  for (let i = 0; i < h.numEntries; i++) {
    const off = i * h.entrySize;
    if (isZero(entries, off + E_TYPE, off + E_TYPE + 16)) continue;
    const number = i + 1;
    const firstLba = readLba(entries, off + E_FIRST, `partition ${number} StartingLBA`);
    const lastLba = readLba(entries, off + E_LAST, `partition ${number} EndingLBA`);
    if (firstLba > lastLba) fail(`GPT partition ${number} starts at LBA ${firstLba} after its end LBA ${lastLba}`);
    if (firstLba < h.firstUsableLba || lastLba > h.lastUsableLba) {
      fail(`GPT partition ${number} (LBA ${firstLba}..${lastLba}) is outside the usable area ${h.firstUsableLba}..${h.lastUsableLba}`);
    }
    const rawName = entries.toString('utf16le', off + E_NAME, off + E_NAME + E_NAME_LEN);
    const nul = rawName.indexOf('\0');
    partitions.push({
      number,
      typeGuid: decodeGuid(entries, off + E_TYPE),
      partGuid: decodeGuid(entries, off + E_GUID),
      firstLba,
      lastLba,
      attributes: entries.readBigUInt64LE(off + E_ATTR),
      name: nul === -1 ? rawName : rawName.slice(0, nul),
      offset: firstLba * h.lbaSize,
      size: (lastLba - firstLba + 1) * h.lbaSize,
    });
  }

  const sorted = [...partitions].sort((a, c) => a.firstLba - c.firstLba);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (cur.firstLba <= prev.lastLba) {
      fail(
        `GPT partitions ${prev.number} (LBA ${prev.firstLba}..${prev.lastLba}) and ${cur.number} ` +
          `(LBA ${cur.firstLba}..${cur.lastLba}) overlap`,
      );
    }
  }

  return {
    lbaSize: h.lbaSize,
    diskGuid: h.diskGuid,
    currentLba: h.currentLba,
    backupLba: h.backupLba,
    firstUsableLba: h.firstUsableLba,
    lastUsableLba: h.lastUsableLba,
    entriesLba: h.entriesLba,
    numEntries: h.numEntries,
    entrySize: h.entrySize,
    entriesCrc: h.entriesCrc,
    partitions,
    primaryRegionSize: h.primaryRegionSize,
    protectiveMbr: hasProtectiveMbr(b),
  };
}

// ---------------------------------------------------------------------------
// Backup GPT

export interface BackupGpt {
  /** One LBA: the backup header, zero padded. */
  header: Buffer;
  headerOffset: number;
  /** The entry array, zero padded to whole LBAs. */
  entries: Buffer;
  entriesOffset: number;
  /** The primary region to write at offset 0 (a copy; rewritten when the disk size differs). */
  primary: Buffer;
}

function sealHeader(b: Buffer, base: number, headerSize: number): void {
  b.writeUInt32LE(0, base + H_CRC);
  b.writeUInt32LE(crc32(b.subarray(base, base + headerSize)), base + H_CRC);
}

/**
 * The backup GPT for a target disk of `diskSize` bytes, from the verbatim
 * primary region of the source disk. When the target's size differs from the
 * source's, the primary header is adjusted too, so both copies agree.
 */
export function buildBackupGpt(primaryRegion: Uint8Array, diskSize: number): BackupGpt {
  const src = asBuffer(primaryRegion);
  const gpt = parseGpt(src);
  const { lbaSize } = gpt;
  const h = parseHeader(src, lbaSize);
  if (!Number.isSafeInteger(diskSize) || diskSize <= 0) fail(`invalid target disk size ${diskSize}`);

  const entriesBytes = gpt.numEntries * gpt.entrySize;
  const entrySectors = Math.ceil(entriesBytes / lbaSize);
  const lastLba = Math.floor(diskSize / lbaSize) - 1;
  const backupEntriesLba = lastLba - entrySectors;

  const primary = Buffer.from(src.subarray(0, gpt.primaryRegionSize));
  if (lastLba !== gpt.backupLba) {
    const lastUsable = backupEntriesLba - 1;
    const maxEnd = gpt.partitions.reduce((m, p) => Math.max(m, p.lastLba), gpt.firstUsableLba - 1);
    if (maxEnd > lastUsable || lastUsable < gpt.firstUsableLba) {
      fail(
        `target disk of ${diskSize} bytes is too small: partitions end at LBA ${maxEnd}, ` +
          `but the last usable LBA would be ${lastUsable} (needs at least ${(maxEnd + entrySectors + 2) * lbaSize} bytes)`,
      );
    }
    primary.writeBigUInt64LE(BigInt(lastLba), lbaSize + H_ALT_LBA);
    primary.writeBigUInt64LE(BigInt(lastUsable), lbaSize + H_LAST_USABLE);
    sealHeader(primary, lbaSize, h.headerSize);
    updateProtectiveSize(primary, lastLba);
  }

  const header = Buffer.alloc(lbaSize);
  primary.copy(header, 0, lbaSize, lbaSize + h.headerSize);
  header.writeBigUInt64LE(BigInt(lastLba), H_MY_LBA);
  header.writeBigUInt64LE(1n, H_ALT_LBA);
  header.writeBigUInt64LE(BigInt(backupEntriesLba), H_ENTRIES_LBA);
  sealHeader(header, 0, h.headerSize);

  const entries = Buffer.alloc(entrySectors * lbaSize);
  const entriesOff = gpt.entriesLba * lbaSize;
  primary.copy(entries, 0, entriesOff, entriesOff + entriesBytes);

  return {
    header,
    headerOffset: lastLba * lbaSize,
    entries,
    entriesOffset: backupEntriesLba * lbaSize,
    primary,
  };
}

/** The 0xEE record spans LBA 1 to the end of the disk, capped at what 32 bits can say. */
function updateProtectiveSize(b: Buffer, lastLba: number): void {
  if (!hasProtectiveMbr(b)) return;
  for (let i = 0; i < 4; i++) {
    const rec = MBR_PART_TABLE + i * 16;
    if (b[rec + 4] === MBR_TYPE_GPT && b.readUInt32LE(rec + 8) === 1) {
      b.writeUInt32LE(Math.min(lastLba, MBR_SIZE_MAX), rec + 12);
    }
  }
}

// ---------------------------------------------------------------------------
// Fresh GPT

export interface NewGptPartition {
  firstLba: number;
  lastLba: number;
  typeGuid: string;
  partGuid?: string;
  name?: string;
  attributes?: bigint;
}

export interface BuiltGptDisk {
  /** Protective MBR + primary header + entries, to write at offset 0. */
  primary: Buffer;
  backupHeader: Buffer;
  backupHeaderOffset: number;
  backupEntries: Buffer;
  backupEntriesOffset: number;
}

/** A fresh GPT with the usual 128 x 128-byte entry array right after the header. */
export function buildGptDisk(opts: {
  diskSize: number;
  lbaSize: LbaSize;
  diskGuid?: string;
  partitions: NewGptPartition[];
}): BuiltGptDisk {
  const { diskSize, lbaSize } = opts;
  if (lbaSize !== 512 && lbaSize !== 4096) fail(`unsupported LBA size ${String(lbaSize)} (expected 512 or 4096)`);
  if (opts.partitions.length > STD_ENTRIES) fail(`${opts.partitions.length} partitions do not fit in ${STD_ENTRIES} GPT entries`);
  if (!Number.isSafeInteger(diskSize) || diskSize <= 0) fail(`invalid disk size ${diskSize}`);

  const entriesBytes = STD_ENTRIES * STD_ENTRY_SIZE;
  const entrySectors = Math.ceil(entriesBytes / lbaSize);
  const entriesLba = 2;
  const firstUsable = entriesLba + entrySectors;
  const lastLba = Math.floor(diskSize / lbaSize) - 1;
  const lastUsable = lastLba - entrySectors - 1;
  if (lastUsable < firstUsable) fail(`disk of ${diskSize} bytes is too small for a GPT with ${lbaSize}-byte LBAs`);

  const primary = Buffer.alloc(entriesLba * lbaSize + entriesBytes);

  // Protective MBR: one 0xEE record from LBA 1 to the end of the disk.
  const rec = MBR_PART_TABLE;
  primary.set([0x00, 0x00, 0x02, 0x00, MBR_TYPE_GPT, 0xff, 0xff, 0xff], rec);
  primary.writeUInt32LE(1, rec + 8);
  primary.writeUInt32LE(Math.min(lastLba, MBR_SIZE_MAX), rec + 12);
  primary[MBR_SIG] = 0x55;
  primary[MBR_SIG + 1] = 0xaa;

  const entries = primary.subarray(entriesLba * lbaSize);
  opts.partitions.forEach((p, i) => {
    const off = i * STD_ENTRY_SIZE;
    const n = i + 1;
    if (!Number.isSafeInteger(p.firstLba) || !Number.isSafeInteger(p.lastLba) || p.firstLba > p.lastLba) {
      fail(`partition ${n}: invalid LBA range ${p.firstLba}..${p.lastLba}`);
    }
    if (p.firstLba < firstUsable || p.lastLba > lastUsable) {
      fail(`partition ${n} (LBA ${p.firstLba}..${p.lastLba}) is outside the usable area ${firstUsable}..${lastUsable}`);
    }
    if (/^0{8}-0{4}-0{4}-0{4}-0{12}$/.test(p.typeGuid)) fail(`partition ${n}: the all-zero type GUID marks an unused entry`);
    encodeGuid(p.typeGuid, entries, off + E_TYPE);
    encodeGuid(p.partGuid ?? randomUUID(), entries, off + E_GUID);
    entries.writeBigUInt64LE(BigInt(p.firstLba), off + E_FIRST);
    entries.writeBigUInt64LE(BigInt(p.lastLba), off + E_LAST);
    entries.writeBigUInt64LE(BigInt.asUintN(64, p.attributes ?? 0n), off + E_ATTR);
    const name = Buffer.from(p.name ?? '', 'utf16le');
    if (name.length > E_NAME_LEN) fail(`partition ${n}: name "${p.name}" is longer than 36 UTF-16 code units`);
    name.copy(entries, off + E_NAME);
  });

  const hdr = primary.subarray(lbaSize, lbaSize + HEADER_SIZE);
  SIGNATURE.copy(hdr, H_SIG);
  hdr.writeUInt32LE(REVISION_1_0, H_REV);
  hdr.writeUInt32LE(HEADER_SIZE, H_SIZE);
  hdr.writeBigUInt64LE(1n, H_MY_LBA);
  hdr.writeBigUInt64LE(BigInt(lastLba), H_ALT_LBA);
  hdr.writeBigUInt64LE(BigInt(firstUsable), H_FIRST_USABLE);
  hdr.writeBigUInt64LE(BigInt(lastUsable), H_LAST_USABLE);
  encodeGuid(opts.diskGuid ?? randomUUID(), hdr, H_DISK_GUID);
  hdr.writeBigUInt64LE(BigInt(entriesLba), H_ENTRIES_LBA);
  hdr.writeUInt32LE(STD_ENTRIES, H_NUM_ENTRIES);
  hdr.writeUInt32LE(STD_ENTRY_SIZE, H_ENTRY_SIZE);
  hdr.writeUInt32LE(crc32(entries), H_ENTRIES_CRC);
  sealHeader(primary, lbaSize, HEADER_SIZE);

  // Validates the result too: overlaps and the like surface here as COSI_ERR_GPT.
  const backup = buildBackupGpt(primary, diskSize);
  return {
    primary: backup.primary,
    backupHeader: backup.header,
    backupHeaderOffset: backup.headerOffset,
    backupEntries: backup.entries,
    backupEntriesOffset: backup.entriesOffset,
  };
}
