/**
 * Folder shared/disk/: what a raw disk holds: GPT (read, build), CRC32, DPS partition types, filesystem
 * detection. Imports transport/ (to read superblocks) and errors.ts; never format/.
 *
 * GUID Partition Table (UEFI 2.10 chapter 5): parse and validate the primary
 * region a COSI file carries. Rebuilding the backup GPT and creating fresh
 * tables live in gpt-build.ts.
 *
 * LBAs are JS numbers: anything past 2^53 is rejected as corrupt rather than
 * silently rounded, since no real disk is that large.
 */

import { crc32 } from './crc32.js';
import {
  E_FIRST, E_GUID, E_LAST, E_ATTR, E_NAME, E_NAME_LEN, E_TYPE,
  H_ALT_LBA, H_CRC, H_DISK_GUID, H_ENTRIES_CRC, H_ENTRIES_LBA, H_ENTRY_SIZE, H_FIRST_USABLE, H_LAST_USABLE, H_MY_LBA,
  H_NUM_ENTRIES, H_RESERVED, H_REV, H_SIG, H_SIZE, HEADER_SIZE, MAX_ENTRIES_BYTES, SIGNATURE,
  asBuffer, decodeGuid, fail, hasProtectiveMbr, hex32,
} from './gpt-layout.js';

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

export interface Header {
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
export function parseHeader(b: Buffer, lbaSize: LbaSize): Header {
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
